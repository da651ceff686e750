package search

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand"
	"net/url"
	"testing"
	"time"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
)

const matchBase = "http://ember.test/fhir"

// lastUpdated of the resources below; its nanoseconds are below timestamptz's
// microsecond precision and must not count.
var matchLU = time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)

const matchPatient = `{"resourceType":"Patient","id":"p1","active":true,"gender":"female","birthDate":"1980-05-17",
 "deceasedBoolean":false,
 "name":[{"family":"Müller","given":["Anna","Maria"]}],
 "identifier":[
  {"system":"http://hospital.example/mrn","value":"MRN-1","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}],"text":"Medical record"}},
  {"value":"nosys"}],
 "telecom":[{"system":"phone","value":"555-1234"}],
 "address":[{"city":"Springfield","state":"IL"}],
 "generalPractitioner":[{"reference":"Practitioner/dr1"},{"identifier":{"system":"http://npi","value":"999"}}],
 "managingOrganization":{"reference":"http://other.example/fhir/Organization/o9"}}`

const matchObservation = `{"resourceType":"Observation","id":"o1","status":"final",
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose"}],"text":"Glucose [Mass/volume] in Blood"},
 "subject":{"reference":"Patient/p1"},
 "effectiveDateTime":"2021-06-01T10:30:00+02:00",
 "valueQuantity":{"value":5.4,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},
 "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
  "valueQuantity":{"value":120,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`

type matchCase struct {
	q    string // the query string
	want bool
}

// checkMatches parses each case's query on typ and matches it against doc.
func checkMatches(t *testing.T, typ, id, doc string, cases []matchCase) {
	t.Helper()
	e, err := index.Extract(typ, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		q := parseMatchQuery(t, typ, tc.q)
		if err := Matchable(q); err != nil {
			t.Errorf("%s?%s: not matchable: %v", typ, tc.q, err)
			continue
		}
		if got := Match(q, typ, id, matchLU, e); got != tc.want {
			t.Errorf("%s?%s: Match = %v, want %v", typ, tc.q, got, tc.want)
		}
	}
}

func parseMatchQuery(t *testing.T, typ, raw string) *Query {
	t.Helper()
	vals, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	q, err := Parse(typ, vals, Options{Base: matchBase, Strict: true})
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, raw, err)
	}
	return q
}

func TestMatchString(t *testing.T) {
	checkMatches(t, "Patient", "p1", matchPatient, []matchCase{
		{"name=mul", true},
		{"name=M%C3%9CL", true}, // accents and case fold
		{"family=ller", false},  // a prefix, not a substring
		{"family:contains=LL", true},
		{"family:contains=xyz", false},
		{"family:exact=M%C3%BCller", true},
		{"family:exact=muller", false},
		{"family:exact=M%C3%BCl", false},
		{"given=mar", true},
		{"given=xyz,mar", true},            // OR
		{"given=anna&family=smith", false}, // AND
		{"given=anna&family=m", true},
		{"address-city=spring", true},
		{"address=il", true},
		{"address=chicago", false},
	})
}

func TestMatchToken(t *testing.T) {
	checkMatches(t, "Patient", "p1", matchPatient, []matchCase{
		{"gender=female", true},
		{"gender=male", false},
		{"gender=male,female", true},
		{"gender:not=male", true},
		{"gender:not=female", false},
		{"gender:not=male,female", false},
		{"identifier=http://hospital.example/mrn|MRN-1", true},
		{"identifier=http://hospital.example/mrn|MRN-2", false},
		{"identifier=MRN-1", true},
		{"identifier=|MRN-1", false}, // it has a system
		{"identifier=|nosys", true},
		{"identifier=nosys", true},
		{"identifier=http://hospital.example/mrn|", true},
		{"identifier=http://other|", false},
		{"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-1", true},
		{"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|nosys", false},
		{"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|DL|MRN-1", false},
		{"identifier:text=medical", true},
		{"identifier:text=record", false}, // a prefix of the text
		{"active=true", true},
		{"active=false", false},
		{"telecom=phone|555-1234", true},
		{"phone=555-1234", true},
		{"deceased=false", true},
		{"deceased=true", false},
		{"_id=p1", true},
		{"_id=p2,p1", true},
		{"_id=p2", false},
		{"_id:not=p2", true},
		{"_id:not=p1", false},
	})
	checkMatches(t, "Observation", "o1", matchObservation, []matchCase{
		{"code=http://loinc.org|2339-0", true},
		{"code=2339-0", true},
		{"code=http://snomed.info/sct|2339-0", false},
		{"code=|2339-0", false},
		{"code:text=gluc", true},           // the coding's display
		{"code:text=GLUCOSE%20%5Bm", true}, // CodeableConcept.text
		{"code:text=blood", false},
		{"combo-code=8480-6", true},
		{"component-code=2339-0", false},
		{"category:in=http://hl7.org/fhir/ValueSet/observation-category", true},
		{"category:not-in=http://hl7.org/fhir/ValueSet/observation-category", false},
		{"category:in=http://example.org/unknown-valueset", false},
		{"category:not-in=http://example.org/unknown-valueset", true},
		{"status=final&code=2339-0", true},
		{"status=preliminary&code=2339-0", false},
	})
}

