package index_test

import (
	"reflect"
	"testing"

	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
)

// TestExtractOnly: extracting some parameters gives exactly Extract's rows
// of those parameters (the reference's :identifier rows with it).
func TestExtractOnly(t *testing.T) {
	doc := []byte(`{"resourceType":"Observation","id":"o1","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},
		"subject":{"reference":"Patient/p1","identifier":{"system":"urn:mrn","value":"7"}},
		"effectiveDateTime":"2020-01-02","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`)
	all, err := index.Extract("Observation", doc)
	if err != nil {
		t.Fatal(err)
	}
	only := map[int32]bool{spec.ParamID("Observation", "patient"): true, spec.ParamID("Observation", "code"): true}
	some, err := index.ExtractOnly("Observation", doc, only)
	if err != nil {
		t.Fatal(err)
	}
	var wantTokens []index.Token
	for _, tk := range all.Tokens {
		if only[tk.Param] || tk.Param == index.IdentifierParam("Observation", "patient") {
			wantTokens = append(wantTokens, tk)
		}
	}
	var wantRefs []index.Ref
	for _, r := range all.References {
		if only[r.Param] {
			wantRefs = append(wantRefs, r)
		}
	}
	if len(wantTokens) < 2 || len(wantRefs) != 1 {
		t.Fatalf("the example lacks rows: tokens %v refs %v", wantTokens, wantRefs)
	}
	if !reflect.DeepEqual(some.Tokens, wantTokens) || !reflect.DeepEqual(some.References, wantRefs) {
		t.Errorf("ExtractOnly tokens %v refs %v, want %v %v", some.Tokens, some.References, wantTokens, wantRefs)
	}
	if len(some.Dates)+len(some.Quantities)+len(some.Strings) != 0 {
		t.Errorf("ExtractOnly extracted parameters not asked for: %v %v %v", some.Dates, some.Quantities, some.Strings)
	}
}
