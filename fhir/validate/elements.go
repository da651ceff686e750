package validate

import "strings"

// This file exports the element definitions of the generated tables for
// code that must know FHIR's shape of a resource without validating it
// (FHIRPath Patch: "add given" makes an array because HumanName.given
// repeats, "add value" on an Observation writes valueQuantity). The tables
// already resolve backbone elements and contentReference, so their users
// need no StructureDefinitions, nor google/fhir's proto descriptors, at run
// time.

// Type is an R4 type as the generated tables know it: a primitive, a
// complex datatype, a backbone element (named by its path,
// "Observation.component"), a resource type, or "Resource" (a nested
// resource of any type, as in contained). The zero Type is none: a
// position the tables do not describe.
type Type struct {
	k  kind
	ti uint16 // typeTable index, for kComplex
}

// Element is one element of a complex type. A choice element (value[x])
// is one Element, named without its suffix ("value"), with one Choice per
// allowed type.
type Element struct {
	Name    string
	Repeats bool
	Type    Type     // zero for a choice element
	Choices []Choice // a choice element's types, in the tables' order
}

// Choice is one type a choice element allows: its JSON member is the
// element's name followed by Suffix (valueQuantity).
type Choice struct {
	Suffix string // "Quantity", "String", "DateTime"
	Type   Type
}

// ResourceType returns the type of the R4 resource type name.
func ResourceType(name string) (Type, bool) {
	ti, ok := index().byName[name]
	if !ok {
		return Type{}, false
	}
	return Type{k: kComplex, ti: ti}, true
}

// IsZero reports whether t is no type.
func (t Type) IsZero() bool { return t.k == 0 }

// Name is the type's R4 name: "string", "HumanName", "Patient",
// "Resource", or a backbone element's path; "" for the zero Type.
func (t Type) Name() string {
	switch t.k {
	case 0:
		return ""
	case kComplex:
		return typeTable[t.ti].name
	}
	return t.k.String()
}

// Primitive reports whether t is one of the R4 primitive types.
func (t Type) Primitive() bool { return t.k.primitive() }

// IsResource reports whether t is a resource type (or "Resource").
func (t Type) IsResource() bool {
	return t.k == kResource || t.k == kComplex && typeTable[t.ti].resource
}

// Elements lists the elements of a complex type, backbone element or
// resource type in the tables' order (by JSON member name; a choice
// element where its first member sorts); nil for other types. A
// contentReference element (Questionnaire.item.item) has the type of the
// element it refers to.
func (t Type) Elements() []Element {
	if t.k != kComplex {
		return nil
	}
	td := &typeTable[t.ti]
	fields := fieldTable[td.first : td.first+td.n]
	out := make([]Element, 0, len(fields))
	var groups [maxChoices + 1]int // choice group -> 1-based position in out
	for i := range fields {
		f := &fields[i]
		ft := fieldType(f)
		if f.choice == 0 {
			out = append(out, Element{Name: f.name, Repeats: f.array(), Type: ft})
			continue
		}
		suffix := choiceSuffix(f)
		name := strings.TrimSuffix(f.name, suffix)
		if g := groups[f.choice]; g > 0 {
			out[g-1].Choices = append(out[g-1].Choices, Choice{Suffix: suffix, Type: ft})
			continue
		}
		out = append(out, Element{Name: name, Repeats: f.array(), Choices: []Choice{{Suffix: suffix, Type: ft}}})
		groups[f.choice] = len(out)
	}
	return out
}

// fieldType is the type of a member. Only a complex type keeps its table
// index, so equal types are equal Types (patch keys a cache by them).
func fieldType(f *fieldDef) Type {
	if f.kind != kComplex {
		return Type{k: f.kind}
	}
	return Type{k: kComplex, ti: f.typ}
}

// choiceSuffix is the type suffix of a choice member: its type's name with
// an upper-case initial. SimpleQuantity, the one profile the tables keep as
// a type of its own, is a Quantity on the wire (valueQuantity).
func choiceSuffix(f *fieldDef) string {
	name := fieldType(f).Name()
	if name == "SimpleQuantity" {
		name = "Quantity"
	}
	return strings.ToUpper(name[:1]) + name[1:]
}