func TestMatchReference(t *testing.T) {
	checkMatches(t, "Patient", "p1", matchPatient, []matchCase{
		{"general-practitioner=Practitioner/dr1", true},
		{"general-practitioner=dr1", true},
		{"general-practitioner=Practitioner/dr2", false},
		{"general-practitioner=Organization/dr1", false},
		{"general-practitioner:Practitioner=dr1", true},
		{"general-practitioner:Organization=dr1", false},
		{"general-practitioner=" + matchBase + "/Practitioner/dr1", true}, // the server's own base is local
		{"general-practitioner=Practitioner/dr1/_history/3", true},
		{"general-practitioner:identifier=http://npi|999", true},
		{"general-practitioner:identifier=999", true},
		{"general-practitioner:identifier=http://npi|998", false},
		{"organization=http://other.example/fhir/Organization/o9", true},
		{"organization=Organization/o9", false}, // stored as an external URL
		{"organization=o9", false},
	})
	checkMatches(t, "Observation", "o1", matchObservation, []matchCase{
		{"subject=Patient/p1", true},
		{"patient=p1", true},
		{"patient=Patient/p2", false},
		{"subject:Patient=p1", true},
		{"subject=Patient/p2,Patient/p1", true},
	})
}

func TestMatchMissing(t *testing.T) {
	checkMatches(t, "Patient", "p1", matchPatient, []matchCase{
		{"link:missing=true", true},
		{"link:missing=false", false},
		{"general-practitioner:missing=false", true},
		{"general-practitioner:missing=true", false},
		{"birthdate:missing=false", true},
		{"family:missing=true", false},
		{"email:missing=true", true},
		// The store compares _id with "" for :missing: nothing matches.
		{"_id:missing=false", false},
	})
	checkMatches(t, "Observation", "o1", matchObservation, []matchCase{
		{"value-quantity:missing=false", true},
		{"value-concept:missing=true", true},
		{"code-value-quantity:missing=false", true},
		{"code-value-concept:missing=true", true},
		{"code-value-concept:missing=false", false},
	})
}

