package xml

import (
	"bytes"
	stdxml "encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emberfhir/ember/fhir/internal/jsonread"
)

// MaxDepth bounds element nesting in Unmarshal, as fhir's strict scan
// bounds JSON nesting: R4 resources nest far less.
const MaxDepth = 64

// Error is an XML document Unmarshal rejects: malformed, a DTD, too deep,
// or an element the R4 definitions do not have where it stands.
type Error struct {
	Path string // where, as Type.element.element; "" for the document
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "invalid FHIR XML: " + e.Msg
	}
	return "invalid FHIR XML at " + e.Path + ": " + e.Msg
}

// Unmarshal appends the JSON form of the FHIR resource in the XML document
// data to dst. It reads no DTD (a document with one is rejected, so no
// entity is ever expanded: no XXE, no billion laughs), only UTF-8, at most
// MaxDepth levels, and only elements the R4 definitions have; the JSON it
// returns still needs validating like any client's JSON.
func Unmarshal(dst, data []byte) ([]byte, error) {
	t, err := index()
	if err != nil {
		return dst, err
	}
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	d := stdxml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	dec := decoder{t: t, d: d, data: data}
	start, err := dec.root()
	if err != nil {
		return dst, err
	}
	x := t.resources[start.Name.Local]
	if x == nil || start.Name.Space != NamespaceFHIR {
		return dst, &Error{Msg: fmt.Sprintf("the root element <%s> in namespace %q is not a FHIR resource (namespace %s)", start.Name.Local, start.Name.Space, NamespaceFHIR)}
	}
	out, err := dec.object(dst, start, x, 1)
	if err != nil {
		return dst, err
	}
	for {
		tok, err := dec.token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return dst, err
		}
		if cd, ok := tok.(stdxml.CharData); !ok && !isComment(tok) || ok && len(bytes.TrimSpace(cd)) > 0 {
			return dst, &Error{Msg: "content after the resource"}
		}
	}
}

type decoder struct {
	t    *tables
	d    *stdxml.Decoder
	data []byte
	off  int64    // input offset before the last token
	path []string // element names down to the current one, for errors
}

func isComment(tok stdxml.Token) bool {
	_, ok := tok.(stdxml.Comment)
	return ok
}

// token returns the next token, refusing DTDs.
func (dec *decoder) token() (stdxml.Token, error) {
	dec.off = dec.d.InputOffset()
	tok, err := dec.d.Token()
	if err != nil {
		if err == io.EOF {
			return nil, err
		}
		return nil, dec.fail("%v", strings.TrimPrefix(err.Error(), "xml: "))
	}
	switch t := tok.(type) {
	case stdxml.Directive:
		return nil, dec.fail("DTDs and <!DOCTYPE> are not allowed")
	case stdxml.ProcInst:
		if t.Target != "xml" {
			return nil, dec.fail("processing instruction <?%s?> is not allowed", t.Target)
		}
	}
	return tok, nil
}

func (dec *decoder) fail(format string, args ...any) error {
	return &Error{Path: strings.Join(dec.path, "."), Msg: fmt.Sprintf(format, args...)}
}

// root reads up to the root element.
func (dec *decoder) root() (stdxml.StartElement, error) {
	for {
		tok, err := dec.token()
		if err == io.EOF {
			return stdxml.StartElement{}, &Error{Msg: "no root element"}
		}
		if err != nil {
			return stdxml.StartElement{}, err
		}
		switch t := tok.(type) {
		case stdxml.StartElement:
			return t, nil
		case stdxml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return stdxml.StartElement{}, &Error{Msg: "text before the root element"}
			}
		}
	}
}

// field is one JSON member being gathered from an object's child elements.
type field struct {
	name string
	m    *member
	vals [][]byte // JSON values, nil for a primitive without one
	exts [][]byte // a primitive's _name objects, nil where none
}

