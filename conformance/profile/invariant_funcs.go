package profile

// The compiled FHIRPath's functions (invariant_compile.go).

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// each evaluates f with $this and the input set to item (where, select…).
func each(env *fpEnv, item fpItem, f fpFunc) ([]fpItem, error) {
	sub := *env
	sub.this = item
	return f(&sub, []fpItem{item})
}

// arg evaluates a function's argument that is not per item, against the
// expression's $this.
func arg(env *fpEnv, f fpFunc) ([]fpItem, error) {
	return f(env, []fpItem{env.this})
}

// function compiles a function call on its input.
func function(name string, args []fpFunc) (fpFunc, error) {
	nargs := func(min, max int) error {
		if len(args) < min || len(args) > max {
			return errUnsupported{name + "() with " + strconv.Itoa(len(args)) + " arguments"}
		}
		return nil
	}
	if f := noArgFunction(name); f != nil {
		if err := nargs(0, 0); err != nil {
			return nil, err
		}
		return func(_ *fpEnv, in []fpItem) ([]fpItem, error) { return f(in) }, nil
	}
	switch name {
	case "exists":
		if err := nargs(0, 1); err != nil {
			return nil, err
		}
		if len(args) == 0 {
			return func(_ *fpEnv, in []fpItem) ([]fpItem, error) { return boolItems(len(in) > 0), nil }, nil
		}
		where := filter(args[0])
		return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
			r, err := where(env, in)
			return boolItems(len(r) > 0), err
		}, nil
	case "where":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		return filter(args[0]), nil
	case "all":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		return all(args[0]), nil
	case "select":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		return project(args[0]), nil
	case "repeat":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		return repeat(args[0]), nil
	case "iif":
		if err := nargs(2, 3); err != nil {
			return nil, err
		}
		return iif(args), nil
	case "matches":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		re, err := matchesRegexp(args[0])
		if err != nil {
			return nil, err
		}
		return stringFunc(func(s string, _ *fpEnv) ([]fpItem, error) { return boolItems(re.MatchString(s)), nil }), nil
	case "substring":
		if err := nargs(1, 2); err != nil {
			return nil, err
		}
		return substring(args), nil
	case "startsWith", "endsWith", "contains":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		return stringTest(name, args[0]), nil
	case "extension":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		return extensionFunc(args[0]), nil
	}
	return nil, errUnsupported{name + "()"}
}

// noArgFunction returns the function of the input alone called name, or
// nil.
func noArgFunction(name string) func([]fpItem) ([]fpItem, error) {
	switch name {
	case "empty":
		return func(in []fpItem) ([]fpItem, error) { return boolItems(len(in) == 0), nil }
	case "count":
		return func(in []fpItem) ([]fpItem, error) { return intItem(int64(len(in))), nil }
	case "not":
		return not
	case "hasValue":
		return hasValue
	case "first":
		return func(in []fpItem) ([]fpItem, error) { return in[:min(len(in), 1)], nil }
	case "last":
		return func(in []fpItem) ([]fpItem, error) { return in[max(len(in)-1, 0):], nil }
	case "allTrue":
		return func(in []fpItem) ([]fpItem, error) { return boolItems(countBool(in, true) == len(in)), nil }
	case "anyTrue":
		return func(in []fpItem) ([]fpItem, error) { return boolItems(countBool(in, true) > 0), nil }
	case "allFalse":
		return func(in []fpItem) ([]fpItem, error) { return boolItems(countBool(in, false) == len(in)), nil }
	case "anyFalse":
		return func(in []fpItem) ([]fpItem, error) { return boolItems(countBool(in, false) > 0), nil }
	case "isDistinct":
		return isDistinct
	case "toInteger":
		return toInteger
	case "toString":
		return toStringFunc
	case "length":
		return length
	}
	return nil
}

func not(in []fpItem) ([]fpItem, error) {
	b, empty, err := singletonBool(in)
	if err != nil || empty {
		return nil, err
	}
	return boolItems(!b), nil
}

// hasValue is true for one primitive with a value.
func hasValue(in []fpItem) ([]fpItem, error) {
	if len(in) != 1 {
		return boolItems(false), nil
	}
	switch in[0].v.(type) {
	case string, bool, json.Number, int64, float64:
		return boolItems(true), nil
	}
	return boolItems(false), nil
}

func length(in []fpItem) ([]fpItem, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errMany
	}
	s, ok := in[0].v.(string)
	if !ok {
		return nil, nil
	}
	return intItem(int64(utf8.RuneCountInString(s))), nil
}

func countBool(in []fpItem, want bool) int {
	n := 0
	for _, it := range in {
		if b, ok := it.v.(bool); ok && b == want {
			n++
		}
	}
	return n
}

// isDistinct compares primitives through a set and objects (by content)
// pairwise: distinct objects are rare operands.
func isDistinct(in []fpItem) ([]fpItem, error) {
	seen := make(map[any]bool, len(in))
	var objects []fpItem
	for _, it := range in {
		if _, isObj := it.v.(map[string]any); isObj {
			for _, o := range objects {
				if itemEqual(o, it) {
					return boolItems(false), nil
				}
			}
			objects = append(objects, it)
			continue
		}
		if k, ok := itemKey(it); ok {
			if seen[k] {
				return boolItems(false), nil
			}
			seen[k] = true
		}
	}
	return boolItems(true), nil
}

