package fhir

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/emberfhir/ember/fhir/internal/jsonread"
)

// maxDepth bounds JSON nesting. R4 resources nest far less than this even
// with contained resources and extensions; deeper input is hostile.
const maxDepth = 64

// scanError is a JSON-level problem with the FHIRPath-like location where it was found.
type scanError struct {
	path string
	msg  string
	// syntax is true for malformed JSON (400), false for JSON that is well formed
	// but breaks FHIR's JSON rules (422).
	syntax bool
}

// scanner makes one strict pass over a request body, enforcing what RFC 8259
// and FHIR's JSON representation require and google/fhir does not check:
// valid UTF-8, no empty strings/objects/arrays, no null outside arrays, no
// duplicate keys, bounded depth.
type scanner struct {
	data  []byte
	pos   int
	depth int
	path  []byte // current location, e.g. Patient.name[0].given
	err   *scanError
	// lenient skips UTF-8 checks: used only to locate members of input that
	// is about to be fully scanned anyway.
	lenient bool
	// keys are the member names of the objects being scanned, innermost
	// last, for the duplicate check: a linear search over the few members
	// of a FHIR object costs less than a map per object.
	keys [][]byte
	buf  []byte // scratch for the decoded value of a string with escapes
	// inexactNumbers is set when a number's written form would not survive
	// PostgreSQL's JSONB (numeric) storage: an exponent or a negative zero.
	inexactNumbers bool
	// id is the root object's "id" value as written (nil when absent), noted
	// on the way so Parse needs no pass of its own to find it.
	id []byte
}

// scanResult is what a successful scan learned about the document.
type scanResult struct {
	resourceType   string // top-level "resourceType" ("" if absent or not a string)
	inexactNumbers bool
	id             []byte // the root "id" value as written (nil when absent)
}

// scanResource checks data.
func scanResource(data []byte) (scanResult, *scanError) {
	s := &scanner{data: data}
	s.skipSpace()
	if s.pos >= len(s.data) {
		return scanResult{}, &scanError{msg: "empty body: expected a JSON object", syntax: true}
	}
	if s.data[s.pos] != '{' {
		return scanResult{}, &scanError{msg: "expected a JSON object at the top level", syntax: true}
	}
	rt, ok := leadingResourceType(data[s.pos:])
	if !ok {
		rt = topLevelResourceType(data)
	}
	if rt != "" {
		s.path = append(s.path, rt...)
	}
	s.value(false)
	if s.err == nil {
		s.skipSpace()
		if s.pos != len(s.data) {
			s.fail(true, "unexpected data after the JSON object")
		}
	}
	return scanResult{resourceType: rt, inexactNumbers: s.inexactNumbers, id: s.id}, s.err
}

// leadingResourceType reads "resourceType" when it is the object's first
// member with a plain string value, as resources nearly always have it,
// which spares topLevelResourceType's pass over the whole object. ok is
// false when it cannot tell (another first member, an escape): the caller
// then makes that pass.
func leadingResourceType(obj []byte) (rt string, ok bool) {
	const key = `"resourceType"`
	i := jsonread.SkipSpace(obj, 1) // past '{'
	if !bytes.HasPrefix(obj[i:], []byte(key)) {
		return "", false
	}
	i = jsonread.SkipSpace(obj, i+len(key))
	if i >= len(obj) || obj[i] != ':' {
		return "", false
	}
	i = jsonread.SkipSpace(obj, i+1)
	if i >= len(obj) || obj[i] != '"' {
		return "", false
	}
	end := bytes.IndexByte(obj[i+1:], '"')
	if end < 0 {
		return "", false
	}
	v := obj[i+1 : i+1+end]
	if bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}

// topLevelResourceType finds "resourceType" among the root object's members
// without validating anything else, so errors can be located as Type.path.
func topLevelResourceType(data []byte) string {
	members, err := membersOf(&scanner{data: data, lenient: true})
	if err != nil {
		return ""
	}
	for _, m := range members {
		if m.key == "resourceType" {
			v := data[m.start:m.end]
			if len(v) < 2 || v[0] != '"' {
				continue
			}
			if v = v[1 : len(v)-1]; bytes.IndexByte(v, '\\') >= 0 {
				v = jsonread.Unescape(nil, v)
			}
			if utf8.Valid(v) { // else the scan that follows rejects it
				return string(v)
			}
		}
	}
	return ""
}

func (s *scanner) fail(syntax bool, msg string) {
	if s.err == nil {
		s.err = &scanError{path: string(s.path), msg: msg, syntax: syntax}
	}
}

func (s *scanner) skipSpace() { s.pos = jsonread.SkipSpace(s.data, s.pos) }

// mode is how strictly strings are checked: lenient skips the UTF-8 check.
func (s *scanner) mode() jsonread.Mode {
	if s.lenient {
		return jsonread.Surrogates
	}
	return jsonread.Strict
}

