package server_test

// Tests of the core operations: $validate, $meta, $meta-add, $meta-delete
// and Patient/[id]/$everything. Expected results are stated literally for
// hand-made data and, for $everything on Synthea, computed from the bundle
// JSON by evaluating the Patient compartment definition's parameter
// expressions (cross-checked against the search oracle's own table).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/synthea"
)

// ---- helpers ----

// outcomeIssues returns a 200 OperationOutcome's issues as "severity: diagnostics".
func outcomeIssues(t *testing.T, r response) []string {
	t.Helper()
	expect(t, r, http.StatusOK)
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %s", r.body)
	}
	var out []string
	for _, is := range m["issue"].([]any) {
		im := is.(map[string]any)
		out = append(out, fmt.Sprintf("%v: %v", im["severity"], im["diagnostics"]))
	}
	return out
}

// expectValid checks a $validate answer reports success (and no error).
func expectValid(t *testing.T, r response) []string {
	t.Helper()
	issues := outcomeIssues(t, r)
	if len(issues) == 0 || issues[0] != "information: validation successful" {
		t.Fatalf("want success, got %v", issues)
	}
	for _, is := range issues {
		if strings.HasPrefix(is, "error") || strings.HasPrefix(is, "fatal") {
			t.Fatalf("success with an error issue: %v", issues)
		}
	}
	return issues
}

// expectInvalid checks a $validate answer is 200 with an error mentioning want.
func expectInvalid(t *testing.T, r response, want string) {
	t.Helper()
	issues := outcomeIssues(t, r)
	for _, is := range issues {
		if strings.HasPrefix(is, "error: ") && strings.Contains(is, want) {
			return
		}
	}
	t.Fatalf("want an error issue mentioning %q, got %v", want, issues)
}

func validateParams(parts ...string) []byte {
	return []byte(`{"resourceType":"Parameters","parameter":[` + strings.Join(parts, ",") + `]}`)
}

// ---- $validate ----

