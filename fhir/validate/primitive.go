package validate

import (
	"bytes"
	"encoding/base64"
	"math"
	"net/url"
	"strconv"
	"strings"
)

// The rules below are R4's datatype rules as google/fhir v0.7.4 applies them
// (Ember validated with it before, and its decisions are the reference the
// tests compare against): the regexes of its proto annotations, Go's
// time.Parse for calendar days, url.Parse for URIs.

// maxStringSize is FHIR's 1 MB limit on a string's value.
const maxStringSize = 1 << 20

// primitive checks the primitive value at w.pos (not null, not an object or
// array) as f's kind.
func (w *walker) primitive(f *fieldDef) {
	c := w.data[w.pos]
	k := f.kind
	switch k {
	case kBoolean:
		if c != 't' && c != 'f' {
			w.wrongJSON(k)
			return
		}
		w.skipValue()
		return
	case kInteger, kPositiveInt, kUnsignedInt, kDecimal:
		if c == '"' || c == 't' || c == 'f' {
			w.wrongJSON(k)
			return
		}
		w.number(k, w.token())
		return
	}
	if c != '"' {
		w.wrongJSON(k)
		return
	}
	s := w.str()
	if k == kBase64Binary {
		if msg := w.base64(s); msg != "" {
			w.fail("value", "invalid base64Binary: "+msg)
		}
		return
	}
	switch k {
	case kMarkdown:
		// R4's regex [ \r\n\t\S]+ leaves out one character of \s: form
		// feed. (The string prose on other control characters is not
		// applied to markdown, as google/fhir, the differential oracle,
		// does not either.)
		if len(s) > maxStringSize {
			w.fail("value", "markdown longer than 1 MB")
		} else if bytes.IndexByte(s, '\f') >= 0 {
			w.fail("value", "markdown contains the control character U+000c")
		}
	case kString:
		if len(s) > maxStringSize {
			w.fail("value", "string longer than 1 MB")
		} else if i := badStringChar(s); i >= 0 {
			w.fail("value", "string contains the control character U+"+strconv.FormatUint(uint64(0x10000+int(s[i])), 16)[1:])
		}
	case kCode:
		if f.vs > 0 {
			if _, ok := w.x.valueSets[f.vs-1][string(s)]; !ok {
				w.fail("code-invalid", strconv.Quote(string(s))+" is not a code of the required value set "+valueSetTable[f.vs-1].url)
			}
		} else if !validCode(s) {
			w.fail("value", "invalid code "+quote(s)+": codes have no leading, trailing or repeated whitespace")
		}
	case kID:
		if !validID(s) {
			w.fail("value", "invalid id "+quote(s)+": expected 1-64 of [A-Za-z0-9-.]")
		}
	case kOID:
		if !validOID(s) {
			w.fail("value", "invalid oid "+quote(s)+": expected urn:oid:<dotted digits>")
		}
	case kUUID:
		if !validUUID(s) {
			w.fail("value", "invalid uuid "+quote(s)+": expected urn:uuid:<lowercase 8-4-4-4-12 hex>")
		}
	case kURI, kURL, kCanonical:
		if !validURI(s) {
			w.fail("value", "invalid "+k.String()+" "+quote(s))
		}
	case kDate:
		if !validDate(s) {
			w.fail("value", "invalid date "+quote(s)+": expected YYYY, YYYY-MM or YYYY-MM-DD, a real day")
		}
	case kDateTime:
		if !validDateTime(s) {
			w.fail("value", "invalid dateTime "+quote(s)+": expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm), a real day")
		}
	case kInstant:
		if !validInstant(s) {
			w.fail("value", "invalid instant "+quote(s)+": expected YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm), a real day")
		}
	case kTime:
		if !validTime(s) {
			w.fail("value", "invalid time "+quote(s)+": expected hh:mm:ss[.fff]")
		}
	}
}

// quote quotes a value for a message, shortened so a report stays small.
func quote(s []byte) string {
	if len(s) > 64 {
		return strconv.Quote(string(s[:61]) + "...") // may cut a rune: Quote escapes the remains
	}
	return strconv.Quote(string(s))
}

func (w *walker) wrongJSON(k kind) {
	what := "a JSON string"
	switch k {
	case kBoolean:
		what = "true or false"
	case kInteger, kPositiveInt, kUnsignedInt:
		what = "a JSON number without fraction or exponent"
	case kDecimal:
		what = "a JSON number"
	}
	w.fail("value", "expected "+k.String()+": "+what+", found "+jsonKind(w.data[w.pos]))
	w.skipValue()
}

func jsonKind(c byte) string {
	switch c {
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 'n':
		return "null"
	}
	return "a number"
}

