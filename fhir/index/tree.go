package index

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// tree is a JSON document decoded once into a flat pre-order list of nodes:
// the children of node i are i+1, nodes[i+1].end, ... up to nodes[i].end.
// Decoding into interface{} with encoding/json was half of Extract's cost;
// strings here are slices of one copy of the document, so decoding allocates
// little and every parameter walks the same nodes.
type tree struct {
	nodes []node
}

type node struct {
	key  string // member name, when the parent is an object
	val  string // a string's value or a number's text
	end  int    // index just past this node's subtree
	kind kind
}

type kind uint8

const (
	kNull kind = iota
	kFalse
	kTrue
	kNumber
	kString
	kArray
	kObject
	// kOther is a value no index reads but which is present (not null): a
	// float64 decoded by the FHIRPath fallback.
	kOther
)

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// decode fills t from doc with exactly encoding/json's Decoder semantics
// (UseNumber, last duplicate key wins, invalid UTF-8 replaced, anything after
// the first value ignored), returning its error where it fails.
func (t *tree) decode(doc []byte) error {
	p := parser{s: string(doc), nodes: t.nodes[:0]}
	p.space()
	ok := p.value("")
	t.nodes = p.nodes
	if ok {
		return nil
	}
	// Let encoding/json word the error. Should it accept what the parser did
	// not, its result is used: the output never depends on a parser bug.
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var root any
	if err := d.Decode(&root); err != nil {
		return err
	}
	t.nodes = t.nodes[:0]
	t.fromAny("", root)
	return nil
}

// fromAny appends v, as decoded by encoding/json, as a subtree. Object
// members are in key order (map order is not defined).
func (t *tree) fromAny(key string, v any) {
	at := len(t.nodes)
	t.nodes = append(t.nodes, node{key: key})
	n := &t.nodes[at]
	switch x := v.(type) {
	case nil:
		n.kind = kNull
	case bool:
		n.kind = kFalse
		if x {
			n.kind = kTrue
		}
	case json.Number:
		n.kind, n.val = kNumber, string(x)
	case string:
		n.kind, n.val = kString, x
	case []any:
		n.kind = kArray
		for _, e := range x {
			t.fromAny("", e)
		}
	case map[string]any:
		n.kind = kObject
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.fromAny(k, x[k])
		}
	default:
		n.kind = kOther
	}
	t.nodes[at].end = len(t.nodes)
}

// parser is a JSON parser accepting exactly what encoding/json's scanner
// accepts.
type parser struct {
	s     string
	i     int
	depth int
	nodes []node
}

func (p *parser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(key string) bool {
	if p.i >= len(p.s) {
		return false
	}
	n := node{key: key, end: len(p.nodes) + 1}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(key)
	case c == '[':
		return p.array(key)
	case c == '"':
		v, ok := p.str()
		if !ok {
			return false
		}
		n.kind, n.val = kString, v
	case c == '-' || '0' <= c && c <= '9':
		v, ok := p.number()
		if !ok {
			return false
		}
		n.kind, n.val = kNumber, v
	case c == 't':
		if !p.literal("true") {
			return false
		}
		n.kind = kTrue
	case c == 'f':
		if !p.literal("false") {
			return false
		}
		n.kind = kFalse
	case c == 'n':
		if !p.literal("null") {
			return false
		}
		n.kind = kNull
	default:
		return false
	}
	p.nodes = append(p.nodes, n)
	return true
}

func (p *parser) literal(lit string) bool {
	if !strings.HasPrefix(p.s[p.i:], lit) {
		return false
	}
	p.i += len(lit)
	return true
}