func TestMatchDate(t *testing.T) {
	// The birth date covers [1980-05-17, 1980-05-18).
	checkMatches(t, "Patient", "p1", matchPatient, []matchCase{
		{"birthdate=1980", true},
		{"birthdate=1980-05", true},
		{"birthdate=1980-05-17", true},
		{"birthdate=eq1980-05-17", true},
		{"birthdate=1980-05-17T10:00", false}, // the stored day is wider
		{"birthdate=1981", false},
		{"birthdate=ne1981", true},
		{"birthdate=ne1980", false},
		{"birthdate=gt1980-05-16", true},
		{"birthdate=gt1980-05-17", false},
		{"birthdate=gt1980", false},
		{"birthdate=lt1980-05-18", true},
		{"birthdate=lt1980-05-17", false},
		{"birthdate=ge1980-05-17", true},
		{"birthdate=ge1980-05-18", false},
		{"birthdate=ge1980-05-16", true},
		{"birthdate=le1980-05-17", true},
		{"birthdate=le1980-05-16", false},
		{"birthdate=sa1980-05-16", true},
		{"birthdate=sa1980-05-17", false},
		{"birthdate=eb1980-05-18", true},
		{"birthdate=eb1980-05-17", false},
		{"birthdate=ap1980-05-17", true},
		{"birthdate=ap1982", true},  // widened by years (10% of the distance from now)
		{"birthdate=ap1995", false}, // … but not by fifteen
		{"birthdate=ge1979&birthdate=lt1981", true},
		{"birthdate=ge1981&birthdate=lt1982", false},
	})
	// 10:30+02:00 is 08:30Z, a one-second range.
	checkMatches(t, "Observation", "o1", matchObservation, []matchCase{
		{"date=2021-06-01", true},
		{"date=2021-06-01T08:30:00Z", true},
		{"date=2021-06-01T10:30:00%2B02:00", true},
		{"date=2021-06-01T10:30:00Z", false},
		{"date=gt2021-06-01T08:29:59Z", true},
		{"date=gt2021-06-01T08:30:00Z", false},
		{"date=lt2021-06-01T08:30:01Z", true},
		{"date=2021-06-01T08:30Z", true}, // minute precision contains the second
	})
	const encounter = `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},
	 "period":{"start":"2020-01-10T09:00:00Z","end":"2020-01-10T10:00:00Z"},
	 "location":[{"location":{"reference":"Location/l1"},"period":{"start":"2020-01-10T09:00:00Z"}}]}`
	checkMatches(t, "Encounter", "e1", encounter, []matchCase{
		{"date=2020-01-10", true},
		{"date=2020-01-10T09:30:00Z", false},
		{"date=ge2020-01-10T09:30:00Z", true},
		{"date=le2020-01-10T09:30:00Z", true},
		{"date=gt2020-01-10T10:00:00Z", false},
		{"date=lt2020-01-10T09:00:00Z", false},
		{"date=ne2020-01-10", false},
		{"date=ap2020-01-10T09:30:00Z", true},
		// An open end runs to the end of time.
		{"location-period=gt2500", true},
		{"location-period=2020", false},
		{"location-period=sa2019", true},
		{"location-period=eb2021", false},
	})
}

func TestMatchLastUpdated(t *testing.T) {
	// matchLU is 12:00:00.123456789, stored as 12:00:00.123456 (µs).
	checkMatches(t, "Patient", "p1", matchPatient, []matchCase{
		{"_lastUpdated=2024-03-01", true},
		{"_lastUpdated=2024-03-01T12:00:00Z", true},
		{"_lastUpdated=2024-03-01T12:00:00.123456Z", true},
		{"_lastUpdated=2024-03-01T12:00:00.123457Z", false},
		{"_lastUpdated=2024-03-01T12:00:00.1234567Z", false},
		{"_lastUpdated=gt2024-03-01T12:00:00Z", false},
		{"_lastUpdated=ge2024-03-01T12:00:00Z", true},
		{"_lastUpdated=gt2024-03-01T11:59:59Z", true},
		{"_lastUpdated=lt2024-03-01T12:00:01Z", true},
		{"_lastUpdated=lt2024-03-01T12:00:00Z", false},
		{"_lastUpdated=lt2024-03-01T12:00:00.123456Z", false},
		{"_lastUpdated=lt2024-03-01T12:00:00.123457Z", true},
		{"_lastUpdated=sa2024-02-29", true},
		{"_lastUpdated=eb2024-03-01", false},
		{"_lastUpdated=ne2024", false},
		{"_lastUpdated=2023,2024", true},
	})
}

