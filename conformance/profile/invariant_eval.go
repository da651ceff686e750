package profile

// The compiled FHIRPath's navigation, operators and types (invariant_compile.go).

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
)

var (
	errMany     = errors.New("several items where FHIRPath needs one")
	errTypeless = errors.New("the type of a value is not known here")
)

// isChoiceSuffix reports whether s is an R4 type name a choice
// element's member ends in (valueQuantity): navigating "value" finds such
// members only, so a member that merely starts alike (valueSet) is not
// taken for one.
func isChoiceSuffix(s string) bool {
	switch s {
	case "Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal",
		"Id", "Instant", "Integer", "Markdown", "Oid", "PositiveInt", "String", "Time",
		"UnsignedInt", "Uri", "Url", "Uuid", "Address", "Age", "Annotation", "Attachment",
		"CodeableConcept", "Coding", "ContactPoint", "Count", "Distance", "Duration",
		"HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio",
		"Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor",
		"DataRequirement", "Expression", "ParameterDefinition", "RelatedArtifact",
		"TriggerDefinition", "UsageContext", "Dosage", "Meta":
		return true
	}
	return false
}

// navigate compiles a member name: each input object's member (arrays
// flattened), a choice element's typed member, or, for a name that is a
// resource type, the input resource itself.
func navigate(name string) fpFunc {
	typeName := name[0] >= 'A' && name[0] <= 'Z'
	ext := "_" + name
	return func(_ *fpEnv, in []fpItem) ([]fpItem, error) {
		var out []fpItem
		for _, it := range in {
			m, ok := it.v.(map[string]any)
			if !ok {
				continue
			}
			if typeName {
				if rt, _ := m["resourceType"].(string); rt == name {
					out = append(out, it)
					continue
				}
			}
			out = members(out, m, name, ext)
		}
		return out, nil
	}
}

// members appends m's values of the element name (extName is "_"+name).
// A primitive with extensions and no value ("_status" alone) exists,
// without a value.
func members(out []fpItem, m map[string]any, name, extName string) []fpItem {
	v, ok := m[name]
	ext, hasExt := m[extName]
	if ok || hasExt {
		return appendValues(out, v, ext, "")
	}
	// A choice element: the member named with a type suffix.
	for k, v := range m {
		if len(k) <= len(name) {
			continue
		}
		if k[0] == name[0] && k[len(name)] >= 'A' && k[len(name)] <= 'Z' && k[:len(name)] == name && isChoiceSuffix(k[len(name):]) {
			return appendValues(out, v, m["_"+k], k[len(name):])
		}
		if k[0] == '_' && len(k) > len(extName) && k[:len(extName)] == extName && isChoiceSuffix(k[len(extName):]) {
			if _, has := m[k[1:]]; !has {
				return appendValues(out, nil, v, k[len(extName):])
			}
		}
	}
	return out
}

func appendValues(out []fpItem, v, ext any, typ string) []fpItem {
	if arr, ok := v.([]any); ok {
		exts, _ := ext.([]any)
		for i, x := range arr {
			if x != nil {
				out = append(out, fpItem{v: x, typ: typ})
			} else if i < len(exts) && exts[i] != nil {
				out = append(out, fpItem{typ: typ})
			}
		}
		return out
	}
	if v != nil {
		return append(out, fpItem{v: v, typ: typ})
	}
	switch x := ext.(type) {
	case []any:
		for _, e := range x {
			if e != nil {
				out = append(out, fpItem{typ: typ})
			}
		}
	case map[string]any:
		out = append(out, fpItem{typ: typ})
	}
	return out
}

// boolItems returns a one-Boolean collection. The two are shared, never
// written: every consumer of a collection copies before appending (their
// capacity is their length) and no item is changed in place.
func boolItems(b bool) []fpItem {
	if b {
		return trueItems[:]
	}
	return falseItems[:]
}

var (
	trueItems  = [1]fpItem{{v: true, typ: "Boolean"}}
	falseItems = [1]fpItem{{v: false, typ: "Boolean"}}
)

