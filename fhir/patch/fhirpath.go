package patch

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
)

// FHIRPath applies a FHIRPath Patch (a Parameters resource of "operation"
// parameters, https://hl7.org/fhir/R4/fhirpatch.html) to the resource doc
// and returns the result as compact JSON. The result is not validated: the
// caller must parse it like any other incoming resource. Errors are
// *fhir.Error: 400 for a malformed Parameters, 422 for an operation that
// cannot be applied or a path outside the supported FHIRPath subset.
func FHIRPath(doc, params []byte) ([]byte, error) {
	tree, err := decode(doc)
	if err != nil {
		return nil, fmt.Errorf("patch: decode document: %w", err)
	}
	root, ok := tree.(*object)
	if !ok {
		return nil, errors.New("patch: the document is not a JSON object")
	}
	rt, _ := root.vals["resourceType"].(string)
	ops, err := fhirPathOps(params)
	if err != nil {
		return nil, err
	}
	for i, op := range ops {
		if err := op.apply(root, rt); err != nil {
			return nil, fhir.NewError(fhir.Unprocessable, processingCode(err),
				fmt.Sprintf("FHIRPath Patch operation %d (%s %s): %v", i, op.typ, strconv.Quote(op.path), err),
				"Parameters.parameter["+strconv.Itoa(i)+"]")
		}
	}
	prune(root)
	return encode(root), nil
}

func processingCode(err error) string {
	if errors.Is(err, errUnsupported) {
		return "not-supported"
	}
	return "processing"
}

// fhirPathOp is one operation parameter.
type fhirPathOp struct {
	typ         string
	path        string
	name        string
	value       *object // the "value" part: value[x], resource or parts
	index       int
	source      int
	destination int
}

// required parts per operation type (besides type and path).
var required = map[string][]string{
	"add":     {"name", "value"},
	"insert":  {"index", "value"},
	"delete":  {},
	"replace": {"value"},
	"move":    {"source", "destination"},
}

// fhirPathOps reads the Parameters. It is decoded here rather than by
// google/fhir, whose R4 unmarshaller does not keep a value part's nested
// resource intact, and it is checked only as far as the operations need.
func fhirPathOps(params []byte) ([]fhirPathOp, error) {
	v, err := decode(params)
	if err != nil {
		return nil, badParams("malformed JSON: " + err.Error())
	}
	o, ok := v.(*object)
	if !ok || o.vals["resourceType"] != "Parameters" {
		return nil, badParams("the body must be a Parameters resource")
	}
	raw, ok := o.vals["parameter"]
	if !ok {
		return nil, nil
	}
	list, ok := raw.(*array)
	if !ok {
		return nil, badParams("Parameters.parameter must be an array")
	}
	ops := make([]fhirPathOp, len(list.items))
	for i, p := range list.items {
		op, err := fhirPathOpOf(p)
		if err != nil {
			return nil, fhir.NewError(fhir.BadRequest, "invalid",
				fmt.Sprintf("FHIRPath Patch operation %d: %v", i, err), "Parameters.parameter["+strconv.Itoa(i)+"]")
		}
		ops[i] = op
	}
	return ops, nil
}

func badParams(msg string) error {
	return fhir.NewError(fhir.BadRequest, "invalid", "FHIRPath Patch: "+msg)
}

// fhirPathOpOf reads one "operation" parameter and its parts.
func fhirPathOpOf(p any) (fhirPathOp, error) {
	var op fhirPathOp
	param, ok := p.(*object)
	if !ok || param.vals["name"] != "operation" {
		return op, errors.New(`each parameter must be named "operation"`)
	}
	parts, ok := param.vals["part"].(*array)
	if !ok {
		return op, errors.New("an operation needs parts")
	}
	seen := map[string]bool{}
	for _, item := range parts.items {
		part, ok := item.(*object)
		if !ok {
			return op, errors.New("a part must be an object")
		}
		name, _ := part.vals["name"].(string)
		if seen[name] {
			return op, fmt.Errorf("the part %q is repeated", name)
		}
		seen[name] = true
		if err := op.setPart(name, part); err != nil {
			return op, err
		}
	}
	if op.typ == "" || op.path == "" {
		return op, errors.New(`an operation needs the parts "type" and "path"`)
	}
	want, ok := required[op.typ]
	if !ok {
		return op, fmt.Errorf("unknown type %q (want add, insert, delete, replace or move)", op.typ)
	}
	for _, r := range want {
		if !seen[r] {
			return op, fmt.Errorf("a %s operation needs the part %q", op.typ, r)
		}
	}
	return op, nil
}

