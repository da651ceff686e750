package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/smart/access"
)

// TestBoundaryRejectsUnstorableText: NUL bytes and invalid UTF-8 reached
// PostgreSQL and came back as 500 (SQLSTATE 22021); Handler now refuses them
// with a 400 OperationOutcome, for the FHIR routes and the mounts alike.
func TestBoundaryRejectsUnstorableText(t *testing.T) {
	mounted := false
	e := newEnv(t, func(c *server.Config) {
		c.Mounts = append(c.Mounts, server.Mount{Prefix: "/dicomweb", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mounted = true
			w.WriteHeader(http.StatusInternalServerError)
		})})
	})
	root := strings.TrimSuffix(e.url, "/fhir")
	cases := []struct {
		name, method, path string
		body               []byte
		hdr                []string
	}{
		{"search NUL", "GET", "/Patient?name=%00", nil, nil},
		{"search invalid UTF-8 _id", "GET", "/Patient?_id=%FF", nil, nil},
		{"search overlong NUL", "GET", "/Patient?identifier=%C0%80", nil, nil},
		{"POST _search form", "POST", "/Patient/_search", []byte("name=a%00"), []string{"Content-Type: application/x-www-form-urlencoded"}},
		{"If-None-Exist", "POST", "/Patient", []byte(`{"resourceType":"Patient"}`), []string{"If-None-Exist: identifier=\xff"}},
		{"conditional delete", "DELETE", "/Patient?name=%00", nil, nil},
		{"read id", "GET", "/Patient/a%00", nil, nil},
		{"mount QIDO", "GET", root + "/dicomweb/studies?PatientID=%00", nil, nil},
		{"mount path", "GET", root + "/dicomweb/studies/%C0%80", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body, c.hdr...)
			m := expectOutcome(t, r, http.StatusBadRequest)
			if code := m["issue"].([]any)[0].(map[string]any)["code"]; code != "invalid" {
				t.Errorf("issue code %v", code)
			}
		})
	}
	if mounted {
		t.Fatal("a mounted handler was reached")
	}
	// Valid non-ASCII text still goes through.
	expect(t, e.do("GET", "/Patient?name=Ren%C3%A9e", nil), http.StatusOK)
}

func TestMetricsAccess(t *testing.T) {
	toks := tokens{
		"system": {ClientID: "monitor", Scopes: []string{"system/*.rs"}, Expiry: time.Now().Add(time.Hour)},
		"v1":     {ClientID: "monitor", Scopes: []string{"system/*.read"}, Expiry: time.Now().Add(time.Hour)},
		"user":   {ClientID: "app", Scopes: []string{"user/*.cruds"}, Expiry: time.Now().Add(time.Hour)},
		"narrow": {ClientID: "app", Scopes: []string{"system/*.rs?_tag=x"}, Expiry: time.Now().Add(time.Hour)},
	}
	auth := func(c *server.Config) { c.Verifier = toks }
	metrics := func(e *env, hdr ...string) int {
		return e.do("GET", strings.TrimSuffix(e.url, "/fhir")+"/metrics", nil, hdr...).status
	}

	e := newEnv(t, auth) // the default under a Verifier: private
	for hdr, want := range map[string]int{
		"":              http.StatusUnauthorized,
		"Bearer bogus":  http.StatusUnauthorized,
		"Bearer user":   http.StatusForbidden,
		"Bearer narrow": http.StatusForbidden,
		"Bearer system": http.StatusOK,
		"Bearer v1":     http.StatusOK,
	} {
		var h []string
		if hdr != "" {
			h = []string{"Authorization: " + hdr}
		}
		if got := metrics(e, h...); got != want {
			t.Errorf("/metrics with %q: %d, want %d", hdr, got, want)
		}
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		expect(t, e.do("GET", strings.TrimSuffix(e.url, "/fhir")+probe, nil), http.StatusOK)
	}
	if got := metrics(newEnv(t, auth, func(c *server.Config) { c.Metrics = server.MetricsPublic })); got != http.StatusOK {
		t.Errorf("public /metrics: %d", got)
	}
	if got := metrics(newEnv(t, auth, func(c *server.Config) { c.Metrics = server.MetricsOff })); got != http.StatusNotFound {
		t.Errorf("/metrics off: %d", got)
	}
	// Without authorisation there is nothing to check.
	if got := metrics(newEnv(t)); got != http.StatusOK {
		t.Errorf("auth none /metrics: %d", got)
	}
}

