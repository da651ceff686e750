package spec

import "sort"

// Compartments returns the compartment types R4 defines (Device, Encounter,
// Patient, Practitioner, RelatedPerson), sorted.
func Compartments() []string {
	out := make([]string, 0, len(compartments))
	for c := range compartments {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// CompartmentParams returns the search parameter codes that put a resource
// of resourceType into a compartment of type compartment (a resource is in
// Patient/123's compartment when any of them refers to Patient/123); nil
// means the resource type is never in that compartment. The table comes from
// CompartmentDefinition-*.json; every code is a search parameter of
// resourceType (the generator checks).
//
// The compartment's own type is special. The definitions write the
// pseudo-parameter "{def}" for it (Encounter, Practitioner, RelatedPerson),
// or list only other links (Patient: "link"), or nothing at all (Device),
// yet each definition's description says the compartment's identity is that
// of its focal resource. So the table always gives the own type "_id" first
// (Patient/123 is in its own compartment because its _id is 123) and drops
// "{def}": CompartmentParams("Patient", "Patient") is ["_id", "link"] and
// CompartmentParams("Device", "Device") is ["_id"].
func CompartmentParams(compartment, resourceType string) []string {
	params := compartments[compartment][resourceType]
	if params == nil {
		return nil
	}
	out := make([]string, len(params))
	copy(out, params)
	return out
}

// CompartmentTypes returns the resource types that can be in a compartment
// of type compartment (those with a non-nil CompartmentParams), sorted; nil
// for an unknown compartment type.
func CompartmentTypes(compartment string) []string {
	byType, ok := compartments[compartment]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(byType))
	for t := range byType {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
