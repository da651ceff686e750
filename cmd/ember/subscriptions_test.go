package main_test

// FHIR Subscriptions end to end (issue 19, "Done when"): real `ember serve`
// processes, real PostgreSQL, and receivers that are real HTTP servers and
// websocket clients. Every wait here has a deadline, so a lost notification
// fails the test instead of hanging it.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/emberfhir/ember/internal/pgtest"
)

const (
	topicBase   = "https://emberfhir.org/fhir/SubscriptionTopic/"
	backportSD  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	secretExt   = "https://emberfhir.org/fhir/StructureDefinition/subscription-secret"
	typeEvent   = "event-notification"
	typeShake   = "handshake"
	notifyLimit = time.Second // the issue's bound from write to notification
)

// subServe starts `ember serve` on its own address and the database db,
// authorisation off; args add to that.
func subServe(t *testing.T, dr *drill, db string, args ...string) *server {
	t.Helper()
	addr := freeAddr(t)
	all := append([]string{"--addr", addr, "--auth", "none", "--database-url", db, "--data-dir", t.TempDir()}, args...)
	if dr != nil {
		return dr.serve(nil, addr, all...)
	}
	return startServe(t, nil, addr, all...)
}

// note is one notification Bundle (rest-hook body, websocket message or
// $events answer), decoded as far as the tests look.
type note struct {
	at      time.Time
	path    string // the receiver's path it was posted to
	header  http.Header
	body    []byte
	typ     string  // SubscriptionStatus.type
	status  string  // SubscriptionStatus.status
	since   int64   // events-since-subscription-start
	events  []int64 // notification-event numbers, in order
	res     []string
	errText string // SubscriptionStatus.error text
}

// statusParams is the backport's SubscriptionStatus (R4: Parameters).
type statusParams struct {
	ResourceType string `json:"resourceType"`
	Parameter    []struct {
		Name                 string `json:"name"`
		ValueCode            string `json:"valueCode"`
		ValueString          string `json:"valueString"`
		ValueCodeableConcept struct {
			Text string `json:"text"`
		} `json:"valueCodeableConcept"`
		Part []struct {
			Name        string `json:"name"`
			ValueString string `json:"valueString"`
		} `json:"part"`
	} `json:"parameter"`
}

// read fills n from the status.
func (p *statusParams) read(n *note) error {
	if p.ResourceType != "Parameters" {
		return fmt.Errorf("the status is a %q, want Parameters", p.ResourceType)
	}
	for _, prm := range p.Parameter {
		switch prm.Name {
		case "type":
			n.typ = prm.ValueCode
		case "status":
			n.status = prm.ValueCode
		case "error":
			n.errText = prm.ValueCodeableConcept.Text
		case "events-since-subscription-start":
			v, err := strconv.ParseInt(prm.ValueString, 10, 64)
			if err != nil {
				return fmt.Errorf("events-since-subscription-start %q: %w", prm.ValueString, err)
			}
			n.since = v
		case "notification-event":
			for _, part := range prm.Part {
				if part.Name == "event-number" {
					v, err := strconv.ParseInt(part.ValueString, 10, 64)
					if err != nil {
						return fmt.Errorf("event-number %q: %w", part.ValueString, err)
					}
					n.events = append(n.events, v)
				}
			}
		}
	}
	return nil
}

// decodeNote reads a notification Bundle: type history, the
// SubscriptionStatus Parameters first, then the events' entries (their
// resources' Type/id, or fullUrl when they carry none).
func decodeNote(body []byte) (note, error) {
	n := note{at: time.Now(), body: body}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "history" || len(b.Entry) == 0 {
		return n, fmt.Errorf("not a history Bundle with entries (%v): %.300s", err, body)
	}
	var p statusParams
	if err := json.Unmarshal(b.Entry[0].Resource, &p); err != nil {
		return n, fmt.Errorf("first entry: %w", err)
	}
	if err := p.read(&n); err != nil {
		return n, fmt.Errorf("first entry: %w: %.300s", err, body)
	}
	for _, e := range b.Entry[1:] {
		var head struct{ ResourceType, ID string }
		if len(e.Resource) > 0 && json.Unmarshal(e.Resource, &head) == nil {
			n.res = append(n.res, head.ResourceType+"/"+head.ID)
		} else {
			n.res = append(n.res, e.FullURL)
		}
	}
	return n, nil
}

// hook is a rest-hook receiver: it answers with the status set (200 by
// default) and keeps, in arrival order, the notifications it acknowledged.
type hook struct {
	srv    *httptest.Server
	code   atomic.Int32
	tries  atomic.Int32 // every request, acknowledged or not
	arrive chan struct{}
	mu     sync.Mutex
	got    []note
	bad    []string // requests that were not notifications
}

