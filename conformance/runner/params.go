package runner

// The US Core 6.1 server requirements the suite checks, read from the
// guide's CapabilityStatement (CapabilityStatement-us-core-server: each
// resource's SHALL search parameters and SHALL/SHOULD combinations, its
// _include and _revinclude) and the search parameters' expressions, as
// Inferno's US Core test kit derives its tests. Written out here so the
// runner needs no package at run time.

// kind is a search parameter's type, as far as matching needs it.
type kind uint8

const (
	refParam kind = iota + 1
	tokenParam
	dateParam
	stringParam
	idParam
)

// param is a search parameter of a type: its kind and element paths.
type param struct {
	kind  kind
	paths []string
}

// search is one required search: parameters searched together.
type search struct {
	params []string
	shall  bool // SHALL; else SHOULD (a server may lack it)
}

// profile is what the suite checks for one US Core resource type.
type profile struct {
	typ     string
	url     string // the type's base US Core profile
	patient string // the patient reference parameter; "" when not patient-scoped
	// searches in the CapabilityStatement's order of importance: the
	// first SHALL one gets the variants (POST _search, Patient/id, system|code,
	// date comparators, multiple-or).
	searches    []search
	includes    []string // _include values with the element each follows
	provenance  bool     // _revinclude=Provenance:target SHALL work
	params      map[string]param
	includePath map[string]string // _include value -> reference path
}

const usCore = "http://hl7.org/fhir/us/core/StructureDefinition/"

func shall(ps ...string) search  { return search{params: ps, shall: true} }
func should(ps ...string) search { return search{params: ps} }

func p(k kind, paths ...string) param { return param{kind: k, paths: paths} }