func TestValidateOperation(t *testing.T) {
	e := newEnv(t)
	patient := `{"resourceType":"Patient","gender":"female"}`
	bad := `{"resourceType":"Patient","gender":"neither"}`

	t.Run("raw body", func(t *testing.T) {
		expectValid(t, e.do("POST", "/Patient/$validate", []byte(patient)))
		expectInvalid(t, e.do("POST", "/Patient/$validate", []byte(bad)), "")
		expectInvalid(t, e.do("POST", "/Patient/$validate", []byte(`{"resourceType":"Patient","foo":1}`)), "")
		// A resource of another type than the URL's is a finding, not a bad request.
		expectInvalid(t, e.do("POST", "/Observation/$validate", []byte(patient)), "resourceType")
		// mode and profile may come from the URL with a raw body.
		issues := expectValid(t, e.do("POST", "/Patient/$validate?mode=create&profile=http://example.org/p", []byte(patient)))
		if len(issues) != 2 || !strings.Contains(issues[1], "warning: profile") {
			t.Fatalf("want a warning that the profile was not checked, got %v", issues)
		}
	})

	t.Run("Parameters body", func(t *testing.T) {
		expectValid(t, e.do("POST", "/Patient/$validate", validateParams(`{"name":"resource","resource":`+patient+`}`)))
		expectInvalid(t, e.do("POST", "/Patient/$validate", validateParams(`{"name":"resource","resource":`+bad+`}`)), "")
		expectValid(t, e.do("POST", "/Patient/$validate", validateParams(
			`{"name":"resource","resource":`+patient+`}`, `{"name":"mode","valueCode":"create"}`)))
		// Validating a Parameters resource itself.
		expectValid(t, e.do("POST", "/Parameters/$validate", validateParams(`{"name":"x","valueString":"y"}`)))
	})

	t.Run("update mode", func(t *testing.T) {
		expectInvalid(t, e.do("POST", "/Patient/$validate?mode=update", []byte(patient)), "no id")
		withID := `{"resourceType":"Patient","id":"v1","gender":"female"}`
		expectValid(t, e.do("POST", "/Patient/$validate?mode=update", []byte(withID)))
		expectValid(t, e.do("POST", "/Patient/v1/$validate?mode=update", []byte(withID)))
		expectInvalid(t, e.do("POST", "/Patient/v2/$validate", validateParams(
			`{"name":"resource","resource":`+withID+`}`, `{"name":"mode","valueCode":"update"}`)), "does not match")
		expectInvalid(t, e.do("POST", "/Patient/v2/$validate", []byte(withID)), "does not match")
	})

	t.Run("delete mode", func(t *testing.T) {
		expect(t, e.do("PUT", "/Patient/del-1", []byte(`{"resourceType":"Patient","id":"del-1"}`)), http.StatusCreated)
		issues := expectValid(t, e.do("POST", "/Patient/del-1/$validate?mode=delete", nil))
		if len(issues) != 2 || !strings.Contains(issues[1], "referential integrity") {
			t.Fatalf("want a note that references are not checked, got %v", issues)
		}
		expectValid(t, e.do("POST", "/Patient/del-1/$validate", validateParams(`{"name":"mode","valueCode":"delete"}`)))
		expectOutcome(t, e.do("POST", "/Patient/nobody/$validate?mode=delete", nil), http.StatusNotFound)
		expect(t, e.do("DELETE", "/Patient/del-1", nil), http.StatusNoContent)
		expectOutcome(t, e.do("POST", "/Patient/del-1/$validate?mode=delete", nil), http.StatusGone)
		expectOutcome(t, e.do("POST", "/Patient/$validate?mode=delete", nil), http.StatusBadRequest)
	})

	t.Run("malformed requests", func(t *testing.T) {
		for name, body := range map[string]string{
			"no resource":         string(validateParams(`{"name":"mode","valueCode":"create"}`)),
			"two resources":       string(validateParams(`{"name":"resource","resource":`+patient+`}`, `{"name":"resource","resource":`+patient+`}`)),
			"unknown mode":        string(validateParams(`{"name":"resource","resource":`+patient+`}`, `{"name":"mode","valueCode":"upsert"}`)),
			"unknown parameter":   string(validateParams(`{"name":"resource","resource":`+patient+`}`, `{"name":"strictness","valueCode":"high"}`)),
			"parameter sans name": string(validateParams(`{"resource":` + patient + `}`)),
			"not an object":       `[1,2]`,
			"not JSON":            `{"resourceType":`,
		} {
			t.Run(name, func(t *testing.T) {
				expectOutcome(t, e.do("POST", "/Patient/$validate", []byte(body)), http.StatusBadRequest)
			})
		}
		expectOutcome(t, e.do("POST", "/Patient/$validate?mode=upsert", []byte(patient)), http.StatusBadRequest)
		expectOutcome(t, e.do("POST", "/Patient/$validate", nil), http.StatusBadRequest)
		expectOutcome(t, e.do("GET", "/Patient/$validate", nil), http.StatusMethodNotAllowed)
		expectOutcome(t, e.do("POST", "/$validate", []byte(patient)), http.StatusNotFound)
	})

	// Nothing was ever stored but del-1 (created and deleted above).
	h := e.do("GET", "/_history", nil)
	expect(t, h, http.StatusOK)
	for _, en := range opEntries(h.json(t)) {
		if u, _ := en["fullUrl"].(string); !strings.HasSuffix(u, "/Patient/del-1") {
			t.Errorf("$validate stored something: %s", u)
		}
	}
}

func opEntries(b map[string]any) []map[string]any {
	var out []map[string]any
	es, _ := b["entry"].([]any)
	for _, en := range es {
		out = append(out, en.(map[string]any))
	}
	return out
}

// ---- $meta, $meta-add, $meta-delete ----

// returnedMeta returns the valueMeta of a Parameters answer's "return".
func returnedMeta(t *testing.T, r response) map[string]any {
	t.Helper()
	expect(t, r, http.StatusOK)
	m := r.json(t)
	ps, _ := m["parameter"].([]any)
	if m["resourceType"] != "Parameters" || len(ps) != 1 {
		t.Fatalf("want a Parameters with one parameter, got %s", r.body)
	}
	p := ps[0].(map[string]any)
	meta, ok := p["valueMeta"].(map[string]any)
	if p["name"] != "return" || !ok {
		t.Fatalf("want a return valueMeta, got %s", r.body)
	}
	return meta
}