func newHook(t *testing.T, tls bool) *hook {
	h := &hook{arrive: make(chan struct{}, 1)}
	h.code.Store(http.StatusOK)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		code := int(h.code.Load())
		h.tries.Add(1)
		h.mu.Lock()
		if code == http.StatusOK {
			n, err := decodeNote(body)
			n.path, n.header = r.URL.Path, r.Header.Clone()
			if r.Method != http.MethodPost || err != nil {
				h.bad = append(h.bad, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
			}
			h.got = append(h.got, n)
		}
		h.mu.Unlock()
		w.WriteHeader(code)
		select {
		case h.arrive <- struct{}{}:
		default:
		}
	})
	if tls {
		h.srv = httptest.NewUnstartedServer(handler)
		h.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
		h.srv.StartTLS()
	} else {
		h.srv = httptest.NewServer(handler)
	}
	t.Cleanup(h.srv.Close)
	return h
}

// notes returns the acknowledged notifications of type typ ("" all) posted
// to path ("" any).
func (h *hook) notes(typ, path string) []note {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []note
	for _, n := range h.got {
		if (typ == "" || n.typ == typ) && (path == "" || n.path == path) {
			out = append(out, n)
		}
	}
	return out
}

func (h *hook) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.bad {
		t.Errorf("the receiver got a request that is not a notification: %s", b)
	}
	h.bad = nil
}

// waitFor polls cond until it holds, or fails the test after within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(began)
}

// waitNotes waits until the event notifications posted to path carry n
// events in all, and returns their numbers in arrival order.
func (h *hook) waitNotes(t *testing.T, path string, n int, within time.Duration) []int64 {
	t.Helper()
	deadline := time.After(within)
	for {
		var nums []int64
		for _, x := range h.notes(typeEvent, path) {
			nums = append(nums, x.events...)
		}
		if len(nums) >= n {
			h.check(t)
			return nums
		}
		select {
		case <-h.arrive:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			h.check(t)
			t.Fatalf("events %v at %s, want %d within %s (%d requests in all)", nums, path, n, within, h.tries.Load())
		}
	}
}

// checkNumbers fails unless nums is exactly from, from+1, … to: every
// event once, in order.
func checkNumbers(t *testing.T, what string, nums []int64, from, to int64) {
	t.Helper()
	var want []int64
	for i := from; i <= to; i++ {
		want = append(want, i)
	}
	if !slices.Equal(nums, want) {
		t.Errorf("%s: event numbers %v, want %d to %d, each once and in order", what, nums, from, to)
	}
}

// subSpec is a Subscription to write.
type subSpec struct {
	endpoint string // "" makes a websocket subscription
	topic    string // default: the Observation topic
	filters  []string
	content  string // default full-resource
	secret   string
}

func (s subSpec) json() string {
	topic, content := s.topic, s.content
	if topic == "" {
		topic = topicBase + "Observation"
	}
	if content == "" {
		content = "full-resource"
	}
	channel := map[string]any{"type": "websocket", "payload": "application/fhir+json",
		"_payload": map[string]any{"extension": []any{map[string]any{"url": backportSD + "backport-payload-content", "valueCode": content}}}}
	if s.endpoint != "" {
		channel["type"], channel["endpoint"] = "rest-hook", s.endpoint
	}
	doc := map[string]any{"resourceType": "Subscription", "status": "requested", "reason": "end-to-end test",
		"criteria": topic, "channel": channel}
	var filters []any
	for _, f := range s.filters {
		filters = append(filters, map[string]any{"url": backportSD + "backport-filter-criteria", "valueString": f})
	}
	if filters != nil {
		doc["_criteria"] = map[string]any{"extension": filters}
	}
	if s.secret != "" {
		doc["extension"] = []any{map[string]any{"url": secretExt, "valueString": s.secret}}
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

// create POSTs a resource and returns its id.
func create(t *testing.T, base, typ, body string) string {
	t.Helper()
	a := drillDo("POST", base+"/"+typ, body)
	if a.status != http.StatusCreated {
		t.Fatalf("POST %s: %d %v %.500s", typ, a.status, a.err, a.body)
	}
	var r struct{ ID string }
	if err := json.Unmarshal([]byte(a.body), &r); err != nil || r.ID == "" {
		t.Fatalf("POST %s: no id in %.300s", typ, a.body)
	}
	return r.ID
}

func observationFor(patient string) string {
	return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` + patient + `"}}`
}

// subStatus reads a Subscription's status and error elements.
func subStatus(t *testing.T, base, id string) (status, errText string) {
	t.Helper()
	a := drillDo("GET", base+"/Subscription/"+id, "")
	var s struct{ Status, Error string }
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &s) != nil {
		t.Fatalf("GET Subscription/%s: %d %v %.300s", id, a.status, a.err, a.body)
	}
	return s.Status, s.Error
}

func waitStatus(t *testing.T, base, id, want string, within time.Duration) {
	t.Helper()
	var got string
	waitFor(t, "Subscription/"+id+" status "+want, within, func() bool {
		got, _ = subStatus(t, base, id)
		return got == want
	})
}

// statusOp is GET Subscription/id/$status: the searchset's one status.
func statusOp(t *testing.T, base, id string) note {
	t.Helper()
	a := drillDo("GET", base+"/Subscription/"+id+"/$status", "")
	var b struct {
		Type  string
		Entry []struct{ Resource statusParams }
	}
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &b) != nil || b.Type != "searchset" || len(b.Entry) != 1 {
		t.Fatalf("$status: %d %v %.500s, want a searchset of one SubscriptionStatus", a.status, a.err, a.body)
	}
	var n note
	if err := b.Entry[0].Resource.read(&n); err != nil {
		t.Fatalf("$status: %v: %.500s", err, a.body)
	}
	return n
}

