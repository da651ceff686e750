package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/smart/access"
)

// tokens is a Verifier over fixed grants, standing in for the issuers (whose
// own tests cover token verification): these tests are about enforcement.
type tokens map[string]*access.Grant

func (t tokens) Verify(_ context.Context, token string) (*access.Grant, error) {
	if g, ok := t[token]; ok {
		return g, nil
	}
	return nil, fmt.Errorf("unknown token: %w", access.ErrInvalidToken)
}

// leakEnv is a server with two patients' data and tokens of several kinds.
func leakEnv(t *testing.T) *env {
	t.Helper()
	grant := func(patient string, scopes ...string) *access.Grant {
		return &access.Grant{Subject: "u", ClientID: "app", Scopes: scopes, Patient: patient, Expiry: time.Now().Add(time.Hour)}
	}
	toks := tokens{
		"admin":   grant("", "openid", "user/*.cruds"),
		"other":   {Subject: "v", ClientID: "other-app", Scopes: []string{"system/*.rs"}, Expiry: time.Now().Add(time.Hour)},
		"a":       grant("A", "launch/patient", "patient/*.rs"),
		"a-v1":    grant("A", "patient/*.read"),
		"a-lab":   grant("A", "patient/Observation.rs?category=laboratory", "patient/Patient.rs"),
		"a-write": grant("A", "patient/*.cruds"),
		"a-obs":   grant("A", "patient/Observation.rs"),
		"nothing": grant("", "openid", "fhirUser"),
		"no-ctx":  grant("", "patient/*.rs"),
		"expired": {Subject: "u", Scopes: []string{"user/*.rs"}, Expiry: time.Now().Add(-time.Minute)},
	}
	e := newBulkEnv(t, "", func(c *server.Config) {
		c.Verifier = toks
		c.OAuth = &server.OAuthEndpoints{Authorize: "http://x/auth/authorize", Token: "http://x/auth/token"}
	}).env
	put := func(path, body string) {
		t.Helper()
		r := e.do(http.MethodPut, path, []byte(body), "Authorization: Bearer admin", "Content-Type: application/fhir+json")
		if r.status != http.StatusCreated && r.status != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", path, r.status, r.body)
		}
	}
	put("/Practitioner/doc", `{"resourceType":"Practitioner","id":"doc","name":[{"family":"Who"}]}`)
	put("/Medication/med", `{"resourceType":"Medication","id":"med","code":{"text":"aspirin"}}`)
	for _, p := range []string{"A", "B"} {
		put("/Patient/"+p, `{"resourceType":"Patient","id":"`+p+`","name":[{"family":"Fam`+p+`"}],"generalPractitioner":[{"reference":"Practitioner/doc"}]}`)
		put("/Encounter/enc"+p, `{"resourceType":"Encounter","id":"enc`+p+`","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/`+p+`"}}`)
		for _, cat := range []string{"laboratory", "vital-signs"} {
			put("/Observation/"+cat+p, `{"resourceType":"Observation","id":"`+cat+p+`","status":"final",
				"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"`+cat+`"}]}],
				"code":{"text":"x"},"subject":{"reference":"Patient/`+p+`"},"encounter":{"reference":"Encounter/enc`+p+`"},
				"performer":[{"reference":"Practitioner/doc"}]}`)
		}
		put("/MedicationRequest/mr"+p, `{"resourceType":"MedicationRequest","id":"mr`+p+`","status":"active","intent":"order",
			"medicationReference":{"reference":"Medication/med"},"subject":{"reference":"Patient/`+p+`"}}`)
	}
	return e
}

// ids lists the Type/id of a Bundle's entries.
func ids(t *testing.T, r response) []string {
	t.Helper()
	var out []string
	entries, _ := r.json(t)["entry"].([]any)
	for _, en := range entries {
		res, _ := en.(map[string]any)["resource"].(map[string]any)
		if res == nil {
			continue
		}
		if res["resourceType"] == "OperationOutcome" {
			continue
		}
		out = append(out, fmt.Sprint(res["resourceType"], "/", res["id"]))
	}
	return out
}

// noneOfB fails when any Type/id belongs to patient B.
func noneOfB(t *testing.T, what string, got []string) {
	t.Helper()
	for _, id := range got {
		if strings.HasSuffix(id, "B") {
			t.Errorf("%s leaked %s (all: %v)", what, id, got)
		}
	}
}

