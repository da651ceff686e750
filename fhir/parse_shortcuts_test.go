package fhir_test

import (
	"strings"
	"testing"
)

// TestParseTypeAndID: Parse reads resourceType wherever it stands (the
// first-member shortcut, and the full pass when it is not first or is
// escaped), and the root id alone (a contained resource's id is not the
// resource's), refusing an id that is not a string.
func TestParseTypeAndID(t *testing.T) {
	p := mustNewParser(t)
	for _, c := range []struct {
		body, typ, id, err string
	}{
		{`{"resourceType":"Patient","id":"a1"}`, "Patient", "a1", ""},
		{` { "resourceType" : "Patient" , "id" : "a2" }`, "Patient", "a2", ""},
		{`{"id":"a3","resourceType":"Patient"}`, "Patient", "a3", ""},
		{`{"resourceType":"Pat\u0069ent","id":"a4"}`, "Patient", "a4", ""},
		{`{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"inner"}],"generalPractitioner":[{"reference":"#inner"}]}`, "Patient", "", ""},
		{`{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"inner"}],"generalPractitioner":[{"reference":"#inner"}],"id":"outer"}`, "Patient", "outer", ""},
		{`{"resourceType":"Patient","id":7}`, "", "", "id"},
	} {
		r, err := p.Parse([]byte(c.body), "")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: got %v, want an error about %s", c.body, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		if r.Type() != c.typ || r.ID() != c.id {
			t.Errorf("%s: type %q id %q, want %q %q", c.body, r.Type(), r.ID(), c.typ, c.id)
		}
	}
}