// setupHook creates a rest-hook subscription to h at path and waits for
// its handshake and for it to read back active.
func setupHook(t *testing.T, base string, h *hook, path string, spec subSpec) string {
	t.Helper()
	spec.endpoint = h.srv.URL + path
	id := create(t, base, "Subscription", spec.json())
	waitFor(t, "the handshake of Subscription/"+id, 10*time.Second, func() bool { return len(h.notes(typeShake, path)) > 0 })
	waitStatus(t, base, id, "active", 5*time.Second)
	hs := h.notes(typeShake, path)
	if len(hs) != 1 || hs[0].since != 0 || len(hs[0].events) != 0 {
		t.Fatalf("handshakes %+v, want one, with events-since-subscription-start 0 and no event", hs)
	}
	return id
}

// TestSubscriptionRestHook: a rest-hook subscription's handshake, then a
// notification within a second of each matching write, numbered
// contiguously, none for writes that do not match; $status, $events, the
// CapabilityStatement and /metrics agree.
func TestSubscriptionRestHook(t *testing.T) {
	s := subServe(t, nil, pgtest.NewDatabase(t), "--subscription-allow-hosts", "127.0.0.1")
	h := newHook(t, false)
	for _, p := range []string{"X", "Y"} {
		if a := drillDo("PUT", s.base+"/Patient/"+p, `{"resourceType":"Patient","id":"`+p+`"}`); a.status != http.StatusCreated {
			t.Fatalf("PUT Patient/%s: %d %s", p, a.status, a.body)
		}
	}
	id := setupHook(t, s.base, h, "/hook", subSpec{filters: []string{"Observation?patient=Patient/X"}})

	const writes = 5
	var matching, other []string
	var slowest time.Duration
	for i := 1; i <= writes; i++ {
		other = append(other, create(t, s.base, "Observation", observationFor("Y")))
		began := time.Now()
		matching = append(matching, create(t, s.base, "Observation", observationFor("X")))
		h.waitNotes(t, "/hook", i, 5*time.Second)
		took := time.Since(began)
		if took > notifyLimit {
			t.Errorf("write %d: notified %s after the write began, want within %s", i, took.Round(time.Millisecond), notifyLimit)
		}
		slowest = max(slowest, took)
	}
	t.Logf("slowest notification: %s after its write began", slowest.Round(time.Millisecond))
	other = append(other, create(t, s.base, "Observation", observationFor("Y")))
	time.Sleep(500 * time.Millisecond) // room for a wrong notification
	got := h.notes(typeEvent, "/hook")
	var nums []int64
	for i, n := range got {
		nums = append(nums, n.events...)
		if len(n.events) != 1 || n.since != n.events[0] {
			t.Errorf("notification %d: events %v with events-since-subscription-start %d, want one event numbered as the count", i, n.events, n.since)
		}
		if n.status != "active" || n.header.Get("Content-Type") != "application/fhir+json" {
			t.Errorf("notification %d: status %q, Content-Type %q", i, n.status, n.header.Get("Content-Type"))
		}
		if i < len(matching) && (len(n.res) != 1 || n.res[0] != "Observation/"+matching[i]) {
			t.Errorf("notification %d carries %v, want the full Observation/%s", i, n.res, matching[i])
		}
		for _, o := range other {
			if strings.Contains(string(n.body), o) {
				t.Errorf("notified of Observation/%s, of Patient/Y: the filter did not apply", o)
			}
		}
	}
	checkNumbers(t, "rest-hook", nums, 1, writes)

	st := statusOp(t, s.base, id)
	if st.typ != "query-status" || st.status != "active" || st.since != writes {
		t.Errorf("$status: type %q, status %q, events-since %d; want query-status, active, %d", st.typ, st.status, st.since, writes)
	}
	a := drillDo("GET", s.base+"/Subscription/"+id+"/$events?eventsSinceNumber=2", "")
	ev, err := decodeNote([]byte(a.body))
	if a.status != http.StatusOK || err != nil {
		t.Fatalf("$events: %d %v %.500s", a.status, err, a.body)
	}
	if ev.typ != "query-event" || len(ev.res) != writes-1 || (len(ev.res) > 0 && ev.res[0] != "Observation/"+matching[1]) {
		t.Errorf("$events?eventsSinceNumber=2: type %q, entries %v; want query-event and Observations %v", ev.typ, ev.res, matching[1:])
	}
	checkNumbers(t, "$events?eventsSinceNumber=2", ev.events, 2, writes)

	checkCapability(t, s.base)
	if n := deliveredMetric(t, s.addr, "rest-hook"); n < writes {
		t.Errorf(`ember_subscription_events_delivered_total{channel="rest-hook"} = %v, want at least %d`, n, writes)
	}
}

