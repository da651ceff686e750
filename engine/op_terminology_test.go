package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/smart/access"
)

// invoke runs a registered operation as the HTTP layer would.
func invoke(t *testing.T, eng *engine.Engine, name string, req engine.OpRequest) ([]byte, error) {
	t.Helper()
	op, ok := eng.Operation(name)
	if !ok || op.Invoke == nil {
		t.Fatalf("operation $%s is not registered with Invoke", name)
	}
	if req.Level == 0 {
		req.Level = engine.TypeLevel
		if req.ID != "" {
			req.Level = engine.InstanceLevel
		}
	}
	if !op.AppliesTo(req.Level, req.Type) {
		t.Fatalf("$%s does not apply to %s", name, req.Type)
	}
	resp, err := op.Invoke(t.Context(), engine.System, req)
	return resp.Body, err
}

func mustInvoke(t *testing.T, eng *engine.Engine, name string, req engine.OpRequest) []byte {
	t.Helper()
	body, err := invoke(t, eng, name, req)
	if err != nil {
		t.Fatalf("$%s %s: %v", name, req.Query.Encode(), err)
	}
	return body
}

// wantKind asserts err is a fhir.Error of kind whose text mentions each of
// words.
func wantKind(t *testing.T, err error, kind fhir.Kind, words ...string) {
	t.Helper()
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Kind != kind {
		t.Fatalf("error %v, want kind %v", err, kind)
	}
	for _, w := range words {
		if !strings.Contains(fe.Error(), w) {
			t.Errorf("error %q does not mention %q", fe.Error(), w)
		}
	}
}

type expanded struct {
	ResourceType string
	URL          string
	Expansion    struct {
		Total    int
		Offset   int
		Contains []struct {
			System, Code, Display string
			Abstract, Inactive    bool
		}
	}
}

func expandCodes(t *testing.T, body []byte) (expanded, []string) {
	t.Helper()
	var vs expanded
	if err := json.Unmarshal(body, &vs); err != nil {
		t.Fatal(err)
	}
	if vs.ResourceType != "ValueSet" {
		t.Fatalf("$expand answered %s", body)
	}
	var codes []string
	for _, c := range vs.Expansion.Contains {
		codes = append(codes, c.Code)
	}
	return vs, codes
}