// metaLabelList renders a meta's profiles, tags and security labels as a sorted
// list: "profile URL", "tag system|code", "security system|code".
func metaLabelList(meta map[string]any) string {
	var out []string
	for _, p := range strs(meta, "profile") {
		out = append(out, "profile "+p)
	}
	for _, key := range []string{"tag", "security"} {
		for _, c := range vals(meta, key) {
			cm := c.(map[string]any)
			out = append(out, fmt.Sprintf("%s %v|%v", key, cm["system"], cm["code"]))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func metaParams(meta string) []byte {
	return []byte(`{"resourceType":"Parameters","parameter":[{"name":"meta","valueMeta":` + meta + `}]}`)
}

func TestMetaOperations(t *testing.T) {
	e := newEnv(t)
	expect(t, e.do("PUT", "/Patient/m1", []byte(`{"resourceType":"Patient","id":"m1",
		"meta":{"source":"#src","profile":["http://example.org/P"],"tag":[{"system":"http://t","code":"a","display":"A"}]},
		"gender":"male"}`)), http.StatusCreated)
	expect(t, e.do("PUT", "/Observation/m2", []byte(`{"resourceType":"Observation","id":"m2",
		"meta":{"tag":[{"system":"http://t","code":"b"}],"security":[{"system":"http://s","code":"R"}]},
		"status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mg"}}`)), http.StatusCreated)
	expect(t, e.do("PUT", "/Patient/plain", []byte(`{"resourceType":"Patient","id":"plain"}`)), http.StatusCreated)

	t.Run("$meta", func(t *testing.T) {
		cases := map[string]string{
			"/Patient/m1/$meta":     "profile http://example.org/P, tag http://t|a",
			"/Observation/m2/$meta": "security http://s|R, tag http://t|b",
			"/Patient/plain/$meta":  "",
			"/Patient/$meta":        "profile http://example.org/P, tag http://t|a",
			"/Observation/$meta":    "security http://s|R, tag http://t|b",
			"/Encounter/$meta":      "",
			"/$meta":                "profile http://example.org/P, security http://s|R, tag http://t|a, tag http://t|b",
		}
		for path, want := range cases {
			for _, method := range []string{"GET", "POST"} {
				if got := metaLabelList(returnedMeta(t, e.do(method, path, nil))); got != want {
					t.Errorf("%s %s: got [%s], want [%s]", method, path, got, want)
				}
			}
		}
		// Type and system level keep one display per coding.
		meta := returnedMeta(t, e.do("GET", "/$meta", nil))
		if d := vals(meta, "tag")[0].(map[string]any)["display"]; d != "A" {
			t.Errorf("tag display %v, want A", d)
		}
		expectOutcome(t, e.do("GET", "/Patient/nobody/$meta", nil), http.StatusNotFound)
		expectOutcome(t, e.do("PUT", "/Patient/m1/$meta", nil), http.StatusMethodNotAllowed)
	})

	t.Run("$meta-add", func(t *testing.T) {
		// Tag a is there already (display differs: identity is system+code).
		r := e.do("POST", "/Patient/m1/$meta-add", metaParams(`{"profile":["http://example.org/P2","http://example.org/P"],
			"tag":[{"system":"http://t","code":"a","display":"other"},{"system":"http://t","code":"c"}],
			"security":[{"system":"http://s","code":"N"}]}`))
		meta := returnedMeta(t, r)
		want := "profile http://example.org/P, profile http://example.org/P2, security http://s|N, tag http://t|a, tag http://t|c"
		if got := metaLabelList(meta); got != want {
			t.Fatalf("after $meta-add: [%s], want [%s]", got, want)
		}
		// A change is stored as a new version (see operations_meta.go).
		if meta["versionId"] != "2" || r.header.Get("ETag") != `W/"2"` {
			t.Fatalf("versionId %v ETag %q, want 2", meta["versionId"], r.header.Get("ETag"))
		}
		read := e.do("GET", "/Patient/m1", nil).json(t)
		if got := metaLabelList(read["meta"].(map[string]any)); got != want {
			t.Fatalf("stored meta [%s], want [%s]", got, want)
		}
		if read["gender"] != "male" || read["meta"].(map[string]any)["source"] != "#src" {
			t.Fatalf("the rest of the resource changed: %v", read)
		}
		if d := vals(read["meta"], "tag")[0].(map[string]any)["display"]; d != "A" {
			t.Fatalf("existing tag's display %v, want it kept (A)", d)
		}
		// Adding what is there writes nothing.
		again := returnedMeta(t, e.do("POST", "/Patient/m1/$meta-add", metaParams(`{"tag":[{"system":"http://t","code":"c"}]}`)))
		if again["versionId"] != "2" {
			t.Fatalf("a no-op $meta-add wrote version %v", again["versionId"])
		}
		// Other content is kept as written (the decimal's precision too).
		returnedMeta(t, e.do("POST", "/Observation/m2/$meta-add", metaParams(`{"tag":[{"system":"http://t","code":"z"}]}`)))
		if b := e.do("GET", "/Observation/m2", nil).body; !strings.Contains(string(b), `1.50`) {
			t.Fatalf("decimal precision lost: %s", b)
		}
		// The index follows: search by the new tag finds the resource.
		found := e.do("GET", "/Patient?_tag=http://t|c", nil).json(t)
		if len(opEntries(found)) != 1 {
			t.Fatalf("_tag search after $meta-add: %v", found)
		}
	})

	t.Run("$meta-delete", func(t *testing.T) {
		r := e.do("POST", "/Patient/m1/$meta-delete", metaParams(`{"profile":["http://example.org/P"],
			"tag":[{"system":"http://t","code":"a"},{"system":"http://t","code":"absent"}],"security":[{"system":"http://s","code":"N"}]}`))
		meta := returnedMeta(t, r)
		if got, want := metaLabelList(meta), "profile http://example.org/P2, tag http://t|c"; got != want {
			t.Fatalf("after $meta-delete: [%s], want [%s]", got, want)
		}
		if meta["versionId"] != "3" {
			t.Fatalf("versionId %v, want 3", meta["versionId"])
		}
		// Deleting everything leaves no empty arrays behind.
		returnedMeta(t, e.do("POST", "/Patient/m1/$meta-delete", metaParams(`{"profile":["http://example.org/P2"],"tag":[{"system":"http://t","code":"c"}]}`)))
		read := e.do("GET", "/Patient/m1", nil)
		var stored struct {
			Meta map[string]json.RawMessage `json:"meta"`
		}
		if err := json.Unmarshal(read.body, &stored); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"profile", "tag", "security"} {
			if _, ok := stored.Meta[k]; ok {
				t.Errorf("meta.%s left behind: %s", k, read.body)
			}
		}
		if got := metaLabelList(returnedMeta(t, e.do("GET", "/Patient/$meta", nil))); got != "" {
			t.Errorf("type-level $meta after deleting every label: [%s]", got)
		}
		h := e.do("GET", "/Patient/m1/_history", nil).json(t)
		if n := len(opEntries(h)); n != 4 {
			t.Errorf("history has %d versions, want 4", n)
		}
	})

	t.Run("deleted resources", func(t *testing.T) {
		expect(t, e.do("DELETE", "/Observation/m2", nil), http.StatusNoContent)
		if got := metaLabelList(returnedMeta(t, e.do("GET", "/$meta", nil))); got != "" {
			t.Errorf("system $meta still reports a deleted resource's labels: [%s]", got)
		}
		expectOutcome(t, e.do("GET", "/Observation/m2/$meta", nil), http.StatusGone)
		expectOutcome(t, e.do("POST", "/Observation/m2/$meta-add", metaParams(`{"tag":[{"code":"x"}]}`)), http.StatusGone)
		expectOutcome(t, e.do("POST", "/Observation/none/$meta-delete", metaParams(`{"tag":[{"code":"x"}]}`)), http.StatusNotFound)
	})

	t.Run("malformed requests", func(t *testing.T) {
		for name, body := range map[string]string{
			"no meta":           `{"resourceType":"Parameters"}`,
			"unknown parameter": `{"resourceType":"Parameters","parameter":[{"name":"tags","valueMeta":{"tag":[{"code":"x"}]}}]}`,
			"meta twice":        `{"resourceType":"Parameters","parameter":[{"name":"meta","valueMeta":{}},{"name":"meta","valueMeta":{}}]}`,
			"tag without code":  string(metaParams(`{"tag":[{"system":"http://t"}]}`)),
			"tag not an array":  string(metaParams(`{"tag":{"code":"x"}}`)),
			"not Parameters":    `{"resourceType":"Patient"}`,
		} {
			t.Run(name, func(t *testing.T) {
				expectOutcome(t, e.do("POST", "/Patient/plain/$meta-add", []byte(body)), http.StatusBadRequest)
			})
		}
		// A label the validating parser rejects is rejected like any write.
		r := e.do("POST", "/Patient/plain/$meta-add", metaParams(`{"tag":[{"code":"x","userSelected":"yes"}]}`))
		if r.status != http.StatusUnprocessableEntity && r.status != http.StatusBadRequest {
			t.Fatalf("invalid tag: status %d: %s", r.status, r.body)
		}
		expectOutcome(t, e.do("GET", "/Patient/plain/$meta-add", nil), http.StatusMethodNotAllowed)
		expectOutcome(t, e.do("POST", "/Patient/$meta-add", metaParams(`{"tag":[{"code":"x"}]}`)), http.StatusNotFound)
	})

	t.Run("concurrent $meta-add loses nothing", func(t *testing.T) {
		const n = 12
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := e.send("POST", "/Patient/plain/$meta-add", metaParams(fmt.Sprintf(`{"tag":[{"system":"http://c","code":"%d"}]}`, i)))
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				statuses[i] = r.status
			}()
		}
		wg.Wait()
		for i, s := range statuses {
			if s != http.StatusOK {
				t.Errorf("request %d: status %d", i, s)
			}
		}
		meta := returnedMeta(t, e.do("GET", "/Patient/plain/$meta", nil))
		if got := len(vals(meta, "tag")); got != n {
			t.Fatalf("%d tags after %d concurrent $meta-add, want %d: %v", got, n, n, metaLabelList(meta))
		}
	})
}