// checkCapability: the CapabilityStatement lists the topics on Subscription
// and the backport's three operations.
func checkCapability(t *testing.T, base string) {
	t.Helper()
	var cs struct {
		Instantiates []string
		Rest         []struct {
			Resource []struct {
				Type      string
				Extension []struct{ URL, ValueCanonical string }
				Operation []struct{ Name, Definition string }
			}
		}
	}
	getJSON(t, base+"/metadata", &cs)
	if !slices.Contains(cs.Instantiates, "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4") {
		t.Errorf("the CapabilityStatement instantiates %v, not the backport's server statement", cs.Instantiates)
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type != "Subscription" {
			continue
		}
		var topics, ops []string
		for _, e := range r.Extension {
			if e.URL == backportSD+"capabilitystatement-subscriptiontopic-canonical" {
				topics = append(topics, e.ValueCanonical)
			}
		}
		for _, o := range r.Operation {
			ops = append(ops, o.Name)
		}
		for _, want := range []string{"Observation", "Encounter", "diagnostic-report-final", "ai-finding-available", "imaging-study-available", "encounter-start", "encounter-end"} {
			if !slices.Contains(topics, topicBase+want) {
				t.Errorf("the CapabilityStatement does not list topic %s%s on Subscription (%d listed)", topicBase, want, len(topics))
			}
		}
		for _, want := range []string{"status", "events", "get-ws-binding-token"} {
			if !slices.Contains(ops, want) {
				t.Errorf("the CapabilityStatement does not list $%s on Subscription: %v", want, ops)
			}
		}
		return
	}
	t.Error("the CapabilityStatement has no Subscription resource")
}

// deliveredMetric reads ember_subscription_events_delivered_total of a
// channel from /metrics.
func deliveredMetric(t *testing.T, addr, channel string) float64 {
	t.Helper()
	return metric(t, addr, "ember_subscription_events_delivered_total", channel)
}

// metric reads a subscription counter of a channel from /metrics.
func metric(t *testing.T, addr, name, channel string) float64 {
	t.Helper()
	a := drillDo("GET", "http://"+addr+"/metrics", "")
	prefix := name + `{channel="` + channel + `"} `
	for _, l := range strings.Split(a.body, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics (%d) has no %s: %.2000s", a.status, prefix, a.body)
	return 0
}

// bindingToken is POST Subscription/id/$get-ws-binding-token: the token
// and the websocket URL.
func bindingToken(t *testing.T, base, id string) (token, wsURL string) {
	t.Helper()
	a := drillDo("POST", base+"/Subscription/"+id+"/$get-ws-binding-token", "")
	var p struct {
		ResourceType string
		Parameter    []struct{ Name, ValueString, ValueUrl string }
	}
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &p) != nil || p.ResourceType != "Parameters" {
		t.Fatalf("$get-ws-binding-token: %d %v %.500s", a.status, a.err, a.body)
	}
	for _, prm := range p.Parameter {
		switch prm.Name {
		case "token":
			token = prm.ValueString
		case "websocket-url":
			wsURL = prm.ValueUrl
		}
	}
	if token == "" || wsURL == "" {
		t.Fatalf("$get-ws-binding-token: no token or websocket-url: %s", a.body)
	}
	return token, wsURL
}

