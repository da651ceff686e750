package xml

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/emberfhir/ember/fhir/validate"
)

// Namespaces of the FHIR XML syntax.
const (
	NamespaceFHIR  = "http://hl7.org/fhir"
	NamespaceXHTML = "http://www.w3.org/1999/xhtml"
)

// kind is how a member is written in each syntax.
type kind uint8

const (
	kString   kind = iota + 1 // a primitive whose JSON value is a string
	kNumber                   // integer, positiveInt, unsignedInt, decimal: a JSON number
	kBoolean                  // a JSON true or false
	kXHTML                    // Narrative.div: XHTML in its own namespace
	kComplex                  // a datatype or backbone element: an object
	kResource                 // a resource wrapped in an element named by its type
)

// member is one JSON member name of a type (a choice element gives one per
// type, valueString, valueQuantity…, sharing the element's position).
type member struct {
	ord     int32 // the element's position in the definition order
	kind    kind
	attr    bool // an XML attribute (Element.id, Extension.url)
	repeats bool
	typ     *xtype // kComplex
}

// xtype is a resource, complex datatype or backbone element.
type xtype struct {
	name     string
	resource bool
	members  map[string]*member
}

// tables is built once from fhir/validate's types and orderTable.
type tables struct {
	resources map[string]*xtype
	extension *xtype // for primitives' _member extensions
}

var built struct {
	once sync.Once
	t    tables
	err  error
}

// index returns the tables. An error means the generated order disagrees
// with fhir/validate's tables: a generator bug the tests catch, never input.
func index() (*tables, error) {
	built.once.Do(func() { built.t, built.err = build() })
	return &built.t, built.err
}

func build() (tables, error) {
	order := make(map[string][]string, len(orderTable))
	for _, o := range orderTable {
		order[o.name] = strings.Fields(o.elements)
	}
	b := builder{order: order, types: map[validate.Type]*xtype{}}
	t := tables{resources: map[string]*xtype{}}
	for _, o := range orderTable {
		vt, ok := validate.ResourceType(o.name)
		if !ok {
			continue
		}
		x, err := b.typ(vt)
		if err != nil {
			return t, err
		}
		t.resources[o.name] = x
	}
	if m := t.resources["Patient"].members["extension"]; m != nil {
		t.extension = m.typ
	}
	if t.extension == nil {
		return t, fmt.Errorf("fhir/xml: no Extension type in the tables")
	}
	return t, nil
}

type builder struct {
	order map[string][]string
	types map[validate.Type]*xtype
}

func (b *builder) typ(vt validate.Type) (*xtype, error) {
	if x, ok := b.types[vt]; ok {
		return x, nil
	}
	name := vt.Name()
	names, ok := b.order[name]
	if !ok {
		return nil, fmt.Errorf("fhir/xml: type %s has no element order", name)
	}
	x := &xtype{name: name, resource: vt.IsResource(), members: map[string]*member{}}
	b.types[vt] = x // before the members: contentReference recurses
	pos := make(map[string]int32, len(names))
	attrs := map[string]bool{}
	for i, n := range names {
		if a, ok := strings.CutPrefix(n, "@"); ok {
			n = a
			attrs[n] = true
		}
		pos[n] = int32(i)
	}
	for _, el := range vt.Elements() {
		ord, ok := pos[el.Name]
		if !ok {
			return nil, fmt.Errorf("fhir/xml: %s.%s is not in the element order", name, el.Name)
		}
		add := func(jsonName string, t validate.Type) error {
			m := &member{ord: ord, attr: attrs[el.Name], repeats: el.Repeats}
			switch {
			case t.Name() == "xhtml":
				m.kind = kXHTML
			case t.Primitive():
				m.kind = primitiveKind(t.Name())
			case t.Name() == "Resource":
				m.kind = kResource
			default:
				m.kind = kComplex
				if t.IsResource() {
					m.kind = kResource // no R4 element names one resource type
				}
				st, err := b.typ(t)
				if err != nil {
					return err
				}
				m.typ = st
			}
			if m.attr && m.kind != kString {
				return fmt.Errorf("fhir/xml: %s.%s: an attribute must be a string primitive", name, jsonName)
			}
			x.members[jsonName] = m
			return nil
		}
		if len(el.Choices) == 0 {
			if err := add(el.Name, el.Type); err != nil {
				return nil, err
			}
			continue
		}
		for _, c := range el.Choices {
			if err := add(el.Name+c.Suffix, c.Type); err != nil {
				return nil, err
			}
		}
	}
	return x, nil
}

func primitiveKind(name string) kind {
	switch name {
	case "boolean":
		return kBoolean
	case "integer", "positiveInt", "unsignedInt", "decimal":
		return kNumber
	}
	return kString
}

// resourceTypes lists the resource types the tables know, sorted (for tests).
func resourceTypes() []string {
	t, _ := index()
	out := make([]string, 0, len(t.resources))
	for n := range t.resources {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
