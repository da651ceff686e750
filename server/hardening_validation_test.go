package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Regression tests for issue 11's validation findings (5, 12, 15), against
// a real server and PostgreSQL.

// outcomeText joins an OperationOutcome's diagnostics and expressions.
func outcomeText(t *testing.T, r response) string {
	t.Helper()
	var oo struct {
		Issue []struct {
			Diagnostics string
			Expression  []string
		}
	}
	if err := json.Unmarshal(r.body, &oo); err != nil {
		t.Fatalf("not JSON: %s", r.body)
	}
	var parts []string
	for _, is := range oo.Issue {
		parts = append(parts, is.Diagnostics+" @ "+strings.Join(is.Expression, ","))
	}
	return strings.Join(parts, "; ")
}

func observationWithValue(v string) []byte {
	return []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":` + v + `,"unit":"mg"}}`)
}

// Finding 5: decimals PostgreSQL's numeric cannot hold were accepted and
// failed the write with a 500 (SQLSTATE 22003).
func TestHardeningDecimalOutOfRange(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"1e131072", "1e-16384", "1e1001", "0e-99999"} {
		r := e.do("POST", "/Observation", observationWithValue(v))
		expectOutcome(t, r, http.StatusUnprocessableEntity)
		if txt := outcomeText(t, r); !strings.Contains(txt, "Observation.valueQuantity.value") {
			t.Errorf("%s: the outcome does not name the element: %s", v, txt)
		}
		r = e.do("PUT", "/Observation/o1", observationWithValue(v))
		expectOutcome(t, r, http.StatusUnprocessableEntity)
	}
	if n := countType(t, e, "Observation"); n != 0 {
		t.Fatalf("%d Observations stored", n)
	}
	// The largest accepted numbers are stored and indexed (the bound is
	// inside what numeric holds), and read back as written.
	for _, v := range []string{
		"1e1000", "-1e-1000",
		"9" + strings.Repeat("9", 57) + "e1000",    // 64 characters
		"0." + strings.Repeat("0", 55) + "1e-1000", // 64 characters
	} {
		r := e.do("POST", "/Observation", observationWithValue(v))
		expect(t, r, http.StatusCreated)
		if !strings.Contains(string(r.body), `"value":`+v) {
			t.Errorf("%s: read back %s", v, r.body)
		}
	}
}

// Finding 12: what R4 forbids but the validator let through.
func TestHardeningValidationGaps(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ name, body, expr string }{
		{"nested contained (dom-2)", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"x","contained":[{"resourceType":"Organization","id":"p","name":"y"}]}]}`,
			"Patient.contained[0].contained"},
		{"duplicate contained ids", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"x"},{"resourceType":"Organization","id":"o","name":"y"}],"managingOrganization":{"reference":"#o"}}`,
			"Patient.contained[1].id"},
		{"year 0000", `{"resourceType":"Patient","birthDate":"0000-01-01"}`, "Patient.birthDate"},
		{"base64 split inside a group", `{"resourceType":"Binary","contentType":"text/plain","data":"QU JD"}`, "Binary.data"},
	} {
		r := e.do("POST", "/"+strings.SplitN(c.body, `"`, 5)[3], []byte(c.body))
		expectOutcome(t, r, http.StatusUnprocessableEntity)
		if txt := outcomeText(t, r); !strings.Contains(txt, c.expr) {
			t.Errorf("%s: the outcome does not name %s: %s", c.name, c.expr, txt)
		}
	}
	// R4's base64Binary regex allows whitespace between groups of four.
	r := e.do("POST", "/Binary", []byte(`{"resourceType":"Binary","contentType":"text/plain","data":"QUJD\r\nREVG\nR0g="}`))
	expect(t, r, http.StatusCreated)
}

const placeholderTx = `{"resourceType":"Bundle","type":"%s","entry":[
 {"fullUrl":"urn:uuid:0b7f3c2a-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Known"}]},"request":{"method":"POST","url":"Patient"}},
 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"%s"}},"request":{"method":"POST","url":"Observation"}}
]}`

func bundleOf(typ, ref string) []byte {
	return []byte(strings.Replace(strings.Replace(placeholderTx, "%s", typ, 1), "%s", ref, 1))
}