func TestAuthRequiresToken(t *testing.T) {
	e := leakEnv(t)
	r := e.do(http.MethodGet, "/Patient/A", nil)
	expectOutcome(t, r, http.StatusUnauthorized)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
	}
	for _, tok := range []string{"bogus", "expired"} {
		r = e.do(http.MethodGet, "/Patient/A", nil, "Authorization: Bearer "+tok)
		expectOutcome(t, r, http.StatusUnauthorized)
		if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate = %q", tok, r.header.Get("WWW-Authenticate"))
		}
	}
	// The CapabilityStatement is public and names the authorization server.
	r = e.do(http.MethodGet, "/metadata", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "oauth-uris") || !strings.Contains(string(r.body), "SMART-on-FHIR") {
		t.Errorf("metadata lacks rest.security: %.300s", r.body)
	}
	// Scopes without resource access: 403.
	expectOutcome(t, e.do(http.MethodGet, "/Patient/A", nil, "Authorization: Bearer nothing"), http.StatusForbidden)
	// patient/ scopes without a launch patient: 403.
	expectOutcome(t, e.do(http.MethodGet, "/Patient/A", nil, "Authorization: Bearer no-ctx"), http.StatusForbidden)
	expect(t, e.do(http.MethodGet, "/Patient/B", nil, "Authorization: Bearer admin"), http.StatusOK)
}

func TestPatientScopesConfineEveryPath(t *testing.T) {
	e := leakEnv(t)
	for _, tok := range []string{"a", "a-v1"} {
		auth := "Authorization: Bearer " + tok
		get := func(path string) response { return e.do(http.MethodGet, path, nil, auth) }
		// Reads: A's own data and shared, non-patient data; B's reads as absent.
		for _, p := range []string{"/Patient/A", "/Observation/laboratoryA", "/Practitioner/doc", "/Medication/med", "/Observation/laboratoryA/_history/1"} {
			expect(t, get(p), http.StatusOK)
		}
		for _, p := range []string{"/Patient/B", "/Observation/laboratoryB", "/Encounter/encB", "/Observation/laboratoryB/_history/1", "/Patient/B/$everything"} {
			expectOutcome(t, get(p), http.StatusNotFound)
		}
		searches := map[string]int{
			"/Observation":                   2,
			"/Observation?subject=Patient/B": 0,
			"/Patient":                       1,
			"/Patient?_id=B":                 0,
			"/Observation?subject:Patient.family=FamB":                                                              0,
			"/Observation?subject:Patient.family=FamA":                                                              2,
			"/Observation?_include=Observation:subject":                                                             3,
			"/Patient?_revinclude=Observation:subject":                                                              3,
			"/Practitioner?_revinclude=Observation:performer":                                                       3,
			"/Medication?_revinclude=MedicationRequest:medication&_revinclude:iterate=Patient:general-practitioner": 0,
			"/Encounter?_revinclude=Observation:encounter&_include:iterate=Observation:subject":                     0,
			"/Observation/_history":                                                                                 2,
			"/_history":                                                                                             0,
			"/Patient/A/$everything":                                                                                0,
		}
		for path, min := range searches {
			r := get(path)
			expect(t, r, http.StatusOK)
			got := ids(t, r)
			noneOfB(t, tok+" "+path, got)
			if len(got) < min {
				t.Errorf("%s %s: %d entries, want at least %d: %v", tok, path, len(got), min, got)
			}
		}
		// Another patient's compartment and _has are refused outright.
		expectOutcome(t, get("/Patient/B/Observation"), http.StatusForbidden)
		expectOutcome(t, get("/Patient?_has:Observation:subject:category=laboratory"), http.StatusForbidden)
		// Instance history of B's resource shows nothing of it.
		r := get("/Observation/laboratoryB/_history")
		noneOfB(t, tok+" instance history", ids(t, r))
		// A batch reaches nothing of B either.
		batch := `{"resourceType":"Bundle","type":"batch","entry":[
			{"request":{"method":"GET","url":"Patient/B"}},
			{"request":{"method":"GET","url":"Observation?subject=Patient/B"}},
			{"request":{"method":"GET","url":"Observation/vital-signsB"}},
			{"request":{"method":"GET","url":"Observation?_include=Observation:subject"}}]}`
		r = e.do(http.MethodPost, "", []byte(batch), auth, "Content-Type: application/fhir+json")
		expect(t, r, http.StatusOK)
		// Stored resources come back as stored (`"id": "B"`); the outcomes
		// may repeat what was asked for, which is no leak.
		if strings.Contains(string(r.body), `"id": "B"`) || strings.Contains(string(r.body), `"id": "laboratoryB"`) || strings.Contains(string(r.body), `"id": "vital-signsB"`) {
			t.Errorf("%s batch leaked B: %s", tok, r.body)
		}
		// Cross-patient operations need unconfined access.
		expectOutcome(t, e.do(http.MethodGet, "/$export", nil, auth, "Prefer: respond-async"), http.StatusForbidden)
		expectOutcome(t, get("/Observation/$meta"), http.StatusForbidden)
	}
}

