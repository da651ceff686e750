package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func patient(id, family string) []byte {
	idPart := ""
	if id != "" {
		idPart = fmt.Sprintf(`"id":%q,`, id)
	}
	return []byte(fmt.Sprintf(`{"resourceType":"Patient",%s"name":[{"family":%q}],"gender":"female"}`, idPart, family))
}

func TestCreateReadUpdateDeleteLifecycle(t *testing.T) {
	e := newEnv(t)

	// Create ignores a client id and assigns its own.
	r := e.do("POST", "/Patient", patient("client-chosen", "Ada"))
	expect(t, r, http.StatusCreated)
	created := r.json(t)
	id, _ := created["id"].(string)
	if id == "" || id == "client-chosen" {
		t.Fatalf("create must assign a server id, got %q", id)
	}
	meta := created["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Fatalf("meta not set: %v", meta)
	}
	if got, want := r.header.Get("Location"), e.url+"/Patient/"+id+"/_history/1"; got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
	if r.header.Get("ETag") != `W/"1"` || r.header.Get("Last-Modified") == "" {
		t.Fatalf("headers: ETag %q Last-Modified %q", r.header.Get("ETag"), r.header.Get("Last-Modified"))
	}

	// Read returns what create returned.
	r = e.do("GET", "/Patient/"+id, nil)
	expect(t, r, http.StatusOK)
	got := r.json(t)
	if got["id"] != id || got["name"].([]any)[0].(map[string]any)["family"] != "Ada" {
		t.Fatalf("read back %s", r.body)
	}

	// Update makes version 2; vread keeps version 1.
	body := patient(id, "Lovelace")
	r = e.do("PUT", "/Patient/"+id, body, `If-Match: W/"1"`)
	expect(t, r, http.StatusOK)
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("ETag after update %q", r.header.Get("ETag"))
	}
	r = e.do("GET", "/Patient/"+id+"/_history/1", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "Ada") {
		t.Fatalf("vread 1: %s", r.body)
	}
	r = e.do("GET", "/Patient/"+id+"/_history/2", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "Lovelace") {
		t.Fatalf("vread 2: %s", r.body)
	}
	expectOutcome(t, e.do("GET", "/Patient/"+id+"/_history/3", nil), http.StatusNotFound)

	// Stale If-Match loses.
	expectOutcome(t, e.do("PUT", "/Patient/"+id, body, `If-Match: W/"1"`), http.StatusPreconditionFailed)

	// Delete: 204, then read is 410, vread of the tombstone 410, older versions still readable.
	r = e.do("DELETE", "/Patient/"+id, nil)
	expect(t, r, http.StatusNoContent)
	expectOutcome(t, e.do("GET", "/Patient/"+id, nil), http.StatusGone)
	expectOutcome(t, e.do("GET", "/Patient/"+id+"/_history/3", nil), http.StatusGone)
	expect(t, e.do("GET", "/Patient/"+id+"/_history/2", nil), http.StatusOK)
	// Deleting again is idempotent and adds no version.
	expect(t, e.do("DELETE", "/Patient/"+id, nil), http.StatusNoContent)

	// Update after delete re-creates it as version 4.
	r = e.do("PUT", "/Patient/"+id, body)
	expect(t, r, http.StatusCreated)
	if r.header.Get("ETag") != `W/"4"` {
		t.Fatalf("ETag after re-create %q", r.header.Get("ETag"))
	}

	// History has every version, newest first, the delete as a tombstone.
	h := e.do("GET", "/Patient/"+id+"/_history", nil)
	expect(t, h, http.StatusOK)
	entries := h.json(t)["entry"].([]any)
	var methods []string
	for _, en := range entries {
		req := en.(map[string]any)["request"].(map[string]any)
		methods = append(methods, req["method"].(string))
	}
	if got, want := strings.Join(methods, ","), "PUT,DELETE,PUT,POST"; got != want {
		t.Fatalf("history methods %s, want %s", got, want)
	}
	if _, has := entries[1].(map[string]any)["resource"]; has {
		t.Fatalf("a delete entry must carry no resource")
	}
}

func TestUpdateAsCreateAndIDRules(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/Patient/chosen-1", patient("chosen-1", "X"))
	expect(t, r, http.StatusCreated)
	if r.header.Get("Location") == "" {
		t.Fatal("update-as-create must send Location")
	}
	expect(t, e.do("GET", "/Patient/chosen-1", nil), http.StatusOK)
	// Body id must match the URL, and must be present.
	expectOutcome(t, e.do("PUT", "/Patient/chosen-1", patient("other", "X")), http.StatusBadRequest)
	expectOutcome(t, e.do("PUT", "/Patient/chosen-1", patient("", "X")), http.StatusBadRequest)
	// Invalid id in the URL.
	expectOutcome(t, e.do("PUT", "/Patient/bad_id!", patient("bad_id!", "X")), http.StatusBadRequest)
	expectOutcome(t, e.do("GET", "/Patient/"+strings.Repeat("a", 65), nil), http.StatusBadRequest)
	// Unknown type and unknown resource.
	expectOutcome(t, e.do("GET", "/Foo/1", nil), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/Patient/nope", nil), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/Patient/nope/_history", nil), http.StatusNotFound)
}

