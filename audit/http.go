package audit

import (
	"net"
	"net/http"
	"time"
)

// Classify says what one request of a non-FHIR HTTP API is: its subtype
// and action, and the entities its URL names. The handler may add more
// through Note.
type Classify func(r *http.Request) (subtype string, action Action, entities []string, query string)

// HTTP wraps h (a non-FHIR API: DICOMweb) so each request is recorded once
// answered. The token check and the handler inside fill in who and what
// through Note(r.Context()); addr gives the client's address (nil: the
// peer's).
func HTTP(rec Recorder, kind Kind, classify Classify, addr func(*http.Request) string, h http.Handler) http.Handler {
	if rec == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			h.ServeHTTP(w, r)
			return
		}
		e := &Event{Kind: kind}
		e.Subtype, e.Action, e.Entities, e.Query = classify(r)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(WithNote(r.Context(), e)))
		e.Status = sw.status
		e.Outcome = OutcomeOfStatus(sw.status)
		e.When = time.Now()
		if e.Agent.Address == "" {
			if addr != nil {
				e.Agent.Address = addr(r)
			} else {
				e.Agent.Address = RemoteHost(r.RemoteAddr)
			}
		}
		rec.Record(*e)
	})
}

// RemoteHost is the host part of a remote address ("10.0.0.7:51234").
func RemoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// deadlines of streamed DICOMweb responses).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through to the underlying writer.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
