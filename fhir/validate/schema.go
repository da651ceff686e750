package validate

import (
	"strings"
	"sync"
)

// kind is what a member holds: one of the R4 primitives, a complex type or
// backbone element (kComplex, with a type index), or a whole resource.
type kind uint8

const (
	kBoolean kind = iota + 1
	kInteger
	kPositiveInt
	kUnsignedInt
	kDecimal
	kString
	kMarkdown
	kCode
	kID
	kOID
	kUUID
	kURI
	kURL
	kCanonical
	kBase64Binary
	kDate
	kDateTime
	kInstant
	kTime
	kXHTML
	kComplex
	kResource
)

var kindNames = [...]string{
	kBoolean: "boolean", kInteger: "integer", kPositiveInt: "positiveInt", kUnsignedInt: "unsignedInt",
	kDecimal: "decimal", kString: "string", kMarkdown: "markdown", kCode: "code", kID: "id", kOID: "oid",
	kUUID: "uuid", kURI: "uri", kURL: "url", kCanonical: "canonical", kBase64Binary: "base64Binary",
	kDate: "date", kDateTime: "dateTime", kInstant: "instant", kTime: "time", kXHTML: "xhtml",
	kComplex: "complex", kResource: "Resource",
}

func (k kind) String() string { return kindNames[k] }

func (k kind) primitive() bool { return k >= kBoolean && k <= kXHTML }

// typeDef is a resource, complex datatype or backbone element.
type typeDef struct {
	name     string
	first, n int32 // members: fieldTable[first:first+n], sorted by name
	resource bool
}

const fArray = 1

// fieldDef is one JSON member name of a type (a choice element gives one per
// type: valueString, valueQuantity…).
type fieldDef struct {
	name   string
	kind   kind
	typ    uint16 // typeTable index, for kComplex
	flags  uint8
	choice uint8  // 1-based choice group within the type, 0 if none
	slot   uint8  // 1-based required slot within the type, 0 if optional
	vs     uint16 // 1-based valueSetTable index of a required binding, 0 if none
	refs   uint16 // 1-based refTable index of allowed Reference targets, 0 = any
}

func (f *fieldDef) array() bool { return f.flags&fArray != 0 }

type valueSetDef struct {
	url   string
	codes string // newline separated
}

// schema is the lookup structure built from the generated tables on first use.
type schemaIndex struct {
	members   []map[string]int32 // per type: member name -> fieldTable index
	required  []uint64           // per type: bit i-1 set for each required slot i
	byName    map[string]uint16  // resource type -> typeTable index
	valueSets []map[string]struct{}
	refs      []map[string]struct{}
}

var schema struct {
	once sync.Once
	idx  schemaIndex
}

func index() *schemaIndex {
	schema.once.Do(func() {
		x := &schema.idx
		x.members = make([]map[string]int32, len(typeTable))
		x.required = make([]uint64, len(typeTable))
		x.byName = make(map[string]uint16, 160)
		for ti := range typeTable {
			t := &typeTable[ti]
			m := make(map[string]int32, t.n)
			for i := t.first; i < t.first+t.n; i++ {
				f := &fieldTable[i]
				m[f.name] = i
				if f.slot > 0 {
					x.required[ti] |= 1 << (f.slot - 1)
				}
			}
			x.members[ti] = m
			if t.resource {
				x.byName[t.name] = uint16(ti)
			}
		}
		x.valueSets = make([]map[string]struct{}, len(valueSetTable))
		for i, vs := range valueSetTable {
			codes := strings.Split(vs.codes, "\n")
			m := make(map[string]struct{}, len(codes))
			for _, c := range codes {
				m[c] = struct{}{}
			}
			x.valueSets[i] = m
		}
		x.refs = make([]map[string]struct{}, len(refTable))
		for i, r := range refTable {
			m := map[string]struct{}{}
			for _, t := range strings.Fields(r) {
				m[t] = struct{}{}
			}
			x.refs[i] = m
		}
	})
	return &schema.idx
}

// maxChoices bounds the choice elements of one type (the generator checks).
const maxChoices = 8
