package spec_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir/spec"
)

func TestSummaryElementsPatient(t *testing.T) {
	got := spec.SummaryElements("Patient")
	for _, want := range []string{"id", "meta", "implicitRules", "identifier", "active", "name", "gender", "birthDate", "deceased", "address", "link"} {
		if !slices.Contains(got, want) {
			t.Errorf("SummaryElements(Patient) lacks %q: %v", want, got)
		}
	}
	// R4 marks neither the narrative nor the contacts (nor their children,
	// which are not top-level anyway) as summary.
	for _, bad := range []string{"text", "contact", "contact.name", "photo", "contained", "extension"} {
		if slices.Contains(got, bad) {
			t.Errorf("SummaryElements(Patient) has %q: %v", bad, got)
		}
	}
	if m := spec.MandatoryElements("Patient"); len(m) != 0 {
		t.Errorf("MandatoryElements(Patient) = %v, want none", m)
	}
}

func TestMandatoryElementsObservation(t *testing.T) {
	if got, want := spec.MandatoryElements("Observation"), []string{"status", "code"}; !slices.Equal(got, want) {
		t.Errorf("MandatoryElements(Observation) = %v, want %v", got, want)
	}
	if !slices.Contains(spec.SummaryElements("Observation"), "value") {
		t.Error("Observation.value[x] should be summary, as the prefix \"value\"")
	}
}

func TestMandatoryNotSummary(t *testing.T) {
	// A few R4 elements are mandatory but not summary; _summary=true keeps
	// them anyway (fhir/shape), so the table must carry both flags.
	got := spec.MandatoryElements("AuditEvent")
	for _, want := range []string{"type", "recorded", "agent", "source"} {
		if !slices.Contains(got, want) {
			t.Errorf("MandatoryElements(AuditEvent) lacks %q: %v", want, got)
		}
	}
	if slices.Contains(spec.SummaryElements("AuditEvent"), "agent") {
		t.Error("AuditEvent.agent is not summary in R4")
	}
}

func TestEveryTypeHasElements(t *testing.T) {
	for _, rt := range spec.ResourceTypes() {
		s := spec.SummaryElements(rt)
		if !slices.Contains(s, "id") || !slices.Contains(s, "meta") {
			t.Errorf("SummaryElements(%s) = %v: no id/meta", rt, s)
		}
	}
	if spec.SummaryElements("NoSuchType") != nil || spec.TopLevelElements("NoSuchType") != nil {
		t.Error("unknown type should give nil")
	}
}

func TestElementForKey(t *testing.T) {
	for _, tc := range []struct {
		rt, key, name string
		ok            bool
	}{
		{"Observation", "valueQuantity", "value", true},
		{"Observation", "_valueString", "value", true},
		{"Observation", "effectiveDateTime", "effective", true},
		{"Observation", "value", "", false}, // a choice never appears bare
		{"Observation", "valuequantity", "", false},
		{"Observation", "status", "status", true},
		{"Patient", "_birthDate", "birthDate", true},
		{"Patient", "deceasedBoolean", "deceased", true},
		{"Patient", "resourceType", "", false},
		{"Patient", "nonsense", "", false},
	} {
		e, ok := spec.ElementForKey(tc.rt, tc.key)
		if ok != tc.ok || e.Name != tc.name {
			t.Errorf("ElementForKey(%s, %s) = %q, %v; want %q, %v", tc.rt, tc.key, e.Name, ok, tc.name, tc.ok)
		}
	}
}

func TestCompartmentParams(t *testing.T) {
	obs := spec.CompartmentParams("Patient", "Observation")
	for _, want := range []string{"subject", "performer"} {
		if !slices.Contains(obs, want) {
			t.Errorf("CompartmentParams(Patient, Observation) = %v, lacks %q", obs, want)
		}
	}
	for _, tc := range []struct {
		compartment, rt string
		want            []string
	}{
		// The focal resource is always in its own compartment by _id, however
		// the definition spells it ({def}, link only, or nothing).
		{"Patient", "Patient", []string{"_id", "link"}},
		{"Encounter", "Encounter", []string{"_id"}},
		{"Practitioner", "Practitioner", []string{"_id"}},
		{"RelatedPerson", "RelatedPerson", []string{"_id"}},
		{"Device", "Device", []string{"_id"}},
		{"Encounter", "Observation", []string{"encounter"}},
		{"Practitioner", "Encounter", []string{"practitioner", "participant"}},
		{"Patient", "Practitioner", nil}, // listed without params: not linked
		{"Patient", "NoSuchType", nil},
		{"NoSuchCompartment", "Observation", nil},
	} {
		if got := spec.CompartmentParams(tc.compartment, tc.rt); !slices.Equal(got, tc.want) {
			t.Errorf("CompartmentParams(%s, %s) = %v, want %v", tc.compartment, tc.rt, got, tc.want)
		}
	}
	// The result is a copy: changing it must not change the table.
	obs[0] = "mutated"
	if spec.CompartmentParams("Patient", "Observation")[0] == "mutated" {
		t.Error("CompartmentParams returned the table's own slice")
	}
}