// params decodes a Parameters answer into name -> values (a primitive as
// text, a part list as its JSON).
func params(t *testing.T, body []byte) map[string][]string {
	t.Helper()
	var p struct {
		ResourceType string
		Parameter    []map[string]json.RawMessage
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("not a Parameters: %s", body)
	}
	out := map[string][]string{}
	for _, prm := range p.Parameter {
		var name string
		_ = json.Unmarshal(prm["name"], &name)
		for k, v := range prm {
			if k == "name" {
				continue
			}
			var s string
			if json.Unmarshal(v, &s) != nil {
				s = string(v)
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// TestTerminologyCore: the R4 core code systems and value sets answer
// without anything stored.
func TestTerminologyCore(t *testing.T) {
	eng := newEngine(t)
	const gender = "http://hl7.org/fhir/ValueSet/administrative-gender"
	vs, codes := expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", gender)}))
	if !slices.Equal(codes, []string{"male", "female", "other", "unknown"}) || vs.Expansion.Total != 4 || vs.URL != gender {
		t.Errorf("administrative-gender: total %d, codes %v", vs.Expansion.Total, codes)
	}
	if d := vs.Expansion.Contains[1].Display; d != "Female" {
		t.Errorf("female's display %q", d)
	}
	_, codes = expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", gender, "filter", "MAL")}))
	if !slices.Equal(codes, []string{"male", "female"}) {
		t.Errorf("filter MAL: %v", codes)
	}
	vs, codes = expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", gender, "count", "2", "offset", "1")}))
	if !slices.Equal(codes, []string{"female", "other"}) || vs.Expansion.Total != 4 || vs.Expansion.Offset != 1 {
		t.Errorf("count 2 offset 1: total %d offset %d %v", vs.Expansion.Total, vs.Expansion.Offset, codes)
	}

	// A hierarchy of nested concepts (issue-type: invalid > structure).
	const issue = "http://hl7.org/fhir/issue-type"
	p := params(t, mustInvoke(t, eng, "lookup", engine.OpRequest{Type: "CodeSystem", Query: q("system", issue, "code", "structure")}))
	if p["display"][0] != "Structural Issue" || p["name"][0] != "IssueType" || !strings.Contains(strings.Join(p["property"], " "), `"invalid"`) {
		t.Errorf("$lookup structure: %v", p)
	}
	for _, c := range []struct{ a, b, want string }{
		{"invalid", "structure", "subsumes"},
		{"structure", "invalid", "subsumed-by"},
		{"structure", "structure", "equivalent"},
		{"structure", "login", "not-subsumed"},
	} {
		p := params(t, mustInvoke(t, eng, "subsumes", engine.OpRequest{Type: "CodeSystem", Query: q("system", issue, "codeA", c.a, "codeB", c.b)}))
		if got := p["outcome"]; len(got) != 1 || got[0] != c.want {
			t.Errorf("$subsumes %s %s = %v, want %s", c.a, c.b, got, c.want)
		}
	}
	// A core value set defined by a filter on a v3 hierarchy.
	_, codes = expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://hl7.org/fhir/ValueSet/sibling-relationship-codes")}))
	if !slices.Contains(codes, "SIB") || !slices.Contains(codes, "HSIB") || slices.Contains(codes, "MTH") {
		t.Errorf("sibling-relationship-codes: %v", codes)
	}

	p = params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "ValueSet", Query: q("url", gender, "system", "http://hl7.org/fhir/administrative-gender", "code", "female")}))
	if p["result"][0] != "true" || p["display"][0] != "Female" {
		t.Errorf("$validate-code female: %v", p)
	}
	p = params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "ValueSet", Query: q("url", gender, "system", "http://hl7.org/fhir/administrative-gender", "code", "F")}))
	if p["result"][0] != "false" || !strings.Contains(p["message"][0], "F") {
		t.Errorf("$validate-code F: %v", p)
	}
	_, err := invoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/none")})
	wantKind(t, err, fhir.NotFound, "http://example.org/none")

	// CodeSystem/$validate-code: in the code system, with its display; not in it.
	genderCS := "http://hl7.org/fhir/administrative-gender"
	p = params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "CodeSystem", Query: q("url", genderCS, "code", "male", "display", "Man")}))
	if p["result"][0] != "true" || p["display"][0] != "Male" || !strings.Contains(p["message"][0], "Man") {
		t.Errorf("CodeSystem/$validate-code male: %v", p)
	}
	p = params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "CodeSystem", Query: q("url", genderCS, "code", "M")}))
	if p["result"][0] != "false" || !strings.Contains(p["message"][0], genderCS) {
		t.Errorf("CodeSystem/$validate-code M: %v", p)
	}
	_, err = invoke(t, eng, "validate-code", engine.OpRequest{Type: "CodeSystem", Query: q("url", "http://loinc.org", "code", "8867-4")})
	wantKind(t, err, fhir.Unprocessable, "http://loinc.org")
}

