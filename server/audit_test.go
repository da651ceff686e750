package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/audit/trail"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store/auditdb"
)

// lateRecorder forwards to a trail made once the env's store exists.
type lateRecorder struct{ t *trail.Trail }

func (l *lateRecorder) Record(e audit.Event) { l.t.Record(e) }

// auditEnv is a server whose every request is audited, the trail writing
// through an engine of its own on the same database.
func auditEnv(t *testing.T) (*env, *trail.Trail) {
	t.Helper()
	rec := &lateRecorder{}
	e := newEnv(t, func(cfg *server.Config) { cfg.Audit = rec })
	tr, err := trail.New(trail.Config{Store: e.store, Site: "ember.test"})
	if err != nil {
		t.Fatal(err)
	}
	en, err := engine.New(engine.Config{BaseURL: e.url}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	rec.t = tr
	tr.Start(context.Background(), en)
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return e, tr
}

// auditEvents returns every AuditEvent Ember recorded, in chain order.
func auditEvents(t *testing.T, e *env, tr *trail.Trail) []map[string]any {
	t.Helper()
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	err := auditdb.New(e.store).Walk(t.Context(), 1, func(ce auditdb.ChainedEvent) error {
		var m map[string]any
		if err := json.Unmarshal(ce.Content, &m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// audited is what one request should leave in the trail.
type audited struct {
	subtype, action, outcome string
	entity                   string // a reference among the entities ("" for none)
	patient                  string // a patient among the event's patients ("" for none)
	query                    string // a decoded query entity
}

// matches reports whether ev records a.
func (a audited) matches(ev map[string]any) bool {
	subs, _ := ev["subtype"].([]any)
	if len(subs) == 0 || subs[0].(map[string]any)["code"] != a.subtype || ev["action"] != a.action || ev["outcome"] != a.outcome {
		return false
	}
	var refs, queries, patients []string
	for _, x := range ev["entity"].([]any) {
		ent := x.(map[string]any)
		if w, ok := ent["what"].(map[string]any); ok {
			ref, _ := w["reference"].(string)
			refs = append(refs, ref)
			if ent["role"].(map[string]any)["code"] == "1" {
				patients = append(patients, ref)
			}
		}
		if q, ok := ent["query"].(string); ok {
			b, _ := base64.StdEncoding.DecodeString(q)
			queries = append(queries, string(b))
		}
	}
	if a.entity != "" && !slices.Contains(refs, a.entity) {
		return false
	}
	if a.patient != "" && !slices.Contains(patients, a.patient) {
		return false
	}
	return a.query == "" || slices.Contains(queries, a.query)
}

// TestEveryAccessIsAudited makes one request of each kind and finds, for
// each, the AuditEvent that records it — with the patient when the
// request touched a patient's data, and never the patient's name or
// identifier.
func TestEveryAccessIsAudited(t *testing.T) {
	e, tr := auditEnv(t)
	const name, mrn = "Quixotically", "MRN-7781-SECRET"
	r := e.do("POST", "/Patient", []byte(`{"resourceType":"Patient","name":[{"family":"`+name+`"}],"identifier":[{"system":"urn:mrn","value":"`+mrn+`"}]}`))
	expect(t, r, 201)
	pid := r.json(t)["id"].(string)
	pat := "Patient/" + pid
	r = e.do("POST", "/Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"`+pat+`"}}`))
	expect(t, r, 201)
	oid := r.json(t)["id"].(string)
	obs := "Observation/" + oid

	var want []audited
	step := func(method, path string, body string, status int, a audited) {
		t.Helper()
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		headers := []string{}
		if method == "PATCH" {
			headers = append(headers, "Content-Type: application/json-patch+json")
		}
		r := e.do(method, path, b, headers...)
		if r.status != status {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, r.status, status, r.body)
		}
		want = append(want, a)
	}
	want = append(want, audited{"create", "C", "0", pat, pat, ""}, audited{"create", "C", "0", obs, pat, ""})
	step("GET", "/"+obs, "", 200, audited{"read", "R", "0", obs, pat, ""})
	step("GET", "/"+obs+"/_history/1", "", 200, audited{"vread", "R", "0", obs, pat, ""})
	step("GET", "/"+pat, "", 200, audited{"read", "R", "0", pat, pat, ""})
	step("PUT", "/"+obs, `{"resourceType":"Observation","id":"`+oid+`","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"`+pat+`"}}`, 200,
		audited{"update", "U", "0", obs, pat, ""})
	step("PATCH", "/"+obs, `[{"op":"replace","path":"/status","value":"final"}]`, 200, audited{"patch", "U", "0", obs, pat, ""})
	step("GET", "/Patient?name="+name, "", 200, audited{"search-type", "E", "0", "", "", "name=*"})
	step("GET", "/Patient?identifier=urn:mrn|"+mrn, "", 200, audited{"search-type", "E", "0", "", "", "identifier=*"})
	step("GET", "/Observation?patient="+pid+"&code=http://loinc.org|8867-4", "", 200,
		audited{"search-type", "E", "0", "", pat, "code=http%3A%2F%2Floinc.org%7C8867-4&patient=" + pid})
	step("POST", "/Observation/_search", "", 200, audited{"search-type", "E", "0", "", "", ""})
	step("GET", "/"+pat+"/Observation", "", 200, audited{"search-type", "E", "0", "", pat, ""})
	step("GET", "/"+obs+"/_history", "", 200, audited{"history-instance", "R", "0", obs, "", ""}) // the patient is not derived from history bundles
	step("GET", "/"+pat+"/$everything", "", 200, audited{"operation", "E", "0", pat, pat, ""})
	step("GET", "/Observation/does-not-exist", "", 404, audited{"read", "R", "4", "Observation/does-not-exist", "", ""})
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0b3b6d55-5c2b-4a57-9c8a-1b2f3b4c5d6e","resource":{"resourceType":"Condition","subject":{"reference":"` + pat + `"},"code":{"text":"x"}},"request":{"method":"POST","url":"Condition"}}]}`
	r = e.do("POST", "", []byte(tx))
	expect(t, r, 200)
	loc := r.json(t)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	cond := strings.Join(strings.Split(loc, "/")[:2], "/")
	want = append(want, audited{"transaction", "E", "0", cond, "", ""})
	step("DELETE", "/"+cond, "", 204, audited{"delete", "D", "0", cond, "", ""})

	events := auditEvents(t, e, tr)
	for _, a := range want {
		found := false
		for _, ev := range events {
			if a.matches(ev) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no AuditEvent records %+v", a)
		}
	}
	all, _ := json.Marshal(events)
	for _, secret := range []string{name, mrn} {
		if strings.Contains(string(all), secret) {
			t.Errorf("the audit trail holds %q", secret)
		}
	}
	// Searchable as AuditEvent, like any resource.
	r = e.do("GET", "/AuditEvent?patient="+url.QueryEscape(pat)+"&subtype=read&_total=accurate", nil)
	expect(t, r, 200)
	if n := r.json(t)["total"].(float64); n < 1 {
		t.Errorf("AuditEvent?patient=%s&subtype=read found %v", pat, n)
	}
	// Append-only through the API.
	id := events[0]["id"].(string)
	r = e.do("DELETE", "/AuditEvent/"+id, nil)
	expectOutcome(t, r, 403)
	if rep, err := trail.Verify(t.Context(), auditdb.New(e.store), trail.VerifyOptions{}); err != nil || rep.Broken != nil {
		t.Fatalf("verify: %v %v", err, rep.Broken)
	}
}
