// Package search parses FHIR search requests into queries checked against the
// search parameter registry (fhir/spec). It does no I/O; store executes them.
package search

import (
	"time"

	"github.com/emberfhir/ember/fhir/spec"
)

// Query is a parsed search.
type Query struct {
	Type   string   // resource type; "" for a system search
	Types  []string // _type of a system search
	Params []Param  // all must match (AND)
	// Compartment, when set, restricts matches to one compartment.
	Compartment *Compartment

	Sort        []SortKey
	Count       int    // page size
	Total       string // none | estimate | accurate
	Summary     string // "", true, text, data, count, false
	Elements    []string
	Includes    []Include
	RevIncludes []Include
	Cursor      string // opaque paging position

	// Ignored lists parameters left out under lenient handling, with why;
	// Dropped names them, so links can leave them out.
	Ignored []string
	Dropped []string
}

// Param is one occurrence of a search parameter: its values are ORed.
type Param struct {
	Name     string // the parameter as written, with modifier (for links)
	SP       *spec.SearchParam
	Type     string // resource type the parameter belongs to
	Modifier string
	Values   []Value
	// Chains: the parameter is a reference whose target must match the
	// chained parameter (subject:Patient.name=x): one parsed Param per
	// target type that has it (subject.name=x tries Patient, Group, ...).
	Chains []*Param
	// Has: reverse chain; resources of Has.Type referring to this one via
	// HasRef and matching Has.
	Has    *Param
	HasRef *spec.SearchParam
}

// Value is one search value, parsed according to the parameter type.
type Value struct {
	Raw    string
	Prefix string // eq ne gt lt ge le sa eb ap ("" means eq)

	// token
	System, Code string
	HasSystem    bool // "system|code" or "|code" (an empty system means none)

	// date: the value's range at its precision
	Lo, Hi time.Time

	// number / quantity: the decimal text, and the bounds implied by its precision
	Number         string
	NumLo, NumHi   string
	QSystem, QCode string

	// reference
	RefType, RefID, RefURL string

	// composite parts, in component order
	Parts []Value

	// :missing
	Missing bool
}

// SortKey is one _sort key.
type SortKey struct {
	SP   *spec.SearchParam
	Desc bool
	Name string
}

// Include is one _include or _revinclude. For _include, Type is the source
// type and SP its reference parameter (nil for "*"); Target optionally
// restricts the included type. For _revinclude, Type is the referring type.
type Include struct {
	Raw     string
	Type    string
	SP      *spec.SearchParam
	Target  string
	Iterate bool
}

// Compartment restricts a search to one compartment (Patient/123/Observation):
// resources linked to Type/ID by any of Params ("{def}" is the compartment
// resource itself).
type Compartment struct {
	Type, ID string
	Params   []string
}
