// Package spec holds tables generated from the official FHIR R4 definitions:
// the resource types (and, as features land, search parameters and compartments).
package spec

//go:generate go run ./gen -out . -validate-out ../validate

import "sort"

// ResourceTypes returns every concrete R4 resource type name, sorted.
func ResourceTypes() []string {
	out := make([]string, len(resourceTypes))
	copy(out, resourceTypes[:])
	return out
}

// IsResourceType reports whether name is a concrete R4 resource type.
func IsResourceType(name string) bool {
	i := sort.SearchStrings(resourceTypes[:], name)
	return i < len(resourceTypes) && resourceTypes[i] == name
}
