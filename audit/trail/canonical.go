package trail

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Canonical is the form of a stored AuditEvent its link hashes: its JSON
// value with object keys sorted (by their bytes), no insignificant space,
// numbers as written, strings escaped one way (as encoding/json does
// without HTML escaping). PostgreSQL's JSONB gives back the same value in
// another layout, so the hash is taken of what the value is, not of how it
// was spelled. It streams: events are large (hundreds of entities) and
// written every second, so no tree of maps is built.
func Canonical(content []byte) ([]byte, error) {
	c := canonicalizer{in: content, out: make([]byte, 0, len(content))}
	if err := c.value(0); err != nil {
		return nil, fmt.Errorf("audit: canonical form: %w", err)
	}
	c.space()
	if c.i != len(c.in) {
		return nil, errors.New("audit: canonical form: data after the JSON value")
	}
	return c.out, nil
}

type canonicalizer struct {
	in  []byte
	i   int
	out []byte
}

// maxCanonicalDepth bounds nesting (the store accepts 64).
const maxCanonicalDepth = 128

var errCanonical = errors.New("malformed JSON")

func (c *canonicalizer) space() {
	for c.i < len(c.in) && (c.in[c.i] == ' ' || c.in[c.i] == '\t' || c.in[c.i] == '\n' || c.in[c.i] == '\r') {
		c.i++
	}
}

func (c *canonicalizer) value(depth int) error {
	if depth > maxCanonicalDepth {
		return errors.New("nested too deeply")
	}
	c.space()
	if c.i >= len(c.in) {
		return errCanonical
	}
	switch c.in[c.i] {
	case '{':
		return c.object(depth)
	case '[':
		c.i++
		c.out = append(c.out, '[')
		c.space()
		if c.i < len(c.in) && c.in[c.i] == ']' {
			c.i++
			c.out = append(c.out, ']')
			return nil
		}
		for {
			if err := c.value(depth + 1); err != nil {
				return err
			}
			c.space()
			if c.i >= len(c.in) {
				return errCanonical
			}
			switch c.in[c.i] {
			case ',':
				c.i++
				c.out = append(c.out, ',')
			case ']':
				c.i++
				c.out = append(c.out, ']')
				return nil
			default:
				return errCanonical
			}
		}
	case '"':
		s, err := c.str()
		if err != nil {
			return err
		}
		c.out = appendCanonicalString(c.out, s)
		return nil
	}
	// A number or a literal: kept as written.
	start := c.i
	for c.i < len(c.in) {
		switch c.in[c.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			goto done
		}
		c.i++
	}
done:
	tok := c.in[start:c.i]
	if !literal(tok) {
		return errCanonical
	}
	c.out = append(c.out, tok...)
	return nil
}

// literal reports whether tok is true, false, null or made of a number's
// characters (a number's exact grammar was checked where it was written:
// by the engine's parser, by PostgreSQL).
func literal(tok []byte) bool {
	switch string(tok) {
	case "true", "false", "null":
		return true
	case "":
		return false
	}
	for _, b := range tok {
		if !(b >= '0' && b <= '9' || b == '-' || b == '+' || b == '.' || b == 'e' || b == 'E') {
			return false
		}
	}
	return true
}

// member is one object member: its key and where its canonical value
// lies in out.
type member struct {
	key        string
	start, end int
}

func (c *canonicalizer) object(depth int) error {
	c.i++ // {
	base := len(c.out)
	var members []member
	c.space()
	if c.i < len(c.in) && c.in[c.i] == '}' {
		c.i++
		c.out = append(c.out, '{', '}')
		return nil
	}
	for {
		c.space()
		if c.i >= len(c.in) || c.in[c.i] != '"' {
			return errCanonical
		}
		key, err := c.str()
		if err != nil {
			return err
		}
		c.space()
		if c.i >= len(c.in) || c.in[c.i] != ':' {
			return errCanonical
		}
		c.i++
		start := len(c.out)
		if err := c.value(depth + 1); err != nil {
			return err
		}
		members = append(members, member{key: key, start: start, end: len(c.out)})
		c.space()
		if c.i >= len(c.in) {
			return errCanonical
		}
		if c.in[c.i] == ',' {
			c.i++
			continue
		}
		if c.in[c.i] != '}' {
			return errCanonical
		}
		c.i++
		break
	}
	// The values sit in out in document order; write them back in key order.
	values := slices.Clone(c.out[base:])
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	c.out = append(c.out[:base], '{')
	for k, m := range members {
		if k > 0 {
			c.out = append(c.out, ',')
		}
		c.out = appendCanonicalString(c.out, m.key)
		c.out = append(c.out, ':')
		c.out = append(c.out, values[m.start-base:m.end-base]...)
	}
	c.out = append(c.out, '}')
	return nil
}

// str reads a string token and returns its value.
func (c *canonicalizer) str() (string, error) {
	start := c.i
	c.i++ // "
	plain := true
	for c.i < len(c.in) {
		switch c.in[c.i] {
		case '\\':
			plain = false
			c.i += 2
			continue
		case '"':
			c.i++
			tok := c.in[start:c.i]
			if plain {
				return string(tok[1 : len(tok)-1]), nil
			}
			var s string
			if err := json.Unmarshal(tok, &s); err != nil {
				return "", errCanonical
			}
			return s, nil
		}
		c.i++
	}
	return "", errCanonical
}

// appendCanonicalString writes s as encoding/json does without HTML
// escaping: \" \\ \b \f \n \r \t, other controls as \u00XX, U+2028 and
// U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendCanonicalString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
