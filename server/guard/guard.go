// Package guard holds the HTTP middleware that protects every Ember
// endpoint from abuse and browsers from misuse: per-client and per-IP rate
// limits, security headers, and CORS. Plain net/http; depends on nothing in
// Ember.
package guard

import (
	"net/http"
	"strconv"
	"strings"
)

// writeOutcome answers status with a FHIR OperationOutcome of one issue.
func writeOutcome(w http.ResponseWriter, status int, code, diagnostics string) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":`)
	b.WriteString(strconv.Quote(code))
	b.WriteString(`,"diagnostics":`)
	b.WriteString(strconv.Quote(diagnostics))
	b.WriteString(`}]}`)
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}
