package xml

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/emberfhir/ember/fhir/internal/jsonread"
)

// Marshal appends the XML form of a FHIR resource to dst. data is the
// resource's JSON as Ember stores or produces it: checked JSON whose members
// the R4 tables know. pretty indents by two spaces per level. Decimals keep
// their written form: numbers are copied as written.
func Marshal(dst, data []byte, pretty bool) ([]byte, error) {
	t, err := index()
	if err != nil {
		return dst, err
	}
	e := encoder{t: t, out: dst, data: data, pretty: pretty, stack: make([]jmember, 0, 32)}
	e.out = append(e.out, `<?xml version="1.0" encoding="UTF-8"?>`...)
	i := jsonread.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return dst, errors.New("fhir/xml: not a JSON object")
	}
	e.nl(0)
	if err := e.resource(i, 0); err != nil {
		return dst, err
	}
	if pretty {
		e.out = append(e.out, '\n')
	}
	return e.out, nil
}

type encoder struct {
	t      *tables
	out    []byte
	data   []byte
	pretty bool
	stack  []jmember // members of the objects being written, innermost last
	str    []byte    // scratch: an unescaped string
}

// jmember is one member of a JSON object being written.
type jmember struct {
	name []byte // the key without its leading '_'
	ext  bool   // the _name sibling of a primitive
	val  int    // offset of the value
	m    *member
}

func (e *encoder) nl(depth int) {
	if !e.pretty {
		return
	}
	if len(e.out) > 0 {
		e.out = append(e.out, '\n')
	}
	for range depth {
		e.out = append(e.out, ' ', ' ')
	}
}

// resource writes the resource object at data[i] as <Type>…</Type>.
func (e *encoder) resource(i, depth int) error {
	typ, err := e.resourceType(i)
	if err != nil {
		return err
	}
	x := e.t.resources[typ]
	if x == nil {
		return fmt.Errorf("unknown resource type %q", typ)
	}
	e.out = append(e.out, '<')
	e.out = append(e.out, typ...)
	if depth == 0 {
		e.out = append(e.out, ` xmlns="`+NamespaceFHIR+`"`...)
	}
	return e.body(i, x, typ, depth)
}

// resourceType finds the resourceType member of the object at data[i].
func (e *encoder) resourceType(i int) (string, error) {
	for j := i + 1; ; {
		key, v, ok := jsonread.NextMember(e.data, j)
		if !ok {
			return "", errors.New("a resource without resourceType")
		}
		if string(key) == "resourceType" {
			s, err := e.stringAt(v)
			return string(s), err
		}
		end, err := jsonread.SkipValue(e.data, v, 0)
		if err != nil {
			return "", err
		}
		j = end
	}
}

// object writes a datatype or backbone element as <name …>…</name>.
func (e *encoder) object(name []byte, i int, x *xtype, depth int) error {
	if i >= len(e.data) || e.data[i] != '{' {
		return fmt.Errorf("%s: expected an object", name)
	}
	e.out = append(e.out, '<')
	e.out = append(e.out, name...)
	return e.body(i, x, string(name), depth)
}

