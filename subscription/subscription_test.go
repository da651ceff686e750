package subscription_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/subscription"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const base = "http://ember.test/fhir"

// receiver is a rest-hook endpoint that keeps what it is sent.
type receiver struct {
	mu     sync.Mutex
	got    []notification
	status int // answer; 0 = 200
	srv    *httptest.Server
	arrive chan struct{}
}

// notification is a received Bundle, decoded as far as the tests look.
type notification struct {
	Header http.Header
	Body   []byte
	Type   string   // SubscriptionStatus.type
	Since  int64    // events-since-subscription-start
	Events []int64  // notification-event numbers
	Focus  []string // notification-event focus references
	Res    []string // entries' resource type/id after the status
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{arrive: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := r.status
		if status == 0 || status == 200 {
			r.got = append(r.got, decode(t, req.Header, body))
		}
		r.mu.Unlock()
		if status == 0 {
			status = 200
		}
		w.WriteHeader(status)
		r.arrive <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setStatus(s int) {
	r.mu.Lock()
	r.status = s
	r.mu.Unlock()
}

// received returns the notifications of type typ so far.
func (r *receiver) received(typ string) []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []notification
	for _, n := range r.got {
		if typ == "" || n.Type == typ {
			out = append(out, n)
		}
	}
	return out
}

// waitEvents waits until n events in all have arrived, or fails.
func (r *receiver) waitEvents(t *testing.T, n int, within time.Duration) []int64 {
	t.Helper()
	deadline := time.After(within)
	for {
		var nums []int64
		for _, x := range r.received("event-notification") {
			nums = append(nums, x.Events...)
		}
		if len(nums) >= n {
			return nums
		}
		select {
		case <-r.arrive:
		case <-deadline:
			t.Fatalf("got events %v, want %d within %s", nums, n, within)
		}
	}
}

func decode(t *testing.T, h http.Header, body []byte) notification {
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
			FullURL  string          `json:"fullUrl"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Type != "history" || len(b.Entry) == 0 {
		t.Errorf("notification is not a history Bundle: %s", body)
		return notification{}
	}
	var status struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name        string `json:"name"`
			ValueCode   string `json:"valueCode"`
			ValueString string `json:"valueString"`
			Part        []struct {
				Name           string `json:"name"`
				ValueString    string `json:"valueString"`
				ValueReference struct {
					Reference string `json:"reference"`
				} `json:"valueReference"`
			} `json:"part"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(b.Entry[0].Resource, &status); err != nil || status.ResourceType != "Parameters" {
		t.Errorf("the first entry is not the SubscriptionStatus Parameters: %s", body)
	}
	n := notification{Header: h, Body: body}
	for _, p := range status.Parameter {
		switch p.Name {
		case "type":
			n.Type = p.ValueCode
		case "events-since-subscription-start":
			n.Since, _ = strconv.ParseInt(p.ValueString, 10, 64)
		case "notification-event":
			for _, part := range p.Part {
				switch part.Name {
				case "event-number":
					v, _ := strconv.ParseInt(part.ValueString, 10, 64)
					n.Events = append(n.Events, v)
				case "focus":
					n.Focus = append(n.Focus, part.ValueReference.Reference)
				}
			}
		}
	}
	for _, e := range b.Entry[1:] {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if len(e.Resource) > 0 {
			_ = json.Unmarshal(e.Resource, &head)
			n.Res = append(n.Res, head.ResourceType+"/"+head.ID)
		} else {
			n.Res = append(n.Res, e.FullURL)
		}
	}
	return n
}

// env is an engine and a running subscriptions service on a fresh database.
type env struct {
	st  *store.Store
	en  *engine.Engine
	svc *subscription.Service
}

func newEnv(t *testing.T, url string, cfg subscription.Config) *env {
	t.Helper()
	if url == "" {
		url = pgtest.NewDatabase(t)
	}
	st, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	en, err := engine.New(engine.Config{BaseURL: base}, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine = en
	if cfg.AllowHosts == nil {
		cfg.AllowHosts = []string{"127.0.0.1"}
	}
	svc, err := subscription.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		svc.Wait()
	})
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &env{st: st, en: en, svc: svc}
}

func (e *env) put(t *testing.T, caller *engine.Caller, body string) store.Version {
	t.Helper()
	res, err := e.en.Parser().Parse([]byte(body), "")
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	var r engine.Result
	if res.ID() != "" {
		r, err = e.en.Update(t.Context(), caller, engine.UpdateRequest{Resource: res, ID: res.ID()})
	} else {
		r, err = e.en.Create(t.Context(), caller, engine.CreateRequest{Resource: res})
	}
	if err != nil {
		t.Fatalf("write %s: %v", body, err)
	}
	return r.Version
}

