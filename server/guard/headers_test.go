package guard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func get(t *testing.T, c *http.Client, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func pages() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/fhir/Patient/1", okHandler)
	mux.HandleFunc("/auth/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "<form></form>")
	})
	mux.HandleFunc("/sniffed", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<!DOCTYPE html><html><body>hi</body></html>")
	})
	mux.HandleFunc("/own-csp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		io.WriteString(w, "<p>x</p>")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		if err := http.NewResponseController(w).Flush(); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	return mux
}

func TestSecurityHeaders(t *testing.T) {
	srv := httptest.NewServer(Headers{}.Wrap(pages()))
	defer srv.Close()
	c := srv.Client()

	for _, path := range []string{"/fhir/Patient/1", "/auth/login", "/sniffed", "/nope", "/stream"} {
		resp := get(t, c, srv.URL+path)
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS over plain http", path)
		}
	}
	if resp := get(t, c, srv.URL+"/stream"); resp.StatusCode != 200 {
		t.Errorf("flush through the wrapper: %d", resp.StatusCode)
	}
	json := get(t, c, srv.URL+"/fhir/Patient/1")
	if json.Header.Get("Content-Security-Policy") != "" || json.Header.Get("X-Frame-Options") != "" {
		t.Errorf("CSP on JSON: %v", json.Header)
	}
	for _, path := range []string{"/auth/login", "/sniffed"} {
		resp := get(t, c, srv.URL+path)
		if resp.Header.Get("Content-Security-Policy") != DefaultCSP || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: no CSP on HTML: %v", path, resp.Header)
		}
	}
	if got := get(t, c, srv.URL+"/own-csp").Header.Get("Content-Security-Policy"); got != "default-src 'none'" {
		t.Errorf("handler's own CSP replaced: %q", got)
	}
	// Behind a proxy, X-Forwarded-Proto counts only when trusted.
	if get(t, c, srv.URL+"/fhir/Patient/1", "X-Forwarded-Proto", "https").Header.Get("Strict-Transport-Security") != "" {
		t.Error("untrusted X-Forwarded-Proto gave HSTS")
	}
	proxied := httptest.NewServer(Headers{TrustForwardedProto: true, CSP: "default-src 'self'"}.Wrap(pages()))
	defer proxied.Close()
	if get(t, c, proxied.URL+"/fhir/Patient/1", "X-Forwarded-Proto", "https").Header.Get("Strict-Transport-Security") == "" {
		t.Error("trusted X-Forwarded-Proto: no HSTS")
	}
	if got := get(t, c, proxied.URL+"/auth/login").Header.Get("Content-Security-Policy"); got != "default-src 'self'" {
		t.Errorf("configured CSP: %q", got)
	}
}

func TestHSTSUnderTLS(t *testing.T) {
	srv := httptest.NewTLSServer(Headers{}.Wrap(pages()))
	defer srv.Close()
	resp := get(t, srv.Client(), srv.URL+"/fhir/Patient/1")
	if resp.TLS == nil {
		t.Fatal("not TLS")
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=63072000; includeSubDomains" {
		t.Errorf("HSTS %q", got)
	}
}