func TestMatchNumber(t *testing.T) {
	const risk = `{"resourceType":"RiskAssessment","id":"r1","status":"final","subject":{"reference":"Patient/p1"},
	 "prediction":[{"probabilityDecimal":0.25}]}`
	checkMatches(t, "RiskAssessment", "r1", risk, []matchCase{
		{"probability=0.25", true},
		{"probability=0.250", true},
		{"probability=2.5e-1", true},
		{"probability=0.3", true},  // [0.25, 0.35) holds 0.25
		{"probability=0.2", false}, // [0.15, 0.25) does not
		{"probability=0.26", false},
		{"probability=gt0.2", true},
		{"probability=gt0.25", false},
		{"probability=ge0.25", true},
		{"probability=ge0.26", false},
		{"probability=lt0.3", true},
		{"probability=lt0.25", false},
		{"probability=le0.25", true},
		{"probability=le0.24", false},
		{"probability=ne0.25", false},
		{"probability=ne0.2", true},
		{"probability=ne0.3", false}, // 0.25 is the low end of [0.25, 0.35)
		{"probability=sa0.2", true},
		{"probability=eb0.3", true},
		{"probability=eb0.25", false},
		{"probability=ap0.24", true}, // [0.216, 0.264]
		{"probability=ap0.2", false}, // [0.18, 0.22]
		{"probability=ap-0.25", false},
		{"probability=gt-1", true},
		{"probability=0.1,0.25", true},
	})
	// A stored exponent and a big number.
	const big = `{"resourceType":"RiskAssessment","id":"r2","status":"final","subject":{"reference":"Patient/p1"},
	 "prediction":[{"probabilityDecimal":2.5E+3}]}`
	checkMatches(t, "RiskAssessment", "r2", big, []matchCase{
		{"probability=2500", true},
		{"probability=2.5e3", true},
		{"probability=gt2499.999999", true},
		{"probability=lt2500.0000001", true},
		{"probability=lt2500", false},
		{"probability=25e2", true},
	})
}

func TestMatchQuantity(t *testing.T) {
	checkMatches(t, "Observation", "o1", matchObservation, []matchCase{
		{"value-quantity=5.4", true},
		{"value-quantity=5.4|http://unitsofmeasure.org|mmol/L", true},
		{"value-quantity=5.4||mmol/L", true},
		{"value-quantity=5.4|http://example.org/units|mmol/L", false},
		{"value-quantity=5.4||mg", false},
		{"value-quantity=5.4|http://unitsofmeasure.org|", true},
		{"value-quantity=5.40", true}, // [5.395, 5.405)
		{"value-quantity=5.41", false},
		{"value-quantity=gt5|http://unitsofmeasure.org|mmol/L", true},
		{"value-quantity=lt5", false},
		{"value-quantity=le5.4", true},
		{"value-quantity=ge5.5", false},
		{"value-quantity=ap5", true},
		{"value-quantity=ap4", false},
		{"value-quantity=ne5.4", false},
		{"value-quantity=ne5", false}, // [4.5, 5.5) holds 5.4
		{"value-quantity=ne6", true},
		{"value-quantity=5", true},
		{"value-quantity=6", false},
	})
	// A unit written unlike its code: code|unit matches either, with a
	// system only the code.
	const unit = `{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"x"},
	 "valueQuantity":{"value":5,"unit":"mg/dl","system":"http://unitsofmeasure.org","code":"mg/dL"}}`
	checkMatches(t, "Observation", "o5", unit, []matchCase{
		{"value-quantity=5||mg/dl", true},
		{"value-quantity=5||mg/dL", true},
		{"value-quantity=5|http://unitsofmeasure.org|mg/dl", false},
		{"value-quantity=5|http://unitsofmeasure.org|mg/dL", true},
		{"value-quantity=5||g", false},
	})
}

func TestMatchComposite(t *testing.T) {
	checkMatches(t, "Observation", "o1", matchObservation, []matchCase{
		{"code-value-quantity=http://loinc.org|2339-0$5.4", true},
		{"code-value-quantity=2339-0$gt5", true},
		{"code-value-quantity=2339-0$lt5", false},
		{"code-value-quantity=http://example.org|2339-0$5.4", false},
		{"code-value-quantity=2339-0$5.4|http://unitsofmeasure.org|mmol/L", true},
		{"code-value-quantity=2339-0$5.4||mg", false},
		{"code-value-quantity=8480-6$120", false}, // a component, not the observation
		{"component-code-value-quantity=http://loinc.org|8480-6$gt100", true},
		{"component-code-value-quantity=8480-6$lt100", false},
		{"combo-code-value-quantity=8480-6$120,2339-0$99", true},
		{"combo-code-value-quantity=2339-0$ap5", true},
	})
	const concept = `{"resourceType":"Observation","id":"o2","status":"final",
	 "code":{"coding":[{"system":"http://loinc.org","code":"72166-2"}]},
	 "valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"8517006"}]}}`
	checkMatches(t, "Observation", "o2", concept, []matchCase{
		{"code-value-concept=72166-2$8517006", true},
		{"code-value-concept=72166-2$http://snomed.info/sct|8517006", true},
		{"code-value-concept=72166-2$http://loinc.org|8517006", false},
		{"code-value-concept=72166-2$266919005", false},
	})
	const str = `{"resourceType":"Observation","id":"o3","status":"final",
	 "code":{"coding":[{"system":"http://loinc.org","code":"x"}]},"valueString":"Positive result",
	 "effectivePeriod":{"start":"2020-01-01"}}`
	checkMatches(t, "Observation", "o3", str, []matchCase{
		{"code-value-string=x$POS", true},
		{"code-value-string=x$result", false},
		{"value-string=positive%20r", true},
		{"date=ge2020", true},
		{"date=lt2020", false},
	})
	const date = `{"resourceType":"Observation","id":"o4","status":"final",
	 "code":{"coding":[{"system":"http://loinc.org","code":"d"}]},"valueDateTime":"2019-07-04"}`
	checkMatches(t, "Observation", "o4", date, []matchCase{
		{"code-value-date=d$2019-07", true},
		{"code-value-date=d$gt2019-07-04", false},
		{"code-value-date=d$ge2019-07-04", true},
		{"code-value-date=d$ne2019-07-04", false},
		{"code-value-date=e$2019-07", false},
	})
}