// subscriptionJSON is a rest-hook Subscription to topic with filters.
func subscriptionJSON(endpoint, topic, content string, filters ...string) string {
	var ext []string
	for _, f := range filters {
		ext = append(ext, `{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":`+strconv.Quote(f)+`}`)
	}
	channel := `"type":"rest-hook","endpoint":` + strconv.Quote(endpoint)
	if endpoint == "" {
		channel = `"type":"websocket"`
	}
	criteria := ""
	if len(ext) > 0 {
		criteria = `,"_criteria":{"extension":[` + strings.Join(ext, ",") + `]}`
	}
	return `{"resourceType":"Subscription","status":"requested","reason":"test","criteria":` + strconv.Quote(topic) +
		criteria + `,"channel":{` + channel +
		`,"payload":"application/fhir+json","_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"` + content + `"}]}}}`
}

func observation(patient, code string) string {
	return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + code +
		`"}]},"subject":{"reference":"Patient/` + patient + `"}}`
}

// waitStatus waits for the Subscription's stored status.
func (e *env) waitStatus(t *testing.T, id, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, err := e.en.Read(t.Context(), engine.System, "Subscription", id)
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Status string }
		_ = json.Unmarshal(v.Content, &s)
		if s.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Subscription/%s status %s, want %s: %s", id, s.Status, want, v.Content)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestHookHandshakeAndEvents(t *testing.T) {
	e := newEnv(t, "", subscription.Config{})
	r := newReceiver(t)
	sub := e.put(t, engine.System, subscriptionJSON(r.srv.URL, subscription.TopicBase+"Observation", "full-resource",
		"Observation?patient=Patient/p1&code=http://loinc.org|8867-4"))
	e.waitStatus(t, sub.ID, "active", 5*time.Second)
	if hs := r.received("handshake"); len(hs) != 1 || hs[0].Since != 0 {
		t.Fatalf("handshakes %+v, want one with events-since 0", hs)
	}

	e.put(t, engine.System, observation("p2", "8867-4")) // another patient
	e.put(t, engine.System, observation("p1", "9279-1")) // another code
	start := time.Now()
	want := e.put(t, engine.System, observation("p1", "8867-4"))
	nums := r.waitEvents(t, 1, time.Second)
	if took := time.Since(start); took > time.Second {
		t.Errorf("notification took %s, want within 1 s", took)
	}
	got := r.received("event-notification")
	if len(nums) != 1 || nums[0] != 1 || got[0].Since != 1 {
		t.Fatalf("events %v (since %d), want [1] since 1", nums, got[0].Since)
	}
	if len(got[0].Res) != 1 || got[0].Res[0] != "Observation/"+want.ID {
		t.Errorf("notification carries %v, want Observation/%s", got[0].Res, want.ID)
	}
	if ct := got[0].Header.Get("Content-Type"); ct != "application/fhir+json" {
		t.Errorf("Content-Type %q", ct)
	}
	for range 5 {
		e.put(t, engine.System, observation("p1", "8867-4"))
	}
	nums = r.waitEvents(t, 6, 2*time.Second)
	for i, n := range nums {
		if n != int64(i+1) {
			t.Fatalf("event numbers %v are not contiguous from 1", nums)
		}
	}
}