// object reads the children of start (a resource, datatype or backbone
// element) and appends its JSON object.
func (dec *decoder) object(dst []byte, start stdxml.StartElement, x *xtype, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, dec.fail("elements nested deeper than %d levels", MaxDepth)
	}
	dec.path = append(dec.path, start.Name.Local)
	defer func() { dec.path = dec.path[:len(dec.path)-1] }()
	var fields []field
	add := func(name string, m *member, val, ext []byte) error {
		for i := range fields {
			if fields[i].name == name {
				if !m.repeats {
					return dec.fail("element %q repeats: it allows one value", name)
				}
				fields[i].vals = append(fields[i].vals, val)
				fields[i].exts = append(fields[i].exts, ext)
				return nil
			}
		}
		fields = append(fields, field{name: name, m: m, vals: [][]byte{val}, exts: [][]byte{ext}})
		return nil
	}
	for _, a := range start.Attr {
		if namespaceDecl(a) {
			continue
		}
		m := x.members[a.Name.Local]
		if a.Name.Space != "" || m == nil || !m.attr {
			return dst, dec.fail("unknown attribute %q", a.Name.Local)
		}
		if err := add(a.Name.Local, m, appendJSONString(nil, a.Value), nil); err != nil {
			return dst, err
		}
	}
	for {
		tok, err := dec.token()
		if err == io.EOF {
			return dst, dec.fail("unexpected end of document")
		}
		if err != nil {
			return dst, err
		}
		switch t := tok.(type) {
		case stdxml.EndElement:
			return dec.writeObject(dst, x, fields), nil
		case stdxml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return dst, dec.fail("text is not allowed here (FHIR XML carries values in value attributes)")
			}
			continue
		case stdxml.StartElement:
			name := t.Name.Local
			m := x.members[name]
			if m == nil || m.attr {
				return dst, dec.fail("unknown element <%s> in %s", name, x.name)
			}
			if want := elementNamespace(m); t.Name.Space != want {
				return dst, dec.fail("element <%s> is in namespace %q, not %s", name, t.Name.Space, want)
			}
			var val, ext []byte
			switch m.kind {
			case kXHTML:
				val, err = dec.div(t)
			case kComplex:
				val, err = dec.object(nil, t, m.typ, depth+1)
			case kResource:
				val, err = dec.resource(t, depth+1)
			default:
				val, ext, err = dec.primitive(t, m, depth+1)
			}
			if err != nil {
				return dst, err
			}
			if err := add(name, m, val, ext); err != nil {
				return dst, err
			}
		}
	}
}

func elementNamespace(m *member) string {
	if m.kind == kXHTML {
		return NamespaceXHTML
	}
	return NamespaceFHIR
}

func namespaceDecl(a stdxml.Attr) bool {
	return a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns"
}

// writeObject appends the gathered fields as a JSON object, in definition
// order: a primitive as name and _name members, arrays aligned with nulls.
func (dec *decoder) writeObject(dst []byte, x *xtype, fields []field) []byte {
	slices.SortStableFunc(fields, func(a, b field) int { return int(a.m.ord - b.m.ord) })
	dst = append(dst, '{')
	first := true
	member := func(name string, ext bool) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		if ext {
			dst = append(dst, '_')
		}
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	if x.resource {
		member("resourceType", false)
		dst = appendJSONString(dst, x.name)
	}
	for _, f := range fields {
		anyVal, anyExt := false, false
		for i := range f.vals {
			anyVal = anyVal || f.vals[i] != nil
			anyExt = anyExt || f.exts[i] != nil
		}
		if anyVal {
			member(f.name, false)
			dst = appendValues(dst, f.vals, f.m.repeats)
		}
		if anyExt {
			member(f.name, true)
			dst = appendValues(dst, f.exts, f.m.repeats)
		}
	}
	return append(dst, '}')
}

func appendValues(dst []byte, vals [][]byte, array bool) []byte {
	if !array {
		return append(dst, vals[0]...)
	}
	dst = append(dst, '[')
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		if v == nil {
			v = []byte("null")
		}
		dst = append(dst, v...)
	}
	return append(dst, ']')
}

// resource reads an element that wraps one resource (contained,
// Bundle.entry.resource, Parameters.parameter.resource).
func (dec *decoder) resource(start stdxml.StartElement, depth int) ([]byte, error) {
	dec.path = append(dec.path, start.Name.Local)
	defer func() { dec.path = dec.path[:len(dec.path)-1] }()
	for _, a := range start.Attr {
		if !namespaceDecl(a) {
			return nil, dec.fail("unknown attribute %q", a.Name.Local)
		}
	}
	var out []byte
	for {
		tok, err := dec.token()
		if err == io.EOF {
			return nil, dec.fail("unexpected end of document")
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case stdxml.EndElement:
			if out == nil {
				return nil, dec.fail("<%s> holds no resource", start.Name.Local)
			}
			return out, nil
		case stdxml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, dec.fail("text is not allowed here")
			}
		case stdxml.StartElement:
			x := dec.t.resources[t.Name.Local]
			if x == nil || t.Name.Space != NamespaceFHIR {
				return nil, dec.fail("<%s> is not a FHIR resource type", t.Name.Local)
			}
			if out != nil {
				return nil, dec.fail("<%s> holds more than one resource", start.Name.Local)
			}
			if out, err = dec.object(nil, t, x, depth+1); err != nil {
				return nil, err
			}
		}
	}
}