func TestMatchURI(t *testing.T) {
	const vs = `{"resourceType":"ValueSet","id":"v1","status":"active","url":"http://example.org/fhir/ValueSet/abc"}`
	checkMatches(t, "ValueSet", "v1", vs, []matchCase{
		{"url=http://example.org/fhir/ValueSet/abc", true},
		{"url=http://example.org/fhir/ValueSet", false},
		{"url=HTTP://example.org/fhir/ValueSet/abc", false},
		{"url:below=http://example.org/fhir", true},
		{"url:below=http://example.org/fhir/CodeSystem", false},
		{"url:above=http://example.org/fhir/ValueSet/abc/extra", true},
		{"url:above=http://example.org/fhir", false},
	})
	// :above reads the stored value as a LIKE pattern with only % and _
	// escaped, as the store does.
	for _, tc := range []struct {
		search, stored string
		want           bool
	}{
		{"a%b/c", "a%b", true},
		{"axb/c", "a%b", false},
		{"a_b", "a_b", true},
		{"axb", "a_b", false},
		{`a\b`, `a\\b`, true},
		{`ab`, `a\b`, true},    // \b is a literal b
		{`a%`, `a\%`, false},   // the stored \ stays an escape: a literal \ is needed
		{`a\zzz`, `a\%`, true}, // \ then % became \\ and a wildcard %
		{"aéb", `a\_b`, false},
		{"a\\éb", `a\_b`, true}, // _ one character, not one byte
	} {
		if got := above(tc.search, tc.stored); got != tc.want {
			t.Errorf("above(%q, %q) = %v, want %v", tc.search, tc.stored, got, tc.want)
		}
	}
}

func TestMatchTypes(t *testing.T) {
	e, err := index.Extract("Patient", []byte(matchPatient))
	if err != nil {
		t.Fatal(err)
	}
	sys := func(raw string) *Query {
		vals, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse("", vals, Options{Strict: true})
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		return q
	}
	for _, tc := range []struct {
		q, typ string
		want   bool
	}{
		{"_id=p1", "Patient", true},
		{"_id=p1", "Observation", true}, // a system search: any type
		{"_type=Patient&_id=p1", "Patient", true},
		{"_type=Observation&_id=p1", "Patient", false},
		{"_type=Observation,Patient&identifier=|nosys", "Patient", true},
		{"_type=Observation,Patient&identifier=|MRN-1", "Patient", false},
		{"_type=Observation,Patient&_tag:missing=true", "Patient", true},
		{"_type=Observation,Patient&identifier:missing=false", "Patient", true},
	} {
		if got := Match(sys(tc.q), tc.typ, "p1", matchLU, e); got != tc.want {
			t.Errorf("?%s on %s: Match = %v, want %v", tc.q, tc.typ, got, tc.want)
		}
	}
	q := parseMatchQuery(t, "Patient", "gender=female")
	if Match(q, "Observation", "p1", matchLU, e) {
		t.Error("a Patient search matched an Observation")
	}
	if !Match(q, "Patient", "p1", matchLU, e) {
		t.Error("a Patient search did not match its Patient")
	}
}