// value scans one JSON value at s.pos. inArray allows null (FHIR uses null to
// align primitive arrays with their _element extension arrays).
func (s *scanner) value(inArray bool) {
	s.skipSpace()
	if s.pos >= len(s.data) {
		s.fail(true, "unexpected end of JSON input")
		return
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		s.object()
	case c == '[':
		s.array()
	case c == '"':
		start := s.pos + 1
		end, plain := jsonread.PlainString(s.data, s.pos)
		var f jsonread.Flags
		var err error
		if !plain {
			end, f, err = jsonread.ScanString(s.data, s.pos, s.mode())
		}
		s.pos = end
		switch {
		case err != nil:
			s.fail(true, err.Error())
		case end-start == 1:
			s.fail(false, "empty string: FHIR does not allow empty values")
		case f&jsonread.Escaped != 0:
			// Raw JSON holds no NUL byte; only an escape can make one.
			s.buf = jsonread.Unescape(s.buf[:0], s.data[start:end-1])
			if bytes.IndexByte(s.buf, 0) >= 0 {
				s.fail(false, "string contains a NUL character")
			}
		}
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
		if s.err == nil && !inArray {
			s.fail(false, "null is only allowed inside arrays")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		s.number()
	default:
		s.fail(true, "invalid character "+strconv.QuoteRune(rune(c))+" looking for a value")
	}
}

func (s *scanner) literal(lit string) {
	end, ok := jsonread.Literal(s.data, s.pos, lit)
	s.pos = end
	if !ok {
		s.fail(true, "invalid literal, expected "+lit)
	}
}

func (s *scanner) number() {
	start := s.pos
	n, err := jsonread.ScanNumber(s.data, s.pos)
	s.pos = n.End
	if err != nil {
		s.fail(true, err.Error())
		return
	}
	if s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		// The grammar's number ended after a 0 that digits follow.
		s.fail(true, "invalid number: leading zero")
		return
	}
	if n.NegZero {
		s.inexactNumbers = true // numeric has no negative zero: -0.0 would read back as 0.0
	}
	if n.Exp > 0 {
		s.inexactNumbers = true
		if !exponentInRange(s.data[n.Exp:n.End]) {
			s.fail(false, "number out of range: the exponent's magnitude may be at most "+strconv.Itoa(MaxDecimalExponent))
			return
		}
	}
	if s.pos-start > maxNumberLen {
		s.fail(false, "number too long")
	}
}

// maxNumberLen bounds a number's written length. With MaxDecimalExponent
// it bounds every number's magnitude and scale.
const maxNumberLen = 64

// MaxDecimalExponent bounds a number's written exponent (1e1000, 1e-1000);
// search values compared with stored numbers can use the same bound. Every
// number is stored in PostgreSQL's numeric, in the JSONB body and in the
// number and quantity indexes, and numeric holds at most 131072 digits before
// the point and 16383 after: 1e131072 or 1e-16384 would fail the write
// (SQLSTATE 22003) after validation passed. Far inside those limits, with
// at most maxNumberLen characters, a number has at most about 1064 digits
// either side of the point, so its numeric value stays a few hundred bytes:
// small enough for index entries, cheap to compare. No quantity in medicine
// or elsewhere in FHIR comes near 10^±1000 (Planck's length is 1.6e-35 m).
const MaxDecimalExponent = 1000

// exponentInRange reports whether the exponent digits are at most
// MaxDecimalExponent, without converting (they may be many).
func exponentInRange(digits []byte) bool {
	for len(digits) > 1 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) > 4 {
		return false
	}
	v := 0
	for _, c := range digits {
		v = v*10 + int(c-'0')
	}
	return v <= MaxDecimalExponent
}

// str scans a string at s.pos and returns its decoded bytes: a slice of
// s.data, or a new slice when it has escapes.
func (s *scanner) str() ([]byte, bool) {
	start := s.pos + 1
	end, plain := jsonread.PlainString(s.data, s.pos)
	if plain {
		s.pos = end
		return s.data[start : end-1], true
	}
	end, f, err := jsonread.ScanString(s.data, s.pos, s.mode())
	s.pos = end
	if err != nil {
		s.fail(true, err.Error())
		return nil, false
	}
	raw := s.data[start : end-1]
	if f&jsonread.Escaped == 0 {
		return raw, true
	}
	return jsonread.Unescape(nil, raw), true
}

func (s *scanner) enter() bool {
	s.depth++
	if s.depth > maxDepth {
		s.fail(false, "JSON nested deeper than "+strconv.Itoa(maxDepth)+" levels")
		return false
	}
	return true
}

// maxLinearKeys is where duplicate checking switches from scanning the
// object's keys to a map, so a hostile object with a huge number of
// members costs linear, not quadratic, time.
const maxLinearKeys = 32