// Finding 12: a transaction stored a reference to a urn:uuid: no entry had.
func TestHardeningTransactionUnresolvedPlaceholder(t *testing.T) {
	e := newEnv(t)
	const missing = "urn:uuid:0b7f3c2a-0000-4000-8000-0000000000ff"
	r := e.do("POST", "", bundleOf("transaction", missing))
	expectOutcome(t, r, http.StatusBadRequest)
	if txt := outcomeText(t, r); !strings.Contains(txt, "Bundle.entry[1]") || !strings.Contains(txt, missing) {
		t.Errorf("the outcome does not name the entry and the reference: %s", txt)
	}
	if n := countType(t, e, "Patient") + countType(t, e, "Observation"); n != 0 {
		t.Fatalf("the failed transaction stored %d resources", n)
	}

	// The reference in a PATCH entry's FHIRPath Patch fails it the same way.
	patchTx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"generalPractitioner"},{"name":"value","valueReference":{"reference":"` + missing + `"}}]}]},"request":{"method":"PATCH","url":"Patient/p1"}}]}`
	putPatient(t, e, "p1", "")
	r = e.do("POST", "", []byte(patchTx))
	expectOutcome(t, r, http.StatusBadRequest)
	if txt := outcomeText(t, r); !strings.Contains(txt, "Bundle.entry[0]") || !strings.Contains(txt, missing) {
		t.Errorf("the outcome does not name the entry and the reference: %s", txt)
	}
	expect(t, e.do("GET", "/Patient/p1/_history/2", nil), http.StatusNotFound)

	// A reference to an entry's fullUrl still resolves.
	r = e.do("POST", "", bundleOf("transaction", "urn:uuid:0b7f3c2a-0000-4000-8000-000000000001"))
	expect(t, r, http.StatusOK)

	// In a batch only the entry with the reference fails.
	r = e.do("POST", "", bundleOf("batch", missing))
	expect(t, r, http.StatusOK)
	if got := strings.Join(entryStatuses(t, r), ","); got != "201 Created,400 Bad Request" {
		t.Fatalf("batch statuses %s: %s", got, r.body)
	}
	if !strings.Contains(string(r.body), missing) {
		t.Errorf("the entry's outcome does not name the reference: %s", r.body)
	}
}

// Finding 12: an empty patch wrote a new version.
func TestHardeningEmptyPatch(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"name":[{"family":"Same"}]`)
	before := e.do("GET", "/Patient/p1", nil)
	expect(t, before, http.StatusOK)
	for _, c := range []struct{ body, ct string }{
		{`[]`, ctJSONPatch},
		{` [ ] `, ctJSONPatch},
		{`{"resourceType":"Parameters"}`, ctFHIR},
	} {
		r := e.do("PATCH", "/Patient/p1", []byte(c.body), c.ct)
		expect(t, r, http.StatusOK)
		if r.header.Get("ETag") != `W/"1"` {
			t.Errorf("%s: ETag %q, want the current version's", c.body, r.header.Get("ETag"))
		}
		if string(r.body) != string(before.body) {
			t.Errorf("%s: body %s, want the current version %s", c.body, r.body, before.body)
		}
	}
	// A transaction's empty PATCH entry writes nothing either.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` +
		base64.StdEncoding.EncodeToString([]byte("[]")) + `"},"request":{"method":"PATCH","url":"Patient/p1"}}]}`
	r := e.do("POST", "", []byte(tx))
	expect(t, r, http.StatusOK)
	if got := strings.Join(entryStatuses(t, r), ","); got != "200 OK" {
		t.Fatalf("statuses %s", got)
	}
	expect(t, e.do("GET", "/Patient/p1/_history/2", nil), http.StatusNotFound)
	if h, _ := e.do("GET", "/Patient/p1/_history", nil).json(t)["entry"].([]any); len(h) != 1 {
		t.Fatalf("%d versions in the history, want 1", len(h))
	}
	// A malformed patch is still an error, empty or not.
	expectOutcome(t, e.do("PATCH", "/Patient/p1", []byte(`{}`), ctJSONPatch), http.StatusBadRequest)
}

// Finding 15: $validate said "not a JSON object" for JSON too deep to
// decode, where create explains the problem. $validate answers what create
// answers: the same 4xx when the body cannot be read as a resource, else
// (validation performed) 200 with the same issues.
func TestHardeningValidateDeepJSON(t *testing.T) {
	e := newEnv(t)
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range []struct {
		body   string
		status int // of $validate; 0: create's
	}{
		{`{"resourceType":"Patient","extension":` + deep(20000) + `}`, 0},
		{deep(10000), 0},
		{`{"resourceType":"Patient","extension":` + deep(100) + `}`, http.StatusOK},
	} {
		created := e.do("POST", "/Patient", []byte(c.body))
		validated := e.do("POST", "/Patient/$validate", []byte(c.body))
		if created.status < 400 || created.status >= 500 {
			t.Fatalf("create answered %d: %.200s", created.status, created.body)
		}
		want := c.status
		if want == 0 {
			want = created.status
		}
		expectOutcome(t, validated, want)
		if a, b := outcomeText(t, validated), outcomeText(t, created); a != b || strings.Contains(a, "not a JSON object") {
			t.Errorf("$validate says %.300q, create %.300q", a, b)
		}
	}
}