func (op *fhirPathOp) setPart(name string, part *object) error {
	var err error
	switch name {
	case "type":
		op.typ, err = stringPart(part)
	case "path":
		op.path, err = stringPart(part)
	case "name":
		op.name, err = stringPart(part)
	case "value":
		op.value = part
	case "index":
		op.index, err = intPart(part)
	case "source":
		op.source, err = intPart(part)
	case "destination":
		op.destination, err = intPart(part)
	default:
		return fmt.Errorf("unknown part %q", name)
	}
	if err != nil {
		return fmt.Errorf("part %q: %w", name, err)
	}
	return nil
}

// primitivePart returns a part's value[x] member: its key and value.
func primitivePart(part *object) (string, any, bool) {
	for _, k := range part.keys {
		if len(k) > len("value") && strings.HasPrefix(k, "value") && k[5] >= 'A' && k[5] <= 'Z' {
			return k, part.vals[k], true
		}
	}
	return "", nil, false
}

func stringPart(part *object) (string, error) {
	_, v, _ := primitivePart(part)
	s, ok := v.(string)
	if !ok || s == "" {
		return "", errors.New("needs a string value (valueString or valueCode)")
	}
	return s, nil
}

func intPart(part *object) (int, error) {
	_, v, _ := primitivePart(part)
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("needs valueInteger")
	}
	i, err := strconv.Atoi(string(n))
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%s is not a non-negative integer", n)
	}
	return i, nil
}

// apply runs the operation on the resource root of type rt.
func (op fhirPathOp) apply(root *object, rt string) error {
	p, err := parsePath(op.path, rt)
	if err != nil {
		return err
	}
	switch op.typ {
	case "add":
		return op.add(root, p)
	case "insert":
		return op.insert(root, p)
	case "delete":
		return op.delete(root, p)
	case "replace":
		return op.replace(root, p)
	case "move":
		return op.move(root, p)
	}
	return nil
}

// single evaluates p and requires exactly one element.
func single(root *object, p path) (node, error) {
	nodes := evalPath(p, rootNode(root))
	switch len(nodes) {
	case 0:
		return node{}, errors.New("the path matches no element")
	case 1:
		return nodes[0], nil
	}
	return node{}, fmt.Errorf("the path matches %d elements, not one", len(nodes))
}

// add adds the element name to the one element at the path: appended to
// it if it is a list, else set if it is absent.
func (op fhirPathOp) add(root *object, p path) error {
	n, err := single(root, p)
	if err != nil {
		return err
	}
	o, ok := n.val.(*object)
	if !ok {
		return errors.New("the path is a primitive element: only complex elements have children to add")
	}
	f, known := fieldOf(n.typ, op.name)
	v, key, err := op.valueFor(f, op.name)
	if err != nil {
		return err
	}
	if f.choices != nil {
		for _, k := range o.keys {
			if _, has := f.choices[strings.TrimPrefix(k, op.name)]; has && strings.HasPrefix(k, op.name) {
				return fmt.Errorf("%s already has a value (%s): use replace", op.name, k)
			}
		}
	}
	switch cur, has := o.get(key); {
	case !has && known && f.list:
		o.set(key, &array{items: []any{v}})
	case !has:
		o.set(key, v)
	default:
		a, isList := cur.(*array)
		if !isList {
			return fmt.Errorf("%s already has a value: use replace", key)
		}
		a.items = append(a.items, v)
		if c := companion(o, key); c != nil {
			c.items = append(c.items, nil)
		}
	}
	return nil
}

// valueFor builds the value to store at element name of field f, and the
// JSON key it goes under: a choice element takes its type from value[x]
// (valueQuantity under "value" is stored as valueQuantity).
func (op fhirPathOp) valueFor(f field, name string) (any, string, error) {
	if f.choices == nil {
		v, _, err := partValue(op.value, f.typ)
		return v, name, err
	}
	key, _, ok := primitivePart(op.value)
	if !ok {
		return nil, "", fmt.Errorf("%s is a choice element: give its value as value[x], which names the type", name)
	}
	suffix := key[len("value"):]
	t, ok := f.choices[suffix]
	if !ok {
		return nil, "", fmt.Errorf("%s cannot be a %s", name, suffix)
	}
	v, _, err := partValue(op.value, t)
	return v, name + suffix, err
}

