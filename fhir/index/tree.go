package index

import (
	"bytes"
	"encoding/json"
	"sort"
	"unicode/utf8"

	"github.com/emberfhir/ember/fhir/internal/jsonread"
)

// tree is a JSON document decoded once into a flat pre-order list of nodes:
// the children of node i are i+1, nodes[i+1].end, ... up to nodes[i].end.
// Decoding into interface{} with encoding/json was half of Extract's cost;
// strings here are slices of one copy of the document, so decoding allocates
// little and every parameter walks the same nodes.
type tree struct {
	nodes []node
	buf   []byte // the parser's scratch, kept for the next document
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
	p := newParser(doc)
	p.nodes, p.buf = t.nodes[:0], t.buf
	p.space()
	ok := p.value("")
	t.nodes, t.buf = p.nodes, p.buf
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
// accepts. It reads data and takes the nodes' strings from s, a copy of it,
// so they stay valid whatever the caller does with data later.
type parser struct {
	data  []byte
	s     string
	i     int
	depth int
	nodes []node
	buf   []byte // scratch for decoding strings with escapes
}

func newParser(doc []byte) parser { return parser{data: doc, s: string(doc)} }

func (p *parser) space() { p.i = jsonread.SkipSpace(p.data, p.i) }

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
	end, ok := jsonread.Literal(p.data, p.i, lit)
	p.i = end
	return ok
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

// number reads a number's text as json.Number keeps it.
func (p *parser) number() (string, bool) {
	n, err := jsonread.ScanNumber(p.data, p.i)
	if err != nil {
		return "", false
	}
	v := p.s[p.i:n.End]
	p.i = n.End
	return v, true
}

// str reads a string at p.i (an opening quote) and returns its value as
// encoding/json decodes it: lone surrogates and invalid UTF-8 become U+FFFD.
func (p *parser) str() (string, bool) {
	start := p.i + 1
	end, plain := jsonread.PlainString(p.data, p.i)
	if plain {
		p.i = end
		return p.s[start : end-1], true
	}
	end, f, err := jsonread.ScanString(p.data, p.i, 0)
	if err != nil {
		return "", false
	}
	p.i = end
	raw := p.data[start : end-1]
	if f&jsonread.Escaped == 0 && (f&jsonread.NonASCII == 0 || utf8.Valid(raw)) {
		return p.s[start : end-1], true
	}
	if f&jsonread.Escaped != 0 {
		p.buf = jsonread.Unescape(p.buf[:0], raw)
		raw = p.buf
	}
	if f&jsonread.NonASCII != 0 && !utf8.Valid(raw) {
		raw = jsonread.ValidUTF8(nil, raw)
	}
	return string(raw), true
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