// TestTerminologyExternal: what needs SNOMED CT, LOINC or a code system
// whose content is not here is a 422 naming it.
func TestTerminologyExternal(t *testing.T) {
	eng := newEngine(t)
	_, err := invoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://hl7.org/fhir/ValueSet/procedure-code")})
	wantKind(t, err, fhir.Unprocessable, "SNOMED CT", "http://snomed.info/sct")
	_, err = invoke(t, eng, "lookup", engine.OpRequest{Type: "CodeSystem", Query: q("system", "http://loinc.org", "code", "8867-4")})
	wantKind(t, err, fhir.Unprocessable, "LOINC")
	_, err = invoke(t, eng, "validate-code", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://hl7.org/fhir/ValueSet/condition-code", "system", "http://snomed.info/sct", "code", "44054006")})
	wantKind(t, err, fhir.Unprocessable, "SNOMED CT")

	create(t, eng, `{"resourceType":"CodeSystem","url":"http://example.org/cs/np","status":"active","content":"not-present"}`)
	create(t, eng, `{"resourceType":"ValueSet","url":"http://example.org/vs/np","status":"active","compose":{"include":[{"system":"http://example.org/cs/np"}]}}`)
	_, err = invoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/vs/np")})
	wantKind(t, err, fhir.Unprocessable, "http://example.org/cs/np", "not-present")
	_, err = invoke(t, eng, "lookup", engine.OpRequest{Type: "CodeSystem", Query: q("system", "http://example.org/cs/np", "code", "x")})
	wantKind(t, err, fhir.Unprocessable, "http://example.org/cs/np")

	// Listed codes need no code system.
	create(t, eng, `{"resourceType":"ValueSet","url":"http://example.org/vs/listed","status":"active","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"44054006","display":"Diabetes"}]}]}}`)
	vs, codes := expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/vs/listed")}))
	if !slices.Equal(codes, []string{"44054006"}) || vs.Expansion.Contains[0].Display != "Diabetes" {
		t.Errorf("listed SNOMED code: %v", vs.Expansion.Contains)
	}
}

func create(t *testing.T, eng *engine.Engine, body string) string {
	t.Helper()
	r, err := eng.Create(t.Context(), engine.System, engine.CreateRequest{Resource: parse(t, eng, body)})
	if err != nil {
		t.Fatal(err)
	}
	return r.Version.ID
}

// storedCodeSystem is a small hierarchy with properties:
//
//	animal
//	  mammal (legs 4)
//	    dog, cat
//	    whale (legs 0, inactive)
//	  bird (legs 2)
//	    penguin -- by the parent property, not nesting
//	rock (notSelectable)
const storedCodeSystem = `{"resourceType":"CodeSystem","url":"http://example.org/cs/zoo","version":"1","name":"Zoo","status":"active","content":"complete",
 "property":[{"code":"legs","type":"integer"},{"code":"parent","type":"code"},{"code":"notSelectable","type":"boolean"},{"code":"inactive","type":"boolean"}],
 "concept":[
  {"code":"animal","display":"Animal","concept":[
    {"code":"mammal","display":"Mammal","property":[{"code":"legs","valueInteger":4}],"concept":[
      {"code":"dog","display":"Dog"},{"code":"cat","display":"Cat"},
      {"code":"whale","display":"Whale","property":[{"code":"legs","valueInteger":0},{"code":"inactive","valueBoolean":true}]}]},
    {"code":"bird","display":"Bird","property":[{"code":"legs","valueInteger":2}]}]},
  {"code":"penguin","display":"Penguin","property":[{"code":"parent","valueCode":"bird"}]},
  {"code":"rock","display":"Rock","property":[{"code":"notSelectable","valueBoolean":true}]}]}`

// TestTerminologyStored: value sets over stored code systems: concepts,
// every filter operator, excludes, value sets including value sets, the
// core and stored ones mixed, instance level, and $lookup/$subsumes over
// a hierarchy partly given by the parent property.
func TestTerminologyStored(t *testing.T) {
	eng := newEngine(t)
	csID := create(t, eng, storedCodeSystem)
	vsFor := func(name, compose string) string {
		return create(t, eng, `{"resourceType":"ValueSet","url":"http://example.org/vs/`+name+`","status":"active","compose":`+compose+`}`)
	}
	const zoo = `"system":"http://example.org/cs/zoo"`
	cases := []struct {
		name, compose string
		want          []string
	}{
		{"all", `{"include":[{` + zoo + `}]}`, []string{"animal", "mammal", "dog", "cat", "whale", "bird", "penguin", "rock"}},
		{"isa", `{"include":[{` + zoo + `,"filter":[{"property":"concept","op":"is-a","value":"mammal"}]}]}`, []string{"mammal", "dog", "cat", "whale"}},
		{"desc", `{"include":[{` + zoo + `,"filter":[{"property":"concept","op":"descendent-of","value":"animal"}]}]}`, []string{"mammal", "dog", "cat", "whale", "bird", "penguin"}},
		{"isnota", `{"include":[{` + zoo + `,"filter":[{"property":"concept","op":"is-not-a","value":"animal"}]}]}`, []string{"rock"}},
		{"gen", `{"include":[{` + zoo + `,"filter":[{"property":"concept","op":"generalizes","value":"penguin"}]}]}`, []string{"animal", "bird", "penguin"}},
		{"eq", `{"include":[{` + zoo + `,"filter":[{"property":"legs","op":"=","value":"2"}]}]}`, []string{"bird"}},
		{"in", `{"include":[{` + zoo + `,"filter":[{"property":"code","op":"in","value":"dog,cat,rock"}]}]}`, []string{"dog", "cat", "rock"}},
		{"regex", `{"include":[{` + zoo + `,"filter":[{"property":"code","op":"regex","value":"[cd].*"}]}]}`, []string{"dog", "cat"}},
		{"exists", `{"include":[{` + zoo + `,"filter":[{"property":"legs","op":"exists","value":"true"}]}]}`, []string{"mammal", "whale", "bird"}},
		{"and", `{"include":[{` + zoo + `,"filter":[{"property":"concept","op":"is-a","value":"animal"},{"property":"display","op":"regex","value":"W.*|M.*"}]}]}`, []string{"mammal", "whale"}},
		{"exclude", `{"include":[{` + zoo + `,"filter":[{"property":"concept","op":"is-a","value":"mammal"}]}],"exclude":[{` + zoo + `,"concept":[{"code":"whale"}]}]}`, []string{"mammal", "dog", "cat"}},
		{"nested", `{"include":[{"valueSet":["http://example.org/vs/isa"]},{"valueSet":["http://hl7.org/fhir/ValueSet/administrative-gender"]}]}`, []string{"mammal", "dog", "cat", "whale", "male", "female", "other", "unknown"}},
		{"intersect", `{"include":[{"valueSet":["http://example.org/vs/desc","http://example.org/vs/exists"]}]}`, []string{"mammal", "whale", "bird"}},
		{"inactive", `{"inactive":false,"include":[{"valueSet":["http://example.org/vs/isa"]}]}`, []string{"mammal", "dog", "cat"}},
	}
	for _, c := range cases {
		vsFor(c.name, c.compose)
	}
	for _, c := range cases {
		_, codes := expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/vs/"+c.name)}))
		if !slices.Equal(codes, c.want) {
			t.Errorf("%s: %v, want %v", c.name, codes, c.want)
		}
	}
	// Flags, display, activeOnly, instance level, the valueSet parameter.
	vs, _ := expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/vs/all")}))
	for _, c := range vs.Expansion.Contains {
		if c.Abstract != (c.Code == "rock") || c.Inactive != (c.Code == "whale") || c.System != "http://example.org/cs/zoo" || c.Display == "" {
			t.Errorf("member %+v", c)
		}
	}
	id := vsFor("isa2", `{"include":[{`+zoo+`,"filter":[{"property":"concept","op":"is-a","value":"mammal"}]}]}`)
	_, codes := expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", ID: id, Query: q("activeOnly", "true")}))
	if !slices.Equal(codes, []string{"mammal", "dog", "cat"}) {
		t.Errorf("instance, activeOnly: %v", codes)
	}
	body := `{"resourceType":"Parameters","parameter":[{"name":"valueSet","resource":{"resourceType":"ValueSet","status":"active","compose":{"include":[{` + zoo + `,"concept":[{"code":"dog"}]}]}}},{"name":"count","valueInteger":5}]}`
	vs, codes = expandCodes(t, mustInvoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Body: []byte(body)}))
	if !slices.Equal(codes, []string{"dog"}) || vs.Expansion.Contains[0].Display != "Dog" {
		t.Errorf("POSTed valueSet: %+v", vs.Expansion)
	}
	// A cycle is an error, not a hang.
	vsFor("loop", `{"include":[{"valueSet":["http://example.org/vs/loop"]}]}`)
	_, err := invoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/vs/loop")})
	wantKind(t, err, fhir.Unprocessable, "itself")
	vsFor("badop", `{"include":[{`+zoo+`,"filter":[{"property":"code","op":"regex","value":"("}]}]}`)
	_, err = invoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", "http://example.org/vs/badop")})
	wantKind(t, err, fhir.Unprocessable, "regex")

	// $validate-code: Coding, CodeableConcept, a display that disagrees.
	cc := `{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"http://example.org/vs/isa"},{"name":"codeableConcept","valueCodeableConcept":{"coding":[{"system":"http://example.org/cs/zoo","code":"bird"},{"system":"http://example.org/cs/zoo","code":"cat"}]}}]}`
	p := params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "ValueSet", Body: []byte(cc)}))
	if p["result"][0] != "true" || p["display"][0] != "Cat" {
		t.Errorf("codeableConcept: %v", p)
	}
	coding := `{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"http://example.org/vs/isa"},{"name":"coding","valueCoding":{"system":"http://example.org/cs/zoo","code":"dog","display":"Wolf"}}]}`
	p = params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "ValueSet", Body: []byte(coding)}))
	if p["result"][0] != "true" || !strings.Contains(p["message"][0], "Wolf") {
		t.Errorf("display mismatch: %v", p)
	}
	p = params(t, mustInvoke(t, eng, "validate-code", engine.OpRequest{Type: "ValueSet", ID: id, Query: q("system", "http://example.org/cs/zoo", "code", "bird")}))
	if p["result"][0] != "false" {
		t.Errorf("bird in isa2: %v", p)
	}

	// $lookup and $subsumes, by system and by instance.
	p = params(t, mustInvoke(t, eng, "lookup", engine.OpRequest{Type: "CodeSystem", Query: q("system", "http://example.org/cs/zoo", "code", "penguin")}))
	if p["name"][0] != "Zoo" || p["version"][0] != "1" || p["display"][0] != "Penguin" || !strings.Contains(strings.Join(p["property"], " "), `"bird"`) {
		t.Errorf("$lookup penguin: %v", p)
	}
	p = params(t, mustInvoke(t, eng, "lookup", engine.OpRequest{Type: "CodeSystem", ID: csID, Query: q("code", "mammal")}))
	props := strings.Join(p["property"], " ")
	for _, want := range []string{`"legs"`, `"valueInteger":4`, `"animal"`, `"dog"`, `"whale"`} {
		if !strings.Contains(props, want) {
			t.Errorf("$lookup mammal: properties %s lack %s", props, want)
		}
	}
	_, err = invoke(t, eng, "lookup", engine.OpRequest{Type: "CodeSystem", Query: q("system", "http://example.org/cs/zoo", "code", "unicorn")})
	wantKind(t, err, fhir.NotFound, "unicorn")
	for _, c := range []struct{ a, b, want string }{
		{"animal", "penguin", "subsumes"},
		{"penguin", "animal", "subsumed-by"},
		{"dog", "penguin", "not-subsumed"},
	} {
		body := fmt.Sprintf(`{"resourceType":"Parameters","parameter":[{"name":"codingA","valueCoding":{"system":"http://example.org/cs/zoo","code":%q}},{"name":"codingB","valueCoding":{"system":"http://example.org/cs/zoo","code":%q}}]}`, c.a, c.b)
		p := params(t, mustInvoke(t, eng, "subsumes", engine.OpRequest{Type: "CodeSystem", Body: []byte(body)}))
		if p["outcome"][0] != c.want {
			t.Errorf("$subsumes %s %s = %v, want %s", c.a, c.b, p["outcome"], c.want)
		}
	}
}