// number checks a JSON number token against an integer kind's range, or
// accepts it as a decimal (any JSON number matches R4's decimal regex).
func (w *walker) number(k kind, tok []byte) {
	if k == kDecimal {
		return
	}
	frac := false
	for _, c := range tok {
		if c == '.' || c == 'e' || c == 'E' {
			frac = true
		}
	}
	if frac {
		w.fail("value", "expected "+k.String()+": a JSON number without fraction or exponent, found "+quote(tok))
		return
	}
	neg := tok[0] == '-'
	digits := tok
	if neg {
		digits = tok[1:]
	}
	v, err := strconv.ParseUint(string(digits), 10, 64)
	tooBig := err != nil || v > math.MaxInt32
	switch k {
	case kInteger:
		if tooBig && !(neg && err == nil && v == math.MaxInt32+1) {
			w.fail("value", "integer out of range -2,147,483,648..2,147,483,647")
		}
	case kPositiveInt:
		if neg || v == 0 {
			w.fail("value", "expected positiveInt, found "+quote(tok))
		} else if tooBig {
			w.fail("value", "positiveInt out of range 1..2,147,483,647")
		}
	case kUnsignedInt:
		if neg {
			w.fail("value", "expected unsignedInt, found "+quote(tok))
		} else if tooBig {
			w.fail("value", "unsignedInt out of range 0..2,147,483,647")
		}
	}
}

// badStringChar returns the index of a control character other than tab,
// CR and LF, or -1.
func badStringChar(s []byte) int {
	for i, c := range s {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
	}
	return -1
}

// isSpace is \s of Go's regexp (RE2): tab, LF, FF, CR, space.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// validCode matches [^\s]+(\s[^\s]+)*.
func validCode(s []byte) bool {
	if len(s) == 0 || isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// validID matches [A-Za-z0-9\-\.]{1,64}.
func validID(s []byte) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validOID matches urn:oid:[0-2](\.(0|[1-9][0-9]*))+.
func validOID(s []byte) bool {
	const p = "urn:oid:"
	if len(s) < len(p)+3 || string(s[:len(p)]) != p {
		return false
	}
	s = s[len(p):]
	if s[0] < '0' || s[0] > '2' {
		return false
	}
	s = s[1:]
	if len(s) == 0 {
		return false
	}
	for len(s) > 0 {
		if s[0] != '.' || len(s) < 2 {
			return false
		}
		s = s[1:]
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == 0 || n > 1 && s[0] == '0' {
			return false
		}
		s = s[n:]
	}
	return true
}

// validUUID matches urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}.
func validUUID(s []byte) bool {
	const p = "urn:uuid:"
	if len(s) != len(p)+36 || string(s[:len(p)]) != p {
		return false
	}
	for i, c := range s[len(p):] {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// validURI accepts what url.Parse accepts and R4's regex \S* allows (no
// whitespace: url.Parse takes "a b"). Plain absolute URLs, the bulk of real
// data, are recognised without it (url.Parse allocates).
func validURI(s []byte) bool {
	if simpleURL(s) {
		return true
	}
	for _, c := range s {
		if isSpace(c) || c == '\v' {
			return false
		}
	}
	_, err := url.Parse(string(s))
	return err == nil
}

// simpleURL reports whether s is http(s)://host/path... or urn:... made of
// characters that url.Parse never rejects in those positions.
func simpleURL(s []byte) bool {
	var rest []byte
	switch {
	case len(s) > 8 && string(s[:8]) == "https://":
		rest = s[8:]
	case len(s) > 7 && string(s[:7]) == "http://":
		rest = s[7:]
	case len(s) > 4 && string(s[:4]) == "urn:":
		rest = s[4:]
		for _, c := range rest {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '_') {
				return false
			}
		}
		return true
	default:
		return false
	}
	// No ':' (ports are validated by url.Parse), '%', '@', '[', ']'.
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '/' || c == '_' || c == '~' || c == '?' || c == '=' || c == '&' || c == '#' || c == '+') {
			return false
		}
	}
	return true
}

// base64 checks a base64Binary value (escapes decoded) against R4's regex
// (\s*([0-9a-zA-Z\+/=]){4}\s*)+ — whitespace, such as MIME's line breaks,
// may separate groups of four characters — and then as padded standard
// base64. It returns "" when the value is valid, else what is wrong.
// (google/fhir, which Ember followed before, allowed only runs of spaces
// between chunks of equal length.)
func (w *walker) base64(s []byte) string {
	buf := w.b64[:0]
	for _, c := range s {
		switch {
		case isSpace(c): // \s as Go's regexp has it: not \v
			if len(buf)%4 != 0 {
				w.b64 = buf
				return "whitespace may only separate groups of 4 characters"
			}
		case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=':
			buf = append(buf, c)
		default:
			w.b64 = buf
			return "unexpected character " + strconv.QuoteRune(rune(c))
		}
	}
	w.b64 = buf
	n := len(buf)
	if n == 0 || n%4 != 0 {
		return "expected groups of 4 characters"
	}
	// Decode into the scratch buffer's tail: the decoded length is at most
	// the encoded one.
	if cap(buf) < 2*n {
		nb := make([]byte, n, 2*n)
		copy(nb, buf)
		buf = nb
		w.b64 = buf
	}
	if _, err := base64.StdEncoding.Decode(buf[n:2*n], buf[:n]); err != nil {
		return "not padded standard base64"
	}
	return ""
}

