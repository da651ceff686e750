package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/emberfhir/ember/internal/synthea"
)

// entryStatuses returns the response.status of each entry of a response Bundle.
func entryStatuses(t *testing.T, r response) []string {
	t.Helper()
	var b struct {
		Type  string
		Entry []struct {
			Response struct {
				Status, Location string
				Outcome          json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Response.Status)
	}
	return out
}

func countType(t *testing.T, e *env, typ string) int {
	t.Helper()
	r := e.do("GET", "/"+typ+"?_summary=count", nil)
	expect(t, r, http.StatusOK)
	return int(r.json(t)["total"].(float64))
}

func TestTransactionRewritesReferencesAndIsAtomic(t *testing.T) {
	e := newEnv(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:6c1d3a4e-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Tx"}],"managingOrganization":{"reference":"urn:uuid:6c1d3a4e-0000-4000-8000-000000000002"}},"request":{"method":"POST","url":"Patient"}},
	 {"fullUrl":"urn:uuid:6c1d3a4e-0000-4000-8000-000000000002","resource":{"resourceType":"Organization","name":"Org"},"request":{"method":"POST","url":"Organization"}},
	 {"fullUrl":"urn:uuid:6c1d3a4e-0000-4000-8000-000000000003","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:6c1d3a4e-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}},
	 {"resource":{"resourceType":"Patient","id":"fixed","gender":"male"},"request":{"method":"PUT","url":"Patient/fixed"}},
	 {"request":{"method":"GET","url":"Patient?family=tx"}}
	]}`
	r := e.do("POST", "", []byte(tx))
	expect(t, r, http.StatusOK)
	b := r.json(t)
	if b["type"] != "transaction-response" {
		t.Fatalf("type %v", b["type"])
	}
	got := entryStatuses(t, r)
	if strings.Join(got, ",") != "201 Created,201 Created,201 Created,201 Created,200 OK" {
		t.Fatalf("statuses %v", got)
	}
	entries := b["entry"].([]any)
	loc := func(i int) string {
		return entries[i].(map[string]any)["response"].(map[string]any)["location"].(string)
	}
	patient := strings.Join(strings.Split(loc(0), "/")[:2], "/")
	org := strings.Join(strings.Split(loc(1), "/")[:2], "/")
	obs := e.do("GET", "/"+strings.Join(strings.Split(loc(2), "/")[:2], "/"), nil)
	expect(t, obs, http.StatusOK)
	if ref := obs.json(t)["subject"].(map[string]any)["reference"]; ref != patient {
		t.Fatalf("Observation.subject %v, want %s", ref, patient)
	}
	p := e.do("GET", "/"+patient, nil)
	if ref := p.json(t)["managingOrganization"].(map[string]any)["reference"]; ref != org {
		t.Fatalf("Patient.managingOrganization %v, want %s", ref, org)
	}
	// The GET entry ran last and saw the POSTed Patient.
	search := entries[4].(map[string]any)["resource"].(map[string]any)
	if search["resourceType"] != "Bundle" || int(search["total"].(float64)) != 1 {
		t.Fatalf("GET entry %v", search)
	}

	// One invalid entry: nothing of the transaction is stored.
	before := countType(t, e, "Patient")
	bad := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient","name":[{"family":"Ghost"}]},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"fixed","gender":"robot"},"request":{"method":"PUT","url":"Patient/fixed"}}
	]}`
	r = e.do("POST", "", []byte(bad))
	oo := expectOutcome(t, r, http.StatusUnprocessableEntity)
	issue := oo["issue"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(issue["diagnostics"].(string), "Bundle.entry[1]") {
		t.Fatalf("the outcome must name the entry: %v", issue)
	}
	if after := countType(t, e, "Patient"); after != before {
		t.Fatalf("a failed transaction stored Patients: %d -> %d", before, after)
	}
	if g := e.do("GET", "/Patient/fixed", nil); !strings.Contains(string(g.body), `"male"`) {
		t.Fatalf("Patient/fixed changed: %s", g.body)
	}
}

func TestTransactionConditionalsAndIdentityRules(t *testing.T) {
	e := newEnv(t)
	e.putJSON(t, `{"resourceType":"Organization","id":"org1","identifier":[{"system":"urn:org","value":"A"}],"name":"A"}`)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:o","resource":{"resourceType":"Organization","identifier":[{"system":"urn:org","value":"A"}],"name":"dup"},"request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=urn:org|A"}},
	 {"fullUrl":"urn:uuid:o2","resource":{"resourceType":"Organization","identifier":[{"system":"urn:org","value":"B"}],"name":"B"},"request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=urn:org|B"}},
	 {"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=urn:org|A"},"generalPractitioner":[{"reference":"Organization?identifier=urn:org|B"}]},"request":{"method":"POST","url":"Patient"}}
	]}`
	r := e.do("POST", "", []byte(tx))
	expect(t, r, http.StatusOK)
	if got := strings.Join(entryStatuses(t, r), ","); got != "200 OK,201 Created,201 Created" {
		t.Fatalf("statuses %s", got)
	}
	loc := r.json(t)["entry"].([]any)[2].(map[string]any)["response"].(map[string]any)["location"].(string)
	p := e.do("GET", "/"+strings.Join(strings.Split(loc, "/")[:2], "/"), nil).json(t)
	if ref := p["managingOrganization"].(map[string]any)["reference"]; ref != "Organization/org1" {
		t.Fatalf("conditional reference to an existing resource: %v", ref)
	}
	gp := p["generalPractitioner"].([]any)[0].(map[string]any)["reference"].(string)
	if !strings.HasPrefix(gp, "Organization/") || gp == "Organization/org1" {
		t.Fatalf("conditional reference to a resource created in the bundle: %v", gp)
	}
	if n := countType(t, e, "Organization"); n != 2 {
		t.Fatalf("%d Organizations, want 2 (the conditional create of A must not duplicate)", n)
	}

	for name, body := range map[string]string{
		"duplicate fullUrl": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"fullUrl":"urn:uuid:x","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
			{"fullUrl":"urn:uuid:x","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`,
		"two writes to one resource": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","id":"same"},"request":{"method":"PUT","url":"Patient/same"}},
			{"request":{"method":"DELETE","url":"Patient/same"}}]}`,
		"unresolvable conditional reference": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=urn:org|nobody"}},"request":{"method":"POST","url":"Patient"}}]}`,
		"entry without request": `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		"type mismatch":         `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Observation"}}]}`,
		"not a bundle":          `{"resourceType":"Patient"}`,
		"collection":            `{"resourceType":"Bundle","type":"collection"}`,
	} {
		r := e.do("POST", "", []byte(body))
		if r.status < 400 || r.status > 499 {
			t.Errorf("%s: status %d, want 4xx: %s", name, r.status, r.body)
			continue
		}
		expectOutcome(t, r, r.status)
	}
	if n := countType(t, e, "Patient"); n != 1 {
		t.Fatalf("%d Patients after rejected transactions, want 1", n)
	}
}

