package fhir_test

import (
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

// Issue 11, finding 5: decimals beyond what PostgreSQL's numeric holds
// passed validation and failed the write with a 500 (SQLSTATE 22003).
func TestParseDecimalRange(t *testing.T) {
	p := mustNewParser(t)
	obs := func(v string) []byte {
		return []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":` + v + `}}`)
	}
	for _, v := range []string{"1e1000", "-1E+1000", "1e-1000", "1.5e0", "0.000001", "123456789012345678901234567890", "1e0001000"} {
		if _, err := p.Parse(obs(v), ""); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"1e131072", "1e-16384", "1e1001", "-1e-1001", "0e-99999", "1E+99999999999999999999", "1e00000000000000000001001"} {
		_, err := p.Parse(obs(v), "")
		fe, ok := err.(*fhir.Error)
		if !ok || fe.Kind != fhir.Unprocessable {
			t.Errorf("%s: want a 422, got %v", v, err)
			continue
		}
		is := fe.Issues[0]
		if strings.Join(is.Expression, ",") != "Observation.valueQuantity.value" || !strings.Contains(is.Diagnostics, "out of range") {
			t.Errorf("%s: issue %+v", v, is)
		}
	}
	// The same rule holds in envelopes checked without validation.
	if err := fhir.CheckJSON([]byte(`{"resourceType":"Bundle","x":1e-16384}`)); err == nil {
		t.Error("CheckJSON accepted 1e-16384")
	}
}