// singletonBool is FHIRPath's singleton evaluation where a Boolean is
// expected: empty stays empty, one Boolean is itself, one other item is
// true, several are an error.
func singletonBool(c []fpItem) (val, empty bool, err error) {
	switch len(c) {
	case 0:
		return false, true, nil
	case 1:
		if b, ok := c[0].v.(bool); ok {
			return b, false, nil
		}
		return true, false, nil
	}
	return false, false, errMany
}

// binary compiles a binary operator.
func binary(op string, l, r fpFunc) (fpFunc, error) {
	switch op {
	case "and", "or", "xor", "implies":
		return logic(op, l, r), nil
	}
	var apply func(a, b []fpItem) ([]fpItem, error)
	switch op {
	case "=", "!=":
		neg := op == "!="
		apply = func(a, b []fpItem) ([]fpItem, error) { return negated(equality(a, b, itemEqual), neg), nil }
	case "~", "!~":
		neg := op == "!~"
		apply = func(a, b []fpItem) ([]fpItem, error) { return negated(equivalence(a, b), neg), nil }
	case "<", ">", "<=", ">=":
		apply = func(a, b []fpItem) ([]fpItem, error) { return compare(op, a, b) }
	case "+", "-", "*", "/", "div", "mod", "&":
		apply = func(a, b []fpItem) ([]fpItem, error) { return arith(op, a, b) }
	case "|":
		apply = func(a, b []fpItem) ([]fpItem, error) { return union(a, b), nil }
	case "in":
		apply = membership
	case "contains":
		apply = func(a, b []fpItem) ([]fpItem, error) { return membership(b, a) }
	default:
		return nil, errUnsupported{"operator " + op}
	}
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		a, err := l(env, in)
		if err != nil {
			return nil, err
		}
		b, err := r(env, in)
		if err != nil {
			return nil, err
		}
		return apply(a, b)
	}, nil
}

// logic is the three-valued and, or, xor and implies; the right operand
// is not evaluated when the left decides.
func logic(op string, l, r fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		a, err := l(env, in)
		if err != nil {
			return nil, err
		}
		av, aEmpty, err := singletonBool(a)
		if err != nil {
			return nil, err
		}
		if !aEmpty && (op == "and" && !av || op == "or" && av) {
			return boolItems(av), nil
		}
		if !aEmpty && op == "implies" && !av {
			return boolItems(true), nil
		}
		b, err := r(env, in)
		if err != nil {
			return nil, err
		}
		bv, bEmpty, err := singletonBool(b)
		if err != nil {
			return nil, err
		}
		switch op {
		case "and":
			if !bEmpty && !bv {
				return boolItems(false), nil
			}
			if aEmpty || bEmpty {
				return nil, nil
			}
			return boolItems(true), nil
		case "or":
			if !bEmpty && bv {
				return boolItems(true), nil
			}
			if aEmpty || bEmpty {
				return nil, nil
			}
			return boolItems(false), nil
		case "xor":
			if aEmpty || bEmpty {
				return nil, nil
			}
			return boolItems(av != bv), nil
		}
		// implies, the left true or empty
		if !bEmpty && bv {
			return boolItems(true), nil
		}
		if aEmpty || bEmpty {
			return nil, nil
		}
		return boolItems(false), nil
	}
}

func negated(c []fpItem, neg bool) []fpItem {
	if !neg || len(c) == 0 {
		return c
	}
	return boolItems(!c[0].v.(bool))
}

// equality is '=': empty when an operand is, else equal sizes and items
// equal in order.
func equality(a, b []fpItem, eq func(x, y fpItem) bool) []fpItem {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	if len(a) != len(b) {
		return boolItems(false)
	}
	for i := range a {
		if !eq(a[i], b[i]) {
			return boolItems(false)
		}
	}
	return boolItems(true)
}

// equivalence is '~': empty collections are equivalent, items match in
// any order, strings ignoring case and surrounding space.
func equivalence(a, b []fpItem) []fpItem {
	if len(a) != len(b) {
		return boolItems(false)
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if itemEquivalent(x, y) {
				found = true
				break
			}
		}
		if !found {
			return boolItems(false)
		}
	}
	return boolItems(true)
}