func TestEverythingOnlyOwnCompartment(t *testing.T) {
	e := leakEnv(t)
	r := e.do(http.MethodGet, "/Patient/A/$everything", nil, "Authorization: Bearer a")
	expect(t, r, http.StatusOK)
	got := ids(t, r)
	noneOfB(t, "$everything", got)
	want := []string{"Patient/A", "Observation/laboratoryA", "Observation/vital-signsA", "Encounter/encA", "MedicationRequest/mrA"}
	for _, w := range want {
		if !contains(got, w) {
			t.Errorf("$everything lacks %s: %v", w, got)
		}
	}
	// With Observation scopes only, $everything leaves other types out.
	r = e.do(http.MethodGet, "/Patient/A/$everything", nil, "Authorization: Bearer a-obs")
	expectOutcome(t, r, http.StatusForbidden) // the Patient itself is not readable
}

func TestGranularScopes(t *testing.T) {
	e := leakEnv(t)
	auth := "Authorization: Bearer a-lab"
	r := e.do(http.MethodGet, "/Observation", nil, auth)
	expect(t, r, http.StatusOK)
	if got := ids(t, r); len(got) != 1 || got[0] != "Observation/laboratoryA" {
		t.Errorf("granular search = %v, want only Observation/laboratoryA", got)
	}
	expect(t, e.do(http.MethodGet, "/Observation/laboratoryA", nil, auth), http.StatusOK)
	expectOutcome(t, e.do(http.MethodGet, "/Observation/vital-signsA", nil, auth), http.StatusNotFound)
	expectOutcome(t, e.do(http.MethodGet, "/Encounter/encA", nil, auth), http.StatusForbidden)
	r = e.do(http.MethodGet, "/Patient?_revinclude=Observation:subject", nil, auth)
	if got := ids(t, r); contains(got, "Observation/vital-signsA") {
		t.Errorf("revinclude leaked a non-laboratory Observation: %v", got)
	}
}