// body writes the attributes and children of the object at data[i], whose
// start tag is open, and closes the element named end.
func (e *encoder) body(i int, x *xtype, end string, depth int) error {
	base := len(e.stack)
	defer func() { e.stack = e.stack[:base] }()
	for j := i + 1; ; {
		key, v, ok := jsonread.NextMember(e.data, j)
		if !ok {
			break
		}
		next, err := jsonread.SkipValue(e.data, v, 0)
		if err != nil {
			return err
		}
		j = next
		if x.resource && string(key) == "resourceType" {
			continue
		}
		jm := jmember{name: key, val: v}
		if len(key) > 0 && key[0] == '_' {
			jm.name, jm.ext = key[1:], true
		}
		jm.m = x.members[string(jm.name)]
		if jm.m == nil {
			return fmt.Errorf("unknown element %q in %s", key, x.name)
		}
		if jm.ext && jm.m.kind > kBoolean {
			return fmt.Errorf("%s.%s: only primitives have a %q sibling", x.name, jm.name, key)
		}
		e.stack = append(e.stack, jm)
	}
	members := e.stack[base:]
	slices.SortFunc(members, func(a, b jmember) int {
		if a.m.ord != b.m.ord {
			return int(a.m.ord - b.m.ord)
		}
		if c := bytes.Compare(a.name, b.name); c != 0 {
			return c
		}
		switch {
		case a.ext == b.ext:
			return 0
		case a.ext:
			return 1
		}
		return -1
	})
	children := false
	for k := range members {
		jm := &members[k]
		if !jm.m.attr {
			children = true
			continue
		}
		if jm.ext {
			return fmt.Errorf("%s.%s: an XML attribute cannot carry extensions", x.name, jm.name)
		}
		s, err := e.stringAt(jm.val)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", x.name, jm.name, err)
		}
		e.out = append(e.out, ' ')
		e.out = append(e.out, jm.name...)
		e.out = append(e.out, '=', '"')
		if e.out, err = escapeAttr(e.out, s); err != nil {
			return fmt.Errorf("%s.%s: %w", x.name, jm.name, err)
		}
		e.out = append(e.out, '"')
	}
	if !children {
		e.out = append(e.out, '/', '>')
		return nil
	}
	e.out = append(e.out, '>')
	for k := 0; k < len(members); k++ {
		jm := members[k]
		if jm.m.attr {
			continue
		}
		val, ext := -1, -1
		if jm.ext {
			ext = jm.val
		} else {
			val = jm.val
			if k+1 < len(members) && members[k+1].ext && bytes.Equal(members[k+1].name, jm.name) {
				ext = members[k+1].val
				k++
			}
		}
		if err := e.element(jm.name, jm.m, val, ext, depth+1); err != nil {
			return err
		}
	}
	e.nl(depth)
	e.out = append(e.out, '<', '/')
	e.out = append(e.out, end...)
	e.out = append(e.out, '>')
	return nil
}

// element writes one member (and its _name sibling, ext) as elements: one
// per array item. val and ext are offsets, -1 when absent.
func (e *encoder) element(name []byte, m *member, val, ext, depth int) error {
	if !m.repeats {
		return e.item(name, m, val, ext, depth)
	}
	// Arrays: a primitive's values and extensions align by index, with nulls.
	vi, xi := val, ext
	var vok, xok bool
	if vi >= 0 {
		if e.data[vi] != '[' {
			return fmt.Errorf("%s: expected an array", name)
		}
		vi, vok = jsonread.NextElement(e.data, vi+1)
	}
	if xi >= 0 {
		if e.data[xi] != '[' {
			return fmt.Errorf("_%s: expected an array", name)
		}
		xi, xok = jsonread.NextElement(e.data, xi+1)
	}
	for vok || xok {
		v, x := -1, -1
		if vok {
			v = vi
		}
		if xok {
			x = xi
		}
		if err := e.item(name, m, v, x, depth); err != nil {
			return err
		}
		var err error
		if vok {
			if vi, err = jsonread.SkipValue(e.data, vi, 0); err != nil {
				return err
			}
			vi, vok = jsonread.NextElement(e.data, vi)
		}
		if xok {
			if xi, err = jsonread.SkipValue(e.data, xi, 0); err != nil {
				return err
			}
			xi, xok = jsonread.NextElement(e.data, xi)
		}
	}
	return nil
}

func (e *encoder) null(i int) bool {
	return i < 0 || e.data[i] == 'n'
}

