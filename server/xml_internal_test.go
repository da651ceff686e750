package server

import (
	"net/http/httptest"
	"testing"
)

// TestNegotiateJSONAllocatesNothing: every JSON request negotiates, and the
// common forms (no Accept, */*, one JSON type, no _format) parse nothing.
func TestNegotiateJSONAllocatesNothing(t *testing.T) {
	for _, accept := range []string{"", "*/*", "application/fhir+json", "application/json"} {
		r := httptest.NewRequest("GET", "/fhir/Patient/1?_count=10", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if f, err := negotiateFormat(r); f != formatJSON || err != nil {
				t.Fatalf("Accept %q: %v %v", accept, f, err)
			}
		})
		if allocs != 0 {
			t.Errorf("Accept %q: %v allocations", accept, allocs)
		}
	}
}
