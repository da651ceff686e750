package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
)

// TestOperationInvokeGeneric: an operation registered with Invoke (as
// inference registers $infer) is served with no code of its own in the
// server: its request reaches Invoke as an OpRequest, its outcome sets the
// status (202 and Content-Location for queued work), its errors become
// OperationOutcomes by kind, and the CapabilityStatement lists it, with its
// own definition, on the types it applies to only.
func TestOperationInvokeGeneric(t *testing.T) {
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	srv, err := server.New(server.Config{BaseURL: ts.URL + "/fhir", Logger: testLogger()}, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.RegisterOperation(engine.Operation{Name: "probe", Levels: engine.TypeLevel}); err == nil {
		t.Fatal("RegisterOperation accepted an operation without Invoke")
	}
	var got engine.OpRequest
	var gotCaller *engine.Caller
	op := engine.Operation{
		Name: "probe", Levels: engine.TypeLevel | engine.InstanceLevel, Types: []string{"ImagingStudy"},
		Methods: []string{http.MethodPost}, Definition: "urn:test:OperationDefinition:probe",
		Invoke: func(_ context.Context, caller *engine.Caller, req engine.OpRequest) (engine.OpResponse, error) {
			got, gotCaller = req, caller
			switch req.Query.Get("mode") {
			case "off":
				return engine.OpResponse{}, fhir.NewError(fhir.Unavailable, "not-supported", "probe is off")
			case "bad":
				return engine.OpResponse{}, fhir.NewError(fhir.BadRequest, "invalid", "bad probe")
			case "sync":
				return engine.OpResponse{Outcome: engine.OpOK, Body: []byte(`{"resourceType":"Parameters"}`)}, nil
			}
			return engine.OpResponse{Outcome: engine.OpAccepted, Body: []byte(`{"resourceType":"Bundle","type":"collection"}`),
				ContentLocation: ts.URL + "/fhir/Task?_id=1"}, nil
		},
	}
	if err := srv.RegisterOperation(op); err != nil {
		t.Fatal(err)
	}
	// Unlisted: served (a service that is off answers why), not advertised.
	hidden := engine.Operation{Name: "hidden", Levels: engine.TypeLevel, Types: []string{"ImagingStudy"}, Methods: []string{http.MethodPost}, Unlisted: true,
		Invoke: func(context.Context, *engine.Caller, engine.OpRequest) (engine.OpResponse, error) {
			return engine.OpResponse{}, fhir.NewError(fhir.Unavailable, "not-supported", "hidden is off")
		}}
	if err := srv.RegisterOperation(hidden); err != nil {
		t.Fatal(err)
	}
	h = srv.Handler()
	e := &env{t: t, url: ts.URL + "/fhir", store: st}

	params := []byte(`{"resourceType":"Parameters","parameter":[{"name":"x","valueString":"y"}]}`)
	r := e.do("POST", "/ImagingStudy/s1/$probe?force=true", params, "Prefer: respond-async")
	expect(t, r, http.StatusAccepted)
	if loc := r.header.Get("Content-Location"); loc != ts.URL+"/fhir/Task?_id=1" {
		t.Errorf("Content-Location %q", loc)
	}
	if m := r.json(t); m["resourceType"] != "Bundle" {
		t.Errorf("body %s", r.body)
	}
	if got.Level != engine.InstanceLevel || got.Type != "ImagingStudy" || got.ID != "s1" || string(got.Body) != string(params) ||
		got.Query.Get("force") != "true" || !got.RespondAsync || gotCaller == nil {
		t.Errorf("Invoke got %+v (caller %v)", got, gotCaller)
	}

	// Type level, parameters in the query alone: no body.
	r = e.do("POST", "/ImagingStudy/$probe?mode=sync", nil)
	expect(t, r, http.StatusOK)
	if got.Level != engine.TypeLevel || got.ID != "" || got.Body != nil || got.RespondAsync {
		t.Errorf("Invoke got %+v", got)
	}
	expectOutcome(t, e.do("POST", "/ImagingStudy/$probe?mode=off", nil), http.StatusServiceUnavailable)
	expectOutcome(t, e.do("POST", "/ImagingStudy/s1/$probe?mode=bad", nil), http.StatusBadRequest)
	expectOutcome(t, e.do("GET", "/ImagingStudy/s1/$probe", nil), http.StatusMethodNotAllowed)
	expectOutcome(t, e.do("POST", "/Patient/p1/$probe", nil), http.StatusNotFound)
	expectOutcome(t, e.do("POST", "/$probe", nil), http.StatusNotFound)
	expectOutcome(t, e.do("POST", "/ImagingStudy/$probe", []byte(`{`), "Content-Type: text/plain"), http.StatusUnsupportedMediaType)
	expectOutcome(t, e.do("POST", "/ImagingStudy/$hidden", nil), http.StatusServiceUnavailable)

	var cs struct {
		Rest []struct {
			Operation []struct{ Name string } `json:"operation"`
			Resource  []struct {
				Type      string `json:"type"`
				Operation []struct{ Name, Definition string }
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(e.do("GET", "/metadata", nil).body, &cs); err != nil {
		t.Fatal(err)
	}
	for _, o := range cs.Rest[0].Operation {
		if o.Name == "probe" || o.Name == "hidden" {
			t.Errorf("the CapabilityStatement lists $%s at system level", o.Name)
		}
	}
	for _, res := range cs.Rest[0].Resource {
		listed := ""
		for _, o := range res.Operation {
			if o.Name == "probe" {
				listed = o.Definition
			}
			if o.Name == "hidden" {
				t.Errorf("%s: the CapabilityStatement lists the unlisted $hidden", res.Type)
			}
		}
		if want := res.Type == "ImagingStudy"; (listed != "") != want {
			t.Errorf("%s: $probe listed %v, want %v", res.Type, listed != "", want)
		} else if want && listed != "urn:test:OperationDefinition:probe" {
			t.Errorf("ImagingStudy: $probe definition %q", listed)
		}
	}
}
