package guard

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func corsHandler(t *testing.T, origins ...string) http.Handler {
	t.Helper()
	c, err := NewCORS(CORSConfig{
		AllowedOrigins: origins,
		Match:          PathPrefixes("/fhir/metadata", "/fhir/.well-known/", "/auth/token"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusMethodNotAllowed) // the inner handler, reached only by non-CORS requests
			return
		}
		w.Write([]byte("{}"))
	}))
}

func cors(h http.Handler, method, path, origin string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestCORSList(t *testing.T) {
	h := corsHandler(t, "https://app.example.org", "http://localhost:3000")
	pre := []string{"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type"}

	w := cors(h, http.MethodOptions, "/auth/token", "https://app.example.org", pre...)
	if w.Code != http.StatusNoContent {
		t.Fatalf("preflight: %d", w.Code)
	}
	hd := w.Header()
	if hd.Get("Access-Control-Allow-Origin") != "https://app.example.org" ||
		!strings.Contains(hd.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(hd.Get("Access-Control-Allow-Headers"), "If-None-Exist") ||
		hd.Get("Access-Control-Max-Age") != "600" || !slices.Contains(hd.Values("Vary"), "Origin") ||
		hd.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight headers %v", hd)
	}

	w = cors(h, http.MethodOptions, "/fhir/.well-known/smart-configuration", "https://evil.example", pre...)
	if w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("denied preflight: %d %v", w.Code, w.Header())
	}

	w = cors(h, http.MethodGet, "/fhir/metadata", "http://localhost:3000")
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		!strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "ETag") ||
		!strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "Location") {
		t.Errorf("simple request: %d %v", w.Code, w.Header())
	}

	// Never reflect an origin that is not listed.
	for _, o := range []string{"https://evil.example", "https://app.example.org.evil.example", "null", "http://app.example.org"} {
		w = cors(h, http.MethodGet, "/fhir/metadata", o)
		if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("origin %s: %d %v", o, w.Code, w.Header())
		}
	}
	if w = cors(h, http.MethodGet, "/fhir/metadata", ""); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no Origin: %v", w.Header())
	}
	// Outside the configured paths, nothing changes, preflights included.
	w = cors(h, http.MethodOptions, "/fhir/Patient", "https://app.example.org", pre...)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unmatched path: %d %v", w.Code, w.Header())
	}
	// A plain OPTIONS (capabilities) is not a preflight.
	if w = cors(h, http.MethodOptions, "/fhir/metadata", "https://app.example.org"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("plain OPTIONS: %d", w.Code)
	}
}

func TestCORSAny(t *testing.T) {
	h := corsHandler(t, "*")
	w := cors(h, http.MethodGet, "/fhir/metadata", "https://anyone.example")
	if w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("any origin: %v", w.Header())
	}
	w = cors(h, http.MethodOptions, "/auth/token", "https://anyone.example", "Access-Control-Request-Method", "POST")
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("any-origin preflight: %d %v", w.Code, w.Header())
	}
}

func TestCORSDisabledAndInvalid(t *testing.T) {
	h := corsHandler(t)
	if w := cors(h, http.MethodGet, "/fhir/metadata", "https://app.example.org"); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no origins configured: %v", w.Header())
	}
	for _, bad := range [][]string{
		{"*", "https://a.example"},
		{"https://a.example/"},
		{"https://a.example/app"},
		{"a.example"},
		{"ftp://a.example"},
		{"https://a.example?x=1"},
	} {
		if _, err := NewCORS(CORSConfig{AllowedOrigins: bad}); err == nil {
			t.Errorf("NewCORS(%q) accepted", bad)
		}
	}
	if got := ParseOrigins(" https://a.example, ,http://localhost:3000 "); !slices.Equal(got, []string{"https://a.example", "http://localhost:3000"}) {
		t.Errorf("ParseOrigins: %q", got)
	}
}