func TestPreferReturn(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/Patient", patient("", "A"), "Prefer: return=minimal")
	expect(t, r, http.StatusCreated)
	if len(r.body) != 0 || r.header.Get("Location") == "" {
		t.Fatalf("return=minimal: body %q, Location %q", r.body, r.header.Get("Location"))
	}
	r = e.do("POST", "/Patient", patient("", "A"), "Prefer: return=OperationOutcome")
	expect(t, r, http.StatusCreated)
	if r.json(t)["resourceType"] != "OperationOutcome" {
		t.Fatalf("return=OperationOutcome: %s", r.body)
	}
	r = e.do("POST", "/Patient", patient("", "A"), "Prefer: return=representation")
	expect(t, r, http.StatusCreated)
	if r.json(t)["resourceType"] != "Patient" {
		t.Fatalf("return=representation: %s", r.body)
	}
	r = e.do("DELETE", "/Patient/none", nil, "Prefer: return=OperationOutcome")
	expect(t, r, http.StatusOK)
	if r.json(t)["resourceType"] != "OperationOutcome" {
		t.Fatalf("delete with return=OperationOutcome: %s", r.body)
	}
}

func TestConditionalRead(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/Patient/c1", patient("c1", "A"))
	expect(t, r, http.StatusCreated)
	lm := r.header.Get("Last-Modified")
	expect(t, e.do("GET", "/Patient/c1", nil, `If-None-Match: W/"1"`), http.StatusNotModified)
	expect(t, e.do("GET", "/Patient/c1", nil, `If-None-Match: W/"0"`), http.StatusOK)
	expect(t, e.do("GET", "/Patient/c1", nil, "If-Modified-Since: "+lm), http.StatusNotModified)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	expect(t, e.do("GET", "/Patient/c1", nil, "If-Modified-Since: "+past), http.StatusOK)
}

func TestFormats(t *testing.T) {
	e := newEnv(t)
	expect(t, e.do("PUT", "/Patient/f1", patient("f1", "A")), http.StatusCreated)
	for _, ok := range []string{"/Patient/f1?_format=json", "/Patient/f1?_format=application/fhir+json", "/Patient/f1?_format=application/json", "/Patient/f1?_format=application%2Ffhir%2Bjson"} {
		expect(t, e.do("GET", ok, nil), http.StatusOK)
	}
	expect(t, e.do("GET", "/Patient/f1", nil, "Accept: application/json"), http.StatusOK)
	expect(t, e.do("GET", "/Patient/f1", nil, "Accept: text/html,application/xhtml+xml,*/*;q=0.8"), http.StatusOK)
	for _, bad := range []string{"/Patient/f1?_format=ttl", "/Patient/f1?_format=application/fhir+turtle", "/metadata?_format=text/turtle"} {
		expectOutcome(t, e.do("GET", bad, nil), http.StatusNotAcceptable)
	}
	expectOutcome(t, e.do("GET", "/Patient/f1", nil, "Accept: application/fhir+turtle"), http.StatusNotAcceptable)
	r := e.do("GET", "/Patient/f1?_pretty=true", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "\n  ") {
		t.Fatalf("_pretty=true not indented: %s", r.body)
	}
}

// TestConcurrentIfMatch: 50 writers race at one version; exactly one wins and
// history has neither a gap nor a duplicate.
func TestConcurrentIfMatch(t *testing.T) {
	e := newEnv(t)
	expect(t, e.do("PUT", "/Patient/race", patient("race", "v1")), http.StatusCreated)
	const writers = 50
	statuses := make([]int, writers)
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := e.send("PUT", "/Patient/race", patient("race", fmt.Sprintf("w%d", i)), `If-Match: W/"1"`)
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
				return
			}
			statuses[i] = r.status
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[http.StatusOK] != 1 || counts[http.StatusPreconditionFailed] != writers-1 {
		t.Fatalf("want one 200 and %d 412, got %v", writers-1, counts)
	}
	assertContiguousHistory(t, e, "/Patient/race", 2)
}

// TestConcurrentUpdatesLoseNothing: 50 unconditional writers each get their
// own version.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	e := newEnv(t)
	expect(t, e.do("PUT", "/Patient/busy", patient("busy", "v1")), http.StatusCreated)
	const writers = 50
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := e.send("PUT", "/Patient/busy", patient("busy", fmt.Sprintf("w%d", i)))
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			} else if r.status != http.StatusOK {
				t.Errorf("writer %d: %d %s", i, r.status, r.body)
			}
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	assertContiguousHistory(t, e, "/Patient/busy", writers+1)
}