func digits(s []byte, n int) bool {
	if len(s) < n {
		return false
	}
	for _, c := range s[:n] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func num(s []byte) int {
	v := 0
	for _, c := range s {
		v = v*10 + int(c-'0')
	}
	return v
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// datePart parses YYYY, YYYY-MM or YYYY-MM-DD at the start of s (a real
// month and day) and returns the rest, and how many of the three parts it saw.
func datePart(s []byte) (rest []byte, parts int, ok bool) {
	if !digits(s, 4) {
		return nil, 0, false
	}
	year := num(s[:4])
	if year == 0 {
		return nil, 0, false // R4's regexes have no year 0000
	}
	s = s[4:]
	if len(s) == 0 || s[0] != '-' {
		return s, 1, true
	}
	if !digits(s[1:], 2) {
		return nil, 0, false
	}
	month := num(s[1:3])
	if month < 1 || month > 12 {
		return nil, 0, false
	}
	s = s[3:]
	if len(s) == 0 || s[0] != '-' {
		return s, 2, true
	}
	if !digits(s[1:], 2) {
		return nil, 0, false
	}
	day := num(s[1:3])
	if day < 1 || day > daysIn(month, year) {
		return nil, 0, false
	}
	return s[3:], 3, true
}

// timePart parses hh:mm:ss(.f+)? at the start of s and returns the rest.
func timePart(s []byte) ([]byte, bool) {
	if len(s) < 8 || !digits(s, 2) || s[2] != ':' || !digits(s[3:], 2) || s[5] != ':' || !digits(s[6:], 2) {
		return nil, false
	}
	if num(s[:2]) > 23 || num(s[3:5]) > 59 || num(s[6:8]) > 59 {
		return nil, false
	}
	s = s[8:]
	if len(s) > 0 && s[0] == '.' {
		n := 1
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == 1 {
			return nil, false
		}
		s = s[n:]
	}
	return s, true
}

// zone matches Z|(+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00) exactly.
func zone(s []byte) bool {
	if len(s) == 1 {
		return s[0] == 'Z'
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || !digits(s[1:], 2) || s[3] != ':' || !digits(s[4:], 2) {
		return false
	}
	h, m := num(s[1:3]), num(s[4:6])
	return h <= 13 && m <= 59 || h == 14 && m == 0
}

func validDate(s []byte) bool {
	rest, _, ok := datePart(s)
	return ok && len(rest) == 0
}

func validDateTime(s []byte) bool {
	rest, parts, ok := datePart(s)
	if !ok {
		return false
	}
	if len(rest) == 0 {
		return true
	}
	if parts != 3 || rest[0] != 'T' {
		return false
	}
	rest, ok = timePart(rest[1:])
	return ok && zone(rest)
}

func validInstant(s []byte) bool {
	rest, parts, ok := datePart(s)
	if !ok || parts != 3 || len(rest) == 0 || rest[0] != 'T' {
		return false
	}
	rest, ok = timePart(rest[1:])
	return ok && zone(rest)
}

func validTime(s []byte) bool {
	rest, ok := timePart(s)
	return ok && len(rest) == 0
}

// checkReference applies google/fhir's reference rules to a
// Reference.reference value: a relative reference Type/id or
// Type/id/_history/vid naming an R4 resource type must name one of the
// element's target types (refs, 1-based; 0 allows any), and its version
// must be an id.
func (w *walker) checkReference(ref []byte, refs uint16) {
	if len(ref) > 0 && ref[0] == '#' {
		return
	}
	n := strings.Count(string(ref), "/")
	if n != 1 && n != 3 {
		return
	}
	typ, rest, _ := strings.Cut(string(ref), "/")
	if n == 3 {
		_, hist, _ := strings.Cut(rest, "/")
		h, vid, _ := strings.Cut(hist, "/")
		if h != "_history" {
			return
		}
		if _, known := w.x.byName[typ]; known && !validID([]byte(vid)) {
			w.fail("value", "invalid version id "+strconv.Quote(vid)+" in reference: expected 1-64 of [A-Za-z0-9-.]")
		}
	}
	if _, known := w.x.byName[typ]; !known || refs == 0 {
		return
	}
	if _, ok := w.x.refs[refs-1][typ]; !ok {
		w.fail("value", "a reference to resource type "+typ+" is not allowed here; allowed: "+strings.ReplaceAll(refTable[refs-1], " ", ", "))
	}
}
