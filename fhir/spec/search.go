package spec

import (
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
)

// ParamType is a search parameter's type.
type ParamType uint8

// The R4 search parameter types.
const (
	Number ParamType = iota + 1
	Date
	String
	Token
	Reference
	Composite
	Quantity
	URI
	Special
)

var paramTypeNames = [...]string{"", "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}

func (t ParamType) String() string {
	if int(t) < len(paramTypeNames) {
		return paramTypeNames[t]
	}
	return "unknown"
}

// SearchParam is one search parameter of one resource type, with its
// FHIRPath expression compiled (at generation time) into extraction paths.
type SearchParam struct {
	Code       string
	Type       ParamType
	URL        string // canonical definition URL
	Expression string // the expression for this base type only
	// ID is a stable number for the (base type, code) pair: index rows store
	// it instead of the code. It is a hash, so regenerating the tables never
	// renumbers parameters (the generator rejects collisions).
	ID int32
	// Paths is the compiled expression; nil when the expression needs the
	// general FHIRPath engine (see Fallback).
	Paths []Path
	// Fallback is set when Expression is evaluated by the FHIRPath engine.
	Fallback bool
	// Targets lists the resource types a reference parameter may point to.
	Targets []string
	// Components of a composite parameter; Components[i].Paths[j] is
	// relative to Paths[j].
	Components []Component
	// Column names a parameter served from the resources table itself
	// (_id, _lastUpdated) rather than from index rows.
	Column string
}

// Component is one part of a composite parameter.
type Component struct {
	Code  string // the code of the parameter it reuses, e.g. "code"
	Type  ParamType
	Paths [][]Path
}

// Path is one alternative of a compiled expression: a walk from the
// resource (or a composite's base element) to the values to index.
type Path struct {
	Steps []Step
	// Types are the FHIR datatypes the walk can end on. More than one only
	// for a choice element without a type cast (e.g. Observation.effective),
	// resolved per value from its JSON key.
	Types []string
}

// Step is one navigation step.
type Step struct {
	Field string // JSON property name (for a choice, the name before [x])
	// Choice marks a choice element (value[x]); As, when set, selects one
	// type of it (the JSON key is Field + As with its first letter upper-cased).
	Choice bool
	As     string
	// Index selects one element of a repeating field (Bundle.entry[0]); -1 = all.
	Index int
	// WhereField/WhereValue keep elements whose WhereField equals WhereValue.
	WhereField, WhereValue string
	// ResolveIs keeps references that point to this resource type.
	ResolveIs string
}

// ParamID computes SearchParam.ID for a base type and code.
func ParamID(base, code string) int32 {
	h := fnv.New32a()
	h.Write([]byte(base))
	h.Write([]byte{'.'})
	h.Write([]byte(code))
	return int32(h.Sum32() & 0x7fffffff)
}

// SearchParams returns the search parameters of a resource type (including
// the common ones such as _id and _tag, and those implementation guides
// added), keyed by code. The map is shared: callers must not modify it.
func SearchParams(resourceType string) map[string]*SearchParam {
	return registry.Load().params[resourceType]
}

// Generation counts the registry's changes (0: the R4 parameters alone), so
// code that compiles something from the parameters (index extraction plans)
// knows when to compile again.
func Generation() uint64 { return registry.Load().gen }

// paramRegistry is one immutable state of the registry.
type paramRegistry struct {
	params map[string]map[string]*SearchParam
	gen    uint64
}

// registry is the process's search parameter registry: the generated R4
// table, plus the parameters of the implementation guides loaded at start
// (AddSearchParams). It is copy-on-write: readers load a state that never
// changes, so the hot paths pay one atomic load and no lock.
var registry atomic.Pointer[paramRegistry]

var registryMu sync.Mutex // serialises AddSearchParams

func init() {
	out := make(map[string]map[string]*SearchParam, len(searchParams))
	for typ, params := range searchParams {
		m := make(map[string]*SearchParam, len(params))
		for i := range params {
			m[params[i].Code] = &params[i]
		}
		out[typ] = m
	}
	registry.Store(&paramRegistry{params: out})
}

// AddSearchParams adds parameters to resource types (base type -> its new
// parameters). A code a type already has is an error, and so is a
// parameter id that collides with another of the type: index rows are keyed
// by id. Nothing is added when any fails. Implementation guide packages
// call it at start, before serving; it is safe while others read.
func AddSearchParams(add map[string][]SearchParam) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	cur := registry.Load()
	next := make(map[string]map[string]*SearchParam, len(cur.params))
	for typ, m := range cur.params {
		next[typ] = m
	}
	for typ, ps := range add {
		m := make(map[string]*SearchParam, len(next[typ])+len(ps))
		ids := make(map[int32]string, len(m))
		for code, sp := range next[typ] {
			m[code] = sp
			ids[sp.ID] = code
		}
		for i := range ps {
			sp := ps[i]
			if _, dup := m[sp.Code]; dup {
				return fmt.Errorf("spec: %s already has a search parameter %q", typ, sp.Code)
			}
			if other, dup := ids[sp.ID]; dup {
				return fmt.Errorf("spec: search parameter %s.%s: id %d collides with %s", typ, sp.Code, sp.ID, other)
			}
			ids[sp.ID] = sp.Code
			m[sp.Code] = &sp
		}
		next[typ] = m
	}
	registry.Store(&paramRegistry{params: next, gen: cur.gen + 1})
	return nil
}