func itemEqual(x, y fpItem) bool {
	if x.v == nil || y.v == nil {
		return false
	}
	if xn, ok := number(x.v); ok {
		yn, ok := number(y.v)
		return ok && xn == yn
	}
	switch xv := x.v.(type) {
	case string:
		yv, ok := y.v.(string)
		return ok && xv == yv
	case bool:
		yv, ok := y.v.(bool)
		return ok && xv == yv
	case map[string]any:
		return equal(xv, y.v)
	}
	return false
}

func itemEquivalent(x, y fpItem) bool {
	xs, ok1 := x.v.(string)
	ys, ok2 := y.v.(string)
	if ok1 && ok2 {
		return strings.EqualFold(strings.Join(strings.Fields(xs), " "), strings.Join(strings.Fields(ys), " "))
	}
	return itemEqual(x, y)
}

// number reads a numeric value as a float64 (integers of FHIR's 32-bit
// range and decimals of the examples' precision compare exactly).
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// integer reads an integral value.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

func singleInt(c []fpItem) (int64, bool) {
	if len(c) != 1 {
		return 0, false
	}
	return integer(c[0].v)
}

func compare(op string, a, b []fpItem) ([]fpItem, error) {
	if len(a) == 0 || len(b) == 0 {
		return nil, nil
	}
	if len(a) > 1 || len(b) > 1 {
		return nil, errMany
	}
	var c int
	if x, ok := number(a[0].v); ok {
		y, ok := number(b[0].v)
		if !ok {
			return nil, errors.New("cannot compare a number with another type")
		}
		c = cmpFloat(x, y)
	} else if x, ok := a[0].v.(string); ok {
		y, ok := b[0].v.(string)
		if !ok {
			return nil, errors.New("cannot compare a string with another type")
		}
		c = strings.Compare(x, y)
	} else {
		return nil, errors.New("cannot compare these values")
	}
	switch op {
	case "<":
		return boolItems(c < 0), nil
	case ">":
		return boolItems(c > 0), nil
	case "<=":
		return boolItems(c <= 0), nil
	}
	return boolItems(c >= 0), nil
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// arith is + - * / div mod and &.
func arith(op string, a, b []fpItem) ([]fpItem, error) {
	if op == "&" {
		return []fpItem{{v: concatText(a) + concatText(b), typ: "String"}}, nil
	}
	if len(a) == 0 || len(b) == 0 {
		return nil, nil
	}
	if len(a) > 1 || len(b) > 1 {
		return nil, errMany
	}
	if x, ok := a[0].v.(string); ok && op == "+" {
		y, ok := b[0].v.(string)
		if !ok {
			return nil, errors.New("cannot add a string and another type")
		}
		return []fpItem{{v: x + y, typ: "String"}}, nil
	}
	xi, xInt := integer(a[0].v)
	yi, yInt := integer(b[0].v)
	if xInt && yInt && op != "/" {
		switch op {
		case "+":
			return intItem(xi + yi), nil
		case "-":
			return intItem(xi - yi), nil
		case "*":
			return intItem(xi * yi), nil
		}
		if yi == 0 {
			return nil, nil // division by zero is empty
		}
		if op == "div" {
			return intItem(xi / yi), nil
		}
		return intItem(xi % yi), nil
	}
	x, ok1 := number(a[0].v)
	y, ok2 := number(b[0].v)
	if !ok1 || !ok2 {
		return nil, errors.New("arithmetic on values that are not numbers")
	}
	var r float64
	switch op {
	case "+":
		r = x + y
	case "-":
		r = x - y
	case "*":
		r = x * y
	case "/", "div", "mod":
		if y == 0 {
			return nil, nil
		}
		switch op {
		case "/":
			r = x / y
		case "div":
			return intItem(int64(math.Trunc(x / y))), nil
		default:
			r = math.Mod(x, y)
		}
	}
	return []fpItem{{v: r, typ: "Decimal"}}, nil
}

func intItem(n int64) []fpItem { return []fpItem{{v: n, typ: "Integer"}} }

func concatText(c []fpItem) string {
	if len(c) == 1 {
		if s, ok := c[0].v.(string); ok {
			return s
		}
	}
	return ""
}

// union is '|': both operands' items, without repeats (objects by
// identity: a JSON tree holds each node once).
func union(a, b []fpItem) []fpItem {
	out := make([]fpItem, 0, len(a)+len(b))
	seen := make(map[any]bool, len(a)+len(b))
	for _, part := range [2][]fpItem{a, b} {
		for _, x := range part {
			k, ok := itemKey(x)
			if ok && seen[k] {
				continue
			}
			if ok {
				seen[k] = true
			}
			out = append(out, x)
		}
	}
	return out
}

// itemKey is a comparable key equal for items that are equal (itemEqual)
// or, for objects, the same node; false for a primitive without a value,
// which equals nothing. It keeps union and isDistinct linear: a
// QuestionnaireResponse's items can number thousands.
func itemKey(it fpItem) (any, bool) {
	if n, ok := number(it.v); ok {
		return n, true
	}
	switch v := it.v.(type) {
	case string, bool:
		return v, true
	case map[string]any:
		return reflect.ValueOf(v).UnsafePointer(), true
	}
	return nil, false
}

func membership(a, b []fpItem) ([]fpItem, error) {
	if len(a) == 0 {
		return nil, nil
	}
	if len(a) > 1 {
		return nil, errMany
	}
	for _, y := range b {
		if itemEqual(a[0], y) {
			return boolItems(true), nil
		}
	}
	return boolItems(false), nil
}

// isType reports whether it is of type t: FHIR types by name (dateTime
// and DateTime alike), System types by the FHIR types they hold, Quantity
// by its specialisations.
func isType(it fpItem, t string) (bool, error) {
	typ := it.typ
	if typ == "" {
		switch v := it.v.(type) {
		case bool:
			typ = "Boolean"
		case int64:
			typ = "Integer"
		case float64:
			typ = "Decimal"
		case map[string]any:
			rt, _ := v["resourceType"].(string)
			if rt != "" {
				typ = rt
			} else if primitiveName(t) {
				return false, nil // an object is no primitive
			} else {
				return false, errTypeless
			}
		default:
			// A string or number of an element whose type this path does
			// not tell: some primitive, so no complex type.
			if primitiveName(t) {
				return false, errTypeless
			}
			return false, nil
		}
	}
	if sys, ok := strings.CutPrefix(t, "System."); ok {
		return systemType(typ) == sys, nil
	}
	if strings.EqualFold(typ, t) || systemType(typ) == t {
		return true, nil
	}
	switch t {
	case "Quantity":
		switch typ {
		case "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity":
			return true, nil
		}
	case "Resource", "DomainResource":
		_, isRes := it.v.(map[string]any)
		return isRes && it.v.(map[string]any)["resourceType"] != nil, nil
	}
	return false, nil
}

// primitiveName reports whether t names a primitive type, FHIR's or
// System's.
func primitiveName(t string) bool {
	return systemType(strings.TrimPrefix(t, "System.")) != ""
}

// systemType is the System type a FHIR primitive type's values have.
func systemType(fhirType string) string {
	switch strings.ToLower(fhirType) {
	case "boolean":
		return "Boolean"
	case "string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64binary":
		return "String"
	case "integer", "positiveint", "unsignedint":
		return "Integer"
	case "decimal":
		return "Decimal"
	case "date":
		return "Date"
	case "datetime", "instant":
		return "DateTime"
	case "time":
		return "Time"
	}
	return ""
}

// typeOp compiles 'is' and 'as' on the operand's single item.
func typeOp(op string, operand fpFunc, t string) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		c, err := operand(env, in)
		if err != nil || len(c) == 0 {
			return nil, err
		}
		if len(c) > 1 {
			return nil, errMany
		}
		ok, err := isType(c[0], t)
		if err != nil {
			return nil, err
		}
		if op == "is" {
			return boolItems(ok), nil
		}
		if ok {
			return c, nil
		}
		return nil, nil
	}
}

func ofType(t string) fpFunc {
	return func(_ *fpEnv, in []fpItem) ([]fpItem, error) {
		var out []fpItem
		for _, it := range in {
			ok, err := isType(it, t)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, it)
			}
		}
		return out, nil
	}
}