// ---- $everything ----

// TestEverythingHandMade covers the compartment's edges on literal data: a
// reference by a parameter that puts another type in the compartment
// (performer) must not count where the definition does not list it.
func TestEverythingHandMade(t *testing.T) {
	e := newEnv(t)
	for _, r := range []string{
		`{"resourceType":"Patient","id":"p1"}`,
		`{"resourceType":"Patient","id":"p2"}`,
		`{"resourceType":"Patient","id":"p3","link":[{"other":{"reference":"Patient/p1"},"type":"seealso"}]}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"},"performer":[{"reference":"Patient/p1"}]}`,
		`{"resourceType":"Observation","id":"o3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"}}`,
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"MedicationDispense","id":"md1","status":"completed","medicationCodeableConcept":{"text":"x"},
			"subject":{"reference":"Patient/p2"},"performer":[{"actor":{"reference":"Patient/p1"}}]}`,
		`{"resourceType":"Practitioner","id":"pr1"}`,
	} {
		var head struct{ ResourceType, ID string }
		if err := json.Unmarshal([]byte(r), &head); err != nil {
			t.Fatal(err)
		}
		expect(t, e.do("PUT", "/"+head.ResourceType+"/"+head.ID, []byte(r)), http.StatusCreated)
	}
	all := []string{"Encounter/e1", "Observation/o1", "Observation/o2", "Patient/p1", "Patient/p3"}

	for _, count := range []int{1, 2, 4, 5, 50} {
		pages := e.everything(t, fmt.Sprintf("/Patient/p1/$everything?_count=%d", count))
		assertSameSet(t, fmt.Sprintf("_count=%d", count), pages.ids(), all)
		if want := (len(all) + count - 1) / count; len(pages.pages) != want {
			t.Errorf("_count=%d: %d pages, want %d (no empty last page)", count, len(pages.pages), want)
		}
		if pages.ids()[0] != "Patient/p1" {
			t.Errorf("_count=%d: the patient is not first: %v", count, pages.ids())
		}
		wantTotal := any(nil)
		if count >= len(all) {
			wantTotal = float64(len(all))
		}
		if got := pages.pages[0]["total"]; got != wantTotal {
			t.Errorf("_count=%d: total %v, want %v", count, got, wantTotal)
		}
	}
	assertSameSet(t, "p2", e.everything(t, "/Patient/p2/$everything").ids(),
		[]string{"Patient/p2", "Observation/o2", "Observation/o3", "MedicationDispense/md1"})

	for query, want := range map[string][]string{
		"_type=Observation":               {"Observation/o1", "Observation/o2"},
		"_type=Patient,Encounter":         {"Patient/p1", "Patient/p3", "Encounter/e1"},
		"_type=Patient&_type=Observation": {"Patient/p1", "Patient/p3", "Observation/o1", "Observation/o2"},
		"_type=Practitioner":              nil,
		"_since=2999-01-01":               nil,
		"_since=2000-01-01T00:00:00Z":     all,
	} {
		assertSameSet(t, query, e.everything(t, "/Patient/p1/$everything?"+query+"&_count=2").ids(), want)
	}

	// Ignored parameters are reported; strict handling refuses them.
	r := e.do("GET", "/Patient/p1/$everything?start=2020", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"mode":"outcome"`) {
		t.Errorf("an ignored parameter is not reported: %s", r.body)
	}
	expectOutcome(t, e.do("GET", "/Patient/p1/$everything?start=2020", nil, "Prefer: handling=strict"), http.StatusBadRequest)

	for path, status := range map[string]int{
		"/Patient/nobody/$everything":                     http.StatusNotFound,
		"/Patient/$everything":                            http.StatusNotFound,
		"/Observation/o1/$everything":                     http.StatusNotFound,
		"/Patient/p1/$everything?_type=Bogus":             http.StatusBadRequest,
		"/Patient/p1/$everything?_since=yesterday":        http.StatusBadRequest,
		"/Patient/p1/$everything?_count=x":                http.StatusBadRequest,
		"/Patient/p1/$everything?_cursor=Bogus:x":         http.StatusBadRequest,
		"/Patient/p1/$everything?_cursor=Observation:%21": http.StatusBadRequest,
	} {
		expectOutcome(t, e.do("GET", path, nil), status)
	}
	expectOutcome(t, e.do("POST", "/Patient/p1/$everything", nil), http.StatusMethodNotAllowed)

	// Deleted resources drop out; a deleted patient is gone.
	expect(t, e.do("DELETE", "/Encounter/e1", nil), http.StatusNoContent)
	assertSameSet(t, "after delete", e.everything(t, "/Patient/p1/$everything").ids(), all[1:])
	expect(t, e.do("DELETE", "/Patient/p3", nil), http.StatusNoContent)
	expectOutcome(t, e.do("GET", "/Patient/p3/$everything", nil), http.StatusGone)
}

