package spec_test

import (
	"encoding/json"
	"testing"

	"github.com/emberfhir/ember/fhir/spec"
)

// TestTerminologyDefinitions: the embedded code systems and value sets are
// FHIR JSON with their content, and every value set the validator expands
// (valuesets.json.gz) has its definition here, from the same package.
func TestTerminologyDefinitions(t *testing.T) {
	raw, ok := spec.CodeSystem("http://hl7.org/fhir/administrative-gender")
	if !ok {
		t.Fatal("administrative-gender code system missing")
	}
	var cs struct {
		ResourceType, URL, Content string
		Concept                    []struct{ Code, Display string }
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		t.Fatal(err)
	}
	if cs.ResourceType != "CodeSystem" || cs.Content != "complete" || len(cs.Concept) != 4 || cs.Concept[1].Display != "Female" {
		t.Errorf("administrative-gender: %+v", cs)
	}
	var issue struct {
		Concept []struct {
			Code    string
			Concept []struct{ Code string }
		}
	}
	raw, _ = spec.CodeSystem("http://hl7.org/fhir/issue-type")
	if err := json.Unmarshal(raw, &issue); err != nil || len(issue.Concept) == 0 || len(issue.Concept[0].Concept) == 0 {
		t.Errorf("issue-type lost its nesting: %s", raw)
	}
	// External terminologies are there as stubs without their content.
	raw, _ = spec.CodeSystem("http://snomed.info/sct")
	var sct struct{ Content string }
	if err := json.Unmarshal(raw, &sct); err != nil || sct.Content != "not-present" {
		t.Errorf("SNOMED CT: %s", raw)
	}
	for _, url := range []string{"http://hl7.org/fhir/ValueSet/administrative-gender", "http://hl7.org/fhir/ValueSet/yesnodontknow",
		"http://hl7.org/fhir/ValueSet/observation-status", "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"} {
		raw, ok := spec.ValueSet(url)
		var vs struct {
			ResourceType, URL string
			Compose           *json.RawMessage
		}
		if !ok || json.Unmarshal(raw, &vs) != nil || vs.ResourceType != "ValueSet" || vs.URL != url || vs.Compose == nil {
			t.Errorf("value set %s: %s", url, raw)
		}
		if _, expands := spec.ValueSetCodes(url); !expands && url != "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode" {
			t.Errorf("%s does not expand in valuesets.json.gz", url)
		}
	}
}