// TestTerminologyCoreCrossCheck expands every R4 core value set Ember can
// and compares the result with the publisher's own expansions
// (Bundle-valueset-expansions.json): no code may be missing. Extra codes
// are allowed only where the publisher leaves out abstract or inactive
// ones, which stay members.
func TestTerminologyCoreCrossCheck(t *testing.T) {
	dir := testenv.FHIRPackage(t)
	raw, err := os.ReadFile(filepath.Join(dir, "Bundle-valueset-expansions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				URL       string
				Expansion struct {
					Extension []struct{ URL string }
					Contains  []json.RawMessage
				}
			}
		}
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	eng := newEngine(t)
	compared, unexpandable := 0, 0
	for _, e := range b.Entry {
		vs := e.Resource
		if _, ok := spec.ValueSet(vs.URL); !ok || len(vs.Expansion.Extension) > 0 && strings.Contains(vs.Expansion.Extension[0].URL, "toocostly") {
			continue
		}
		body, err := invoke(t, eng, "expand", engine.OpRequest{Type: "ValueSet", Query: q("url", vs.URL)})
		if err != nil {
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Kind != fhir.Unprocessable {
				t.Errorf("%s: %v", vs.URL, err)
			}
			unexpandable++
			continue
		}
		compared++
		ours, _ := expandCodes(t, body)
		mine := map[string]bool{}
		for _, c := range ours.Expansion.Contains {
			mine[c.System+"|"+c.Code] = true
		}
		var walk func([]json.RawMessage)
		walk = func(cs []json.RawMessage) {
			for _, r := range cs {
				var c struct {
					System, Code string
					Contains     []json.RawMessage
				}
				_ = json.Unmarshal(r, &c)
				if c.Code != "" && !mine[c.System+"|"+c.Code] {
					t.Errorf("%s: %s|%s is in the published expansion, not in ours", vs.URL, c.System, c.Code)
				}
				walk(c.Contains)
			}
		}
		walk(vs.Expansion.Contains)
	}
	t.Logf("%d published expansions compared, %d need external terminology", compared, unexpandable)
	if compared < 450 {
		t.Errorf("only %d value sets compared", compared)
	}
}