func TestAdmission(t *testing.T) {
	e := newEnv(t, "", subscription.Config{AllowHosts: []string{}})
	for _, c := range []struct {
		name, body, expr string
	}{
		{"unknown topic", subscriptionJSON("https://receiver.example/hook", "https://nowhere.example/topic", "id-only"), "Subscription.criteria"},
		{"R4 query criteria", subscriptionJSON("https://receiver.example/hook", "Observation?code=1", "id-only"), "Subscription.criteria"},
		{"filter on another type", subscriptionJSON("https://receiver.example/hook", subscription.TopicBase+"Observation", "id-only", "Patient?name=x"), "Subscription.criteria.extension"},
		{"filter with a chain", subscriptionJSON("https://receiver.example/hook", subscription.TopicBase+"Observation", "id-only", "Observation?subject.name=x"), "Subscription.criteria.extension"},
		{"unknown filter parameter", subscriptionJSON("https://receiver.example/hook", subscription.TopicBase+"Observation", "id-only", "Observation?nonsense=x"), "Subscription.criteria.extension"},
		{"bad content", subscriptionJSON("https://receiver.example/hook", subscription.TopicBase+"Observation", "everything"), "Subscription.channel.payload.extension"},
		{"loopback endpoint", subscriptionJSON("http://127.0.0.1:9/hook", subscription.TopicBase+"Observation", "id-only"), "Subscription.channel.endpoint"},
		{"private endpoint", subscriptionJSON("http://10.1.2.3/hook", subscription.TopicBase+"Observation", "id-only"), "Subscription.channel.endpoint"},
		{"ftp endpoint", subscriptionJSON("ftp://receiver.example/hook", subscription.TopicBase+"Observation", "id-only"), "Subscription.channel.endpoint"},
		{"email channel", strings.Replace(subscriptionJSON("https://receiver.example/hook", subscription.TopicBase+"Observation", "id-only"), `"rest-hook"`, `"email"`, 1), "Subscription.channel.type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.en.Parser().Parse([]byte(c.body), "Subscription")
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.en.Create(t.Context(), engine.System, engine.CreateRequest{Resource: res})
			var fe *fhir.Error
			if !errorsAs(err, &fe) || (fe.Kind != fhir.Unprocessable && fe.Kind != fhir.BadRequest) {
				t.Fatalf("got %v, want a 400/422", err)
			}
			if len(fe.Issues) == 0 || len(fe.Issues[0].Expression) == 0 || fe.Issues[0].Expression[0] != c.expr {
				t.Errorf("issues %+v, want expression %s", fe.Issues, c.expr)
			}
		})
	}
}

// TestPatientScopedOwner: a subscription written with a patient-scoped
// grant is told of its patient's resources only, whatever its filters.
func TestPatientScopedOwner(t *testing.T) {
	e := newEnv(t, "", subscription.Config{})
	r := newReceiver(t)
	e.put(t, engine.System, `{"resourceType":"Patient","id":"p1"}`)
	e.put(t, engine.System, `{"resourceType":"Patient","id":"p2"}`)
	patient := e.en.CallerFor(&access.Grant{Subject: "u1", ClientID: "app", Scopes: []string{"patient/*.read", "patient/Subscription.write"}, Patient: "p1"})
	sub := e.put(t, patient, subscriptionJSON(r.srv.URL, subscription.TopicBase+"Observation", "full-resource"))
	e.waitStatus(t, sub.ID, "active", 5*time.Second)
	other := e.put(t, engine.System, observation("p2", "8867-4"))
	mine := e.put(t, engine.System, observation("p1", "8867-4"))
	r.waitEvents(t, 1, 2*time.Second)
	time.Sleep(300 * time.Millisecond) // room for a wrong second one
	var seen []string
	for _, n := range r.received("event-notification") {
		seen = append(seen, n.Res...)
		if strings.Contains(string(n.Body), other.ID) {
			t.Errorf("the patient's subscription was told of Observation/%s of another patient", other.ID)
		}
	}
	if len(seen) != 1 || seen[0] != "Observation/"+mine.ID {
		t.Errorf("notified of %v, want only Observation/%s", seen, mine.ID)
	}
}

func errorsAs(err error, fe **fhir.Error) bool { return errors.As(err, fe) }

// topicBasic is a user-defined topic: Encounters updated to finished.
const topicBasic = `{"resourceType":"Basic","id":"encounter-finished-topic",
 "code":{"coding":[{"system":"http://hl7.org/fhir/fhir-types","code":"SubscriptionTopic"}]},
 "extension":[
  {"url":"http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url","valueUri":"https://hospital.example/topic/encounter-finished"},
  {"url":"http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.resourceTrigger","extension":[
    {"url":"resource","valueUri":"http://hl7.org/fhir/StructureDefinition/Encounter"},
    {"url":"supportedInteraction","valueCode":"update"},
    {"url":"queryCriteria","extension":[
      {"url":"previous","valueString":"status:not=finished"},
      {"url":"current","valueString":"status=finished"},
      {"url":"requireBoth","valueBoolean":true}]},
    {"url":"fhirPathCriteria","valueString":"Encounter.class.exists()"}]}]}`

func encounter(id, status string) string {
	return `{"resourceType":"Encounter","id":"` + id + `","status":"` + status +
		`","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"}}`
}