// wsClient is a websocket connection to the subscriptions endpoint.
type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func wsDial(t *testing.T, wsURL string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &wsClient{t: t, c: c}
}

func (w *wsClient) send(msg string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		w.t.Fatalf("websocket send %q: %v", msg, err)
	}
}

// next reads the next notification, within d.
func (w *wsClient) next(d time.Duration) note {
	w.t.Helper()
	n, err := w.read(d)
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *wsClient) read(d time.Duration) (note, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, msg, err := w.c.Read(ctx)
	if err != nil {
		return note{}, fmt.Errorf("websocket read: %w", err)
	}
	n, err := decodeNote(msg)
	if typ != websocket.MessageText || err != nil {
		return n, fmt.Errorf("websocket message (%v): %w", typ, err)
	}
	return n, nil
}

// events reads event notifications until they carry n events, and returns
// their numbers.
func (w *wsClient) events(n int, d time.Duration) []int64 {
	w.t.Helper()
	var nums []int64
	deadline := time.Now().Add(d)
	for len(nums) < n {
		m := w.next(time.Until(deadline))
		if m.typ != typeEvent {
			w.t.Fatalf("websocket: a %s, want an event-notification", m.typ)
		}
		nums = append(nums, m.events...)
	}
	return nums
}

// TestSubscriptionWebsocket: bind with a token, handshake, live events;
// then a reconnection replays what was missed with events-since.
func TestSubscriptionWebsocket(t *testing.T) {
	db := pgtest.NewDatabase(t)
	s := subServe(t, nil, db)
	id := create(t, s.base, "Subscription", subSpec{filters: []string{"Observation?patient=Patient/X"}}.json())
	if st, _ := subStatus(t, s.base, id); st != "active" {
		t.Errorf("a websocket Subscription reads back %q, want active at once", st)
	}
	// Bound once the dispatcher has its row (binding at once is checked
	// last, apart).
	waitFor(t, "Subscription/"+id+" known to the dispatcher", 5*time.Second, func() bool {
		return dbCount(t, db, `SELECT count(*) FROM subscriptions WHERE id = $1`, id) == 1
	})
	token, wsURL := bindingToken(t, s.base, id)
	if want := "ws://" + s.addr + "/subscriptions/ws"; wsURL != want {
		t.Errorf("websocket-url %q, want %q", wsURL, want)
	}
	w := wsDial(t, wsURL)
	w.send("bind-with-token " + token)
	if hs := w.next(5 * time.Second); hs.typ != typeShake || hs.since != 0 || hs.status != "active" {
		t.Fatalf("first message: a %s (status %s, events-since %d), want an active handshake at 0", hs.typ, hs.status, hs.since)
	}
	create(t, s.base, "Observation", observationFor("Y")) // not a match
	began := time.Now()
	first := create(t, s.base, "Observation", observationFor("X"))
	n := w.next(5 * time.Second)
	if took := time.Since(began); took > notifyLimit {
		t.Errorf("websocket notification %s after the write began, want within %s", took.Round(time.Millisecond), notifyLimit)
	}
	if n.typ != typeEvent || !slices.Equal(n.events, []int64{1}) || len(n.res) != 1 || n.res[0] != "Observation/"+first {
		t.Fatalf("after a matching write: a %s with events %v carrying %v, want event 1 of Observation/%s", n.typ, n.events, n.res, first)
	}

	// Gone for two writes: a new connection asks for what it missed. The
	// first closes once the server has recorded its send, so the count of
	// sends checked below does not depend on that race.
	waitFor(t, "event 1 recorded as sent", 5*time.Second, func() bool {
		return dbCount(t, db, `SELECT count(*) FROM subscriptions WHERE id = $1 AND delivered = 1`, id) == 1
	})
	if err := w.c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	missed := []string{create(t, s.base, "Observation", observationFor("X")), create(t, s.base, "Observation", observationFor("X"))}
	waitFor(t, "the missed writes matched", 5*time.Second, func() bool {
		return dbCount(t, db, `SELECT count(*) FROM subscription_events WHERE subscription = $1`, id) == 3
	})
	token2, _ := bindingToken(t, s.base, id)
	w2 := wsDial(t, wsURL)
	w2.send("bind-with-token " + token2)
	if hs := w2.next(5 * time.Second); hs.typ != typeShake || hs.since != 3 {
		t.Fatalf("second binding: a %s with events-since %d, want a handshake at 3", hs.typ, hs.since)
	}
	w2.send("events-since 1")
	var nums []int64
	var res []string
	deadline := time.Now().Add(5 * time.Second)
	for len(nums) < 2 {
		m := w2.next(time.Until(deadline))
		if m.typ != typeEvent {
			t.Fatalf("replay: a %s, want an event-notification", m.typ)
		}
		nums, res = append(nums, m.events...), append(res, m.res...)
	}
	checkNumbers(t, "websocket replay", nums, 2, 3)
	if !slices.Equal(res, []string{"Observation/" + missed[0], "Observation/" + missed[1]}) {
		t.Errorf("replay carries %v, want Observations %v", res, missed)
	}
	// And live again after the replay.
	create(t, s.base, "Observation", observationFor("X"))
	checkNumbers(t, "websocket after the replay", w2.events(1, 5*time.Second), 4, 4)
	// Counted once the send is recorded, just after the client has it.
	waitFor(t, `ember_subscription_events_delivered_total{channel="websocket"} at 4`, 5*time.Second, func() bool {
		return deliveredMetric(t, s.addr, "websocket") == 4
	})

	// A client binds as soon as its Subscription is created, before the
	// server's dispatcher has seen it: the binding must hold all the same.
	for i := range 5 {
		id := create(t, s.base, "Subscription", subSpec{}.json())
		token, _ := bindingToken(t, s.base, id)
		w := wsDial(t, wsURL)
		w.send("bind-with-token " + token)
		if hs, err := w.read(5 * time.Second); err != nil || hs.typ != typeShake {
			t.Errorf("binding %d right after the create of Subscription/%s: %s %v, want its handshake", i, id, hs.typ, err)
		}
		_ = w.c.CloseNow()
	}
}