// profiles lists the resource types in the order they run.
var profiles = []profile{
	{typ: "Patient", url: usCore + "us-core-patient", provenance: true,
		searches: []search{shall("_id"), shall("identifier"), shall("name"), shall("birthdate", "name"), shall("gender", "name"),
			should("birthdate", "family"), should("family", "gender"), should("death-date", "family"),
			should("race"), should("ethnicity"), should("gender-identity")},
		params: map[string]param{"_id": p(idParam), "identifier": p(tokenParam, "identifier"), "name": p(stringParam, "name"),
			"family": p(stringParam, "name.family"), "birthdate": p(dateParam, "birthDate"), "gender": p(tokenParam, "gender"),
			"death-date":      p(dateParam, "deceasedDateTime"),
			"race":            p(tokenParam, "extension("+usCore+"us-core-race).extension.value[x]"),
			"ethnicity":       p(tokenParam, "extension("+usCore+"us-core-ethnicity).extension.value[x]"),
			"gender-identity": p(tokenParam, "extension("+usCore+"us-core-genderIdentity).value[x]")}},
	{typ: "AllergyIntolerance", url: usCore + "us-core-allergyintolerance", patient: "patient", provenance: true,
		searches: []search{shall("patient"), should("patient", "clinical-status")},
		params:   map[string]param{"clinical-status": p(tokenParam, "clinicalStatus")}},
	{typ: "CarePlan", url: usCore + "us-core-careplan", patient: "patient", provenance: true,
		searches: []search{shall("patient", "category"), should("patient", "category", "date"), should("patient", "category", "status"),
			should("patient", "category", "status", "date")},
		params: map[string]param{"category": p(tokenParam, "category"), "date": p(dateParam, "period"), "status": p(tokenParam, "status")}},
	{typ: "CareTeam", url: usCore + "us-core-careteam", patient: "patient", provenance: true,
		searches: []search{shall("patient", "status"), should("patient", "role")},
		params:   map[string]param{"status": p(tokenParam, "status"), "role": p(tokenParam, "participant.role")}},
	{typ: "Condition", url: usCore + "us-core-condition-problems-health-concerns", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("patient", "category"), should("patient", "clinical-status"), should("patient", "category", "clinical-status"),
			should("patient", "code"), should("patient", "onset-date"), should("patient", "abatement-date"), should("patient", "recorded-date"),
			should("patient", "asserted-date"), should("patient", "category", "encounter")},
		params: map[string]param{"category": p(tokenParam, "category"), "clinical-status": p(tokenParam, "clinicalStatus"), "code": p(tokenParam, "code"),
			"onset-date": p(dateParam, "onsetDateTime", "onsetPeriod"), "abatement-date": p(dateParam, "abatementDateTime", "abatementPeriod"),
			"recorded-date": p(dateParam, "recordedDate"), "encounter": p(refParam, "encounter"),
			"asserted-date": p(dateParam, "extension(http://hl7.org/fhir/StructureDefinition/condition-assertedDate).value[x]")}},
	{typ: "Coverage", url: usCore + "us-core-coverage", patient: "patient", provenance: true,
		searches: []search{shall("patient")}},
	{typ: "Device", url: usCore + "us-core-implantable-device", patient: "patient", provenance: true,
		searches: []search{shall("patient"), should("patient", "type"), should("patient", "status")},
		params:   map[string]param{"type": p(tokenParam, "type"), "status": p(tokenParam, "status")}},
	{typ: "DiagnosticReport", url: usCore + "us-core-diagnosticreport-lab", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("patient", "category"), shall("patient", "code"), shall("patient", "category", "date"),
			should("patient", "status"), should("patient", "code", "date")},
		params: map[string]param{"category": p(tokenParam, "category"), "code": p(tokenParam, "code"), "date": p(dateParam, "effective[x]"),
			"status": p(tokenParam, "status")}},
	{typ: "DocumentReference", url: usCore + "us-core-documentreference", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("_id"), shall("patient", "category"), shall("patient", "type"), shall("patient", "category", "date"),
			should("patient", "status"), should("patient", "type", "period")},
		params: map[string]param{"_id": p(idParam), "category": p(tokenParam, "category"), "type": p(tokenParam, "type"),
			"date": p(dateParam, "date"), "status": p(tokenParam, "status"), "period": p(dateParam, "context.period")}},
	{typ: "Encounter", url: usCore + "us-core-encounter", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("_id"), shall("date", "patient"), should("class", "patient"), should("patient", "type"),
			should("patient", "status"), should("patient", "location"), should("patient", "discharge-disposition")},
		params: map[string]param{"_id": p(idParam), "date": p(dateParam, "period"), "class": p(tokenParam, "class"), "type": p(tokenParam, "type"),
			"status": p(tokenParam, "status"), "location": p(refParam, "location.location"),
			"discharge-disposition": p(tokenParam, "hospitalization.dischargeDisposition")}},
	{typ: "Goal", url: usCore + "us-core-goal", patient: "patient", provenance: true,
		searches: []search{shall("patient"), should("patient", "lifecycle-status"), should("patient", "target-date"), should("patient", "description")},
		params: map[string]param{"lifecycle-status": p(tokenParam, "lifecycleStatus"), "target-date": p(dateParam, "target.dueDate"),
			"description": p(tokenParam, "description")}},
	{typ: "Immunization", url: usCore + "us-core-immunization", patient: "patient", provenance: true,
		searches: []search{shall("patient"), should("patient", "date"), should("patient", "status")},
		params:   map[string]param{"date": p(dateParam, "occurrence[x]"), "status": p(tokenParam, "status")}},
	{typ: "MedicationDispense", url: usCore + "us-core-medicationdispense", patient: "patient", provenance: true,
		searches: []search{shall("patient"), should("patient", "status"), should("patient", "status", "type")},
		includes: []string{"MedicationDispense:medication"}, includePath: map[string]string{"MedicationDispense:medication": "medicationReference"},
		params: map[string]param{"status": p(tokenParam, "status"), "type": p(tokenParam, "type")}},
	{typ: "MedicationRequest", url: usCore + "us-core-medicationrequest", patient: "patient", provenance: true,
		searches: []search{shall("patient", "intent"), shall("patient", "intent", "status"), should("patient", "intent", "encounter"),
			should("patient", "intent", "authoredon")},
		includes: []string{"MedicationRequest:medication"}, includePath: map[string]string{"MedicationRequest:medication": "medicationReference"},
		params: map[string]param{"intent": p(tokenParam, "intent"), "status": p(tokenParam, "status"), "encounter": p(refParam, "encounter"),
			"authoredon": p(dateParam, "authoredOn")}},
	{typ: "Observation", url: usCore + "us-core-observation-lab", patient: "patient", provenance: true,
		searches: []search{shall("patient", "category"), shall("patient", "code"), shall("patient", "category", "date"),
			should("patient", "category", "status"), should("patient", "code", "date")},
		params: map[string]param{"category": p(tokenParam, "category"), "code": p(tokenParam, "code"), "date": p(dateParam, "effective[x]"),
			"status": p(tokenParam, "status")}},
	{typ: "Procedure", url: usCore + "us-core-procedure", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("patient", "date"), should("patient", "status"), should("patient", "code", "date")},
		params:   map[string]param{"date": p(dateParam, "performed[x]"), "status": p(tokenParam, "status"), "code": p(tokenParam, "code")}},
	{typ: "QuestionnaireResponse", url: usCore + "us-core-questionnaireresponse", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("_id"), should("patient", "status"), should("patient", "authored")},
		params:   map[string]param{"_id": p(idParam), "status": p(tokenParam, "status"), "authored": p(dateParam, "authored")}},
	{typ: "RelatedPerson", url: usCore + "us-core-relatedperson", patient: "patient", provenance: true,
		searches: []search{shall("_id"), should("patient", "name")},
		params:   map[string]param{"_id": p(idParam), "name": p(stringParam, "name")}},
	{typ: "ServiceRequest", url: usCore + "us-core-servicerequest", patient: "patient", provenance: true,
		searches: []search{shall("patient"), shall("_id"), shall("patient", "category"), shall("patient", "code"), shall("patient", "category", "authored"),
			should("patient", "status"), should("patient", "code", "authored")},
		params: map[string]param{"_id": p(idParam), "category": p(tokenParam, "category"), "code": p(tokenParam, "code"),
			"authored": p(dateParam, "authoredOn"), "status": p(tokenParam, "status")}},
	{typ: "Specimen", url: usCore + "us-core-specimen",
		searches: []search{shall("_id")},
		params:   map[string]param{"_id": p(idParam)}},
	{typ: "Location", url: usCore + "us-core-location",
		searches: []search{shall("name"), shall("address")},
		params:   map[string]param{"name": p(stringParam, "name", "alias"), "address": p(stringParam, "address")}},
	{typ: "Organization", url: usCore + "us-core-organization",
		searches: []search{shall("name"), shall("address")},
		params:   map[string]param{"name": p(stringParam, "name", "alias"), "address": p(stringParam, "address")}},
	{typ: "Practitioner", url: usCore + "us-core-practitioner",
		searches: []search{shall("name"), shall("identifier")},
		params:   map[string]param{"name": p(stringParam, "name"), "identifier": p(tokenParam, "identifier")}},
	{typ: "PractitionerRole", url: usCore + "us-core-practitionerrole",
		searches: []search{shall("specialty"), shall("practitioner")},
		includes: []string{"PractitionerRole:practitioner"}, includePath: map[string]string{"PractitionerRole:practitioner": "practitioner"},
		params: map[string]param{"specialty": p(tokenParam, "specialty"), "practitioner": p(refParam, "practitioner")}},
}

// patientPaths are the element each type's patient parameter follows.
var patientPaths = map[string]string{
	"AllergyIntolerance": "patient", "Device": "patient", "Immunization": "patient", "Coverage": "beneficiary",
	"RelatedPerson": "patient",
}

// paramOf returns the definition of name on pr.
func (pr *profile) paramOf(name string) (param, bool) {
	if name == pr.patient && pr.patient != "" {
		path := patientPaths[pr.typ]
		if path == "" {
			path = "subject"
		}
		return p(refParam, path), true
	}
	x, ok := pr.params[name]
	return x, ok
}