func TestPatientScopedWrites(t *testing.T) {
	e := leakEnv(t)
	obs := func(id, patient string) []byte {
		idField := ""
		if id != "" {
			idField = `"id":"` + id + `",`
		}
		return []byte(`{"resourceType":"Observation",` + idField + `"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}}`)
	}
	ct := "Content-Type: application/fhir+json"
	w := "Authorization: Bearer a-write"
	expect(t, e.do(http.MethodPut, "/Observation/newA", obs("newA", "A"), w, ct), http.StatusCreated)
	expectOutcome(t, e.do(http.MethodPut, "/Observation/newB", obs("newB", "B"), w, ct), http.StatusForbidden)
	expectOutcome(t, e.do(http.MethodPost, "/Observation", obs("", "B"), w, ct), http.StatusForbidden)
	// Moving A's resource to B, or touching B's, is refused.
	expectOutcome(t, e.do(http.MethodPut, "/Observation/newA", obs("newA", "B"), w, ct), http.StatusForbidden)
	expectOutcome(t, e.do(http.MethodDelete, "/Observation/laboratoryB", nil, w), http.StatusForbidden)
	// Read-only scopes cannot write.
	expectOutcome(t, e.do(http.MethodPut, "/Observation/newA", obs("newA", "A"), "Authorization: Bearer a", ct), http.StatusForbidden)
	// A transaction with one forbidden entry stores nothing.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:1","resource":` + string(obs("", "A")) + `,"request":{"method":"POST","url":"Observation"}},
		{"fullUrl":"urn:uuid:2","resource":` + string(obs("", "B")) + `,"request":{"method":"POST","url":"Observation"}}]}`
	expectOutcome(t, e.do(http.MethodPost, "", []byte(tx), w, ct), http.StatusForbidden)
	// The same in a run of creates long enough to be loaded with COPY: the
	// outcome names the forbidden entry.
	var entries []string
	for i := range 20 {
		patient := "A"
		if i == 13 {
			patient = "B"
		}
		entries = append(entries, `{"resource":`+string(obs("", patient))+`,"request":{"method":"POST","url":"Observation"}}`)
	}
	r := e.do(http.MethodPost, "", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(entries, ",")+`]}`), w, ct)
	expectOutcome(t, r, http.StatusForbidden)
	if !strings.Contains(string(r.body), "Bundle.entry[13]") {
		t.Errorf("the refusal does not name entry 13: %s", r.body)
	}
	r = e.do(http.MethodGet, "/Observation?_summary=count", nil, "Authorization: Bearer admin")
	if n := r.json(t)["total"]; n != float64(5) {
		t.Errorf("after the refused transactions there are %v Observations, want 5", n)
	}
	// Unconfined tokens may export; only the client that started an
	// export sees its status (the files and cancel check the same).
	r = e.do(http.MethodGet, "/$export", nil, "Authorization: Bearer admin", "Prefer: respond-async")
	if r.status != http.StatusAccepted {
		t.Fatalf("admin $export: %d %s", r.status, r.body)
	}
	status := strings.TrimPrefix(r.header.Get("Content-Location"), e.url)
	if got := e.do(http.MethodGet, status, nil, "Authorization: Bearer admin"); got.status != http.StatusAccepted && got.status != http.StatusOK {
		t.Errorf("the exporting client's status request: %d %s", got.status, got.body)
	}
	expectOutcome(t, e.do(http.MethodGet, status, nil, "Authorization: Bearer other"), http.StatusNotFound)
	expectOutcome(t, e.do(http.MethodDelete, status, nil, "Authorization: Bearer other"), http.StatusNotFound)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRequireScopes(t *testing.T) {
	g := func(patient string, scopes ...string) *access.Grant {
		return &access.Grant{Scopes: scopes, Patient: patient, Expiry: time.Now().Add(time.Hour)}
	}
	toks := tokens{
		"read":  g("", "user/ImagingStudy.rs"),
		"write": g("", "system/ImagingStudy.cruds"),
		"pat":   g("A", "patient/*.rs"),
		"other": g("", "user/Observation.cruds"),
	}
	h := server.RequireScopes(toks, "test", "ImagingStudy", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if access.FromContext(r.Context()) == nil {
			t.Error("no grant in the request context")
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, c := range []struct {
		method, token string
		want          int
	}{
		{"GET", "", 401}, {"GET", "bogus", 401},
		{"GET", "read", 418}, {"POST", "read", 403},
		{"GET", "write", 418}, {"POST", "write", 418},
		{"GET", "pat", 403}, {"GET", "other", 403},
	} {
		req, _ := http.NewRequest(c.method, ts.URL+"/studies", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s with %q: %d, want %d", c.method, c.token, resp.StatusCode, c.want)
		}
		if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a Bearer challenge")
		}
	}
}

// TestInstanceHistoryAnswersLikeRead: the history of a resource the grant
// cannot see is a 404, as a read of it is; an empty 200 Bundle would tell a
// patient-scoped token which ids exist.
func TestInstanceHistoryAnswersLikeRead(t *testing.T) {
	e := leakEnv(t)
	for _, tok := range []string{"a", "a-v1"} {
		auth := "Authorization: Bearer " + tok
		get := func(path string) response { return e.do(http.MethodGet, path, nil, auth) }
		for _, p := range []string{"/Observation/laboratoryB", "/Patient/B", "/Encounter/encB", "/Patient/nobody"} {
			expectOutcome(t, get(p), http.StatusNotFound)
			expectOutcome(t, get(p+"/_history"), http.StatusNotFound)
		}
		r := get("/Observation/laboratoryA/_history")
		expect(t, r, http.StatusOK)
		if got := ids(t, r); len(got) != 1 || got[0] != "Observation/laboratoryA" {
			t.Errorf("%s: own instance history: %v", tok, got)
		}
		expect(t, get("/Medication/med/_history"), http.StatusOK) // no patient's data
	}
	// An unconfined grant sees every instance history.
	expect(t, e.do(http.MethodGet, "/Observation/laboratoryB/_history", nil, "Authorization: Bearer admin"), http.StatusOK)
}
