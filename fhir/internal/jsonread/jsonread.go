// Package jsonread is the JSON lexer under fhir's strict scan, fhir/validate
// and fhir/index: whitespace, strings and their escapes, numbers, literals,
// skipping a value and walking the members of checked input. Each function
// takes the document and an offset and returns the offset after what it
// read, so every caller keeps its own walk, its own error wording and its
// own policy for input RFC 8259 forbids. Nothing allocates but the buffers
// Unescape and ValidUTF8 append to.
package jsonread

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// Errors the scanners report. The texts are the ones fhir's strict scan puts
// in an OperationOutcome.
var (
	ErrEnd           = errors.New("unexpected end of JSON input")
	ErrUnterminated  = errors.New("unterminated string")
	ErrControl       = errors.New("control character in string")
	ErrEscape        = errors.New("invalid escape in string")
	ErrHexEscape     = errors.New(`invalid \u escape in string`)
	ErrSurrogatePair = errors.New("invalid UTF-16 surrogate pair in string")
	ErrLoneSurrogate = errors.New("lone UTF-16 surrogate in string")
	ErrUTF8          = errors.New("invalid UTF-8 in string")
	ErrNumber        = errors.New("invalid number")
	ErrFraction      = errors.New("invalid number: no digits after the decimal point")
	ErrExponent      = errors.New("invalid number: empty exponent")
)

// Mode is how strictly ScanString checks what RFC 8259 leaves to the reader
// (escape syntax and control characters are always checked).
type Mode uint8

const (
	// Surrogates makes a \u escape of a UTF-16 surrogate that is not half of
	// a pair an error; without it, Unescape turns it into U+FFFD, as
	// encoding/json does.
	Surrogates Mode = 1 << iota
	// UTF8 makes invalid UTF-8 an error; without it, the caller sees
	// NonASCII and decides.
	UTF8
	// Strict is RFC 8259's string: both.
	Strict = Surrogates | UTF8
)

// Flags say what a scanned string holds beyond plain ASCII characters.
type Flags uint8

const (
	// Escaped: the string has backslash escapes; its value is Unescape's.
	Escaped Flags = 1 << iota
	// NonASCII: the string has bytes from 0x80 (valid UTF-8 if the Mode
	// checked it).
	NonASCII
)

// SkipSpace returns the offset of the first byte at or after i that is not
// JSON whitespace (len(data) if none).
func SkipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stop marks the bytes that end a string's fast loop: the quote, the
// backslash, control characters and non-ASCII bytes.
var stop = func() (t [256]bool) {
	for c := range t {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf
	}
	return t
}()

// PlainString returns the offset just past the string whose opening quote
// is at data[i] when the string is plain: ASCII without escapes or control
// characters, as most of a FHIR resource's strings are. It is small enough
// to be inlined in the callers' loops; ok is false for any other string,
// which ScanString reads.
func PlainString(data []byte, i int) (end int, ok bool) {
	j := i + 1
	for j < len(data) && !stop[data[j]] {
		j++
	}
	return j + 1, j < len(data) && data[j] == '"'
}

// ScanString checks the string whose opening quote is at data[i] and returns
// the offset just past its closing quote; its raw content is
// data[i+1:end-1]. On an error, end is where scanning stopped. Errors are
// reported in the order a reader meets them, except that invalid UTF-8 is
// reported only for a string that is otherwise well formed.
func ScanString(data []byte, i int, m Mode) (end int, f Flags, err error) {
	end, ok := PlainString(data, i)
	if ok {
		return end, 0, nil
	}
	return scanString(data, i, end-1, m)
}

// scanString is ScanString going on from data[j]: the content before j is
// plain.
func scanString(data []byte, i, j int, m Mode) (end int, f Flags, err error) {
	for {
		for j < len(data) && !stop[data[j]] {
			j++
		}
		if j >= len(data) {
			return j, f, ErrUnterminated
		}
		switch c := data[j]; {
		case c == '"':
			if f&NonASCII != 0 && m&UTF8 != 0 && !utf8.Valid(data[i+1:j]) {
				return j + 1, f, ErrUTF8
			}
			return j + 1, f, nil
		case c >= utf8.RuneSelf:
			f |= NonASCII
			j++
		case c == '\\':
			f |= Escaped
			if j, err = escape(data, j, m); err != nil {
				return j, f, err
			}
		default:
			return j, f, ErrControl
		}
	}
}

// escape checks the escape whose backslash is at data[j] and returns the
// offset past it (past both halves of a surrogate pair).
func escape(data []byte, j int, m Mode) (int, error) {
	if j+1 >= len(data) {
		return len(data), ErrUnterminated
	}
	switch data[j+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return j + 2, nil
	case 'u':
	default:
		return j + 1, ErrEscape
	}
	r := hex4(data, j+2)
	if r < 0 {
		return j + 2, ErrHexEscape
	}
	j += 6
	if m&Surrogates == 0 || r < 0xD800 || r > 0xDFFF {
		return j, nil
	}
	if r >= 0xDC00 || j+1 >= len(data) || data[j] != '\\' || data[j+1] != 'u' {
		return j, ErrLoneSurrogate
	}
	r2 := hex4(data, j+2)
	if r2 < 0 {
		return j + 2, ErrHexEscape
	}
	if r2 < 0xDC00 || r2 > 0xDFFF {
		return j + 6, ErrSurrogatePair
	}
	return j + 6, nil
}