// item writes one value: a primitive (value attribute, id and extensions
// from its _name sibling), narrative XHTML, an object or a wrapped resource.
func (e *encoder) item(name []byte, m *member, val, ext, depth int) error {
	switch m.kind {
	case kXHTML:
		if !e.null(ext) {
			return fmt.Errorf("_%s: extensions on XHTML are not supported", name)
		}
		s, err := e.stringAt(val)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		e.nl(depth)
		if e.out, err = appendDiv(e.out, s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	case kComplex:
		e.nl(depth)
		return e.object(name, val, m.typ, depth)
	case kResource:
		e.nl(depth)
		e.out = append(e.out, '<')
		e.out = append(e.out, name...)
		e.out = append(e.out, '>')
		e.nl(depth + 1)
		if err := e.resource(val, depth+1); err != nil {
			return err
		}
		e.nl(depth)
		e.out = append(e.out, '<', '/')
		e.out = append(e.out, name...)
		e.out = append(e.out, '>')
		return nil
	}
	hasVal, hasExt := !e.null(val), !e.null(ext)
	if hasExt && e.data[ext] == '{' {
		if _, _, ok := jsonread.NextMember(e.data, ext+1); !ok {
			hasExt = false // {}: nothing to write
		}
	}
	if !hasVal && !hasExt {
		return nil // a null placeholder on both sides
	}
	e.nl(depth)
	e.out = append(e.out, '<')
	e.out = append(e.out, name...)
	extensions := -1
	if hasExt {
		if e.data[ext] != '{' {
			return fmt.Errorf("_%s: expected an object", name)
		}
		for j := ext + 1; ; {
			key, v, ok := jsonread.NextMember(e.data, j)
			if !ok {
				break
			}
			switch string(key) {
			case "id":
				s, err := e.stringAt(v)
				if err != nil {
					return fmt.Errorf("_%s.id: %w", name, err)
				}
				e.out = append(e.out, ` id="`...)
				if e.out, err = escapeAttr(e.out, s); err != nil {
					return fmt.Errorf("_%s.id: %w", name, err)
				}
				e.out = append(e.out, '"')
			case "extension":
				extensions = v
			default:
				return fmt.Errorf("unknown element %q in _%s", key, name)
			}
			end, err := jsonread.SkipValue(e.data, v, 0)
			if err != nil {
				return err
			}
			j = end
		}
	}
	if hasVal {
		e.out = append(e.out, ` value="`...)
		if e.data[val] == '"' {
			if m.kind != kString {
				return fmt.Errorf("%s: a string is not a %s value", name, kindName(m.kind))
			}
			s, err := e.stringAt(val)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if e.out, err = escapeAttr(e.out, s); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		} else {
			end, err := jsonread.SkipValue(e.data, val, 0)
			if err != nil {
				return err
			}
			lit := e.data[val:end]
			switch {
			case m.kind == kBoolean && (string(lit) == "true" || string(lit) == "false"):
			case m.kind == kNumber && (lit[0] == '-' || '0' <= lit[0] && lit[0] <= '9'):
			default:
				return fmt.Errorf("%s: %s is not a %s value", name, clipBytes(lit), kindName(m.kind))
			}
			e.out = append(e.out, lit...) // numbers as written
		}
		e.out = append(e.out, '"')
	}
	if extensions < 0 {
		e.out = append(e.out, '/', '>')
		return nil
	}
	e.out = append(e.out, '>')
	if e.data[extensions] != '[' {
		return fmt.Errorf("_%s.extension: expected an array", name)
	}
	for j := extensions + 1; ; {
		v, ok := jsonread.NextElement(e.data, j)
		if !ok {
			break
		}
		e.nl(depth + 1)
		if err := e.object([]byte("extension"), v, e.t.extension, depth+1); err != nil {
			return err
		}
		end, err := jsonread.SkipValue(e.data, v, 0)
		if err != nil {
			return err
		}
		j = end
	}
	e.nl(depth)
	e.out = append(e.out, '<', '/')
	e.out = append(e.out, name...)
	e.out = append(e.out, '>')
	return nil
}

// stringAt returns the JSON string at data[i], unescaped (into e.str when
// it has escapes, so valid until the next call).
func (e *encoder) stringAt(i int) ([]byte, error) {
	if i < 0 || i >= len(e.data) || e.data[i] != '"' {
		return nil, errors.New("expected a string")
	}
	if end, ok := jsonread.PlainString(e.data, i); ok {
		return e.data[i+1 : end-1], nil
	}
	end, f, err := jsonread.ScanString(e.data, i, 0)
	if err != nil {
		return nil, err
	}
	raw := e.data[i+1 : end-1]
	if f&jsonread.Escaped == 0 {
		return raw, nil
	}
	e.str = jsonread.Unescape(e.str[:0], raw)
	return e.str, nil
}

// escapeAttr appends s escaped for a double-quoted attribute value. Tab, LF
// and CR are written as references, which attribute-value normalisation
// would otherwise turn into spaces. Characters XML 1.0 cannot carry are an
// error.
func escapeAttr(dst, s []byte) ([]byte, error) {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
				return dst, fmt.Errorf("character %U cannot be written in XML", r)
			}
			i += n
			continue
		}
		var esc string
		switch c {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&quot;"
		case '\t':
			esc = "&#9;"
		case '\n':
			esc = "&#10;"
		case '\r':
			esc = "&#13;"
		default:
			if c < 0x20 {
				return dst, fmt.Errorf("control character %U cannot be written in XML", rune(c))
			}
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		i++
		start = i
	}
	return append(dst, s[start:]...), nil
}

func kindName(k kind) string {
	switch k {
	case kNumber:
		return "number"
	case kBoolean:
		return "boolean"
	}
	return "string"
}

func clipBytes(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
