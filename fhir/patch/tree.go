package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// The decoded JSON tree. Values are *object, *array, string, json.Number,
// bool or nil. Objects keep their members' order, so a patched resource
// keeps the order it was written in, and arrays are pointers, so an
// operation can change a list in place without re-assigning it to its parent.

// object is a JSON object whose members keep their order.
type object struct {
	keys []string
	vals map[string]any
}

// array is a JSON array.
type array struct {
	items []any
}

func newObject() *object { return &object{vals: map[string]any{}} }

func (o *object) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

// set replaces the member k, or appends it when it is new.
func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// rename changes the key of member old to k in place (a choice element
// changing type keeps its position).
func (o *object) rename(old, k string, v any) {
	if old == k {
		o.vals[k] = v
		return
	}
	o.del(k)
	for i, key := range o.keys {
		if key == old {
			o.keys[i] = k
		}
	}
	delete(o.vals, old)
	o.vals[k] = v
}

func (o *object) del(k string) bool {
	if _, ok := o.vals[k]; !ok {
		return false
	}
	delete(o.vals, k)
	for i, key := range o.keys {
		if key == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			break
		}
	}
	return true
}

func (a *array) insert(i int, v any) {
	a.items = append(a.items, nil)
	copy(a.items[i+1:], a.items[i:])
	a.items[i] = v
}

func (a *array) remove(i int) any {
	v := a.items[i]
	a.items = append(a.items[:i], a.items[i+1:]...)
	return v
}

// maxDepth bounds nesting so that hostile input cannot exhaust the stack;
// FHIR resources nest far less (fhir.Parser allows 64).
const maxDepth = 512

var errDepth = errors.New("nesting too deep")

// decode parses one JSON value. Numbers stay json.Number, so their text
// (and with it a FHIR decimal's precision) survives the round trip.
// Duplicate object keys are an error: which one would a patch address?
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errDepth
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return decodeObject(dec, depth)
		}
		if t == '[' {
			return decodeArray(dec, depth)
		}
		return nil, fmt.Errorf("unexpected %q", t)
	default:
		return t, nil // string, json.Number, bool or nil
	}
}

func decodeObject(dec *json.Decoder, depth int) (*object, error) {
	o := newObject()
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("expected an object key, got %v", tok)
		}
		if _, dup := o.vals[k]; dup {
			return nil, fmt.Errorf("duplicate key %q", k)
		}
		v, err := decodeValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		o.set(k, v)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	return o, nil
}

func decodeArray(dec *json.Decoder, depth int) (*array, error) {
	a := &array{items: []any{}}
	for dec.More() {
		v, err := decodeValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		a.items = append(a.items, v)
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return nil, err
	}
	return a, nil
}

// encode writes v as compact JSON.
func encode(v any) []byte {
	var b bytes.Buffer
	writeValue(&b, v)
	return b.Bytes()
}

func writeValue(b *bytes.Buffer, v any) {
	switch t := v.(type) {
	case *object:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			writeValue(b, t.vals[k])
		}
		b.WriteByte('}')
	case *array:
		b.WriteByte('[')
		for i, item := range t.items {
			if i > 0 {
				b.WriteByte(',')
			}
			writeValue(b, item)
		}
		b.WriteByte(']')
	case string:
		writeString(b, t)
	case json.Number:
		b.WriteString(string(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case nil:
		b.WriteString("null")
	}
}

// writeString quotes s as JSON. Unlike encoding/json it leaves <, > and &
// alone: narrative XHTML stays readable.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			b.WriteString(`\u`)
			b.WriteByte(hex[r>>12&0xf])
			b.WriteByte(hex[r>>8&0xf])
			b.WriteByte(hex[r>>4&0xf])
			b.WriteByte(hex[r&0xf])
		case r == utf8.RuneError:
			b.WriteString("\uFFFD") // the decoder already replaced invalid UTF-8
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// clone deep-copies v (a copied value must not alias its source).
func clone(v any) any {
	switch t := v.(type) {
	case *object:
		c := &object{keys: append([]string(nil), t.keys...), vals: make(map[string]any, len(t.vals))}
		for k, x := range t.vals {
			c.vals[k] = clone(x)
		}
		return c
	case *array:
		c := &array{items: make([]any, len(t.items))}
		for i, x := range t.items {
			c.items[i] = clone(x)
		}
		return c
	}
	return v
}

// size counts the values in v, itself included.
func size(v any) int {
	n := 1
	switch t := v.(type) {
	case *object:
		for _, x := range t.vals {
			n += size(x)
		}
	case *array:
		for _, x := range t.items {
			n += size(x)
		}
	}
	return n
}

// equal is RFC 6902's equality: numbers by value, objects regardless of
// member order, arrays element by element.
func equal(a, b any) bool {
	switch x := a.(type) {
	case *object:
		y, ok := b.(*object)
		if !ok || len(x.vals) != len(y.vals) {
			return false
		}
		for k, v := range x.vals {
			w, ok := y.vals[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case *array:
		y, ok := b.(*array)
		if !ok || len(x.items) != len(y.items) {
			return false
		}
		for i := range x.items {
			if !equal(x.items[i], y.items[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numbersEqual(x, y)
	}
	return a == b // string, bool, nil
}

// numbersEqual compares by value (1 equals 1.0 and 1e0). big.Float keeps
// exponents as numbers, so a hostile 1e999999999 costs no memory.
func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, _, errA := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
	y, _, errB := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
	return errA == nil && errB == nil && x.Cmp(y) == 0
}