// duplicate reports whether key was seen already in the object whose keys
// start at s.keys[kbase], and records it.
func (s *scanner) duplicate(key []byte, kbase int, seen *map[string]struct{}) bool {
	if *seen != nil {
		if _, dup := (*seen)[string(key)]; dup {
			return true
		}
		(*seen)[string(key)] = struct{}{}
		return false
	}
	for _, k := range s.keys[kbase:] {
		if bytes.Equal(k, key) {
			return true
		}
	}
	s.keys = append(s.keys, key)
	if len(s.keys)-kbase > maxLinearKeys {
		*seen = make(map[string]struct{}, 2*maxLinearKeys)
		for _, k := range s.keys[kbase:] {
			(*seen)[string(k)] = struct{}{}
		}
	}
	return false
}

func (s *scanner) object() {
	if !s.enter() {
		return
	}
	defer func() { s.depth-- }()
	s.pos++ // {
	base := len(s.path)
	kbase := len(s.keys)
	defer func() { s.keys = s.keys[:kbase] }()
	var seen map[string]struct{} // only for objects with many members
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.fail(false, "empty object: FHIR does not allow empty values")
		return
	}
	for s.err == nil {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			s.fail(true, "expected a string key in object")
			return
		}
		key, ok := s.str()
		if !ok {
			return
		}
		if len(key) == 0 {
			s.fail(false, "empty property name")
			return
		}
		if s.duplicate(key, kbase, &seen) {
			s.fail(false, "duplicate property "+strconv.Quote(string(key)))
			return
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			s.fail(true, "expected ':' after object key")
			return
		}
		s.pos++
		if len(s.path) > 0 {
			s.path = append(s.path, '.')
		}
		s.path = append(s.path, key...)
		if s.depth == 1 && string(key) == "id" {
			s.skipSpace()
			start := s.pos
			s.value(false)
			s.id = s.data[start:s.pos]
		} else {
			s.value(false)
		}
		s.path = s.path[:base]
		if s.err != nil {
			return
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			s.fail(true, "unexpected end of JSON input")
			return
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return
		default:
			s.fail(true, "expected ',' or '}' after object value")
			return
		}
	}
}

func (s *scanner) array() {
	if !s.enter() {
		return
	}
	defer func() { s.depth-- }()
	s.pos++ // [
	base := len(s.path)
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.fail(false, "empty array: FHIR does not allow empty values")
		return
	}
	allNull := true
	for i := 0; s.err == nil; i++ {
		s.path = append(s.path, '[')
		s.path = strconv.AppendInt(s.path, int64(i), 10)
		s.path = append(s.path, ']')
		s.skipSpace()
		if s.pos < len(s.data) && s.data[s.pos] != 'n' {
			allNull = false
		}
		s.value(true)
		s.path = s.path[:base]
		if s.err != nil {
			return
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			s.fail(true, "unexpected end of JSON input")
			return
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			if allNull {
				s.fail(false, "array holds only nulls")
			}
			return
		default:
			s.fail(true, "expected ',' or ']' after array element")
			return
		}
	}
}

// member is one key of a JSON object and the byte span of its raw value.
type member struct {
	key        string
	start, end int
}

// objectMembers lists the members of the JSON object in data, in order. data
// must be well-formed (it is only ever called on scanned input or to locate
// resourceType before scanning, where a failure just means "unknown").
func objectMembers(data []byte) ([]member, error) {
	return membersOf(&scanner{data: data})
}

func membersOf(s *scanner) ([]member, error) {
	data := s.data
	s.skipSpace()
	if s.pos >= len(data) || data[s.pos] != '{' {
		return nil, errNotObject
	}
	s.pos++
	var out []member
	for {
		s.skipSpace()
		if s.pos < len(data) && data[s.pos] == '}' {
			return out, nil
		}
		if s.pos >= len(data) || data[s.pos] != '"' {
			return nil, errNotObject
		}
		key, ok := s.str()
		if !ok {
			return nil, errNotObject
		}
		s.skipSpace()
		if s.pos >= len(data) || data[s.pos] != ':' {
			return nil, errNotObject
		}
		s.pos++
		s.skipSpace()
		start := s.pos
		if !s.skipValue() {
			return nil, errNotObject
		}
		out = append(out, member{key: string(key), start: start, end: s.pos})
		s.skipSpace()
		if s.pos >= len(data) {
			return nil, errNotObject
		}
		if data[s.pos] == ',' {
			s.pos++
			continue
		}
		if data[s.pos] == '}' {
			return out, nil
		}
		return nil, errNotObject
	}
}

// skipValue advances over one value without checking FHIR rules.
func (s *scanner) skipValue() bool {
	end, err := jsonread.SkipValue(s.data, s.pos, s.mode())
	s.pos = end
	return err == nil
}

var errNotObject = errors.New("not a JSON object")
