package index

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/testfiles"
)

func param(t testing.TB, typ, code string) int32 {
	t.Helper()
	sp := spec.SearchParams(typ)[code]
	if sp == nil {
		t.Fatalf("no %s.%s", typ, code)
	}
	return sp.ID
}

func mustExtract(t testing.TB, typ, doc string) *Entries {
	t.Helper()
	e, err := Extract(typ, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExtractPatient(t *testing.T) {
	e := mustExtract(t, "Patient", `{"resourceType":"Patient","id":"p","meta":{"tag":[{"system":"s","code":"t"}],"profile":["http://p"]},
	"identifier":[{"system":"urn:a","value":"1","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}},{"system":"urn:b","value":"2"}],
	"name":[{"family":"Müller","given":["Jürgen","K"]}],"gender":"male","birthDate":"1970-03",
	"telecom":[{"system":"phone","value":"555"},{"system":"email","value":"a@b.c"}],
	"address":[{"city":"Zürich","postalCode":"8000"}],"deceasedBoolean":false,
	"generalPractitioner":[{"reference":"Practitioner/pr1"},{"identifier":{"system":"npi","value":"99"}}],
	"managingOrganization":{"reference":"http://other.example/fhir/Organization/o1"}}`)
	has := func(what string, ok bool) {
		if !ok {
			t.Errorf("missing %s in %+v", what, e)
		}
	}
	find := func(param int32, pred func(any) bool) bool {
		for _, s := range e.Strings {
			if s.Param == param && pred(s) {
				return true
			}
		}
		for _, s := range e.Tokens {
			if s.Param == param && pred(s) {
				return true
			}
		}
		for _, s := range e.References {
			if s.Param == param && pred(s) {
				return true
			}
		}
		for _, s := range e.Dates {
			if s.Param == param && pred(s) {
				return true
			}
		}
		for _, s := range e.URIs {
			if s.Param == param && pred(s) {
				return true
			}
		}
		return false
	}
	has("family muller", find(param(t, "Patient", "family"), func(v any) bool { s := v.(String); return s.Norm == "muller" && s.Exact == "Müller" }))
	has("name jurgen", find(param(t, "Patient", "name"), func(v any) bool { return v.(String).Norm == "jurgen" }))
	has("address-city", find(param(t, "Patient", "address-city"), func(v any) bool { return v.(String).Norm == "zurich" }))
	has("identifier urn:b|2", find(param(t, "Patient", "identifier"), func(v any) bool { k := v.(Token); return k.System == "urn:b" && k.Code == "2" }))
	has("identifier type MR", find(param(t, "Patient", "identifier"), func(v any) bool { k := v.(Token); return k.TypeCode == "MR" && k.Code == "1" }))
	has("gender", find(param(t, "Patient", "gender"), func(v any) bool { return v.(Token).Code == "male" }))
	has("phone only", find(param(t, "Patient", "phone"), func(v any) bool { return v.(Token).Code == "555" }))
	if find(param(t, "Patient", "phone"), func(v any) bool { return v.(Token).Code == "a@b.c" }) {
		t.Error("phone must not index the email")
	}
	has("deceased false", find(param(t, "Patient", "deceased"), func(v any) bool { return v.(Token).Code == "false" }))
	has("general-practitioner", find(param(t, "Patient", "general-practitioner"), func(v any) bool { r := v.(Ref); return r.Type == "Practitioner" && r.ID == "pr1" }))
	has("organization URL", find(param(t, "Patient", "organization"), func(v any) bool { return v.(Ref).URL == "http://other.example/fhir/Organization/o1" }))
	has("_tag", find(param(t, "Patient", "_tag"), func(v any) bool { return v.(Token).Code == "t" }))
	has("_profile", find(param(t, "Patient", "_profile"), func(v any) bool { return v.(URI).Value == "http://p" }))
	has("birthdate month range", find(param(t, "Patient", "birthdate"), func(v any) bool {
		d := v.(Date)
		return d.Lo.Equal(time.Date(1970, 3, 1, 0, 0, 0, 0, time.UTC)) && d.Hi.Equal(time.Date(1970, 4, 1, 0, 0, 0, 0, time.UTC))
	}))
	has("gp identifier", func() bool {
		for _, k := range e.Tokens {
			if k.Param == IdentifierParam("Patient", "general-practitioner") && k.Code == "99" {
				return true
			}
		}
		return false
	}())
}

func TestExtractObservationComposite(t *testing.T) {
	e := mustExtract(t, "Observation", `{"resourceType":"Observation","status":"final",
	"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure"}],"text":"BP"},
	"subject":{"reference":"Patient/x"},"effectivePeriod":{"start":"2020-01-01T10:00:00+05:00"},
	"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120.50,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`)
	var sawCVQ, sawDate, sawText bool
	for _, c := range e.Composites {
		if c.Param == param(t, "Observation", "component-code-value-quantity") && c.ACode == "8480-6" && c.BLo == "120.50" && c.BCode == "mm[Hg]" {
			sawCVQ = true
		}
	}
	for _, d := range e.Dates {
		if d.Param == param(t, "Observation", "date") && d.Lo.Equal(time.Date(2020, 1, 1, 5, 0, 0, 0, time.UTC)) && d.Hi.Equal(MaxTime) {
			sawDate = true
		}
	}
	for _, k := range e.Tokens {
		if k.Param == param(t, "Observation", "code") && k.Text == "bp" {
			sawText = true
		}
	}
	if !sawCVQ || !sawDate || !sawText {
		t.Fatalf("composite %v date %v text %v: %+v", sawCVQ, sawDate, sawText, e)
	}
	for _, r := range e.References {
		if r.Param == param(t, "Observation", "patient") && r.ID == "x" {
			return
		}
	}
	t.Fatal("Observation.patient (subject.where(resolve() is Patient)) not indexed")
}

func syntheaResources(b *testing.B) [][2]string {
	dir, err := testfiles.SyntheaDir()
	if err != nil {
		b.Fatal(err)
	}
	// Patient bundles are named Given_Family_uuid.json.
	files, _ := filepath.Glob(filepath.Join(dir, "[A-Z]*_*.json"))
	if len(files) == 0 {
		b.Fatalf("no patient bundles in %s", dir)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		b.Fatal(err)
	}
	var bundle struct {
		Entry []struct{ Resource json.RawMessage }
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		b.Fatal(err)
	}
	var out [][2]string
	for _, e := range bundle.Entry {
		var h struct{ ResourceType string }
		json.Unmarshal(e.Resource, &h)
		out = append(out, [2]string{h.ResourceType, string(e.Resource)})
	}
	return out
}

// BenchmarkExtractSynthea reports extraction cost per resource over one
// Synthea patient's bundle (mixed types).
func BenchmarkExtractSynthea(b *testing.B) {
	res := syntheaResources(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := res[i%len(res)]
		if _, err := Extract(r[0], []byte(r[1])); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeceasedMatchesFHIRPath checks the native Patient.deceased evaluation
// against the FHIRPath engine's answer for every form of deceased[x].
func TestDeceasedMatchesFHIRPath(t *testing.T) {
	sp := spec.SearchParams("Patient")["deceased"]
	for _, doc := range []string{
		`{"resourceType":"Patient"}`,
		`{"resourceType":"Patient","deceasedBoolean":true}`,
		`{"resourceType":"Patient","deceasedBoolean":false}`,
		`{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}`,
	} {
		native := mustExtract(t, "Patient", doc)
		engine := new(extractor)
		if err := engine.fallback(&paramPlan{sp: sp}, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, k := range native.Tokens {
			if k.Param == sp.ID {
				got = append(got, k.Code)
			}
		}
		for _, k := range engine.e.Tokens {
			want = append(want, k.Code)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: native %v, FHIRPath engine %v", doc, got, want)
		}
	}
}
