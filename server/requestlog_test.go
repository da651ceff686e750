package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/server"
)

// lockedBuffer is a log destination shared by the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// records are the JSON log lines written so far.
func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestIDAndLog: every response carries X-Request-Id (the client's
// when it is a sane token, else a new one), every log line of the request
// carries it as request_id (mounts included), and the access log names the
// route and the parameter names, never the values or the ids in the path.
func TestRequestIDAndLog(t *testing.T) {
	var logged lockedBuffer
	logger := slog.New(server.LogHandler(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	mount := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "mounted handler")
		w.WriteHeader(http.StatusNoContent)
	})
	e := newEnv(t, func(c *server.Config) {
		c.Logger = logger
		c.Mounts = []server.Mount{{Prefix: "/mounted", Handler: mount}}
	})
	base := strings.TrimSuffix(e.url, "/fhir")

	expect(t, e.do("PUT", "/Patient/rid-1", []byte(`{"resourceType":"Patient","id":"rid-1","name":[{"family":"Zebulonsky"}],"identifier":[{"system":"urn:mrn","value":"MRN-77231"}]}`)), http.StatusCreated)
	r := e.do("GET", "/Patient?name=Zebulonsky&identifier=urn:mrn|MRN-77231&_count=5", nil)
	expect(t, r, http.StatusOK)
	id := r.header.Get(server.RequestIDHeader)
	if !generatedID.MatchString(id) {
		t.Fatalf("X-Request-Id %q, want 32 hex digits", id)
	}
	if other := e.do("GET", "/Patient/rid-1", nil).header.Get(server.RequestIDHeader); other == id || !generatedID.MatchString(other) {
		t.Errorf("second request's id %q (first %q)", other, id)
	}

	// A sane incoming id is kept; anything else is replaced.
	for _, c := range []struct {
		sent string
		kept bool
	}{
		{"abc-123.X_y", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"has space", false},
		{`quote"d`, false},
		{"a\tb", false},
	} {
		got := e.do("GET", "/metadata", nil, server.RequestIDHeader+": "+c.sent).header.Get(server.RequestIDHeader)
		if c.kept && got != c.sent || !c.kept && (got == c.sent || !generatedID.MatchString(got)) {
			t.Errorf("sent X-Request-Id %q, got %q (kept: %v)", c.sent, got, c.kept)
		}
	}

	// Mounts, probes and unknown paths get an id too.
	mr := e.do("GET", base+"/mounted/x", nil, server.RequestIDHeader+": mount-req-1")
	if mr.status != http.StatusNoContent || mr.header.Get(server.RequestIDHeader) != "mount-req-1" {
		t.Errorf("mount: %d, X-Request-Id %q", mr.status, mr.header.Get(server.RequestIDHeader))
	}
	if h := e.do("GET", base+"/healthz", nil).header.Get(server.RequestIDHeader); h == "" {
		t.Error("/healthz has no X-Request-Id")
	}

	var search, mounted map[string]any
	for _, rec := range logged.records(t) {
		switch {
		case rec["msg"] == "http request" && rec["request_id"] == id:
			search = rec
		case rec["msg"] == "mounted handler":
			mounted = rec
		}
	}
	if search == nil {
		t.Fatalf("no access log line with request_id %s:\n%s", id, logged.String())
	}
	if search["route"] != "/fhir/Patient" || search["interaction"] != "search-type" || search["resource_type"] != "Patient" ||
		search["params"] != "name,identifier,_count" || search["status"] != float64(200) {
		t.Errorf("access log line %v", search)
	}
	if mounted == nil || mounted["request_id"] != "mount-req-1" {
		t.Errorf("the mount's log line %v lacks its request id", mounted)
	}
	for _, secret := range []string{"Zebulonsky", "MRN-77231", "rid-1"} {
		if strings.Contains(logged.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logged.String())
		}
	}
}

// TestMetricsByInteraction: the FHIR histogram's interaction, resource
// type and status class; search latency by parameter count; Bundle entries
// by type and outcome; and collectors registered on Config.Registry before
// the server exists are served at /metrics.
func TestMetricsByInteraction(t *testing.T) {
	reg := prometheus.NewRegistry()
	early := prometheus.NewCounter(prometheus.CounterOpts{Name: "ember_test_registered_before_total", Help: "test"})
	reg.MustRegister(early)
	early.Inc()
	e := newEnv(t, func(c *server.Config) { c.Registry = reg })
	base := strings.TrimSuffix(e.url, "/fhir")

	expect(t, e.do("PUT", "/Patient/m1", []byte(`{"resourceType":"Patient","id":"m1","gender":"female"}`)), http.StatusCreated)
	expect(t, e.do("GET", "/Patient/m1", nil), http.StatusOK)
	expect(t, e.do("GET", "/Patient/m1/_history/1", nil), http.StatusOK)
	expect(t, e.do("GET", "/Patient/absent", nil), http.StatusNotFound)
	expect(t, e.do("GET", "/Patient?gender=female&birthdate=ge1900&_count=3&_sort=-_lastUpdated", nil), http.StatusOK)
	expect(t, e.do("GET", "/Patient?_count=3", nil), http.StatusOK)
	expect(t, e.do("GET", "/Patient/m1/Observation?code=1,2&code=3&status=final&date=ge2000&date=le2030", nil), http.StatusOK)
	expect(t, e.do("POST", "", []byte(`{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/m1"}},
		{"request":{"method":"GET","url":"Patient/absent"}}]}`)), http.StatusOK)
	expect(t, e.do("POST", "", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}}]}`)), http.StatusOK)

	r := e.do("GET", base+"/metrics", nil)
	expect(t, r, http.StatusOK)
	for _, want := range []string{
		`ember_fhir_request_duration_seconds_count{interaction="update",resource_type="Patient",status_class="2xx"} 1`,
		`ember_fhir_request_duration_seconds_count{interaction="read",resource_type="Patient",status_class="2xx"} 1`,
		`ember_fhir_request_duration_seconds_count{interaction="read",resource_type="Patient",status_class="4xx"} 1`,
		`ember_fhir_request_duration_seconds_count{interaction="vread",resource_type="Patient",status_class="2xx"} 1`,
		`ember_fhir_request_duration_seconds_count{interaction="search-compartment",resource_type="Observation",status_class="2xx"} 1`,
		`ember_fhir_request_duration_seconds_count{interaction="batch",resource_type="",status_class="2xx"} 1`,
		`ember_fhir_request_duration_seconds_count{interaction="transaction",resource_type="",status_class="2xx"} 1`,
		`ember_http_request_duration_seconds_count{code="200",interaction="batch"} 1`,
		`ember_search_duration_seconds_count{params="0"} 1`,
		`ember_search_duration_seconds_count{params="2"} 1`,
		`ember_search_duration_seconds_count{params="4+"} 1`,
		`ember_bundle_entries_total{outcome="success",type="batch"} 1`,
		`ember_bundle_entries_total{outcome="failure",type="batch"} 1`,
		`ember_bundle_entries_total{outcome="success",type="transaction"} 1`,
		`ember_test_registered_before_total 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", r.body)
	}
}
