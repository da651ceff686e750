package spec

import "strings"

// Element is one top-level element of a resource type, as its base
// StructureDefinition snapshot defines it. Only the top level is tabled:
// _summary and _elements act on top-level elements only (see fhir/shape).
type Element struct {
	// Name is the JSON property name. For a choice element (value[x]) it is
	// the prefix ("value"): a JSON key belongs to the choice when it is the
	// prefix followed by a type name, which starts with an upper-case letter
	// (valueQuantity). The generator checks that no other element of the same
	// type could match that way.
	Name      string
	Choice    bool
	Summary   bool // ElementDefinition.isSummary
	Mandatory bool // ElementDefinition.min >= 1
}

// TopLevelElements returns the top-level elements of a resource type in
// definition order, or nil for an unknown type. The slice is a copy.
func TopLevelElements(resourceType string) []Element {
	els, ok := topElements[resourceType]
	if !ok {
		return nil
	}
	out := make([]Element, len(els))
	copy(out, els)
	return out
}

// SummaryElements returns the names of a resource type's top-level elements
// marked isSummary (id, meta, implicitRules and the type's own ones), in
// definition order; nil for an unknown type. A choice element is returned as
// its prefix ("value" for value[x]) and matches JSON keys by prefix plus an
// upper-case letter; ElementForKey does that matching.
func SummaryElements(resourceType string) []string {
	return elementNames(resourceType, func(e Element) bool { return e.Summary })
}

// MandatoryElements returns the names of a resource type's top-level
// elements with min >= 1, in definition order (choices as in SummaryElements).
func MandatoryElements(resourceType string) []string {
	return elementNames(resourceType, func(e Element) bool { return e.Mandatory })
}

func elementNames(resourceType string, keep func(Element) bool) []string {
	var out []string
	for _, e := range topElements[resourceType] {
		if keep(e) {
			out = append(out, e.Name)
		}
	}
	return out
}

// ElementForKey maps a top-level JSON property of a resource of the given
// type to the element it encodes: an exact name, or a choice prefix followed
// by an upper-case letter (valueQuantity is value[x]). A leading "_" is
// stripped first, because the JSON format carries a primitive's id and
// extensions in the sibling property "_name", which belongs to the element
// "name". resourceType is not an element and is not matched.
func ElementForKey(resourceType, key string) (Element, bool) {
	name := strings.TrimPrefix(key, "_")
	for _, e := range topElements[resourceType] {
		if name == e.Name && !e.Choice {
			return e, true
		}
		if e.Choice && len(name) > len(e.Name) && strings.HasPrefix(name, e.Name) {
			if c := name[len(e.Name)]; c >= 'A' && c <= 'Z' {
				return e, true
			}
		}
	}
	return Element{}, false
}
