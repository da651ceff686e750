package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// The types below cover just the Patient elements the generator fills. They
// are structs rather than maps so resourceType comes first and fields keep
// the conventional FHIR order, as real clients send them.
type (
	patient struct {
		ResourceType  string          `json:"resourceType"`
		ID            string          `json:"id,omitempty"`
		Meta          meta            `json:"meta"`
		Extension     []extension     `json:"extension"`
		Identifier    []identifier    `json:"identifier"`
		Active        bool            `json:"active"`
		Name          []humanName     `json:"name"`
		Telecom       []contactPoint  `json:"telecom"`
		Gender        string          `json:"gender"`
		BirthDate     string          `json:"birthDate"`
		Address       []address       `json:"address"`
		MaritalStatus codeableConcept `json:"maritalStatus"`
		Communication []communication `json:"communication"`
	}
	meta struct {
		Profile []string `json:"profile"`
	}
	extension struct {
		URL         string      `json:"url"`
		Extension   []extension `json:"extension,omitempty"`
		ValueCoding *coding     `json:"valueCoding,omitempty"`
		ValueString string      `json:"valueString,omitempty"`
		ValueCode   string      `json:"valueCode,omitempty"`
	}
	coding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding"`
		Text   string   `json:"text,omitempty"`
	}
	identifier struct {
		Use    string           `json:"use,omitempty"`
		Type   *codeableConcept `json:"type,omitempty"`
		System string           `json:"system"`
		Value  string           `json:"value"`
	}
	humanName struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Prefix []string `json:"prefix,omitempty"`
	}
	contactPoint struct {
		System string `json:"system"`
		Value  string `json:"value"`
		Use    string `json:"use"`
		Rank   int    `json:"rank,omitempty"`
	}
	address struct {
		Use        string   `json:"use"`
		Type       string   `json:"type"`
		Line       []string `json:"line"`
		City       string   `json:"city"`
		District   string   `json:"district"`
		State      string   `json:"state"`
		PostalCode string   `json:"postalCode"`
		Country    string   `json:"country"`
	}
	communication struct {
		Language  codeableConcept `json:"language"`
		Preferred bool            `json:"preferred"`
	}
)

const (
	usCore   = "http://hl7.org/fhir/us/core/StructureDefinition/"
	ombRace  = "urn:oid:2.16.840.1.113883.6.238"
	v2Ident  = "http://terminology.hl7.org/CodeSystem/v2-0203"
	mrSystem = "http://hospital.example.org/fhir/sid/mrn"
)

var (
	femaleGiven = []string{"Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Evelyn", "Abigail", "Maria", "Aisha", "Mei", "Priya", "Fatima", "Chloe"}
	maleGiven   = []string{"Liam", "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry", "Alexander", "Jose", "Mohammed", "Wei", "Arjun", "Kwame", "Mateo"}
	families    = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Nguyen", "Patel", "Kim", "Okafor", "O'Brien", "Schmidt"}
	streets     = []string{"Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Washington Blvd", "Lakeview Rd", "Hillcrest Ct", "Park Pl", "Sunset Way"}
	places      = []struct{ city, district, state, zip string }{
		{"Boston", "Suffolk", "MA", "02118"}, {"Springfield", "Sangamon", "IL", "62704"}, {"Austin", "Travis", "TX", "78701"},
		{"Portland", "Multnomah", "OR", "97205"}, {"Madison", "Dane", "WI", "53703"}, {"Denver", "Denver", "CO", "80202"},
		{"Raleigh", "Wake", "NC", "27601"}, {"Tucson", "Pima", "AZ", "85701"}, {"Albany", "Albany", "NY", "12207"},
	}
	races = []coding{
		{ombRace, "2106-3", "White"}, {ombRace, "2054-5", "Black or African American"}, {ombRace, "2028-9", "Asian"},
		{ombRace, "1002-5", "American Indian or Alaska Native"}, {ombRace, "2076-8", "Native Hawaiian or Other Pacific Islander"},
	}
	ethnicities = []coding{{ombRace, "2135-2", "Hispanic or Latino"}, {ombRace, "2186-5", "Not Hispanic or Latino"}}
	marital     = []coding{
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "S", "Never Married"},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "D", "Divorced"},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "W", "Widowed"},
	}
	languages = []coding{{"urn:ietf:bcp:47", "en-US", "English (United States)"}, {"urn:ietf:bcp:47", "es", "Spanish"}, {"urn:ietf:bcp:47", "vi", "Vietnamese"}, {"urn:ietf:bcp:47", "zh", "Chinese"}}
)