// TestSubscriptionRestart: events matched while the receiver refused them
// are delivered, all and in order, by the next process on the database:
// after a clean stop (SIGTERM), and after SIGKILL right after a write.
func TestSubscriptionRestart(t *testing.T) {
	dr := newDrill(t, 3*time.Minute)
	db := pgtest.NewDatabase(t)
	h := newHook(t, false)
	allow := []string{"--subscription-allow-hosts", "127.0.0.1"}
	s := subServe(t, dr, db, allow...)
	id := setupHook(t, s.base, h, "/hook", subSpec{})

	// SIGTERM: the receiver refuses while three writes are matched.
	h.code.Store(http.StatusServiceUnavailable)
	for range 3 {
		create(t, s.base, "Observation", observationFor("X"))
	}
	waitFor(t, "a refused delivery of the three events", 10*time.Second, func() bool {
		return h.tries.Load() >= 2 && dbCount(t, db, `SELECT count(*) FROM subscription_events WHERE subscription = $1`, id) == 3
	})
	s.stop(t)
	if n := len(h.notes(typeEvent, "")); n != 0 {
		t.Fatalf("%d notifications acknowledged while the receiver refused them", n)
	}
	h.code.Store(http.StatusOK)
	s = subServe(t, dr, db, allow...)
	checkNumbers(t, "after SIGTERM and a restart", h.waitNotes(t, "/hook", 3, 15*time.Second), 1, 3)

	// SIGKILL right after a write, with the receiver refusing again. The
	// kill lands while the subscription waits out its backoff, when no
	// lease is held: a lease held by a killed process would delay delivery
	// by its 75 s expiry, which this test does not wait for.
	h.code.Store(http.StatusServiceUnavailable)
	tries := h.tries.Load()
	create(t, s.base, "Observation", observationFor("X"))
	waitFor(t, "three refused attempts of event 4", 15*time.Second, func() bool { return h.tries.Load() >= tries+3 })
	waitFor(t, "the lease released, the next attempt a second away", 5*time.Second, func() bool {
		return dbCount(t, db, `SELECT count(*) FROM subscriptions WHERE id = $1 AND lease_owner IS NULL AND next_attempt > now() + interval '1 second'`, id) == 1
	})
	last := create(t, s.base, "Observation", observationFor("X"))
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	h.code.Store(http.StatusOK)
	s = subServe(t, dr, db, allow...)
	nums := h.waitNotes(t, "/hook", 5, 30*time.Second)
	checkNumbers(t, "after SIGKILL and a restart", nums, 1, 5)
	got := h.notes(typeEvent, "/hook")
	if lastNote := got[len(got)-1]; lastNote.res[len(lastNote.res)-1] != "Observation/"+last {
		t.Errorf("the last notification carries %v, want the write made just before SIGKILL, Observation/%s", lastNote.res, last)
	}
	time.Sleep(500 * time.Millisecond)
	var all []int64
	for _, n := range h.notes(typeEvent, "/hook") {
		all = append(all, n.events...)
	}
	checkNumbers(t, "every delivery", all, 1, 5)
}