// Entries built by hand: values JSON cannot easily give.
func TestMatchNulls(t *testing.T) {
	vq := parseMatchQuery(t, "Observation", "value-quantity=1")
	param := vq.Params[0].SP.ID
	// A Range open above: hi is NULL.
	e := &index.Entries{Quantities: []index.Quantity{{Param: param, Lo: "5", System: "http://unitsofmeasure.org", Code: "mg"}}}
	for _, tc := range []matchCase{
		{"value-quantity=ne5", false}, // NOT (true AND NULL) is NULL
		{"value-quantity=ne7", true},  // NOT (false AND NULL) is true
		{"value-quantity=gt3", false}, // hi > 3 is NULL
		{"value-quantity=lt10", true},
		{"value-quantity=le5", true},
		{"value-quantity=5", false},
		{"value-quantity=ap5", false},
		{"value-quantity:missing=false", true},
	} {
		if got := Match(parseMatchQuery(t, "Observation", tc.q), "Observation", "o", matchLU, e); got != tc.want {
			t.Errorf("open range, %s: Match = %v, want %v", tc.q, got, tc.want)
		}
	}
	// A composite date whose range opens at the zero time is stored NULL.
	cq := parseMatchQuery(t, "Observation", "code-value-date=d$2019")
	cparam := cq.Params[0].SP.ID
	e = &index.Entries{Composites: []index.Composite{{Param: cparam, ACode: "d", BDateLo: index.MinTime, BDateHi: time.Date(2019, 7, 5, 0, 0, 0, 0, time.UTC)}}}
	for _, tc := range []matchCase{
		{"code-value-date=d$le2019", false},
		{"code-value-date=d$ne2030", false},
		{"code-value-date:missing=false", true},
	} {
		if got := Match(parseMatchQuery(t, "Observation", tc.q), "Observation", "o", matchLU, e); got != tc.want {
			t.Errorf("NULL composite date, %s: Match = %v, want %v", tc.q, got, tc.want)
		}
	}
	// Empty codes and systems are NULL: they equal nothing, not "".
	tq := parseMatchQuery(t, "Observation", "code=x")
	e = &index.Entries{Tokens: []index.Token{{Param: tq.Params[0].SP.ID, System: "", Code: "", Text: "only text"}}}
	for _, tc := range []matchCase{
		{"code=|x", false},
		{"code:text=only", true},
		{"code:not=x", true},
		{"code:missing=false", true},
	} {
		if got := Match(parseMatchQuery(t, "Observation", tc.q), "Observation", "o", matchLU, e); got != tc.want {
			t.Errorf("empty token, %s: Match = %v, want %v", tc.q, got, tc.want)
		}
	}
	// No entries at all.
	if got := Match(parseMatchQuery(t, "Observation", "code:missing=true"), "Observation", "o", matchLU, nil); !got {
		t.Error("nil entries: code:missing=true should match")
	}
}

func TestMatchable(t *testing.T) {
	for _, raw := range []string{
		"subject:Patient.name=smith",
		"patient.gender=female",
		"_has:Observation:patient:code=1234",
	} {
		q := parseMatchQuery(t, "Observation", raw)
		if raw == "_has:Observation:patient:code=1234" {
			q = parseMatchQuery(t, "Patient", raw)
		}
		err := Matchable(q)
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Kind != fhir.BadRequest {
			t.Errorf("%s: Matchable = %v, want a bad request", raw, err)
		}
		if Match(q, q.Type, "x", matchLU, &index.Entries{}) {
			t.Errorf("%s: Match of an unmatchable query must be false", raw)
		}
	}
	q := parseMatchQuery(t, "Observation", "code=x")
	q.Compartment = &Compartment{Type: "Patient", ID: "p1", Params: []string{"subject"}}
	if err := Matchable(q); err == nil {
		t.Error("a compartment search must not be matchable")
	}
	// Result shaping selects nothing: it is ignored.
	q = parseMatchQuery(t, "Observation", "code=2339-0&_sort=-date&_count=5&_include=Observation:patient&_summary=true&_elements=code&_total=accurate")
	if err := Matchable(q); err != nil {
		t.Fatalf("result shaping: %v", err)
	}
	e, err := index.Extract("Observation", []byte(matchObservation))
	if err != nil {
		t.Fatal(err)
	}
	if !Match(q, "Observation", "o1", matchLU, e) {
		t.Error("result shaping changed the match")
	}
}