// partValue converts a value part to JSON: value[x] as is, a resource, or
// an element of type t built from nested parts. suffix is value[x]'s type.
func partValue(part *object, t elemType) (v any, suffix string, err error) {
	if key, v, ok := primitivePart(part); ok {
		return clone(v), key[len("value"):], nil
	}
	if r, ok := part.vals["resource"].(*object); ok {
		return clone(r), "", nil
	}
	parts, ok := part.vals["part"].(*array)
	if !ok || len(parts.items) == 0 {
		return nil, "", errors.New("the value part has no value[x], resource or parts")
	}
	o := newObject()
	for _, item := range parts.items {
		if err := addPart(o, t, item); err != nil {
			return nil, "", err
		}
	}
	return o, "", nil
}

// addPart adds one nested part to the element o of type t.
func addPart(o *object, t elemType, item any) error {
	part, ok := item.(*object)
	if !ok {
		return errors.New("a part must be an object")
	}
	name, _ := part.vals["name"].(string)
	if name == "" {
		return errors.New("a part needs a name")
	}
	f, known := fieldOf(t, name)
	child := f.typ
	v, suffix, err := partValue(part, child)
	if err != nil {
		return fmt.Errorf("part %q: %w", name, err)
	}
	key := name
	if f.choices != nil {
		if _, ok := f.choices[suffix]; !ok {
			return fmt.Errorf("part %q is a choice element: give its value as value[x], which names the type", name)
		}
		key += suffix
	}
	cur, has := o.get(key)
	switch {
	case !has && known && f.list:
		o.set(key, &array{items: []any{v}})
	case !has:
		o.set(key, v)
	default:
		// A repeated part is a list even when the type is not known.
		a, isList := cur.(*array)
		if !isList {
			if known {
				return fmt.Errorf("part %q is repeated, but %s is not a list", name, name)
			}
			a = &array{items: []any{cur}}
			o.set(key, a)
		}
		a.items = append(a.items, v)
	}
	return nil
}

// list evaluates a path that ends in a list element (insert and move): the
// one owner element and the list's name.
func list(root *object, p path) (*object, elemType, string, error) {
	if len(p.steps) == 0 || p.steps[len(p.steps)-1].kind != stepChild {
		return nil, elemType{}, "", errors.New("the path must name a list element (end in an element name)")
	}
	name := p.steps[len(p.steps)-1].name
	owner, err := single(root, path{steps: p.steps[:len(p.steps)-1]})
	if err != nil {
		return nil, elemType{}, "", fmt.Errorf("the element that holds %s: %w", name, err)
	}
	o, ok := owner.val.(*object)
	if !ok {
		return nil, elemType{}, "", fmt.Errorf("%s belongs to a primitive element", name)
	}
	if cur, has := o.get(name); has {
		if _, isList := cur.(*array); !isList {
			return nil, elemType{}, "", fmt.Errorf("%s is not a list", name)
		}
	}
	return o, owner.typ, name, nil
}

// insert inserts the value into the list at the path, at index.
func (op fhirPathOp) insert(root *object, p path) error {
	o, t, name, err := list(root, p)
	if err != nil {
		return err
	}
	if f, known := fieldOf(t, name); known && !f.list {
		return fmt.Errorf("%s is not a list", name)
	}
	v, _, err := partValue(op.value, memberType(t, name))
	if err != nil {
		return err
	}
	a, _ := o.vals[name].(*array)
	if a == nil {
		a = &array{}
	}
	if op.index > len(a.items) {
		return fmt.Errorf("index %d is out of bounds (the list has %d elements)", op.index, len(a.items))
	}
	a.insert(op.index, v)
	o.set(name, a)
	if c := companion(o, name); c != nil && op.index <= len(c.items) {
		c.insert(op.index, nil)
	}
	return nil
}