func toInteger(in []fpItem) ([]fpItem, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errMany
	}
	switch v := in[0].v.(type) {
	case int64:
		return in, nil
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return intItem(n), nil
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && (v[0] != '+' || len(v) > 1) {
			return intItem(n), nil
		}
	case bool:
		if v {
			return intItem(1), nil
		}
		return intItem(0), nil
	}
	return nil, nil
}

func toStringFunc(in []fpItem) ([]fpItem, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errMany
	}
	var s string
	switch v := in[0].v.(type) {
	case string:
		s = v
	case json.Number:
		s = string(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(v)
	default:
		return nil, nil
	}
	return []fpItem{{v: s, typ: "String"}}, nil
}

// filter is where(criteria): the items for which it is true.
func filter(crit fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		var out []fpItem
		for _, it := range in {
			r, err := each(env, it, crit)
			if err != nil {
				return nil, err
			}
			if b, empty, err := singletonBool(r); err != nil {
				return nil, err
			} else if !empty && b {
				out = append(out, it)
			}
		}
		return out, nil
	}
}

func all(crit fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		for _, it := range in {
			r, err := each(env, it, crit)
			if err != nil {
				return nil, err
			}
			if b, empty, err := singletonBool(r); err != nil {
				return nil, err
			} else if empty || !b {
				return boolItems(false), nil
			}
		}
		return boolItems(true), nil
	}
}

func project(proj fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		var out []fpItem
		for _, it := range in {
			r, err := each(env, it, proj)
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
		}
		return out, nil
	}
}

// maxRepeat bounds repeat()'s result: a projection that keeps making new
// values (repeat($this + 1)) would never end.
const maxRepeat = 1 << 16

// repeat applies the projection to the input, then to what it gave, until
// nothing new comes (objects by identity: over a JSON tree, every node
// below once).
func repeat(proj fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		var out []fpItem
		seen := map[any]bool{}
		for queue := in; len(queue) > 0; {
			var next []fpItem
			for _, it := range queue {
				r, err := each(env, it, proj)
				if err != nil {
					return nil, err
				}
				for _, x := range r {
					if k, ok := itemKey(x); ok {
						if seen[k] {
							continue
						}
						seen[k] = true
					}
					next = append(next, x)
				}
			}
			out = append(out, next...)
			if len(out) > maxRepeat {
				return nil, errors.New("repeat() gives more than " + strconv.Itoa(maxRepeat) + " items")
			}
			queue = next
		}
		return out, nil
	}
}

func iif(args []fpFunc) fpFunc {
	return func(env *fpEnv, _ []fpItem) ([]fpItem, error) {
		c, err := arg(env, args[0])
		if err != nil {
			return nil, err
		}
		b, empty, err := singletonBool(c)
		if err != nil {
			return nil, err
		}
		if !empty && b {
			return arg(env, args[1])
		}
		if len(args) == 3 {
			return arg(env, args[2])
		}
		return nil, nil
	}
}

// stringFunc applies f to a single string input; empty otherwise.
func stringFunc(f func(s string, env *fpEnv) ([]fpItem, error)) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errMany
		}
		s, ok := in[0].v.(string)
		if !ok {
			return nil, nil
		}
		return f(s, env)
	}
}

func substring(args []fpFunc) fpFunc {
	return stringFunc(func(s string, env *fpEnv) ([]fpItem, error) {
		st, err := arg(env, args[0])
		if err != nil {
			return nil, err
		}
		start, ok := singleInt(st)
		runes := []rune(s)
		if !ok || start < 0 || start >= int64(len(runes)) {
			return nil, nil
		}
		end := int64(len(runes))
		if len(args) == 2 {
			l, err := arg(env, args[1])
			if err != nil {
				return nil, err
			}
			if n, ok := singleInt(l); ok {
				end = min(end, start+max(n, 0))
			}
		}
		return []fpItem{{v: string(runes[start:end]), typ: "String"}}, nil
	})
}

func stringTest(name string, a fpFunc) fpFunc {
	return stringFunc(func(s string, env *fpEnv) ([]fpItem, error) {
		r, err := arg(env, a)
		if err != nil || len(r) != 1 {
			return nil, err
		}
		t, ok := r[0].v.(string)
		if !ok {
			return nil, nil
		}
		switch name {
		case "startsWith":
			return boolItems(strings.HasPrefix(s, t)), nil
		case "endsWith":
			return boolItems(strings.HasSuffix(s, t)), nil
		}
		return boolItems(strings.Contains(s, t)), nil
	})
}

// extensionFunc is extension(url): the input's extensions with that url.
func extensionFunc(a fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		r, err := arg(env, a)
		if err != nil || len(r) != 1 {
			return nil, err
		}
		url, _ := r[0].v.(string)
		var out []fpItem
		for _, it := range in {
			m, ok := it.v.(map[string]any)
			if !ok {
				continue
			}
			for _, e := range members(nil, m, "extension", "_extension") {
				if em, ok := e.v.(map[string]any); ok && em["url"] == url {
					out = append(out, e)
				}
			}
		}
		return out, nil
	}
}