// everythingResult is every page of one $everything request.
type everythingResult struct {
	pages []map[string]any
}

// ids lists the matches of all pages in order.
func (r everythingResult) ids() []string {
	var out []string
	for _, p := range r.pages {
		for _, en := range opEntries(p) {
			if s, _ := en["search"].(map[string]any); s["mode"] != "match" {
				continue
			}
			res := en["resource"].(map[string]any)
			out = append(out, res["resourceType"].(string)+"/"+res["id"].(string))
		}
	}
	return out
}

// everything follows the next links from path and checks each page.
func (e *env) everything(t *testing.T, path string) everythingResult {
	t.Helper()
	var out everythingResult
	count := 0
	if u, err := url.Parse(path); err == nil {
		fmt.Sscan(u.Query().Get("_count"), &count)
	}
	for next := path; next != ""; {
		if len(out.pages) > 500 {
			t.Fatalf("%s: paging does not end", path)
		}
		r := e.do("GET", next, nil)
		expect(t, r, http.StatusOK)
		b := r.json(t)
		if b["resourceType"] != "Bundle" || b["type"] != "searchset" {
			t.Fatalf("%s: want a searchset Bundle, got %v %v", next, b["resourceType"], b["type"])
		}
		if count > 0 && len(opEntries(b)) > count {
			t.Fatalf("%s: %d entries on a page of %d", next, len(opEntries(b)), count)
		}
		out.pages = append(out.pages, b)
		next = bundleLinkURL(b, "next")
		if next != "" && !strings.HasPrefix(next, e.url+"/Patient/") {
			t.Fatalf("next link %q is not under %s", next, e.url)
		}
	}
	return out
}