func TestTransactionProcessingOrderAndIfMatch(t *testing.T) {
	e := newEnv(t)
	e.putJSON(t, `{"resourceType":"Patient","id":"old","gender":"male"}`)
	e.putJSON(t, `{"resourceType":"Patient","id":"v","gender":"male"}`)
	// Listed GET first and DELETE last: the spec order runs DELETE, POST,
	// PUT, then GET, so the GET sees the delete and the update.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"request":{"method":"GET","url":"Patient?gender=female"}},
	 {"resource":{"resourceType":"Patient","id":"v","gender":"female"},"request":{"method":"PUT","url":"Patient/v","ifMatch":"W/\"1\""}},
	 {"request":{"method":"DELETE","url":"Patient/old"}}
	]}`
	r := e.do("POST", "", []byte(tx))
	expect(t, r, http.StatusOK)
	if got := strings.Join(entryStatuses(t, r), ","); got != "200 OK,200 OK,204 No Content" {
		t.Fatalf("statuses %s", got)
	}
	found := r.json(t)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if int(found["total"].(float64)) != 1 {
		t.Fatalf("GET entry did not see the PUT: %v", found)
	}
	expect(t, e.do("GET", "/Patient/old", nil), http.StatusGone)
	// A stale ifMatch fails the whole transaction with 412.
	stale := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","id":"v","gender":"other"},"request":{"method":"PUT","url":"Patient/v","ifMatch":"W/\"1\""}}]}`
	expectOutcome(t, e.do("POST", "", []byte(stale)), http.StatusPreconditionFailed)
}

