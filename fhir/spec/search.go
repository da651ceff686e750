package spec

import "hash/fnv"

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
// the common ones such as _id and _tag), keyed by code.
func SearchParams(resourceType string) map[string]*SearchParam {
	return searchParamIndex[resourceType]
}

// searchParamIndex is built once from the generated table.
var searchParamIndex = func() map[string]map[string]*SearchParam {
	out := make(map[string]map[string]*SearchParam, len(searchParams))
	for typ, params := range searchParams {
		m := make(map[string]*SearchParam, len(params))
		for i := range params {
			m[params[i].Code] = &params[i]
		}
		out[typ] = m
	}
	return out
}()
