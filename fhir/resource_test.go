package fhir

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustParser(t *testing.T) *Parser {
	t.Helper()
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseRejects(t *testing.T) {
	p := mustParser(t)
	for _, tc := range []struct {
		body   string
		status int
		expr   string
		msg    string
	}{
		{`{"resourceType":"Patient","foo":1}`, 422, "Patient", "unknown member"},
		{`{"resourceType":"Patient","birthDate":"1970-13-01"}`, 422, "Patient.birthDate", "date"},
		{`{"resourceType":"Patient","name":[{"family":""}]}`, 422, "Patient.name[0].family", "empty string"},
		{`{"resourceType":"Patient","name":[{"given":[null]}]}`, 422, "Patient.name[0].given", "only nulls"},
		{`{"resourceType":"Patient","gender":"mail"}`, 422, "Patient.gender", "administrative-gender"},
		{`{"resourceType":"Observation"}`, 422, "Observation", "missing required member"},
		{`{"resourceType":"Patient","id":"has space"}`, 422, "Patient.id", "does not match"},
		{`{"resourceType":"Patient","id":7}`, 422, "Patient.id", "string"},
		{`{"resourceType":"Patient","a":1,"a":2}`, 422, "Patient", "duplicate property"},
		{`{"resourceType":"Patient","a":1,"\u0061":2}`, 422, "Patient", `duplicate property "a"`},
		// Past maxLinearKeys members the check moves to a map: repeats of
		// keys from either side of the switch are still found.
		{`{"resourceType":"Patient",` + manyKeys(40) + `,"k35":1}`, 422, "Patient", `duplicate property "k35"`},
		{`{"resourceType":"Patient",` + manyKeys(40) + `,"k2":1}`, 422, "Patient", `duplicate property "k2"`},
		{`{"resourceType":"Patient",` + manyKeys(40) + `,"resourceType":"Patient"}`, 422, "Patient", `duplicate property "resourceType"`},
		{`{"resourceType":"Nope"}`, 400, "resourceType", "unknown resourceType"},
		{`{"gender":"male"}`, 400, "", "resourceType"},
		{`{`, 400, "", "invalid JSON"},
		{`{"resourceType":"Patient"} x`, 400, "", "after the JSON object"},
		{`{"resourceType":"Patient","name":[{"family":"` + "\xc3\x28" + `"}]}`, 400, "Patient.name[0].family", "UTF-8"},
		{`{"resourceType":"Patient","multipleBirthInteger":01}`, 400, "Patient.multipleBirthInteger", "leading zero"},
		{strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100), 400, "", "JSON object"},
		{`{"resourceType":"Patient","extension":` + strings.Repeat(`[{"url":"x","extension":`, 40) + `[]` + strings.Repeat(`}]`, 40) + `}`, 422, "", "nested deeper"},
	} {
		_, err := p.Parse([]byte(tc.body), "")
		if tc.status == 0 {
			if err != nil {
				t.Errorf("%s: unexpected error %v", tc.body, err)
			}
			continue
		}
		fe, ok := err.(*Error)
		if !ok {
			t.Errorf("%.60s: want *Error, got %v", tc.body, err)
			continue
		}
		// 400 and 422 are what the HTTP layer answers for these kinds.
		if want := map[int]Kind{400: BadRequest, 422: Unprocessable}[tc.status]; fe.Kind != want {
			t.Errorf("%.60s: kind %v, want %v (%d) (%v)", tc.body, fe.Kind, want, tc.status, fe)
		}
		if !strings.Contains(fe.Error(), tc.msg) {
			t.Errorf("%.60s: message %q lacks %q", tc.body, fe.Error(), tc.msg)
		}
		if tc.expr != "" && (len(fe.Issues[0].Expression) == 0 || fe.Issues[0].Expression[0] != tc.expr) {
			t.Errorf("%.60s: expression %v, want %s", tc.body, fe.Issues[0].Expression, tc.expr)
		}
	}
	_, err := p.Parse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`), "Patient")
	if fe, ok := err.(*Error); !ok || fe.Kind != BadRequest {
		t.Fatalf("type mismatch: %v", err)
	}
}

func TestStampKeepsContentAndSetsMeta(t *testing.T) {
	p := mustParser(t)
	r, err := p.Parse([]byte(`{"id":"old","resourceType":"Patient","meta":{"versionId":"9","lastUpdated":"2000-01-01T00:00:00Z","profile":["http://x/p"]},"gender":"male"}`), "Patient")
	if err != nil {
		t.Fatal(err)
	}
	out := r.Stamp("new", 3, time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC))
	if !strings.HasPrefix(string(out), `{"resourceType":"Patient","id":"new",`) {
		t.Fatalf("resourceType and id must lead: %s", out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	meta := m["meta"].(map[string]any)
	if meta["versionId"] != "3" || meta["lastUpdated"] != "2024-05-06T07:08:09.123456Z" || meta["profile"].([]any)[0] != "http://x/p" {
		t.Fatalf("meta %v", meta)
	}
	if m["gender"] != "male" || len(m) != 4 {
		t.Fatalf("content %v", m)
	}
}

func TestNeedsVerbatim(t *testing.T) {
	p := mustParser(t)
	for body, want := range map[string]bool{
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}`:   false,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5E-3}}`: true,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":-0.0}}`:   true,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":-0.5}}`:   false,
	} {
		r, err := p.Parse([]byte(body), "")
		if err != nil {
			t.Fatal(err)
		}
		if r.NeedsVerbatim() != want {
			t.Errorf("%s: NeedsVerbatim %v, want %v", body, r.NeedsVerbatim(), want)
		}
	}
}

func TestParseDateRange(t *testing.T) {
	for _, tc := range []struct{ in, start, end string }{
		{"2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"2024-02-29T10:00", "2024-02-29T10:00:00Z", "2024-02-29T10:01:00Z"},
		{"2024-02-29T10:00:05+02:00", "2024-02-29T08:00:05Z", "2024-02-29T08:00:06Z"},
		{"2024-02-29T10:00:05.25Z", "2024-02-29T10:00:05.25Z", "2024-02-29T10:00:05.26Z"},
	} {
		s, e, err := ParseDateRange(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if s.Format(time.RFC3339Nano) != tc.start || e.Format(time.RFC3339Nano) != tc.end {
			t.Errorf("%s: [%s, %s), want [%s, %s)", tc.in, s.Format(time.RFC3339Nano), e.Format(time.RFC3339Nano), tc.start, tc.end)
		}
	}
	for _, bad := range []string{"", "24", "2023-02-29", "2024-13", "2024-01-01T25:00", "2024/01/01", "yesterday"} {
		if _, _, err := ParseDateRange(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// manyKeys is n distinct members "k0":0, "k1":1, ….
func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":%d`, i, i)
	}
	return strings.Join(parts, ",")
}

func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		issue Issue
		want  string
	}{
		{Issue{Diagnostics: "bad"}, "bad"},
		{Issue{Diagnostics: "bad", Expression: []string{"Patient.gender"}}, "Patient.gender: bad"},
		{Issue{Diagnostics: "Bundle.entry[0]: bad", Expression: []string{"Bundle.entry[0]"}}, "Bundle.entry[0]: bad"},
		{Issue{Diagnostics: "Bundle.entry[0]: bad", Expression: []string{"Bundle.entry[0].resource.id"}}, "Bundle.entry[0].resource.id: Bundle.entry[0]: bad"},
	} {
		if got := (&Error{Issues: []Issue{tc.issue}}).Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.issue, got, tc.want)
		}
	}
}
