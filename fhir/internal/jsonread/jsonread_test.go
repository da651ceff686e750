package jsonread

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func TestScanString(t *testing.T) {
	for _, c := range []struct {
		in     string
		mode   Mode
		flags  Flags
		err    error
		strict error // the error in Strict mode when it differs
	}{
		{in: `""`},
		{in: `"abc"`},
		{in: `"abc"tail`},
		{in: `"a\"b"`, flags: Escaped},
		{in: `"\/\b\f\n\r\t\\\""`, flags: Escaped},
		{in: `"\u00e9"`, flags: Escaped},
		{in: `"\u00E9\u00e9"`, flags: Escaped},
		{in: `"Müller"`, flags: NonASCII},
		{in: `"\ud83d\ude00"`, flags: Escaped},
		{in: `"😀 \u00e9"`, flags: Escaped | NonASCII},
		{in: `"\ud800"`, flags: Escaped, strict: ErrLoneSurrogate},
		{in: `"\udc00\ud800"`, flags: Escaped, strict: ErrLoneSurrogate},
		{in: `"\ud800x"`, flags: Escaped, strict: ErrLoneSurrogate},
		{in: `"\ud800\n"`, flags: Escaped, strict: ErrLoneSurrogate},
		{in: `"\ud800\u0041"`, flags: Escaped, strict: ErrSurrogatePair},
		{in: `"\ud800\ud800"`, flags: Escaped, strict: ErrSurrogatePair},
		{in: `"\ud800\u12"`, flags: Escaped, err: ErrHexEscape},
		{in: `"\ud800\x"`, flags: Escaped, err: ErrEscape, strict: ErrLoneSurrogate},
		{in: "\"\xff\"", flags: NonASCII, strict: ErrUTF8},
		{in: "\"\xed\xa0\x80\"", flags: NonASCII, strict: ErrUTF8},
		{in: "\"\xe2\x82\"", flags: NonASCII, strict: ErrUTF8},
		{in: "\"\xff\x01\"", flags: NonASCII, err: ErrControl},
		{in: "\"\xff", flags: NonASCII, err: ErrUnterminated},
		{in: `"abc`, err: ErrUnterminated},
		{in: `"abc\`, flags: Escaped, err: ErrUnterminated},
		{in: `"abc\"`, flags: Escaped, err: ErrUnterminated},
		{in: "\"a\x01b\"", err: ErrControl},
		{in: "\"a\tb\"", err: ErrControl},
		{in: "\"a\x7fb\""},
		{in: `"\x"`, flags: Escaped, err: ErrEscape},
		{in: `"\'"`, flags: Escaped, err: ErrEscape},
		{in: `"\u12"`, flags: Escaped, err: ErrHexEscape},
		{in: `"\u12g4"`, flags: Escaped, err: ErrHexEscape},
		{in: `"\u+123"`, flags: Escaped, err: ErrHexEscape},
	} {
		for _, m := range []Mode{0, Surrogates, UTF8, Strict} {
			want := c.err
			if want == nil && c.strict != nil && (c.strict == ErrUTF8 && m&UTF8 != 0 || c.strict != ErrUTF8 && m&Surrogates != 0) {
				want = c.strict
			}
			if c.err == ErrEscape && c.strict != nil && m&Surrogates != 0 {
				want = c.strict
			}
			end, f, err := ScanString([]byte(c.in), 0, m)
			if err != want {
				t.Errorf("%q mode %d: error %v, want %v", c.in, m, err, want)
				continue
			}
			if err != nil {
				continue
			}
			if f != c.flags {
				t.Errorf("%q mode %d: flags %b, want %b", c.in, m, f, c.flags)
			}
			if wantEnd := strings.LastIndexByte(c.in, '"') + 1; end != wantEnd {
				t.Errorf("%q mode %d: end %d, want %d", c.in, m, end, wantEnd)
			}
		}
	}
}

// TestUnescape holds Unescape (with ValidUTF8 on top) to encoding/json's
// decoding of strings.
func TestUnescape(t *testing.T) {
	for _, in := range []string{
		`""`, `"abc"`, `"\/\b\f\n\r\t\\\""`, `"a\u0041\u0000b"`, `"\u00e9\u00E9"`,
		`"\ud83d\ude00"`, `"x\ud83d\ude00y"`, `"\ud800"`, `"\ud800x"`, `"\udc00\ud800"`,
		`"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"\ud800\\"`, `"Müller"`,
		"\"\xff\xfe ok\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\\n\xac\"", "\"\xe2\x82\\u00e9\"",
	} {
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got := decode(t, []byte(in)); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// decode is what fhir/index does with a string: ScanString in mode 0,
// Unescape, ValidUTF8.
func decode(t *testing.T, data []byte) string {
	t.Helper()
	end, f, err := ScanString(data, 0, 0)
	if err != nil {
		t.Fatalf("%q: %v", data, err)
	}
	v := Unescape(nil, data[1:end-1])
	if f&Escaped == 0 && !bytes.Equal(v, data[1:end-1]) {
		t.Fatalf("%q: Unescape changed a string without escapes", data)
	}
	return string(ValidUTF8(nil, v))
}

func TestValidUTF8(t *testing.T) {
	for _, in := range []string{"", "abc", "é😀", "\xff", "a\xffb", "\xe2\x82", "\xe2\x82\xac", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf"} {
		var want string
		if err := json.Unmarshal([]byte(`"`+in+`"`), &want); err != nil {
			t.Fatal(err)
		}
		if got := string(ValidUTF8(nil, []byte(in))); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestScanNumber(t *testing.T) {
	for _, c := range []struct {
		in      string
		end     int // -1: len(in)
		exp     string
		negZero bool
		err     error
	}{
		{in: "0", end: -1},
		{in: "-0", end: -1, negZero: true},
		{in: "-0.000", end: -1, negZero: true},
		{in: "-0.001", end: -1},
		{in: "-10", end: -1},
		{in: "0.0", end: -1},
		{in: "123.456", end: -1},
		{in: "1e5", end: -1, exp: "5"},
		{in: "1E+05", end: -1, exp: "05"},
		{in: "-0e-7", end: -1, exp: "7", negZero: true},
		{in: "2.50e-3", end: -1, exp: "3"},
		{in: "01", end: 1},
		{in: "-01", end: 2, negZero: true},
		{in: "00.5", end: 1},
		{in: "1,", end: 1},
		{in: "1}", end: 1},
		{in: "1x", end: 1},
		{in: "1.5.5", end: 3},
		{in: "-", err: ErrNumber},
		{in: "-a", err: ErrNumber},
		{in: "-.5", err: ErrNumber},
		{in: "1.", err: ErrFraction},
		{in: "1.e5", err: ErrFraction},
		{in: "1e", err: ErrExponent},
		{in: "1e+", err: ErrExponent},
		{in: "1E-x", err: ErrExponent},
	} {
		n, err := ScanNumber([]byte(c.in), 0)
		if err != c.err {
			t.Errorf("%q: error %v, want %v", c.in, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		end := c.end
		if end < 0 {
			end = len(c.in)
		}
		exp := ""
		if n.Exp > 0 {
			exp = c.in[n.Exp:n.End]
		}
		if n.End != end || exp != c.exp || n.NegZero != c.negZero {
			t.Errorf("%q: got end %d, exponent %q, negative zero %v; want %d, %q, %v", c.in, n.End, exp, n.NegZero, end, c.exp, c.negZero)
		}
	}
}

func TestLiteral(t *testing.T) {
	for _, c := range []struct {
		in, lit string
		ok      bool
	}{{"true", "true", true}, {"true,", "true", true}, {"tru", "true", false}, {"nul", "null", false}, {"falsy", "false", false}, {"", "null", false}} {
		end, ok := Literal([]byte(c.in), 0, c.lit)
		if ok != c.ok || ok && end != len(c.lit) {
			t.Errorf("%q %q: got %d %v", c.in, c.lit, end, ok)
		}
	}
}

func TestSkipValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		rest string
		err  error
	}{
		{`"a\"}"  ,`, `  ,`, nil},
		{`{"a":[1,{"b":"]"}],"c":"}"} ,x`, ` ,x`, nil},
		{`[[],{}]]`, `]`, nil},
		{`12.5e3,`, `,`, nil},
		{`true}`, `}`, nil},
		{`null`, ``, nil},
		{`{"a":1`, ``, ErrEnd},
		{``, ``, ErrEnd},
		{`["\x"]`, ``, ErrEscape},
	} {
		end, err := SkipValue([]byte(c.in), 0, Strict)
		if err != c.err || err == nil && c.in[end:] != c.rest {
			t.Errorf("%q: got %v rest %q, want %v rest %q", c.in, err, c.in[min(end, len(c.in)):], c.err, c.rest)
		}
	}
}

func TestMembersAndElements(t *testing.T) {
	doc := []byte(` { "a" : 1 , "b\"c":[ 1 , "x" ,{"d":null} ] ,"e":{}} `)
	var keys []string
	var values []string
	i := 2
	for {
		key, next, ok := NextMember(doc, i)
		if !ok {
			if strings.TrimSpace(string(doc[next:])) != "" {
				t.Fatalf("after the object: %q", doc[next:])
			}
			break
		}
		keys = append(keys, string(key))
		end, err := SkipValue(doc, next, Strict)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, string(doc[next:end]))
		i = end
	}
	if got := strings.Join(keys, "|"); got != `a|b\"c|e` {
		t.Errorf("keys %s", got)
	}
	if got := strings.Join(values, "|"); got != `1|[ 1 , "x" ,{"d":null} ]|{}` {
		t.Errorf("values %s", got)
	}
	arr := []byte(`[ 1 , "x" ,{"d":null} ] `)
	var elems []string
	for i := 1; ; {
		next, ok := NextElement(arr, i)
		if !ok {
			if string(arr[next:]) != " " {
				t.Fatalf("after the array: %q", arr[next:])
			}
			break
		}
		end, _ := SkipValue(arr, next, Strict)
		elems = append(elems, string(arr[next:end]))
		i = end
	}
	if got := strings.Join(elems, "|"); got != `1|"x"|{"d":null}` {
		t.Errorf("elements %s", got)
	}
}

// TestNoAllocs checks that scanning and decoding into a buffer with room
// allocate nothing.
func TestNoAllocs(t *testing.T) {
	data := []byte(`{"a":"Müller \u00e9\ud83d\ude00 \n","n":-0.5e-3,"b":[true,null]}`)
	str, num, lit := bytes.IndexByte(data, ':')+1, bytes.IndexByte(data, '-'), bytes.IndexByte(data, 't')
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		end, _, err := ScanString(data, str, Strict)
		buf = Unescape(buf[:0], data[str+1:end-1])
		_, err2 := ScanNumber(data, num)
		_, err3 := SkipValue(data, 0, Strict)
		_, ok := Literal(data, lit, "true")
		if err != nil || err2 != nil || err3 != nil || !ok {
			t.Fatal(err, err2, err3, ok)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}

// FuzzString holds ScanString and Unescape to encoding/json (mode 0) and to
// a reference reading of RFC 8259 (Strict), and ScanNumber to
// encoding/json's grammar.
func FuzzString(f *testing.F) {
	for _, s := range []string{
		`"abc"`, `"\u00e9\ud83d\ude00\ud800\udc00x\ud800"`, `"\uDC00\uD800"`, `"\/\b\f\n\r\t\\\""`, `"\x"`, `"\u12"`,
		"\"\xff\xfe ok\"", "\"\xed\xa0\x80\"", "\"a\x01b\"", `"\ud800\u0041"`,
		`0`, `-0.0`, `01`, `-0.5e+10`, `1.`, `-`, `1e`, `1E-05 `, `12.5x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		switch c := data[0]; {
		case c == '"':
			checkString(t, data)
		case c == '-' || isDigit(c):
			checkNumber(t, data)
		}
	})
}

func checkString(t *testing.T, data []byte) {
	end, f, err := ScanString(data, 0, 0)
	whole := err == nil && len(bytes.TrimRight(data[end:], " \t\r\n")) == 0
	if whole != json.Valid(data) {
		t.Fatalf("%q: ScanString error %v, end %d; json.Valid %v", data, err, end, json.Valid(data))
	}
	if err != nil {
		if _, _, serr := ScanString(data, 0, Strict); serr == nil {
			t.Fatalf("%q: Strict accepts what mode 0 rejects (%v)", data, err)
		}
		return
	}
	raw := data[1 : end-1]
	var want string
	if json.Unmarshal(data[:end], &want) != nil {
		t.Fatalf("%q: encoding/json rejects it", data[:end])
	}
	v := Unescape(nil, raw)
	if got := string(ValidUTF8(nil, v)); got != want {
		t.Fatalf("%q: decoded %q, encoding/json %q", data[:end], got, want)
	}
	if (f&Escaped != 0) != (bytes.IndexByte(raw, '\\') >= 0) || (f&NonASCII != 0) != (bytes.IndexFunc(raw, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0) {
		t.Fatalf("%q: flags %b", raw, f)
	}
	_, _, serr := ScanString(data, 0, Strict)
	if strictOK := utf8.Valid(raw) && pairedSurrogates(raw); (serr == nil) != strictOK {
		t.Fatalf("%q: Strict error %v, reference says valid %v", raw, serr, strictOK)
	}
	if serr == nil && !utf8.Valid(v) {
		t.Fatalf("%q: Strict accepts it but Unescape gives invalid UTF-8 %q", raw, v)
	}
}

// pairedSurrogates reports whether every \u escape of a UTF-16 surrogate in
// raw (whose escapes are well formed) is half of a pair: a high surrogate
// directly followed by a low one.
func pairedSurrogates(raw []byte) bool {
	high := false // the previous item was a high surrogate's escape
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || raw[i+1] != 'u' {
			if high {
				return false
			}
			if raw[i] == '\\' {
				i++
			}
			continue
		}
		r, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		if err != nil {
			panic(err)
		}
		i += 5
		switch {
		case high && utf16.IsSurrogate(rune(r)) && r >= 0xDC00:
			high = false
		case high:
			return false
		case r >= 0xD800 && r < 0xDC00:
			high = true
		case r >= 0xDC00 && r <= 0xDFFF:
			return false
		}
	}
	return !high
}

func checkNumber(t *testing.T, data []byte) {
	n, err := ScanNumber(data, 0)
	whole := err == nil && len(bytes.TrimRight(data[n.End:], " \t\r\n")) == 0
	if whole != json.Valid(data) {
		t.Fatalf("%q: ScanNumber %+v, %v; json.Valid %v", data, n, err, json.Valid(data))
	}
	if err != nil {
		return
	}
	num := data[:n.End]
	if !json.Valid(num) {
		t.Fatalf("%q: ScanNumber's number %q is not JSON", data, num)
	}
	mantissa := num
	if e := bytes.IndexAny(num, "eE"); e >= 0 {
		mantissa = num[:e]
		if n.Exp <= e || bytes.ContainsAny(num[n.Exp:], "+-eE") {
			t.Fatalf("%q: exponent at %d", num, n.Exp)
		}
	} else if n.Exp != 0 {
		t.Fatalf("%q: exponent at %d", num, n.Exp)
	}
	negZero := mantissa[0] == '-' && len(bytes.Trim(mantissa[1:], "0.")) == 0
	if n.NegZero != negZero {
		t.Fatalf("%q: NegZero %v", num, n.NegZero)
	}
}
