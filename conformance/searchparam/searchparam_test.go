package searchparam_test

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/emberfhir/ember/conformance/igtest"
	"github.com/emberfhir/ember/conformance/searchparam"
	"github.com/emberfhir/ember/fhir/spec"
)

// Every US Core parameter compiles; where R4 has a parameter of the same
// code and expression, the paths equal the generator's (fhir/spec/gen,
// compiled from the StructureDefinitions): the run-time compiler, working
// from fhir/validate's tables, agrees with it.
func TestUSCoreParametersCompile(t *testing.T) {
	pkg, _ := igtest.USCore(t)
	same, compiled := 0, 0
	for _, r := range pkg.ByType("SearchParameter") {
		d, err := searchparam.Parse(r.JSON)
		if err != nil {
			t.Fatal(err)
		}
		cs, errs := searchparam.Compile(d)
		for _, err := range errs {
			t.Errorf("%s: %v", r.File, err)
		}
		for _, c := range cs {
			compiled++
			base := spec.SearchParams(c.Base)[c.Param.Code]
			if base == nil || norm(base.Expression) != norm(c.Param.Expression) || base.Fallback || base.Column != "" {
				continue
			}
			same++
			if !reflect.DeepEqual(sortedTypes(base.Paths), sortedTypes(c.Param.Paths)) {
				t.Errorf("%s.%s (%s): paths\n %+v\nwant (generated)\n %+v", c.Base, c.Param.Code, c.Param.Expression, c.Param.Paths, base.Paths)
			}
		}
	}
	if compiled != 106 || same < 60 {
		t.Errorf("compiled %d parameters (want 106), %d compared with R4's", compiled, same)
	}
}

// sortedTypes sorts each path's Types: an untyped choice's types come in
// the StructureDefinition's order from the generator and in JSON member
// order from fhir/validate; extraction picks the type by the member found.
func sortedTypes(ps []spec.Path) []spec.Path {
	out := append([]spec.Path(nil), ps...)
	for i := range out {
		out[i].Types = append([]string(nil), out[i].Types...)
		sort.Strings(out[i].Types)
	}
	return out
}

func norm(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "|", " | ")), " ")
}

func TestExtensionParameters(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []spec.Path
	}{
		{"Condition.extension.where(url = 'http://x').valueDateTime", []spec.Path{
			{Steps: []spec.Step{{Field: "extension", Index: -1, WhereField: "url", WhereValue: "http://x"}, {Field: "value", Index: -1, Choice: true, As: "dateTime"}}, Types: []string{"dateTime"}},
		}},
	} {
		base := strings.Split(c.expr, ".")[0]
		cs, errs := searchparam.Compile(searchparam.Definition{URL: "u", Code: "c", Base: []string{base}, Type: "token", Expression: c.expr})
		if len(errs) > 0 || len(cs) != 1 {
			t.Fatalf("%s: %v", c.expr, errs)
		}
		if got := cs[0].Param.Paths; !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.expr, got, c.want)
		}
	}
	// Into an untyped choice: one path per type of value[x] with a code
	// (FHIRPath's own semantics: Coding.code, Quantity.code, Timing.code…).
	race := "Patient.extension.where(url = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race').extension.value.code"
	cs, errs := searchparam.Compile(searchparam.Definition{URL: "u", Code: "race", Base: []string{"Patient"}, Type: "token", Expression: race})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var as []string
	for _, p := range cs[0].Param.Paths {
		if p.Steps[0].WhereValue != "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race" ||
			!(len(p.Steps) == 4 && p.Steps[3].Field == "code" || len(p.Steps) == 3 && p.Types[0] == "Coding") {
			t.Errorf("race path %+v", p)
		}
		as = append(as, p.Steps[2].As+":"+strings.Join(p.Types, ","))
	}
	if got := strings.Join(as, " "); got != "Age:code Coding:Coding Count:code Distance:code Duration:code Quantity:code Timing:CodeableConcept UsageContext:Coding" {
		t.Errorf("race alternatives %s", got)
	}
	for _, bad := range []string{"Patient.name.given.value", "Patient.extension.where(url.startsWith('x'))", "Patient.nope", "Observation.value.as(Banana)", "Patient.name.first()"} {
		if _, errs := searchparam.Compile(searchparam.Definition{URL: "u", Code: "c", Base: []string{"Patient", "Observation"}[:1+boolInt(strings.HasPrefix(bad, "Observation"))], Type: "token", Expression: bad}); len(errs) == 0 {
			t.Errorf("%s compiled", bad)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