// simplePath is what compartmentPaths understands of a FHIRPath expression.
var simplePath = regexp.MustCompile(`^[A-Z][A-Za-z]*(\.[a-z][A-Za-z]*)+$`)

// compartmentPaths turns a compartment parameter's expression into element
// paths below the resource. A trailing .where(resolve() is Patient) only
// narrows to Patient targets, which comparing with "Patient/<id>" does anyway.
func compartmentPaths(t *testing.T, expr string) [][]string {
	t.Helper()
	var out [][]string
	for _, alt := range strings.Split(expr, "|") {
		alt = strings.TrimSpace(alt)
		if i := strings.Index(alt, ".where(resolve() is "); i >= 0 && strings.HasSuffix(alt, ")") {
			alt = alt[:i]
		}
		if !simplePath.MatchString(alt) {
			t.Fatalf("oracle: cannot read expression %q", expr)
		}
		out = append(out, strings.Split(alt, ".")[1:])
	}
	return out
}

// inCompartmentBySpec reports whether r is in Patient/pid's compartment per
// the compartment definition's parameters and their expressions.
func inCompartmentBySpec(t *testing.T, typ string, r res, pid string) bool {
	for _, code := range spec.CompartmentParams("Patient", typ) {
		if code == "_id" {
			if typ == "Patient" && r["id"] == pid {
				return true
			}
			continue
		}
		for _, path := range compartmentPaths(t, spec.SearchParams(typ)[code].Expression) {
			if hasRef(r, "Patient/"+pid, path...) {
				return true
			}
		}
	}
	return false
}

