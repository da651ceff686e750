package guard

import (
	"bufio"
	"errors"
	"mime"
	"net"
	"net/http"
	"strings"
)

// DefaultCSP is the Content-Security-Policy of HTML pages (login, consent):
// only Ember's own scripts, styles and images, never framed (clickjacking).
// form-action is left out on purpose: browsers apply it to the redirect to
// the SMART app after the login form, which is on another origin.
const DefaultCSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; style-src 'self' 'unsafe-inline'"

// Headers sets security headers on every response. The zero value is ready
// to use.
type Headers struct {
	// CSP replaces DefaultCSP on HTML responses.
	CSP string
	// TrustForwardedProto treats "X-Forwarded-Proto: https" as TLS for
	// HSTS; set it only behind a TLS-terminating proxy that sets it.
	TrustForwardedProto bool
}

// Wrap sets X-Content-Type-Options and Referrer-Policy on every response,
// Strict-Transport-Security on requests over TLS, and a CSP and
// X-Frame-Options on HTML responses.
func (h Headers) Wrap(next http.Handler) http.Handler {
	csp := h.CSP
	if csp == "" {
		csp = DefaultCSP
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil || (h.TrustForwardedProto && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")) {
			hd.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(&htmlWriter{ResponseWriter: w, csp: csp}, r)
	})
}

// htmlWriter adds the HTML-only headers once the handler has chosen its
// Content-Type, i.e. when the header is written.
type htmlWriter struct {
	http.ResponseWriter
	csp     string
	decided bool
}

func (w *htmlWriter) decide(body []byte) {
	if w.decided {
		return
	}
	w.decided = true
	h := w.ResponseWriter.Header()
	ct, set := h["Content-Type"]
	if !set && len(body) > 0 && h.Get("Content-Encoding") == "" {
		// net/http would sniff it after us: sniff now so that HTML it
		// detects gets the CSP too.
		ct = []string{http.DetectContentType(body)}
		h.Set("Content-Type", ct[0])
	}
	if len(ct) == 0 {
		return
	}
	mt, _, _ := mime.ParseMediaType(ct[0])
	if mt == "text/html" || mt == "application/xhtml+xml" {
		if h.Get("Content-Security-Policy") == "" {
			h.Set("Content-Security-Policy", w.csp)
		}
		h.Set("X-Frame-Options", "DENY")
	}
}

func (w *htmlWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx informational headers come before the real ones
		w.decide(nil)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *htmlWriter) Write(p []byte) (int, error) {
	w.decide(p)
	return w.ResponseWriter.Write(p)
}

// Flush keeps streaming handlers (bulk export status, $everything) working.
func (w *htmlWriter) Flush() {
	w.decide(nil)
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes through for protocol upgrades.
func (w *htmlWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return nil, nil, errors.New("guard: response writer cannot hijack")
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *htmlWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