// patientJSON builds the n-th benchmark Patient, about 1.5–2 KB of US Core
// shaped JSON. The same n always gives the same resource, so runs are
// comparable; id is left out when empty (create).
func patientJSON(n int, id string) ([]byte, error) {
	b, err := json.Marshal(newPatient(n, id))
	if err != nil {
		return nil, fmt.Errorf("patient %d: %w", n, err)
	}
	return b, nil
}

func newPatient(n int, id string) patient {
	r := rand.New(rand.NewPCG(uint64(n), 0x656d626572)) // per-n stream: deterministic, varied
	gender, given := "female", femaleGiven
	if r.IntN(2) == 0 {
		gender, given = "male", maleGiven
	}
	family, first, middle := pick(r, families), pick(r, given), pick(r, given)
	race, eth := pick(r, races), pick(r, ethnicities)
	birth := fmt.Sprintf("%04d-%02d-%02d", 1930+r.IntN(90), 1+r.IntN(12), 1+r.IntN(28))
	return patient{
		ResourceType: "Patient",
		ID:           id,
		Meta:         meta{Profile: []string{usCore + "us-core-patient"}},
		Extension: []extension{
			{URL: usCore + "us-core-race", Extension: []extension{
				{URL: "ombCategory", ValueCoding: &race}, {URL: "text", ValueString: race.Display}}},
			{URL: usCore + "us-core-ethnicity", Extension: []extension{
				{URL: "ombCategory", ValueCoding: &eth}, {URL: "text", ValueString: eth.Display}}},
			{URL: usCore + "us-core-birthsex", ValueCode: map[string]string{"female": "F", "male": "M"}[gender]},
		},
		Identifier: []identifier{
			{Use: "usual", Type: &codeableConcept{Coding: []coding{{v2Ident, "MR", ""}}},
				System: mrSystem, Value: fmt.Sprintf("MRN%08d", n)},
			{Type: &codeableConcept{Coding: []coding{{v2Ident, "SS", ""}}},
				System: "http://hl7.org/fhir/sid/us-ssn", Value: fmt.Sprintf("999-%02d-%04d", r.IntN(100), r.IntN(10000))},
		},
		Active: true,
		Name: []humanName{
			{Use: "official", Family: family, Given: []string{first, middle}},
		},
		Telecom: []contactPoint{
			{System: "phone", Value: phone(r), Use: "home", Rank: 1},
			{System: "phone", Value: phone(r), Use: "mobile", Rank: 2},
			{System: "email", Value: fmt.Sprintf("%s.%s%d@example.com", first, family, n), Use: "home"},
		},
		Gender:        gender,
		BirthDate:     birth,
		Address:       []address{homeAddress(r)},
		MaritalStatus: codeableConcept{Coding: []coding{pick(r, marital)}},
		Communication: []communication{{Language: codeableConcept{Coding: []coding{pick(r, languages)}}, Preferred: true}},
	}
}

func homeAddress(r *rand.Rand) address {
	p := pick(r, places)
	return address{
		Use: "home", Type: "both",
		Line:       []string{fmt.Sprintf("%d %s", 1+r.IntN(9999), pick(r, streets)), fmt.Sprintf("Apt %d", 1+r.IntN(400))},
		City:       p.city,
		District:   p.district,
		State:      p.state,
		PostalCode: p.zip,
		Country:    "US",
	}
}

func phone(r *rand.Rand) string {
	return fmt.Sprintf("(%03d) 555-%04d", 200+r.IntN(800), r.IntN(10000))
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }
