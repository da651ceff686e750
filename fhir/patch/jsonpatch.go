// Package patch applies JSON Patch (RFC 6902) and FHIRPath Patch documents to resource JSON, in memory.
// It depends on encoding/json, package fhir (errors) and fhir/validate's generated R4 tables (element types).
package patch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
)

// JSON applies an RFC 6902 JSON Patch to doc and returns the result as
// compact JSON. Errors are *fhir.Error: 400 for a malformed patch
// document, 422 for an operation that cannot be applied (a path that does
// not exist, a failed test). A doc that is not JSON is a plain error: the
// caller's stored content, not the client, is at fault.
func JSON(doc, patch []byte) ([]byte, error) {
	tree, err := decode(doc)
	if err != nil {
		return nil, fmt.Errorf("patch: decode document: %w", err)
	}
	ops, err := jsonPatchOps(patch)
	if err != nil {
		return nil, err
	}
	// The document hangs under the key "" of a holder object, and every
	// pointer starts with that key, so that the root ("") has a parent like
	// every other location and add/replace/remove need no special case.
	holder := newObject()
	holder.set("", tree)
	copied := 0
	for i, op := range ops {
		if err := op.apply(holder, &copied); err != nil {
			return nil, opError(i, op, err)
		}
	}
	root, ok := holder.get("")
	if !ok {
		return nil, fhir.NewError(fhir.Unprocessable, "processing", "JSON Patch: the patch removes the whole document")
	}
	return encode(root), nil
}

// jsonOp is one decoded operation.
type jsonOp struct {
	op       string
	path     []string // with the holder's "" first
	from     []string
	rawPath  string
	value    any
	hasValue bool
}

// jsonPatchOps decodes and checks the patch document.
func jsonPatchOps(patch []byte) ([]jsonOp, error) {
	v, err := decode(patch)
	if err != nil {
		return nil, fhir.NewError(fhir.BadRequest, "structure", "JSON Patch: malformed JSON: "+err.Error())
	}
	list, ok := v.(*array)
	if !ok {
		return nil, fhir.NewError(fhir.BadRequest, "structure", "JSON Patch: the document must be a JSON array of operations")
	}
	ops := make([]jsonOp, len(list.items))
	for i, item := range list.items {
		op, err := jsonPatchOp(item)
		if err != nil {
			return nil, fhir.NewError(fhir.BadRequest, "invalid", fmt.Sprintf("JSON Patch operation %d: %v", i, err))
		}
		ops[i] = op
	}
	return ops, nil
}

// jsonPatchOp reads one operation object; unknown members are ignored, as
// RFC 6902 section 4 requires.
func jsonPatchOp(item any) (jsonOp, error) {
	o, ok := item.(*object)
	if !ok {
		return jsonOp{}, errors.New("an operation must be a JSON object")
	}
	var op jsonOp
	var err error
	if op.op, err = stringMember(o, "op"); err != nil {
		return op, err
	}
	if op.rawPath, err = stringMember(o, "path"); err != nil {
		return op, err
	}
	if op.path, err = parsePointer(op.rawPath); err != nil {
		return op, fmt.Errorf("path: %w", err)
	}
	switch op.op {
	case "add", "replace", "test":
		if op.value, op.hasValue = o.get("value"); !op.hasValue {
			return op, fmt.Errorf("%q needs a \"value\"", op.op)
		}
	case "move", "copy":
		from, err := stringMember(o, "from")
		if err != nil {
			return op, err
		}
		if op.from, err = parsePointer(from); err != nil {
			return op, fmt.Errorf("from: %w", err)
		}
		if op.op == "move" && len(op.from) < len(op.path) && isPrefix(op.from, op.path) {
			return op, errors.New("cannot move a location into one of its children")
		}
	case "remove":
	default:
		return op, fmt.Errorf("unknown op %q (want add, remove, replace, move, copy or test)", op.op)
	}
	return op, nil
}

func stringMember(o *object, k string) (string, error) {
	v, ok := o.get(k)
	if !ok {
		return "", fmt.Errorf("missing %q", k)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%q must be a string", k)
	}
	return s, nil
}

// parsePointer splits an RFC 6901 JSON Pointer into unescaped tokens,
// prefixed with the holder's key "".
func parsePointer(p string) ([]string, error) {
	tokens := []string{""}
	if p == "" {
		return tokens, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("JSON Pointer %q must be empty or start with /", p)
	}
	for _, t := range strings.Split(p[1:], "/") {
		for i := 0; i < len(t); i++ {
			if t[i] == '~' && (i+1 == len(t) || (t[i+1] != '0' && t[i+1] != '1')) {
				return nil, fmt.Errorf("JSON Pointer %q: ~ must be followed by 0 or 1", p)
			}
		}
		// ~1 first, so that "~01" becomes "~1" and not "/" (RFC 6901 section 4).
		tokens = append(tokens, strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~"))
	}
	return tokens, nil
}

func isPrefix(prefix, path []string) bool {
	for i := range prefix {
		if prefix[i] != path[i] {
			return false
		}
	}
	return true
}

// opError names the failing operation.
func opError(i int, op jsonOp, err error) error {
	code := "processing"
	if errors.Is(err, errTooCostly) {
		code = "too-costly"
	}
	return fhir.NewError(fhir.Unprocessable, code,
		fmt.Sprintf("JSON Patch operation %d (%s %s): %v", i, op.op, strconv.Quote(op.rawPath), err))
}

// maxCopied bounds the values copy operations may add, in JSON values:
// each copy of the root doubles the document, so forty of them in a tiny
// patch would otherwise exhaust memory.
const maxCopied = 1 << 20

var errTooCostly = fmt.Errorf("the copies would add more than %d JSON values", maxCopied)

// apply runs the operation; copied counts the values copied so far.
func (op jsonOp) apply(holder *object, copied *int) error {
	switch op.op {
	case "add":
		return add(holder, op.path, op.value)
	case "remove":
		_, err := remove(holder, op.path)
		return err
	case "replace":
		return replace(holder, op.path, op.value)
	case "move":
		v, err := remove(holder, op.from)
		if err != nil {
			return fmt.Errorf("from: %w", err)
		}
		return add(holder, op.path, v)
	case "copy":
		v, err := get(holder, op.from)
		if err != nil {
			return fmt.Errorf("from: %w", err)
		}
		if *copied += size(v); *copied > maxCopied {
			return errTooCostly
		}
		return add(holder, op.path, clone(v))
	case "test":
		v, err := get(holder, op.path)
		if err != nil {
			return err
		}
		if !equal(v, op.value) {
			return fmt.Errorf("test failed: the value is %s, not %s", clip(encode(v)), clip(encode(op.value)))
		}
	}
	return nil
}

// clip shortens a value quoted in an error message.
func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// parent walks to the container of the last token.
func parent(holder *object, path []string) (any, error) {
	var cur any = holder
	for i, t := range path[:len(path)-1] {
		next, err := child(cur, t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pointerText(path[:i+1]), err)
		}
		cur = next
	}
	return cur, nil
}

// pointerText renders tokens (holder key first) back as a JSON Pointer.
func pointerText(path []string) string {
	var b strings.Builder
	for _, t := range path[1:] {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return strconv.Quote(b.String())
}

func child(cur any, t string) (any, error) {
	switch c := cur.(type) {
	case *object:
		v, ok := c.get(t)
		if !ok {
			return nil, errors.New("no such member")
		}
		return v, nil
	case *array:
		i, err := arrayIndex(t, len(c.items)-1)
		if err != nil {
			return nil, err
		}
		return c.items[i], nil
	}
	return nil, errors.New("not an object or array")
}

// arrayIndex reads an array index token: decimal digits without leading
// zeros, at most max.
func arrayIndex(t string, max int) (int, error) {
	if t == "" || len(t) > 1 && t[0] == '0' || strings.TrimLeft(t, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not an array index", t)
	}
	i, err := strconv.Atoi(t)
	if err != nil || i > max {
		return 0, fmt.Errorf("index %s is out of bounds (the array has %d elements)", t, max+1)
	}
	return i, nil
}

func get(holder *object, path []string) (any, error) {
	p, err := parent(holder, path)
	if err != nil {
		return nil, err
	}
	v, err := child(p, path[len(path)-1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pointerText(path), err)
	}
	return v, nil
}

// add inserts v at path: a new or replaced object member, or an array
// element inserted before the index ("-" appends).
func add(holder *object, path []string, v any) error {
	p, err := parent(holder, path)
	if err != nil {
		return err
	}
	last := path[len(path)-1]
	switch c := p.(type) {
	case *object:
		c.set(last, v)
	case *array:
		i := len(c.items)
		if last != "-" {
			if i, err = arrayIndex(last, len(c.items)); err != nil {
				return fmt.Errorf("%s: %w", pointerText(path), err)
			}
		}
		c.insert(i, v)
	default:
		return fmt.Errorf("%s: the parent is not an object or array", pointerText(path))
	}
	return nil
}

// replace sets the existing value at path, in place: a replaced member
// keeps its position among its siblings.
func replace(holder *object, path []string, v any) error {
	p, err := parent(holder, path)
	if err != nil {
		return err
	}
	last := path[len(path)-1]
	switch c := p.(type) {
	case *object:
		if _, ok := c.get(last); !ok {
			return fmt.Errorf("%s: no such member", pointerText(path))
		}
		c.set(last, v)
	case *array:
		i, err := arrayIndex(last, len(c.items)-1)
		if err != nil {
			return fmt.Errorf("%s: %w", pointerText(path), err)
		}
		c.items[i] = v
	default:
		return fmt.Errorf("%s: the parent is not an object or array", pointerText(path))
	}
	return nil
}

// remove deletes the value at path and returns it.
func remove(holder *object, path []string) (any, error) {
	p, err := parent(holder, path)
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	switch c := p.(type) {
	case *object:
		v, ok := c.get(last)
		if !ok {
			return nil, fmt.Errorf("%s: no such member", pointerText(path))
		}
		c.del(last)
		return v, nil
	case *array:
		i, err := arrayIndex(last, len(c.items)-1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pointerText(path), err)
		}
		return c.remove(i), nil
	}
	return nil, fmt.Errorf("%s: the parent is not an object or array", pointerText(path))
}
