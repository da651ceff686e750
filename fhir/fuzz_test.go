package fhir

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// FuzzParse drives arbitrary bytes through the write-path parser. It must
// never panic; a rejection must be a 4xx *Error; an accepted resource must
// stamp to valid JSON that parses again to the same type.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Patient","id":"a","name":[{"family":"X","given":["Y"]}],"birthDate":"1970-01-01"}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":1.5E2,"unit":"/min"}}`,
		`{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://x","valueString":"y"}]},"birthDate":"2000"}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		`{"resourceType":"Patient","meta":{"versionId":"3","tag":[{"code":"x"}]},"contained":[{"resourceType":"Organization","id":"o"}]}`,
		`{"resourceType":"Patient","name":[{"given":["a",null]}],"_name":[null]}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}`,
		`{"resourceType":"Patient","name":[{"family":"\u00e9\ud83d\ude00"}]}`,
		`[1,2]`, `{`, `{"resourceType":1}`, "", `{"a":-0.0e-0}`,
	} {
		f.Add([]byte(seed))
	}
	p, err := NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := p.Parse(data, "")
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || (fe.Kind != BadRequest && fe.Kind != Unprocessable) || len(fe.Issues) == 0 {
				t.Fatalf("rejection is not a 4xx Error: %#v", err)
			}
			if !json.Valid(fe.Outcome()) {
				t.Fatalf("outcome is not JSON: %s", fe.Outcome())
			}
			return
		}
		stamped := r.Stamp("x1", 7, time.Unix(1700000000, 123000).UTC())
		if !json.Valid(stamped) {
			t.Fatalf("stamped output is not JSON: %s", stamped)
		}
		again, err := p.Parse(stamped, r.Type())
		if err != nil {
			t.Fatalf("stamped output no longer parses: %v\n%s", err, stamped)
		}
		if again.ID() != "x1" {
			t.Fatalf("stamped id %q", again.ID())
		}
	})
}
