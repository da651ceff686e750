package patch

import (
	"strings"
	"sync"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FHIRPath Patch names elements, not JSON shapes: "add given" must create
// a JSON array because HumanName.given repeats, and "add value" on an
// Observation must write valueQuantity. Element definitions are read from
// google/fhir's R4 proto descriptors, which carry every element's
// cardinality and type, so no table of our own has to be kept.

// elemType is the type of a complex element: its proto message. nil means
// unknown (a primitive, or a position the descriptors do not describe), and
// the JSON shape then decides.
type elemType = protoreflect.MessageDescriptor

// field describes one element of a complex type.
type field struct {
	list bool
	typ  elemType // nil for a choice
	// choices maps a choice element's type suffix (Quantity, String) to its type.
	choices map[string]elemType
}

var (
	resourcesOnce sync.Once
	resources     map[string]elemType
	fieldsCache   sync.Map // elemType → map[string]field
)

// resourceType returns the message of an R4 resource type, or nil.
func resourceType(name string) elemType {
	resourcesOnce.Do(func() {
		resources = map[string]elemType{}
		fs := (&rpb.ContainedResource{}).ProtoReflect().Descriptor().Fields()
		for i := 0; i < fs.Len(); i++ {
			m := fs.Get(i).Message()
			resources[string(m.Name())] = m
		}
	})
	return resources[name]
}

// fieldOf looks an element up by its FHIR name (a choice by its prefix,
// "value").
func fieldOf(t elemType, name string) (field, bool) {
	if t == nil {
		return field{}, false
	}
	f, ok := fieldsOf(t)[name]
	return f, ok
}

func fieldsOf(t elemType) map[string]field {
	if m, ok := fieldsCache.Load(t); ok {
		return m.(map[string]field)
	}
	m := map[string]field{}
	fs := t.Fields()
	for i := 0; i < fs.Len(); i++ {
		fd := fs.Get(i)
		f := field{list: fd.IsList(), typ: fd.Message()}
		if isChoice(fd.Message()) {
			f.typ, f.choices = nil, map[string]elemType{}
			cs := fd.Message().Fields()
			for j := 0; j < cs.Len(); j++ {
				c := cs.Get(j)
				f.choices[upperFirst(c.JSONName())] = c.Message()
			}
		}
		m[fd.JSONName()] = f
	}
	fieldsCache.Store(t, m)
	return m
}

func isChoice(m protoreflect.MessageDescriptor) bool {
	return m != nil && proto.HasExtension(m.Options(), apb.E_IsChoiceType)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// choiceKey splits a JSON key such as valueQuantity into the choice
// element's name and type suffix, when t has such a choice element.
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
		return "", "", false // the first upper-case letter ends the element name
	}
	return "", "", false
}

// typeOfValue returns the type of a value at an element of type declared:
// a contained resource's type comes from its resourceType, which the
// descriptors (google.protobuf.Any) do not know.
func typeOfValue(declared elemType, v any) elemType {
	if o, ok := v.(*object); ok {
		if rt, ok := o.vals["resourceType"].(string); ok {
			return resourceType(rt)
		}
	}
	return declared
}