// TestTerminologyScopedCaller: a patient app's token, which may not search
// CodeSystem or ValueSet, still expands the core value sets, and does not
// see stored ones.
func TestTerminologyScopedCaller(t *testing.T) {
	eng := newEngine(t)
	create(t, eng, `{"resourceType":"ValueSet","url":"http://example.org/vs/private","status":"active","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"1"}]}]}}`)
	caller := eng.Grant("patient-token", &access.Grant{Scopes: []string{"patient/Observation.rs"}, Patient: "p1", Expiry: time.Now().Add(time.Hour)})
	op, _ := eng.Operation("expand")
	resp, err := op.Invoke(t.Context(), caller, engine.OpRequest{Level: engine.TypeLevel, Type: "ValueSet", Query: q("url", "http://hl7.org/fhir/ValueSet/administrative-gender")})
	if err != nil {
		t.Fatalf("core value set with a patient token: %v", err)
	}
	if _, codes := expandCodes(t, resp.Body); len(codes) != 4 {
		t.Errorf("codes %v", codes)
	}
	_, err = op.Invoke(t.Context(), caller, engine.OpRequest{Level: engine.TypeLevel, Type: "ValueSet", Query: q("url", "http://example.org/vs/private")})
	wantKind(t, err, fhir.NotFound, "http://example.org/vs/private")
}