func TestEverythingSynthea(t *testing.T) {
	files := syntheaFiles(t, 3)
	o, err := newOracle(files)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	eng, err := engine.New(engine.Config{BaseURL: e.url}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synthea.Load(context.Background(), eng, files); err != nil {
		t.Fatal(err)
	}
	loaded := time.Now().UTC()

	compartment := func(pid string, keep func(typ string) bool) []string {
		var out []string
		for typ, rs := range o.byType {
			if !keep(typ) {
				continue
			}
			for _, r := range rs {
				if inCompartmentBySpec(t, typ, r, pid) {
					out = append(out, typ+"/"+r["id"].(string))
				}
			}
		}
		return out
	}
	all := func(string) bool { return true }

	// The spec-derived oracle agrees with the search oracle's own table.
	pids := o.where("Patient", func(res) bool { return true })
	if len(pids) != 3 {
		t.Fatalf("want 3 patients, got %v", pids)
	}
	for _, ref := range pids {
		pid := strings.TrimPrefix(ref, "Patient/")
		for typ := range patientCompartment {
			byTable := o.where(typ, func(r res) bool { return inPatientCompartment(typ, r, pid) })
			assertSameSet(t, "oracle cross-check "+typ, compartment(pid, func(x string) bool { return x == typ }), byTable)
		}
	}

	for _, ref := range pids {
		pid := strings.TrimPrefix(ref, "Patient/")
		want := compartment(pid, all)
		types := map[string]bool{}
		for _, id := range want {
			types[strings.Split(id, "/")[0]] = true
		}
		if len(want) < 100 || len(types) < 5 {
			t.Fatalf("test data: %s's compartment is too small (%d resources, %d types)", pid, len(want), len(types))
		}
		got := e.everything(t, "/Patient/"+pid+"/$everything?_count=50")
		assertSameSet(t, ref+" _count=50", got.ids(), want)
		if got.ids()[0] != ref {
			t.Errorf("%s: the first entry is %s", ref, got.ids()[0])
		}
		t.Logf("%s: %d resources of %d types in %d pages", ref, len(want), len(types), len(got.pages))
	}

	pid := strings.TrimPrefix(pids[0], "Patient/")
	t.Run("_type", func(t *testing.T) {
		keep := func(typ string) bool { return typ == "Observation" || typ == "Condition" || typ == "Provenance" }
		got := e.everything(t, "/Patient/"+pid+"/$everything?_type=Observation,Condition,Provenance&_count=50")
		assertSameSet(t, "_type", got.ids(), compartment(pid, keep))
	})

	t.Run("_since", func(t *testing.T) {
		// Nothing changed since the load, then two resources do.
		since := fhir.FormatInstant(loaded)
		assertSameSet(t, "_since before changes", e.everything(t, "/Patient/"+pid+"/$everything?_since="+since).ids(), nil)
		obs := o.where("Observation", func(r res) bool { return inCompartmentBySpec(t, "Observation", r, pid) })[0]
		cond := o.where("Condition", func(r res) bool { return inCompartmentBySpec(t, "Condition", r, pid) })[0]
		body := e.do("GET", "/"+obs, nil)
		expect(t, body, http.StatusOK)
		expect(t, e.do("PUT", "/"+obs, body.body), http.StatusOK)
		returnedMeta(t, e.do("POST", "/"+cond+"/$meta-add", metaParams(`{"tag":[{"system":"http://t","code":"since"}]}`)))
		got := e.everything(t, "/Patient/"+pid+"/$everything?_since="+url.QueryEscape(since)+"&_count=1")
		assertSameSet(t, "_since", got.ids(), []string{obs, cond})
	})
}
