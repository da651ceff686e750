package patch

import (
	"sync"

	"github.com/emberfhir/ember/fhir/validate"
)

// FHIRPath Patch names elements, not JSON shapes: "add given" must create
// a JSON array because HumanName.given repeats, and "add value" on an
// Observation must write valueQuantity. Element definitions come from the
// validator's tables, generated from the R4 StructureDefinitions with
// backbone elements and contentReference resolved, so patching and
// validation agree on every element and no table of our own is kept.

// elemType is the type of an element. The zero value means unknown (a
// position the tables do not describe), and the JSON shape then decides.
type elemType = validate.Type

// field describes one element of a complex type.
type field struct {
	list bool
	typ  elemType // zero for a choice
	// choices maps a choice element's type suffix (Quantity, String) to its type.
	choices map[string]elemType
}

// fieldsCache holds each complex type's elements by name, built on first
// use: a patch touches a handful of types, the tables hold hundreds.
var fieldsCache sync.Map // elemType → map[string]field

// resourceType returns the type of an R4 resource type, or the zero type.
func resourceType(name string) elemType {
	t, _ := validate.ResourceType(name)
	return t
}

// fieldOf looks an element up by its FHIR name (a choice by its prefix,
// "value").
func fieldOf(t elemType, name string) (field, bool) {
	if t.IsZero() || t.Primitive() {
		return field{}, false
	}
	f, ok := fieldsOf(t)[name]
	return f, ok
}

func fieldsOf(t elemType) map[string]field {
	if m, ok := fieldsCache.Load(t); ok {
		return m.(map[string]field)
	}
	els := t.Elements()
	m := make(map[string]field, len(els))
	for _, e := range els {
		f := field{list: e.Repeats, typ: e.Type}
		if e.Choices != nil {
			f.choices = make(map[string]elemType, len(e.Choices))
			for _, c := range e.Choices {
				f.choices[c.Suffix] = c.Type
			}
		}
		m[e.Name] = f
	}
	fieldsCache.Store(t, m)
	return m
}

// choiceKey splits a JSON key such as valueQuantity into the choice
// element's name and type suffix, when t has such a choice element. The
// element name may itself hold upper-case letters (multipleBirthBoolean,
// defaultValueString), so every split is tried.
func choiceKey(t elemType, key string) (name, suffix string, ok bool) {
	for i := 1; i < len(key); i++ {
		if key[i] < 'A' || key[i] > 'Z' {
			continue
		}
		if f, found := fieldOf(t, key[:i]); found && f.choices != nil {
			if _, known := f.choices[key[i:]]; known {
				return key[:i], key[i:], true
			}
		}
	}
	return "", "", false
}

// typeOfValue returns the type of a value at an element of type declared:
// a nested resource's type (contained, Bundle.entry.resource) comes from
// its resourceType.
func typeOfValue(declared elemType, v any) elemType {
	if o, ok := v.(*object); ok {
		if rt, ok := o.vals["resourceType"].(string); ok {
			return resourceType(rt)
		}
	}
	return declared
}