// TestConcurrentUpdateAsCreate: racing creators of one id make one resource.
func TestConcurrentUpdateAsCreate(t *testing.T) {
	e := newEnv(t)
	const writers = 20
	statuses := make([]int, writers)
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := e.send("PUT", "/Patient/newborn", patient("newborn", "x"))
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
				return
			}
			statuses[i] = r.status
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[http.StatusCreated] != 1 || counts[http.StatusOK] != writers-1 {
		t.Fatalf("want one 201 and %d 200, got %v", writers-1, counts)
	}
	assertContiguousHistory(t, e, "/Patient/newborn", writers)
}

func assertContiguousHistory(t *testing.T, e *env, path string, want int) {
	t.Helper()
	r := e.do("GET", path+"/_history?_count=1000", nil)
	expect(t, r, http.StatusOK)
	entries, _ := r.json(t)["entry"].([]any)
	if len(entries) != want {
		t.Fatalf("history has %d versions, want %d", len(entries), want)
	}
	for i, en := range entries {
		res := en.(map[string]any)["resource"].(map[string]any)
		if got, wantV := res["meta"].(map[string]any)["versionId"], fmt.Sprint(want-i); got != wantV {
			t.Fatalf("history entry %d has version %v, want %s (gap or duplicate)", i, got, wantV)
		}
	}
}

func TestHistoryPagingSinceAndAt(t *testing.T) {
	e := newEnv(t)
	const versions = 25
	var mid string
	for i := 1; i <= versions; i++ {
		r := e.do("PUT", "/Patient/h1", patient("h1", fmt.Sprintf("v%d", i)))
		if i == 1 {
			expect(t, r, http.StatusCreated)
		} else {
			expect(t, r, http.StatusOK)
		}
		if i == 13 {
			mid = r.json(t)["meta"].(map[string]any)["lastUpdated"].(string)
		}
	}
	expect(t, e.do("POST", "/Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)), http.StatusCreated)

	// Page through instance history 10 at a time.
	seen := map[string]bool{}
	next := "/Patient/h1/_history?_count=10"
	pages := 0
	for next != "" {
		r := e.do("GET", next, nil)
		expect(t, r, http.StatusOK)
		pages++
		b := r.json(t)
		for _, en := range b["entry"].([]any) {
			v := en.(map[string]any)["resource"].(map[string]any)["meta"].(map[string]any)["versionId"].(string)
			if seen[v] {
				t.Fatalf("version %s on two pages", v)
			}
			seen[v] = true
		}
		next = ""
		for _, l := range b["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = l.(map[string]any)["url"].(string)
			}
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != versions || pages != 3 {
		t.Fatalf("saw %d versions over %d pages, want %d over 3", len(seen), pages, versions)
	}

	// _since keeps versions written at or after the instant.
	r := e.do("GET", "/Patient/h1/_history?_count=100&_since="+mid, nil)
	expect(t, r, http.StatusOK)
	if n := len(r.json(t)["entry"].([]any)); n != versions-12 {
		t.Fatalf("_since gave %d versions, want %d", n, versions-12)
	}
	// _at gives the version current at that instant.
	r = e.do("GET", "/Patient/h1/_history?_at="+mid, nil)
	expect(t, r, http.StatusOK)
	entries := r.json(t)["entry"].([]any)
	if len(entries) != 1 || entries[0].(map[string]any)["resource"].(map[string]any)["meta"].(map[string]any)["versionId"] != "13" {
		t.Fatalf("_at: %s", r.body)
	}
	// Type and system history.
	r = e.do("GET", "/Patient/_history?_count=100", nil)
	expect(t, r, http.StatusOK)
	if n := len(r.json(t)["entry"].([]any)); n != versions {
		t.Fatalf("type history %d entries, want %d", n, versions)
	}
	r = e.do("GET", "/_history?_count=100", nil)
	expect(t, r, http.StatusOK)
	if n := len(r.json(t)["entry"].([]any)); n != versions+1 {
		t.Fatalf("system history %d entries, want %d", n, versions+1)
	}
	expectOutcome(t, e.do("GET", "/_history?_since=yesterday", nil), http.StatusBadRequest)
	expectOutcome(t, e.do("GET", "/_history?_cursor=garbage", nil), http.StatusBadRequest)
	expectOutcome(t, e.do("GET", "/_history?_count=many", nil), http.StatusBadRequest)
}

func TestProbesAndMetrics(t *testing.T) {
	e := newEnv(t)
	base := strings.TrimSuffix(e.url, "/fhir")
	expect(t, e.do("GET", base+"/healthz", nil), http.StatusOK)
	expect(t, e.do("GET", base+"/readyz", nil), http.StatusOK)
	e.do("GET", "/Patient/none", nil)
	r := e.do("GET", base+"/metrics", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `ember_http_request_duration_seconds_count{code="404",interaction="read"} 1`) {
		t.Fatalf("metrics lack the read: %s", r.body)
	}
}