func TestCompartmentTypes(t *testing.T) {
	if got, want := spec.Compartments(), []string{"Device", "Encounter", "Patient", "Practitioner", "RelatedPerson"}; !slices.Equal(got, want) {
		t.Fatalf("Compartments() = %v, want %v", got, want)
	}
	for _, c := range spec.Compartments() {
		types := spec.CompartmentTypes(c)
		if !slices.IsSorted(types) || !slices.Contains(types, c) {
			t.Errorf("CompartmentTypes(%s) = %v: unsorted or without %s", c, types, c)
		}
		// Every linking code is a search parameter of that type.
		for _, rt := range types {
			for _, p := range spec.CompartmentParams(c, rt) {
				if spec.SearchParams(rt)[p] == nil {
					t.Errorf("compartment %s: %s.%s is not a search parameter", c, rt, p)
				}
			}
		}
	}
	pat := spec.CompartmentTypes("Patient")
	if len(pat) != 66 || !slices.Contains(pat, "Observation") || slices.Contains(pat, "Practitioner") {
		t.Errorf("CompartmentTypes(Patient) = %d types %v", len(pat), pat)
	}
	if spec.CompartmentTypes("Nope") != nil {
		t.Error("unknown compartment should give nil")
	}
}

func TestValueSetCodes(t *testing.T) {
	const gender = "http://hl7.org/fhir/ValueSet/administrative-gender"
	const sys = "http://hl7.org/fhir/administrative-gender"
	want := []spec.Coding{{sys, "male"}, {sys, "female"}, {sys, "other"}, {sys, "unknown"}}
	got, ok := spec.ValueSetCodes(gender)
	if !ok || !slices.Equal(got, want) {
		t.Errorf("ValueSetCodes(administrative-gender) = %v, %v; want %v", got, ok, want)
	}
	if got, ok := spec.ValueSetCodes(gender + "|4.0.1"); !ok || len(got) != 4 {
		t.Errorf("versioned lookup = %v, %v", got, ok)
	}
	if _, ok := spec.ValueSetCodes(gender + "|3.0.2"); ok {
		t.Error("a version the package does not hold must not resolve")
	}
	// The result is the caller's.
	got[0].Code = "mutated"
	if again, _ := spec.ValueSetCodes(gender); again[0].Code != "male" {
		t.Error("ValueSetCodes returned shared storage")
	}

	// include.valueSet plus explicit concepts from another system.
	yn, ok := spec.ValueSetCodes("http://hl7.org/fhir/ValueSet/yesnodontknow")
	wantYN := []spec.Coding{
		{"http://terminology.hl7.org/CodeSystem/v2-0136", "N"},
		{"http://terminology.hl7.org/CodeSystem/v2-0136", "Y"},
		{"http://terminology.hl7.org/CodeSystem/data-absent-reason", "asked-unknown"},
	}
	slices.SortFunc(yn, func(a, b spec.Coding) int { return strings.Compare(a.System+"#"+a.Code, b.System+"#"+b.Code) })
	slices.SortFunc(wantYN, func(a, b spec.Coding) int { return strings.Compare(a.System+"#"+a.Code, b.System+"#"+b.Code) })
	if !ok || !slices.Equal(yn, wantYN) {
		t.Errorf("ValueSetCodes(yesnodontknow) = %v, %v; want %v", yn, ok, wantYN)
	}

	// Nested concepts of a whole code system are flattened.
	if codes, ok := spec.ValueSetCodes("http://terminology.hl7.org/ValueSet/v3-ActCode"); !ok || len(codes) < 1000 ||
		!slices.Contains(codes, spec.Coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "AMB"}) {
		t.Errorf("ValueSetCodes(v3-ActCode) = %d codes, %v", len(codes), ok)
	}

	for _, url := range []string{
		"http://hl7.org/fhir/ValueSet/condition-cause",   // all of SNOMED CT
		"http://hl7.org/fhir/ValueSet/clinical-findings", // SNOMED CT is-a filter
		"http://hl7.org/fhir/ValueSet/media-modality",    // includes a value set the package lacks
		"http://hl7.org/fhir/ValueSet/message-events",    // code system with no concepts listed
		"http://hl7.org/fhir/ValueSet/service-type",      // code system content=example
	} {
		if codes, ok := spec.ValueSetCodes(url); ok || codes != nil {
			t.Errorf("ValueSetCodes(%s) = %d codes, %v; want not expandable", url, len(codes), ok)
		}
	}
	if _, ok := spec.ValueSetCodes("http://example.org/nope"); ok {
		t.Error("unknown value set resolved")
	}
}
