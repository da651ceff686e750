package patch

import (
	"encoding/json"
	"strings"
)

// node is one element a path selects, together with where it lives, so
// that an operation can change it in place.
type node struct {
	owner  *object  // the object holding the member; nil for the resource itself
	ownerT elemType // the owner's type
	key    string   // the JSON member
	index  int      // position in the member's array; -1 when the member is single
	val    any
	typ    elemType
}

func rootNode(o *object) node {
	return node{index: -1, val: o, typ: typeOfValue(elemType{}, o)}
}

// evalPath evaluates p with ctx as the context item.
func evalPath(p path, ctx node) []node {
	nodes := []node{ctx}
	for _, s := range p.steps {
		nodes = evalStep(nodes, s)
	}
	return nodes
}

func evalStep(in []node, s step) []node {
	var out []node
	switch s.kind {
	case stepChild:
		for _, n := range in {
			out = append(out, children(n, s.name)...)
		}
	case stepIndex:
		if s.index < len(in) {
			out = in[s.index : s.index+1]
		}
	case stepFirst:
		if len(in) > 0 {
			out = in[:1]
		}
	case stepLast:
		if len(in) > 0 {
			out = in[len(in)-1:]
		}
	case stepOfType:
		for _, n := range in {
			if isOfType(n, s.name) {
				out = append(out, n)
			}
		}
	case stepWhere:
		for _, n := range in {
			if evalCond(s.cond, n) == yes {
				out = append(out, n)
			}
		}
	}
	return out
}

// children selects the element name of n: the member itself, or for a
// choice element (value[x]) whichever typed member is present.
func children(n node, name string) []node {
	o, ok := n.val.(*object)
	if !ok || name == "" || name[0] == '_' {
		return nil
	}
	if v, ok := o.get(name); ok {
		return expand(n, o, name, v, memberType(n.typ, name))
	}
	f, known := fieldOf(n.typ, name)
	var out []node
	for _, k := range o.keys {
		if len(k) <= len(name) || !strings.HasPrefix(k, name) {
			continue
		}
		suffix := k[len(name):]
		switch {
		case known && f.choices != nil:
			if t, ok := f.choices[suffix]; ok {
				out = append(out, expand(n, o, k, o.vals[k], t)...)
			}
		case n.typ.IsZero() && suffix[0] >= 'A' && suffix[0] <= 'Z':
			out = append(out, expand(n, o, k, o.vals[k], elemType{})...) // untyped: guess a choice
		}
	}
	return out
}

// memberType is the type of the member key of an object of type t.
func memberType(t elemType, key string) elemType {
	if f, ok := fieldOf(t, key); ok {
		return f.typ
	}
	if name, suffix, ok := choiceKey(t, key); ok {
		f, _ := fieldOf(t, name)
		return f.choices[suffix]
	}
	return elemType{}
}

// expand turns a member into nodes: one per item of an array.
func expand(n node, o *object, key string, v any, t elemType) []node {
	a, ok := v.(*array)
	if !ok {
		return []node{{owner: o, ownerT: n.typ, key: key, index: -1, val: v, typ: typeOfValue(t, v)}}
	}
	out := make([]node, len(a.items))
	for i, item := range a.items {
		out[i] = node{owner: o, ownerT: n.typ, key: key, index: i, val: item, typ: typeOfValue(t, item)}
	}
	return out
}

// isOfType matches a choice member's type suffix (valueQuantity is a
// Quantity) or an element's type (a resource's, a datatype's, a
// primitive's); FHIRPath writes primitive types in lower case (string),
// FHIR JSON suffixes in upper case (valueString), so either is accepted.
func isOfType(n node, typ string) bool {
	if _, suffix, ok := choiceKey(n.ownerT, n.key); ok && strings.EqualFold(suffix, typ) {
		return true
	}
	if n.typ.Primitive() {
		return strings.EqualFold(n.typ.Name(), typ)
	}
	return n.typ.Name() == typ
}

// truth is FHIRPath's three-valued logic: an empty result is neither true
// nor false, and where() keeps only items whose condition is true.
type truth int

const (
	empty truth = iota
	no
	yes
)

func evalCond(c cond, n node) truth {
	switch c := c.(type) {
	case orCond:
		a, b := evalCond(c.a, n), evalCond(c.b, n)
		switch {
		case a == yes || b == yes:
			return yes
		case a == no && b == no:
			return no
		}
		return empty
	case andCond:
		a, b := evalCond(c.a, n), evalCond(c.b, n)
		switch {
		case a == no || b == no:
			return no
		case a == yes && b == yes:
			return yes
		}
		return empty
	case notCond:
		switch evalCond(c.c, n) {
		case yes:
			return no
		case no:
			return yes
		}
		return empty
	case cmpCond:
		return compare(values(c.a, n), values(c.b, n), c.neq)
	case testCond:
		return test(evalPath(c.p, n), c.fn)
	}
	return empty
}

func values(o operand, n node) []any {
	if o.lit != nil {
		return []any{o.lit}
	}
	nodes := evalPath(o.p, n)
	out := make([]any, len(nodes))
	for i, x := range nodes {
		out[i] = x.val
	}
	return out
}

// compare is FHIRPath's = (or != when neq): empty if either side is
// empty, else item by item.
func compare(a, b []any, neq bool) truth {
	if len(a) == 0 || len(b) == 0 {
		return empty
	}
	same := len(a) == len(b)
	for i := 0; same && i < len(a); i++ {
		same = valueEqual(a[i], b[i])
	}
	if same != neq {
		return yes
	}
	return no
}

func valueEqual(a, b any) bool {
	x, okA := a.(json.Number)
	y, okB := b.(json.Number)
	if okA && okB {
		return numbersEqual(x, y)
	}
	return equal(a, b)
}

// test is exists(), empty(), or a path used as a boolean: a single boolean
// is its value, any other single item is true (FHIRPath's singleton rule).
func test(nodes []node, fn string) truth {
	switch fn {
	case "exists":
		return toTruth(len(nodes) > 0)
	case "empty":
		return toTruth(len(nodes) == 0)
	}
	if len(nodes) != 1 {
		return empty
	}
	if b, ok := nodes[0].val.(bool); ok {
		return toTruth(b)
	}
	return yes
}

func toTruth(b bool) truth {
	if b {
		return yes
	}
	return no
}
