package profile

import (
	"encoding/json"
	"strconv"
	"unsafe"
)

// parse decodes a resource's JSON (already checked well-formed) into
// maps, slices, strings, bools and json.Numbers, skipping the XHTML of the
// root's narrative (text.div, often most of the bytes, which no profile
// check reads; it reads as narrativeSkipped). It is several times faster
// than encoding/json's decoding into interface values, which dominated a
// check's cost.
func parse(data []byte) (map[string]any, bool) {
	d := decoder{data: data}
	d.space()
	if d.i >= len(d.data) || d.data[d.i] != '{' {
		return nil, false
	}
	m, ok := d.object(rootObject)
	return m, ok && d.err == nil
}

// narrativeSkipped stands for the root's text.div, not decoded: present,
// with a value no check compares (compiled invariants reading div do not
// compile).
const narrativeSkipped = "(narrative not decoded)"

// What an object being decoded is, for the narrative's skipping.
const (
	plainObject = iota
	rootObject
	rootNarrative
)

type decoder struct {
	data []byte
	i    int
	err  error
}

func (d *decoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) value() any {
	d.space()
	if d.i >= len(d.data) {
		d.err = errEnd
		return nil
	}
	switch c := d.data[d.i]; {
	case c == '{':
		m, _ := d.object(plainObject)
		return m
	case c == '[':
		d.i++
		arr := make([]any, 0, 2)
		for {
			d.space()
			if d.i >= len(d.data) {
				d.err = errEnd
				return nil
			}
			if d.data[d.i] == ']' {
				d.i++
				return arr
			}
			if d.data[d.i] == ',' {
				d.i++
				continue
			}
			arr = append(arr, d.value())
			if d.err != nil {
				return nil
			}
		}
	case c == '"':
		return d.str()
	case c == 't':
		d.i += 4
		return true
	case c == 'f':
		d.i += 5
		return false
	case c == 'n':
		d.i += 4
		return nil
	default:
		start := d.i
		for d.i < len(d.data) {
			switch d.data[d.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if d.i == start {
					// Malformed JSON (the callers' is checked, but a loop
					// that does not advance must never be possible).
					d.err = errEnd
					return nil
				}
				return json.Number(unsafe.String(&d.data[start], d.i-start))
			}
			d.i++
		}
		return json.Number(unsafe.String(&d.data[start], d.i-start))
	}
}

func (d *decoder) object(kind int) (map[string]any, bool) {
	d.i++ // {
	m := make(map[string]any, 8)
	for {
		d.space()
		if d.i >= len(d.data) {
			d.err = errEnd
			return nil, false
		}
		switch d.data[d.i] {
		case '}':
			d.i++
			return m, true
		case ',':
			d.i++
			continue
		}
		key := d.str()
		d.space()
		if d.err != nil || d.i >= len(d.data) || d.data[d.i] != ':' {
			d.err = errEnd
			return nil, false
		}
		d.i++
		switch {
		case kind == rootObject && key == "text":
			d.space()
			if d.i < len(d.data) && d.data[d.i] == '{' {
				m[key], _ = d.object(rootNarrative)
				if d.err != nil {
					return nil, false
				}
				continue
			}
		case kind == rootNarrative && key == "div":
			d.skip()
			m[key] = narrativeSkipped
			continue
		}
		m[key] = d.value()
		if d.err != nil {
			return nil, false
		}
	}
}

// str reads a string at d.i, unescaping only when it has escapes.
func (d *decoder) str() string {
	if d.i >= len(d.data) || d.data[d.i] != '"' {
		d.err = errEnd
		return ""
	}
	start := d.i
	d.i++
	escaped := false
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case '\\':
			escaped = true
			d.i += 2
			continue
		case '"':
			d.i++
			if !escaped {
				if d.i-1 == start+1 {
					return ""
				}
				// No copy: the decoded document lives only while its Check
				// runs, over bytes the caller does not change meanwhile, and
				// nothing of it is kept (issues are built from new strings).
				return unsafe.String(&d.data[start+1], d.i-1-start-1)
			}
			var s string
			if err := json.Unmarshal(d.data[start:d.i], &s); err != nil {
				d.err = err
			}
			return s
		}
		d.i++
	}
	d.err = errEnd
	return ""
}

// skip moves past one value.
func (d *decoder) skip() {
	d.space()
	depth := 0
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case '"':
			d.i++
			for d.i < len(d.data) && d.data[d.i] != '"' {
				if d.data[d.i] == '\\' {
					d.i++
				}
				d.i++
			}
			d.i++
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				d.i++
				return
			}
		case ',':
			if depth == 0 {
				return
			}
		}
		d.i++
	}
}

var errEnd = strconv.ErrSyntax