// TestSubscriptionTwoReplicas: two processes on one database deliver each
// event of two subscriptions exactly once, in order.
func TestSubscriptionTwoReplicas(t *testing.T) {
	dr := newDrill(t, 3*time.Minute)
	db := pgtest.NewDatabase(t)
	h := newHook(t, false)
	var servers [2]*server
	for i := range servers {
		servers[i] = subServe(t, dr, db, "--subscription-allow-hosts", "127.0.0.1")
	}
	setupHook(t, servers[0].base, h, "/a", subSpec{filters: []string{"Observation?patient=Patient/X"}})
	setupHook(t, servers[1].base, h, "/b", subSpec{})

	const writes = 50
	ids := make([]string, writes)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w := range 5 {
		wg.Go(func() {
			for i := w; i < writes; i += 5 {
				a := drillDo("POST", servers[i%2].base+"/Observation", observationFor("X"))
				var r struct{ ID string }
				if a.status != http.StatusCreated || json.Unmarshal([]byte(a.body), &r) != nil {
					failed.Add(1)
					continue
				}
				ids[i] = r.ID
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d writes failed", failed.Load())
	}
	for _, path := range []string{"/a", "/b"} {
		h.waitNotes(t, path, writes, 20*time.Second)
	}
	time.Sleep(time.Second) // room for a duplicate
	for _, path := range []string{"/a", "/b"} {
		var nums []int64
		seen := map[string]int{}
		for _, n := range h.notes(typeEvent, path) {
			nums = append(nums, n.events...)
			for _, r := range n.res {
				seen[r]++
			}
		}
		checkNumbers(t, "subscription at "+path, nums, 1, writes)
		for _, id := range ids {
			if seen["Observation/"+id] != 1 {
				t.Errorf("%s: notified of Observation/%s %d times, want once", path, id, seen["Observation/"+id])
			}
		}
	}
}

// TestSubscriptionReceiverDown: a receiver down 10 s while ten matching
// writes happen gets every event once it is back, in order, within the
// backoff, and the subscription stays active.
func TestSubscriptionReceiverDown(t *testing.T) {
	dr := newDrill(t, 3*time.Minute)
	h := newHook(t, false)
	s := subServe(t, dr, pgtest.NewDatabase(t), "--subscription-allow-hosts", "127.0.0.1")
	id := setupHook(t, s.base, h, "/hook", subSpec{})

	h.code.Store(http.StatusServiceUnavailable)
	down := time.Now()
	for range 10 {
		create(t, s.base, "Observation", observationFor("X"))
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(10*time.Second - time.Since(down))
	if n := h.tries.Load(); n < 3 {
		t.Errorf("%d attempts in the 10 s the receiver was down: it was not retried", n)
	}
	if st, _ := subStatus(t, s.base, id); st != "active" {
		t.Errorf("after 10 s of refusals the Subscription is %q, want active still", st)
	}
	h.code.Store(http.StatusOK)
	up := time.Now()
	// The backoff doubles from 0.5 s: after 10 s of refusals the next
	// attempt is at most 16 s away.
	nums := h.waitNotes(t, "/hook", 10, 20*time.Second)
	t.Logf("receiver down %s, every event delivered %s after it was up, %d requests in all", up.Sub(down).Round(time.Millisecond), time.Since(up).Round(time.Millisecond), h.tries.Load())
	time.Sleep(500 * time.Millisecond)
	nums = nums[:0]
	for _, n := range h.notes(typeEvent, "/hook") {
		nums = append(nums, n.events...)
	}
	checkNumbers(t, "after the outage", nums, 1, 10)
	if st := statusOp(t, s.base, id); st.status != "active" || st.since != 10 || st.errText != "" {
		t.Errorf("$status after recovery: %s, events-since %d, error %q", st.status, st.since, st.errText)
	}
}

// TestSubscriptionSSRFAndTLS: an endpoint on the server's own network is
// refused unless allowed; an https endpoint whose certificate does not
// verify is never called, and the subscription goes to error.
func TestSubscriptionSSRFAndTLS(t *testing.T) {
	h := newHook(t, false)
	closed := subServe(t, nil, pgtest.NewDatabase(t))
	_, port, err := net.SplitHostPort(h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{h.srv.URL + "/hook", "http://localhost:" + port + "/hook", "http://[::1]:" + port + "/hook",
		"http://[::ffff:127.0.0.1]:" + port + "/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/"} {
		a := drillDo("POST", closed.base+"/Subscription", subSpec{endpoint: endpoint}.json())
		var oo struct {
			ResourceType string
			Issue        []struct{ Expression []string }
		}
		_ = json.Unmarshal([]byte(a.body), &oo)
		if a.status != http.StatusUnprocessableEntity || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 ||
			!slices.Contains(oo.Issue[0].Expression, "Subscription.channel.endpoint") {
			t.Errorf("endpoint %s without --subscription-allow-hosts: %d %.300s, want 422 naming Subscription.channel.endpoint", endpoint, a.status, a.body)
		}
	}
	// A name is checked when dialled, on the address it resolves to: a
	// name of this host other than localhost passes the write's literal
	// check, not the dial.
	var st note
	if name := loopbackName(t); name != "" {
		id := create(t, closed.base, "Subscription", subSpec{endpoint: "http://" + name + ":" + port + "/hook"}.json())
		waitFor(t, "a refused dial of "+name+" in $status", 10*time.Second, func() bool {
			st = statusOp(t, closed.base, id)
			return strings.Contains(st.errText, "internal address")
		})
		if st.status != "requested" {
			t.Errorf("Subscription/%s to %s is %q, want requested (no handshake)", id, name, st.status)
		}
	}
	if n := h.tries.Load(); n != 0 {
		t.Errorf("the refused endpoint was called %d times", n)
	}

	tlsHook := newHook(t, true)
	s := subServe(t, nil, pgtest.NewDatabase(t), "--subscription-allow-hosts", "127.0.0.1", "--subscription-max-retries", "2")
	id := create(t, s.base, "Subscription", subSpec{endpoint: tlsHook.srv.URL + "/hook"}.json())
	waitStatus(t, s.base, id, "error", 15*time.Second)
	if n := tlsHook.tries.Load(); n != 0 {
		t.Errorf("the receiver with an unverifiable certificate got %d requests", n)
	}
	_, errText := subStatus(t, s.base, id)
	st = statusOp(t, s.base, id)
	if st.status != "error" || !strings.Contains(st.errText, "certificate") || !strings.Contains(errText, "certificate") {
		t.Errorf("$status: status %q, error %q; Subscription.error %q: want error, naming the certificate", st.status, st.errText, errText)
	}
	time.Sleep(time.Second) // room for a third attempt
	if n := metric(t, s.addr, "ember_subscription_delivery_failures_total", "rest-hook"); n != 2 {
		t.Errorf("%v failed attempts, want the 2 of --subscription-max-retries 2", n)
	}
}

// loopbackName is a name of this host, other than localhost, that resolves
// to a loopback address only ("" when there is none).
func loopbackName(t *testing.T) string {
	host, _ := os.Hostname()
	for _, name := range []string{host, "localhost.", "localhost.localdomain", "ip6-localhost"} {
		addrs, err := net.LookupHost(name)
		if name == "" || err != nil || len(addrs) == 0 {
			continue
		}
		loop := true
		for _, a := range addrs {
			ip := net.ParseIP(a)
			loop = loop && ip != nil && ip.IsLoopback()
		}
		if loop {
			return name
		}
	}
	t.Log("no name of this host but localhost resolves to loopback: the dial-time check is not tried")
	return ""
}

// TestSubscriptionHMAC: a subscription with a secret signs each body.
func TestSubscriptionHMAC(t *testing.T) {
	s := subServe(t, nil, pgtest.NewDatabase(t), "--subscription-allow-hosts", "127.0.0.1")
	h := newHook(t, false)
	setupHook(t, s.base, h, "/signed", subSpec{secret: "s3cret"})
	setupHook(t, s.base, h, "/plain", subSpec{})
	create(t, s.base, "Observation", observationFor("X"))
	h.waitNotes(t, "/signed", 1, 5*time.Second)
	h.waitNotes(t, "/plain", 1, 5*time.Second)
	for _, n := range h.notes("", "/signed") {
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write(n.body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if got := n.header.Get("X-Ember-Signature"); got != want {
			t.Errorf("%s: X-Ember-Signature %q, want %q (HMAC-SHA256 of the body)", n.typ, got, want)
		}
	}
	for _, n := range h.notes("", "/plain") {
		if got := n.header.Get("X-Ember-Signature"); got != "" {
			t.Errorf("%s without a secret: X-Ember-Signature %q", n.typ, got)
		}
	}
}