func (p *parser) object(key string) bool {
	if p.depth++; p.depth > maxDepth {
		return false
	}
	at := len(p.nodes)
	p.nodes = append(p.nodes, node{key: key, kind: kObject})
	p.i++
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
	} else {
		for {
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return false
			}
			k, ok := p.str()
			if !ok {
				return false
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return false
			}
			p.i++
			p.space()
			if !p.value(k) {
				return false
			}
			p.space()
			if p.i >= len(p.s) {
				return false
			}
			c := p.s[p.i]
			p.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return false
			}
			p.space()
		}
	}
	p.nodes[at].end = len(p.nodes)
	p.depth--
	return true
}

func (p *parser) array(key string) bool {
	if p.depth++; p.depth > maxDepth {
		return false
	}
	at := len(p.nodes)
	p.nodes = append(p.nodes, node{key: key, kind: kArray})
	p.i++
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
	} else {
		for {
			if !p.value("") {
				return false
			}
			p.space()
			if p.i >= len(p.s) {
				return false
			}
			c := p.s[p.i]
			p.i++
			if c == ']' {
				break
			}
			if c != ',' {
				return false
			}
			p.space()
		}
	}
	p.nodes[at].end = len(p.nodes)
	p.depth--
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number reads a number's text as json.Number keeps it.
func (p *parser) number() (string, bool) {
	s, i := p.s, p.i
	if s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return "", false
	case s[i] == '0':
		i++
	case isDigit(s[i]):
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return "", false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return "", false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return "", false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	v := s[p.i:i]
	p.i = i
	return v, true
}

// str reads a string at p.i (an opening quote) and returns its value.
func (p *parser) str() (string, bool) {
	s := p.s
	start := p.i + 1
	i := start
	for i < len(s) {
		c := s[i]
		if c == '"' {
			p.i = i + 1
			return s[start:i], true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	// Escapes, control characters or non-ASCII: validate as the scanner
	// does, then unquote as encoding/json does.
	escaped := false
	for {
		if i >= len(s) {
			return "", false
		}
		c := s[i]
		switch {
		case c == '"':
			raw := s[start:i]
			p.i = i + 1
			if !escaped && utf8.ValidString(raw) {
				return raw, true
			}
			return unquote(raw), true
		case c < 0x20:
			return "", false
		case c == '\\':
			escaped = true
			if i+1 >= len(s) {
				return "", false
			}
			switch s[i+1] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				i += 2
			case 'u':
				if getu4(s[i:]) < 0 {
					return "", false
				}
				i += 6
			default:
				return "", false
			}
		default:
			i++
		}
	}
}

// unquote decodes a validated string body like encoding/json's unquote:
// invalid UTF-8 and unpaired surrogates become U+FFFD.
func unquote(s string) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch s[r+1] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != utf8.RuneError {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, s[r+1])
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRuneInString(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return string(b)
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s string) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for i := 2; i < 6; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// get returns an object's member key (the last, as encoding/json keeps the
// last duplicate), or -1 when it is absent or null.
func (t *tree) get(obj int, key string) int {
	found := -1
	end := t.nodes[obj].end
	for c := obj + 1; c < end; c = t.nodes[c].end {
		if t.nodes[c].key == key {
			found = c
		}
	}
	if found >= 0 && t.nodes[found].kind == kNull {
		return -1
	}
	return found
}

// str returns the string value of node n, "" when n is absent or no string.
func (t *tree) str(n int) string {
	if n < 0 || t.nodes[n].kind != kString {
		return ""
	}
	return t.nodes[n].val
}

// member is t.str(t.get(obj, key)), obj an object.
func (t *tree) member(obj int, key string) string { return t.str(t.get(obj, key)) }

// object returns n when it is an object, else -1.
func (t *tree) object(n int) int {
	if n < 0 || t.nodes[n].kind != kObject {
		return -1
	}
	return n
}

// elem returns element i of array n (null included), or -1.
func (t *tree) elem(n, i int) int {
	if t.nodes[n].kind != kArray {
		return -1
	}
	end := t.nodes[n].end
	for c := n + 1; c < end; c = t.nodes[c].end {
		if i == 0 {
			return c
		}
		i--
	}
	return -1
}