// primitive reads a primitive element: its value attribute as the JSON
// value, its id attribute and extension children as the _name object.
func (dec *decoder) primitive(start stdxml.StartElement, m *member, depth int) (val, ext []byte, err error) {
	if depth > MaxDepth {
		return nil, nil, dec.fail("elements nested deeper than %d levels", MaxDepth)
	}
	dec.path = append(dec.path, start.Name.Local)
	defer func() { dec.path = dec.path[:len(dec.path)-1] }()
	var id []byte
	for _, a := range start.Attr {
		switch {
		case namespaceDecl(a):
		case a.Name.Space == "" && a.Name.Local == "value":
			if val, err = dec.value(a.Value, m.kind); err != nil {
				return nil, nil, err
			}
		case a.Name.Space == "" && a.Name.Local == "id":
			id = appendJSONString(nil, a.Value)
		default:
			return nil, nil, dec.fail("unknown attribute %q", a.Name.Local)
		}
	}
	var exts [][]byte
	for {
		tok, err := dec.token()
		if err == io.EOF {
			return nil, nil, dec.fail("unexpected end of document")
		}
		if err != nil {
			return nil, nil, err
		}
		switch t := tok.(type) {
		case stdxml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, nil, dec.fail("text is not allowed here (the value goes in the value attribute)")
			}
		case stdxml.StartElement:
			if t.Name.Local != "extension" || t.Name.Space != NamespaceFHIR {
				return nil, nil, dec.fail("unknown element <%s> in a primitive (only extension)", t.Name.Local)
			}
			e, err := dec.object(nil, t, dec.t.extension, depth+1)
			if err != nil {
				return nil, nil, err
			}
			exts = append(exts, e)
		case stdxml.EndElement:
			if id != nil || exts != nil {
				ext = append(ext, '{')
				if id != nil {
					ext = append(ext, `"id":`...)
					ext = append(ext, id...)
				}
				if exts != nil {
					if id != nil {
						ext = append(ext, ',')
					}
					ext = append(ext, `"extension":`...)
					ext = appendValues(ext, exts, true)
				}
				ext = append(ext, '}')
			}
			if val == nil && ext == nil {
				return nil, nil, dec.fail("a primitive element needs a value attribute, an id or extensions")
			}
			return val, ext, nil
		}
	}
}

// value is a value attribute as JSON: numbers as written (checked against
// JSON's grammar, which FHIR's decimal and integers follow), booleans as
// literals, everything else as a string.
func (dec *decoder) value(s string, k kind) ([]byte, error) {
	switch k {
	case kBoolean:
		if s != "true" && s != "false" {
			return nil, dec.fail("value %q is not a boolean", s)
		}
		return []byte(s), nil
	case kNumber:
		b := []byte(s)
		if len(b) == 0 || b[0] != '-' && (b[0] < '0' || b[0] > '9') {
			return nil, dec.fail("value %q is not a number", s)
		}
		n, err := jsonread.ScanNumber(b, 0)
		if err != nil || n.End != len(b) {
			return nil, dec.fail("value %q is not a number", s)
		}
		return b, nil
	}
	return appendJSONString(nil, s), nil
}

// div reads a narrative div: its exact text when it is self-contained
// (checkDiv), else rewritten from its tokens; as a JSON string.
func (dec *decoder) div(start stdxml.StartElement) ([]byte, error) {
	dec.path = append(dec.path, start.Name.Local)
	defer func() { dec.path = dec.path[:len(dec.path)-1] }()
	if start.Name.Local != "div" {
		return nil, dec.fail("the narrative must be a div element")
	}
	from := dec.off
	toks := []stdxml.Token{start}
	for depth := 1; depth > 0; {
		tok, err := dec.token()
		if err == io.EOF {
			return nil, dec.fail("unexpected end of document")
		}
		if err != nil {
			return nil, err
		}
		switch tok.(type) {
		case stdxml.StartElement:
			if depth++; depth+len(dec.path) > MaxDepth {
				return nil, dec.fail("elements nested deeper than %d levels", MaxDepth)
			}
		case stdxml.EndElement:
			depth--
		}
		toks = append(toks, stdxml.CopyToken(tok))
	}
	raw := dec.data[from:dec.d.InputOffset()]
	if checkDiv(raw) == nil {
		return appendJSONString(nil, string(raw)), nil
	}
	i := 0
	next := func() (stdxml.Token, error) {
		if i == len(toks) {
			return nil, io.EOF
		}
		i++
		return toks[i-1], nil
	}
	out, err := rewriteDiv(nil, next, false)
	if err != nil {
		return nil, dec.fail("narrative: %v", err)
	}
	return appendJSONString(nil, string(out)), nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