func TestBatchEntriesAreIndependent(t *testing.T) {
	e := newEnv(t)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","id":"b1"},"request":{"method":"PUT","url":"Patient/b1"}},
	 {"resource":{"resourceType":"Patient","gender":"robot"},"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"GET","url":"Patient/missing"}},
	 {"resource":{"resourceType":"Patient","name":[{"family":"Ok"}]},"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"FROB","url":"Patient"}},
	 {"request":{"method":"GET","url":"Patient/b1"}}
	]}`
	r := e.do("POST", "", []byte(batch))
	expect(t, r, http.StatusOK)
	if r.json(t)["type"] != "batch-response" {
		t.Fatal("not a batch-response")
	}
	got := entryStatuses(t, r)
	want := "201 Created,422 Unprocessable Entity,404 Not Found,201 Created,400 Bad Request,200 OK"
	if strings.Join(got, ",") != want {
		t.Fatalf("statuses %v, want %s", got, want)
	}
	var b struct {
		Entry []struct {
			Response struct{ Outcome map[string]any }
		}
	}
	json.Unmarshal(r.body, &b)
	if b.Entry[1].Response.Outcome["resourceType"] != "OperationOutcome" {
		t.Fatalf("a failed batch entry carries an OperationOutcome: %s", r.body)
	}
	if n := countType(t, e, "Patient"); n != 2 {
		t.Fatalf("%d Patients, want 2", n)
	}
}

// TestSyntheaTransactions loads Synthea bundles as the transactions they
// are: every reference must end up pointing at a stored resource and counts
// per type must match the input. Loads all 102 bundles unless -short.
func TestSyntheaTransactions(t *testing.T) {
	dir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := synthea.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		files = files[:5]
	}
	e := newEnv(t)
	// type -> the resources the input creates: one per POST entry (Synthea's
	// patient bundles POST their own copies of Organizations and
	// Practitioners, so each is a new resource), one per distinct condition
	// for conditional creates.
	want := map[string]map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := e.do("POST", "", raw)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %.500s", f, r.status, r.body)
		}
		var in struct {
			Entry []struct {
				FullURL  string
				Resource struct{ ResourceType string }
				Request  struct{ IfNoneExist string }
			}
		}
		json.Unmarshal(raw, &in)
		for _, en := range in.Entry {
			if want[en.Resource.ResourceType] == nil {
				want[en.Resource.ResourceType] = map[string]bool{}
			}
			key := f + "#" + en.FullURL
			if en.Request.IfNoneExist != "" {
				key = en.Request.IfNoneExist // conditional creates are created once
			}
			want[en.Resource.ResourceType][key] = true
		}
	}
	total := 0
	for typ, ids := range want {
		if got := countType(t, e, typ); got != len(ids) {
			t.Errorf("%s: %d stored, want %d", typ, got, len(ids))
		}
		total += len(ids)
	}
	// Every reference resolves: nothing left as urn:uuid or a condition,
	// and each Type/id exists.
	r := e.do("GET", "/_history?_count=1", nil)
	expect(t, r, http.StatusOK)
	dangling := 0
	for typ := range want {
		next := "/" + typ + "?_count=1000"
		for next != "" {
			page := e.do("GET", next, nil)
			expect(t, page, http.StatusOK)
			b := page.json(t)
			for _, en := range b["entry"].([]any) {
				raw, _ := json.Marshal(en.(map[string]any)["resource"])
				for _, ref := range referencesIn(raw) {
					if strings.HasPrefix(ref, "#") {
						continue
					}
					if strings.HasPrefix(ref, "urn:") || strings.Contains(ref, "?") {
						t.Fatalf("unresolved reference %s in %s", ref, raw)
					}
					if !exists(t, e, ref) {
						dangling++
						if dangling < 5 {
							t.Errorf("dangling reference %s", ref)
						}
					}
				}
			}
			next = ""
			for _, l := range b["link"].([]any) {
				if l.(map[string]any)["relation"] == "next" {
					next = l.(map[string]any)["url"].(string)
				}
			}
		}
	}
	if dangling > 0 {
		t.Fatalf("%d dangling references", dangling)
	}
	t.Logf("%d bundles, %d resources, every reference resolves", len(files), total)
}

var existsCache = map[string]bool{}

func exists(t *testing.T, e *env, ref string) bool {
	if v, ok := existsCache[e.url+ref]; ok {
		return v
	}
	ok := e.do("GET", "/"+ref, nil).status == http.StatusOK
	existsCache[e.url+ref] = ok
	return ok
}

func referencesIn(raw []byte) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && k == "reference" {
					out = append(out, s)
					continue
				}
				walk(val)
			}
		case []any:
			for _, val := range x {
				walk(val)
			}
		}
	}
	var v any
	json.Unmarshal(raw, &v)
	walk(v)
	return out
}

// TestTransactionUpdateRuns: a long run of plain PUTs (written together)
// answers each entry as PUTs one by one would: 200 for an update, 201 for a
// new resource and for one re-created after a delete, the right versions,
// and a search index that follows the new content.
func TestTransactionUpdateRuns(t *testing.T) {
	e := newEnv(t)
	const n = 30
	put := func(family string) []byte {
		var entries []string
		for i := range n {
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Patient","id":"run%d","name":[{"family":"%s%d"}]},"request":{"method":"PUT","url":"Patient/run%d"}}`, i, family, i, i))
		}
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	// Half exist before the run; one of those is deleted.
	for i := 0; i < n; i += 2 {
		expect(t, e.do("PUT", fmt.Sprintf("/Patient/run%d", i), []byte(fmt.Sprintf(`{"resourceType":"Patient","id":"run%d"}`, i))), http.StatusCreated)
	}
	expect(t, e.do("DELETE", "/Patient/run4", nil), http.StatusNoContent)
	r := e.do("POST", "", put("first"))
	expect(t, r, http.StatusOK)
	var b struct {
		Entry []struct{ Response struct{ Status, Etag string } }
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	for i, en := range b.Entry {
		status, etag := "200 OK", `W/"2"`
		switch {
		case i == 4:
			status, etag = "201 Created", `W/"3"` // created, deleted, re-created
		case i%2 == 1:
			status, etag = "201 Created", `W/"1"`
		}
		if en.Response.Status != status || en.Response.Etag != etag {
			t.Errorf("entry %d: %s %s, want %s %s", i, en.Response.Status, en.Response.Etag, status, etag)
		}
	}
	expect(t, e.do("POST", "", put("second")), http.StatusOK)
	count := func(query string) any {
		r := e.do("GET", "/Patient?_summary=count&"+query, nil)
		expect(t, r, http.StatusOK)
		return r.json(t)["total"]
	}
	if got := count("family=second"); got != float64(n) {
		t.Errorf("%v patients found by their new name, want %d", got, n)
	}
	if got := count("family=first"); got != float64(0) {
		t.Errorf("%v patients still found by their old name", got)
	}
	r = e.do("GET", "/Patient/run0/_history", nil)
	expect(t, r, http.StatusOK)
	if entries, _ := r.json(t)["entry"].([]any); len(entries) != 3 {
		t.Errorf("run0 has %d versions, want 3", len(entries))
	}
	// A resource the run created records the interaction that created it:
	// a PUT.
	r = e.do("GET", "/Patient/run1/_history/1", nil)
	expect(t, r, http.StatusOK)
	r = e.do("GET", "/Patient/run1/_history", nil)
	if !strings.Contains(string(r.body), `"method":"PUT"`) || strings.Contains(string(r.body), `"method":"POST"`) {
		t.Errorf("run1's history does not record PUTs: %s", r.body)
	}
}