func TestUserTopic(t *testing.T) {
	e := newEnv(t, "", subscription.Config{})
	r := newReceiver(t)
	e.put(t, engine.System, topicBasic)
	sub := e.put(t, engine.System, subscriptionJSON(r.srv.URL, "https://hospital.example/topic/encounter-finished", "id-only"))
	e.waitStatus(t, sub.ID, "active", 5*time.Second)
	e.put(t, engine.System, encounter("e1", "finished"))    // a create: not a trigger
	e.put(t, engine.System, encounter("e2", "in-progress")) // a create
	e.put(t, engine.System, encounter("e2", "finished"))    // in-progress → finished: fires
	e.put(t, engine.System, encounter("e1", "finished"))    // finished → finished: previous fails
	e.put(t, engine.System, encounter("e3", "in-progress"))
	e.put(t, engine.System, encounter("e3", "in-progress"))
	r.waitEvents(t, 1, 2*time.Second)
	time.Sleep(300 * time.Millisecond)
	var got []string
	for _, n := range r.received("event-notification") {
		got = append(got, n.Res...)
	}
	if len(got) != 1 || got[0] != base+"/Encounter/e2" {
		t.Errorf("notified of %v, want only Encounter/e2 becoming finished", got)
	}

	bad := strings.Replace(topicBasic, `Encounter.class.exists()`, `Encounter.class.(((`, 1)
	bad = strings.Replace(bad, "encounter-finished-topic", "bad-topic", 1)
	res, err := e.en.Parser().Parse([]byte(bad), "Basic")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.en.Update(t.Context(), engine.System, engine.UpdateRequest{Resource: res, ID: "bad-topic"})
	var fe *fhir.Error
	if !errorsAs(err, &fe) || fe.Kind != fhir.Unprocessable || !strings.Contains(fe.Error(), "fhirPathCriteria") {
		t.Errorf("a topic whose FHIRPath does not compile: %v, want 422 naming fhirPathCriteria", err)
	}
}

func TestShippedTopics(t *testing.T) {
	e := newEnv(t, "", subscription.Config{})
	final, start := newReceiver(t), newReceiver(t)
	s1 := e.put(t, engine.System, subscriptionJSON(final.srv.URL, subscription.TopicBase+"diagnostic-report-final", "id-only"))
	s2 := e.put(t, engine.System, subscriptionJSON(start.srv.URL, subscription.TopicBase+"encounter-start", "id-only",
		"Encounter?patient=Patient/p1"))
	e.waitStatus(t, s1.ID, "active", 5*time.Second)
	e.waitStatus(t, s2.ID, "active", 5*time.Second)
	report := func(status string) string {
		return `{"resourceType":"DiagnosticReport","id":"r1","status":"` + status + `","code":{"text":"CT"}}`
	}
	e.put(t, engine.System, report("preliminary"))
	e.put(t, engine.System, report("final"))   // fires
	e.put(t, engine.System, report("amended")) // not final
	e.put(t, engine.System, report("final"))   // final again: fires
	ai := newReceiver(t)
	s3 := e.put(t, engine.System, subscriptionJSON(ai.srv.URL, subscription.TopicBase+"ai-finding-available", "id-only"))
	e.waitStatus(t, s3.ID, "active", 5*time.Second)
	e.put(t, engine.System, `{"resourceType":"DiagnosticReport","id":"human","status":"preliminary","code":{"text":"CT"}}`)
	e.put(t, engine.System, `{"resourceType":"DiagnosticReport","id":"model","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"AIAST"}]},"status":"preliminary","code":{"text":"CT"}}`)
	ai.waitEvents(t, 1, 2*time.Second)
	e.put(t, engine.System, encounter("e1", "planned"))
	e.put(t, engine.System, encounter("e1", "in-progress")) // fires
	e.put(t, engine.System, encounter("e1", "in-progress"))
	e.put(t, engine.System, strings.Replace(encounter("e2", "in-progress"), "Patient/p1", "Patient/p2", 1)) // another patient
	if nums := final.waitEvents(t, 2, 2*time.Second); len(nums) != 2 {
		t.Errorf("diagnostic-report-final events %v, want 2", nums)
	}
	start.waitEvents(t, 1, 2*time.Second)
	time.Sleep(300 * time.Millisecond)
	var got []string
	for _, n := range start.received("event-notification") {
		got = append(got, n.Res...)
	}
	if len(got) != 1 || got[0] != base+"/Encounter/e1" {
		t.Errorf("encounter-start notified of %v, want Encounter/e1 once", got)
	}
	var aiGot []string
	for _, n := range ai.received("event-notification") {
		aiGot = append(aiGot, n.Res...)
	}
	if len(aiGot) != 1 || aiGot[0] != base+"/DiagnosticReport/model" {
		t.Errorf("ai-finding-available notified of %v, want DiagnosticReport/model alone", aiGot)
	}
	if n := len(final.received("event-notification")); n > 2 {
		t.Errorf("diagnostic-report-final sent %d notifications, want 2 at most", n)
	}
}

