package validate

import (
	"strings"
	"testing"
)

// The cases of issue 11 (finding 12) and R4's primitive regexes where
// google/fhir, the validator's first reference, departs from them.
func TestR4RulesBeyondGoogle(t *testing.T) {
	for _, c := range []struct {
		name, body string
		expr, diag string // the expected issue; "" for a valid resource
	}{
		{"year 0000", `{"resourceType":"Patient","birthDate":"0000-01-01"}`, "Patient.birthDate", "invalid date"},
		{"year 0001", `{"resourceType":"Patient","birthDate":"0001-01-01"}`, "", ""},
		{"dateTime year 0000", `{"resourceType":"Patient","deceasedDateTime":"0000-01-01T00:00:00Z"}`, "Patient.deceasedDateTime", "invalid dateTime"},
		{"instant year 0000", `{"resourceType":"Patient","meta":{"lastUpdated":"0000-01-01T00:00:00Z"}}`, "Patient.meta.lastUpdated", "invalid instant"},

		{"nested contained (dom-2)", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a","contained":[{"resourceType":"Patient","id":"b"}]}]}`,
			"Patient.contained[0].contained", "dom-2"},
		{"contained in a contained Bundle's entry is not dom-2", `{"resourceType":"Patient","contained":[{"resourceType":"Bundle","id":"a","type":"collection","entry":[{"resource":{"resourceType":"Patient","contained":[{"resourceType":"Basic","id":"b","code":{"text":"x"}}]}}]}]}`, "", ""},
		{"duplicate contained ids", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a"},{"resourceType":"Basic","code":{"text":"x"}},{"resourceType":"Patient","id":"a"}]}`,
			"Patient.contained[2].id", `duplicate contained resource id "a": contained[0]`},
		{"duplicate contained ids, one escaped", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a-b"},{"id":"a\u002db","resourceType":"Patient"}]}`,
			"Patient.contained[1].id", `duplicate contained resource id "a-b": contained[0]`},
		{"distinct contained ids", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a"},{"resourceType":"Patient","id":"b"}]}`, "", ""},
		{"same id in two Bundle entries' contained", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a"}]}},{"resource":{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"a"}]}}]}`, "", ""},

		// base64Binary: (\s*([0-9a-zA-Z\+/=]){4}\s*)+
		{"base64 plain", `{"resourceType":"Binary","contentType":"text/plain","data":"QUJDRA=="}`, "", ""},
		{"base64 MIME lines", `{"resourceType":"Binary","contentType":"text/plain","data":"QUJD\r\nREVG\nR0g=\n"}`, "", ""},
		{"base64 spaced groups", `{"resourceType":"Binary","contentType":"text/plain","data":" QUJD REVG "}`, "", ""},
		{"base64 space inside a group", `{"resourceType":"Binary","contentType":"text/plain","data":"QU JD"}`, "Binary.data", "whitespace may only separate groups of 4"},
		{"base64 bad character", `{"resourceType":"Binary","contentType":"text/plain","data":"QUJ*"}`, "Binary.data", "unexpected character"},
		{"base64 only whitespace", `{"resourceType":"Binary","contentType":"text/plain","data":"  "}`, "Binary.data", "groups of 4"},
		{"base64 bad padding", `{"resourceType":"Binary","contentType":"text/plain","data":"Q=JD"}`, "Binary.data", "padded"},

		// uri: \S*
		{"uri with a space", `{"resourceType":"Patient","implicitRules":"a b"}`, "Patient.implicitRules", "invalid uri"},
		{"uri relative", `{"resourceType":"Patient","implicitRules":"a/b"}`, "", ""},

		// integer ranges (32 bits; positiveInt from 1, unsignedInt from 0)
		{"decimal with exponent", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/1"},"prediction":[{"probabilityDecimal":1e3}]}`, "", ""},
		{"integer 2^31", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":2147483648}`, "Observation.valueInteger", "integer out of range"},
		{"integer -2^31", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":-2147483648}`, "", ""},
		{"unsignedInt 0", `{"resourceType":"Patient","photo":[{"size":0}]}`, "", ""},
		{"positiveInt 0", `{"resourceType":"Patient","photo":[{"size":0}],"extension":[{"url":"http://x","valuePositiveInt":0}]}`, "Patient.extension[0].valuePositiveInt", "expected positiveInt"},
		{"unsignedInt -1", `{"resourceType":"Patient","photo":[{"size":-1}]}`, "Patient.photo[0].size", "expected unsignedInt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			issues := Resource([]byte(c.body))
			if c.expr == "" {
				if len(issues) > 0 {
					t.Fatalf("want valid, got %v", issues)
				}
				return
			}
			for _, is := range issues {
				if is.Expression == c.expr && strings.Contains(is.Diagnostics, c.diag) {
					return
				}
			}
			t.Fatalf("want an issue at %s containing %q, got %v", c.expr, c.diag, issues)
		})
	}
}