// hex4 decodes the four hex digits at data[i:], or returns -1.
func hex4(data []byte, i int) rune {
	if i+4 > len(data) {
		return -1
	}
	var r rune
	for _, c := range data[i : i+4] {
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
		r = r<<4 | rune(c)
	}
	return r
}

// Unescape appends the value of a string's raw content (between the quotes,
// checked by ScanString) to dst: escapes are decoded, a surrogate pair
// becomes its character and any other surrogate U+FFFD, as encoding/json
// decodes them. Other bytes are copied as they are (see ValidUTF8).
func Unescape(dst, raw []byte) []byte {
	for {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 || k+1 >= len(raw) {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:k]...)
		raw = raw[k:]
		switch c := raw[1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw, 2)
			if r < 0 { // not checked by ScanString: keep it as it is
				dst = append(dst, raw[:2]...)
				break
			}
			raw = raw[6:]
			if r >= 0xD800 && r <= 0xDFFF {
				if r2 := hex4(raw, 2); r < 0xDC00 && len(raw) >= 6 && raw[0] == '\\' && raw[1] == 'u' && r2 >= 0xDC00 && r2 <= 0xDFFF {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					raw = raw[6:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // " \ /
			dst = append(dst, c)
		}
		raw = raw[2:]
	}
}

// ValidUTF8 appends s to dst with every byte that is not part of a valid
// UTF-8 sequence replaced by U+FFFD, as encoding/json decodes strings.
func ValidUTF8(dst, s []byte) []byte {
	for len(s) > 0 {
		if s[0] < utf8.RuneSelf {
			dst = append(dst, s[0])
			s = s[1:]
			continue
		}
		r, n := utf8.DecodeRune(s)
		dst = utf8.AppendRune(dst, r)
		s = s[n:]
	}
	return dst
}

// Number is what ScanNumber learned about a number.
type Number struct {
	End int // offset just past the number
	// Exp is the offset of the exponent's first digit, 0 when the number
	// has no exponent.
	Exp int
	// NegZero: a minus sign on a zero mantissa (-0, -0.0), a written form
	// that a numeric type without negative zero (PostgreSQL's) cannot keep.
	NegZero bool
}

// ScanNumber reads the number at data[i] (a minus sign or a digit) by RFC
// 8259's grammar: it ends where the grammar does, so "01" is the number 0
// followed by a stray digit, for the caller to reject as it sees fit.
func ScanNumber(data []byte, i int) (Number, error) {
	var n Number
	neg := data[i] == '-'
	if neg {
		i++
	}
	zero := false // the mantissa so far is -0
	switch {
	case i >= len(data) || !isDigit(data[i]):
		return Number{End: i}, ErrNumber
	case data[i] == '0':
		zero = neg
		i++
	default:
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return Number{End: i}, ErrFraction
		}
		for i < len(data) && isDigit(data[i]) {
			if data[i] != '0' {
				zero = false
			}
			i++
		}
	}
	n.NegZero = zero
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return Number{End: i}, ErrExponent
		}
		n.Exp = i
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	n.End = i
	return n, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Literal reports whether data at i holds lit (true, false or null) and
// returns the offset past it.
func Literal(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// SkipValue moves past the value at data[i] without checking more than its
// strings (by m) and its brackets' count: for input already checked, or
// where only the value's extent matters. A number or literal ends at the
// next delimiter or space.
func SkipValue(data []byte, i int, m Mode) (int, error) {
	if i >= len(data) {
		return i, ErrEnd
	}
	switch data[i] {
	case '"':
		end, ok := PlainString(data, i)
		if ok {
			return end, nil
		}
		end, _, err := ScanString(data, i, m)
		return end, err
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				end, ok := PlainString(data, i)
				if !ok {
					var err error
					if end, _, err = ScanString(data, i, m); err != nil {
						return end, err
					}
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return i, ErrEnd
	default:
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i, nil
			}
			i++
		}
		return i, nil
	}
}

// NextMember reads the next member of an object in checked input: i is just
// past the '{' or past the previous member's value. It returns the key's raw
// content (escapes undecoded) and the offset of the value; at the closing
// brace ok is false and next is past it.
func NextMember(data []byte, i int) (key []byte, next int, ok bool) {
	i = SkipSpace(data, i)
	if i < len(data) && data[i] == ',' {
		i = SkipSpace(data, i+1)
	}
	if i >= len(data) || data[i] != '"' {
		return nil, i + 1, false
	}
	end, plain := PlainString(data, i)
	if !plain {
		end, _, _ = ScanString(data, i, 0)
	}
	key = data[i+1 : max(end-1, i+1)]
	i = SkipSpace(data, end)
	return key, SkipSpace(data, i+1), true // past ':'
}

// NextElement is NextMember for arrays: it returns the offset of the next
// element, or, at the closing bracket, ok false and the offset past it.
func NextElement(data []byte, i int) (next int, ok bool) {
	i = SkipSpace(data, i)
	if i < len(data) && data[i] == ',' {
		i = SkipSpace(data, i+1)
	}
	if i >= len(data) || data[i] == ']' {
		return i + 1, false
	}
	return i, true
}