// A compiled matcher allocates nothing per resource.
func TestMatchAllocations(t *testing.T) {
	q := parseMatchQuery(t, "Observation", "patient=Patient/p1&code=http://loinc.org|2339-0&date=ap2021-06&value-quantity=gt5||mmol/L"+
		"&code-value-quantity=2339-0$5.4&code:text=gluc&_lastUpdated=ge2024&category:not=exam&value-concept:missing=true")
	m, err := Compile(q)
	if err != nil {
		t.Fatal(err)
	}
	e, err := index.Extract("Observation", []byte(matchObservation))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match("Observation", "o1", matchLU, e) {
		t.Fatal("the query should match")
	}
	if n := testing.AllocsPerRun(100, func() { m.Match("Observation", "o1", matchLU, e) }); n != 0 {
		t.Errorf("Match allocates %v times a call", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	vals, _ := url.ParseQuery("patient=Patient/p1&code=http://loinc.org|8867-4")
	q, err := Parse("Observation", vals, Options{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := Compile(q)
	if err != nil {
		b.Fatal(err)
	}
	e, err := index.Extract("Observation", []byte(matchObservation))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Match("Observation", "o1", matchLU, e)
	}
}

// cmpDec agrees with exact rational comparison, exponents and signs included.
func TestCmpDec(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"0", "-0", 0}, {"0.000", "0e5", 0}, {"1e3", "1000.0", 0}, {"0.1", "1e-1", 0},
		{"1.5", "1.50000", 0}, {"-2", "-10", 1}, {"0.09", "0.1", -1}, {"100", "99.999", 1},
		{"-0.001", "0", -1}, {"12e-1", "1.2", 0}, {"1E+2", "100", 0}, {"007", "7", 0},
	} {
		a, okA := parseDec(tc.a)
		b, okB := parseDec(tc.b)
		if !okA || !okB {
			t.Fatalf("parse %q %q", tc.a, tc.b)
		}
		if got := cmpDec(a, b); got != tc.want {
			t.Errorf("cmpDec(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	for _, bad := range []string{"", "-", ".", "1e", "1.2.3", "abc", "1e+"} {
		if _, ok := parseDec(bad); ok {
			t.Errorf("parseDec(%q) succeeded", bad)
		}
	}
	rng := rand.New(rand.NewSource(1))
	gen := func() string {
		s := ""
		if rng.Intn(3) == 0 {
			s = "-"
		}
		s += fmt.Sprint(rng.Intn(1000))
		if rng.Intn(2) == 0 {
			s += "." + fmt.Sprintf("%0*d", rng.Intn(4)+1, rng.Intn(1000))
		}
		if rng.Intn(3) == 0 {
			s += fmt.Sprintf("e%d", rng.Intn(9)-4)
		}
		return s
	}
	for i := 0; i < 20000; i++ {
		x, y := gen(), gen()
		rx, _ := new(big.Rat).SetString(x)
		ry, _ := new(big.Rat).SetString(y)
		a, _ := parseDec(x)
		b, _ := parseDec(y)
		if got, want := cmpDec(a, b), rx.Cmp(ry); got != want {
			t.Fatalf("cmpDec(%s, %s) = %d, want %d", x, y, got, want)
		}
	}
}

func TestLike(t *testing.T) {
	for _, tc := range []struct {
		s, p string
		want bool
	}{
		{"abc", "abc", true}, {"abc", "ab", false}, {"abc", "a%", true}, {"abc", "%c", true},
		{"abc", "a_c", true}, {"abc", "a\\_c", false}, {"a_c", "a\\_c", true}, {"a%c", "a\\%c", true},
		{"ac", "a%%c", true}, {"é", "_", true}, {"", "%", true}, {"", "_", false}, {"x", "x\\", false},
	} {
		if got := like(tc.s, tc.p); got != tc.want {
			t.Errorf("like(%q, %q) = %v, want %v", tc.s, tc.p, got, tc.want)
		}
	}
}