// delete removes the one element at the path; a path that matches nothing
// deletes nothing, which FHIRPath Patch allows.
func (op fhirPathOp) delete(root *object, p path) error {
	nodes := evalPath(p, rootNode(root))
	switch {
	case len(nodes) == 0:
		return nil
	case len(nodes) > 1:
		return fmt.Errorf("the path matches %d elements: delete removes one", len(nodes))
	case nodes[0].owner == nil:
		return errors.New("cannot delete the resource itself")
	}
	removeNode(nodes[0])
	return nil
}

func removeNode(n node) {
	if n.index < 0 {
		n.owner.del(n.key)
		n.owner.del("_" + n.key)
		return
	}
	a := n.owner.vals[n.key].(*array)
	a.remove(n.index)
	if c := companion(n.owner, n.key); c != nil && n.index < len(c.items) {
		c.remove(n.index)
	}
	if len(a.items) == 0 {
		n.owner.del(n.key)
		n.owner.del("_" + n.key)
	}
}

// replace replaces the one element at the path. A choice element may
// change type (valueString replacing valueQuantity).
func (op fhirPathOp) replace(root *object, p path) error {
	n, err := single(root, p)
	if err != nil {
		return err
	}
	if n.owner == nil {
		return errors.New("cannot replace the resource itself")
	}
	t := n.typ
	if name, suffix, ok := choiceKey(n.ownerT, n.key); ok {
		f, _ := fieldOf(n.ownerT, name)
		if _, _, typed := primitivePart(op.value); typed {
			v, key, err := op.valueFor(f, name)
			if err != nil {
				return err
			}
			return setNode(n, key, v)
		}
		t = f.choices[suffix] // parts name no type: keep the current one
	}
	v, _, err := partValue(op.value, t)
	if err != nil {
		return err
	}
	return setNode(n, n.key, v)
}

// setNode stores v in n's place, under key. The replaced element's
// extensions and id (a primitive's "_key" sibling) go with it.
func setNode(n node, key string, v any) error {
	if n.index >= 0 {
		n.owner.vals[n.key].(*array).items[n.index] = v
		if c := companion(n.owner, n.key); c != nil && n.index < len(c.items) {
			c.items[n.index] = nil
		}
		return nil
	}
	n.owner.rename(n.key, key, v)
	n.owner.del("_" + n.key)
	return nil
}

// move moves an item of the list at the path from source to destination
// (an index in the list after the item was taken out).
func (op fhirPathOp) move(root *object, p path) error {
	o, _, name, err := list(root, p)
	if err != nil {
		return err
	}
	a, _ := o.vals[name].(*array)
	if a == nil {
		return fmt.Errorf("%s is empty: nothing to move", name)
	}
	if op.source >= len(a.items) || op.destination >= len(a.items) {
		return fmt.Errorf("source %d or destination %d is out of bounds (the list has %d elements)", op.source, op.destination, len(a.items))
	}
	a.insert(op.destination, a.remove(op.source))
	if c := companion(o, name); c != nil && len(c.items) == len(a.items) {
		c.insert(op.destination, c.remove(op.source))
	}
	return nil
}

// companion returns the "_key" array that carries the ids and extensions
// of a primitive list's items, kept index for index with the list.
func companion(o *object, key string) *array {
	a, _ := o.vals["_"+key].(*array)
	return a
}

// prune removes what deletions leave empty: FHIR JSON forbids empty
// objects and arrays, and an element without content does not exist. In a
// "_key" array an emptied item becomes null, to keep its alignment with
// the primitive list. It reports whether v itself is now empty.
func prune(v any) bool {
	o, ok := v.(*object)
	if !ok {
		return false
	}
	for _, k := range append([]string(nil), o.keys...) {
		switch c := o.vals[k].(type) {
		case *object:
			if prune(c) {
				o.del(k)
			}
		case *array:
			if pruneArray(c, strings.HasPrefix(k, "_")) {
				o.del(k)
			}
		}
	}
	return len(o.keys) == 0
}

func pruneArray(a *array, companion bool) bool {
	kept := a.items[:0]
	allNull := true
	for _, item := range a.items {
		emptied := false
		switch c := item.(type) {
		case *object:
			emptied = prune(c)
		case *array:
			emptied = pruneArray(c, false)
		}
		switch {
		case emptied && companion:
			kept = append(kept, nil)
		case emptied:
		default:
			kept = append(kept, item)
			allNull = allNull && item == nil
		}
	}
	a.items = kept
	return len(kept) == 0 || companion && allNull
}