var _ access.Verifier = tokens{}

// TestUpdateIfMatchStar: If-Match: * was a 400; it means "the resource must
// exist" (RFC 9110 §13.1.1): the write goes on when it does, else 412.
func TestUpdateIfMatchStar(t *testing.T) {
	e := newEnv(t)
	pat := func(gender string) []byte {
		return []byte(`{"resourceType":"Patient","id":"star","gender":"` + gender + `","identifier":[{"system":"urn:s","value":"star"}]}`)
	}
	star := "If-Match: *"
	// Absent: no update-as-create.
	expectOutcome(t, e.do("PUT", "/Patient/star", pat("male"), star), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("DELETE", "/Patient/star", nil, star), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("PUT", "/Patient?identifier=urn:s|star", pat("male"), star), http.StatusPreconditionFailed)
	expect(t, e.do("GET", "/Patient/star", nil), http.StatusNotFound)

	expect(t, e.do("PUT", "/Patient/star", pat("male")), http.StatusCreated)
	r := e.do("PUT", "/Patient/star", pat("female"), star)
	expect(t, r, http.StatusOK)
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("ETag %q", r.header.Get("ETag"))
	}
	r = e.do("PUT", "/Patient?identifier=urn:s|star", pat("other"), star)
	expect(t, r, http.StatusOK)
	if r.header.Get("ETag") != `W/"3"` {
		t.Fatalf("conditional ETag %q", r.header.Get("ETag"))
	}
	expect(t, e.do("DELETE", "/Patient/star", nil, star), http.StatusNoContent)
	// Deleted: no current version any more.
	expectOutcome(t, e.do("DELETE", "/Patient/star", nil, star), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("PUT", "/Patient/star", pat("male"), star), http.StatusPreconditionFailed)
	// Versions still work, and garbage is still a 400.
	expect(t, e.do("PUT", "/Patient/star", pat("male"), `If-Match: W/"4"`), http.StatusCreated) // re-created
	expectOutcome(t, e.do("PUT", "/Patient/star", pat("male"), "If-Match: **"), http.StatusBadRequest)
}

// TestIfMatchStarInPatchAndBundles: If-Match: * (request.ifMatch "*" in a
// Bundle) means "only if it exists" for PATCH and for transaction entries
// too: 412 when the resource is absent or deleted, the write otherwise.
func TestIfMatchStarInPatchAndBundles(t *testing.T) {
	e := newEnv(t)
	star := "If-Match: *"
	patchCT := "Content-Type: application/json-patch+json"
	ops := []byte(`[{"op":"add","path":"/active","value":true}]`)
	expectOutcome(t, e.do("PATCH", "/Patient/pst", ops, patchCT, star), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("PATCH", "/Patient?identifier=urn:s|pst", ops, patchCT, star), http.StatusPreconditionFailed)
	expect(t, e.do("PUT", "/Patient/pst", []byte(`{"resourceType":"Patient","id":"pst","identifier":[{"system":"urn:s","value":"pst"}]}`)), http.StatusCreated)
	r := e.do("PATCH", "/Patient/pst", ops, patchCT, star)
	expect(t, r, http.StatusOK)
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("ETag %q", r.header.Get("ETag"))
	}
	expect(t, e.do("PATCH", "/Patient?identifier=urn:s|pst", []byte(`[{"op":"add","path":"/gender","value":"other"}]`), patchCT, star), http.StatusOK)

	bundle := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	put := func(id string) string {
		return `{"resource":{"resourceType":"Patient","id":"` + id + `"},"request":{"method":"PUT","url":"Patient/` + id + `","ifMatch":"*"}}`
	}
	del := func(id string) string {
		return `{"request":{"method":"DELETE","url":"Patient/` + id + `","ifMatch":"*"}}`
	}
	expectOutcome(t, e.do("POST", "", bundle(put("absent"))), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("POST", "", bundle(del("absent"))), http.StatusPreconditionFailed)
	expect(t, e.do("GET", "/Patient/absent", nil), http.StatusNotFound)
	expect(t, e.do("POST", "", bundle(put("pst"))), http.StatusOK)
	expect(t, e.do("POST", "", bundle(del("pst"))), http.StatusOK)
	expect(t, e.do("GET", "/Patient/pst", nil), http.StatusGone)
	expectOutcome(t, e.do("POST", "", bundle(put("pst"))), http.StatusPreconditionFailed)
}