func TestDeleteEventsAndQueries(t *testing.T) {
	e := newEnv(t, "", subscription.Config{})
	r := newReceiver(t)
	sub := e.put(t, engine.System, subscriptionJSON(r.srv.URL, subscription.TopicBase+"Patient", "id-only"))
	e.waitStatus(t, sub.ID, "active", 5*time.Second)
	e.put(t, engine.System, `{"resourceType":"Patient","id":"gone"}`)
	if _, err := e.en.Delete(t.Context(), engine.System, engine.DeleteRequest{Type: "Patient", ID: "gone"}); err != nil {
		t.Fatal(err)
	}
	e.put(t, engine.System, `{"resourceType":"Patient","id":"gone"}`) // re-created
	nums := r.waitEvents(t, 3, 2*time.Second)
	if !slices.Equal(nums, []int64{1, 2, 3}) {
		t.Fatalf("events %v, want 1 2 3", nums)
	}
	var methods []string
	for _, n := range r.received("event-notification") {
		for _, m := range regexpMethod.FindAllStringSubmatch(string(n.Body), -1) {
			if m[1] != "GET" { // the status entry's
				methods = append(methods, m[1])
			}
		}
	}
	if !slices.Equal(methods, []string{"PUT", "DELETE", "PUT"}) {
		t.Errorf("request methods %v: want PUT (update as create), DELETE, PUT", methods)
	}

	var events engine.Operation
	for _, op := range e.svc.Operations() {
		if op.Name == "events" {
			events = op
		}
	}
	resp, err := events.Invoke(t.Context(), engine.System, engine.OpRequest{Level: engine.InstanceLevel, Type: "Subscription", ID: sub.ID,
		Query: url.Values{"eventsSinceNumber": {"2"}, "content": {"full-resource"}}})
	if err != nil {
		t.Fatal(err)
	}
	n := decode(t, nil, resp.Body)
	if n.Type != "query-event" || !slices.Equal(n.Events, []int64{2, 3}) || n.Since != 3 {
		t.Errorf("$events?eventsSinceNumber=2: type %s events %v since %d, want query-event [2 3] since 3", n.Type, n.Events, n.Since)
	}
	if len(n.Res) != 2 || n.Res[1] != "Patient/gone" {
		t.Errorf("$events full-resource entries %v, want the deletion and Patient/gone", n.Res)
	}
}

var regexpMethod = regexp.MustCompile(`"method":"([A-Z]+)"`)

// TestHeartbeatAndXML: an idle rest-hook subscription with a heartbeat
// period gets heartbeats; one asking for XML gets XML notifications.
func TestHeartbeatAndXML(t *testing.T) {
	e := newEnv(t, "", subscription.Config{})
	var mu sync.Mutex
	var kinds []string
	var xmlBodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		defer mu.Unlock()
		if req.Header.Get("Content-Type") == "application/fhir+xml" {
			xmlBodies = append(xmlBodies, body)
			return
		}
		kinds = append(kinds, decode(t, req.Header, body).Type)
	}))
	defer srv.Close()
	hb := strings.Replace(subscriptionJSON(srv.URL, subscription.TopicBase+"Patient", "id-only"), `"channel":{`,
		`"channel":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period","valueUnsignedInt":1}],`, 1)
	s1 := e.put(t, engine.System, hb)
	s2 := e.put(t, engine.System, strings.Replace(subscriptionJSON(srv.URL, subscription.TopicBase+"Patient", "full-resource"),
		`"payload":"application/fhir+json"`, `"payload":"application/fhir+xml"`, 1))
	e.waitStatus(t, s1.ID, "active", 5*time.Second)
	e.waitStatus(t, s2.ID, "active", 5*time.Second)
	e.put(t, engine.System, `{"resourceType":"Patient","id":"x1","name":[{"family":"Xml"}]}`)
	time.Sleep(2500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	heartbeats := 0
	for _, k := range kinds {
		if k == "heartbeat" {
			heartbeats++
		}
	}
	if heartbeats < 1 {
		t.Errorf("notifications %v: want a heartbeat within 2.5 s at a 1 s period", kinds)
	}
	var sawEvent bool
	for _, b := range xmlBodies {
		if !bytes.Contains(b[:min(len(b), 100)], []byte("<Bundle xmlns=\"http://hl7.org/fhir\">")) {
			t.Errorf("an XML notification is not a Bundle: %.200s", b)
		}
		sawEvent = sawEvent || bytes.Contains(b, []byte(`<family value="Xml"/>`))
	}
	if !sawEvent {
		t.Errorf("no XML notification carried Patient/x1 (%d XML bodies)", len(xmlBodies))
	}
}
