// Package index extracts search index values from a resource's JSON using the
// compiled search parameter paths of fhir/spec. It does no I/O.
package index

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// Entries are the index rows of one resource, by table.
type Entries struct {
	typ        string
	Strings    []String
	Tokens     []Token
	References []Ref
	Dates      []Date
	Numbers    []Number
	Quantities []Quantity
	URIs       []URI
	Composites []Composite
}

// String is a string parameter value; Norm is lower-cased without accents.
type String struct {
	Param       int32
	Norm, Exact string
}

// Token is a token value. Text (normalised) carries a Coding's display or a
// CodeableConcept's text for :text; TypeSystem/TypeCode an Identifier's type
// for :of-type.
type Token struct {
	Param                int32
	System, Code, Text   string
	TypeSystem, TypeCode string
	HasSystem            bool // System is known (even if empty: "|code")
}

// Ref is a reference value: a local Type/ID or an absolute URL (or both empty
// with URL set for urn:, canonical and external references).
type Ref struct {
	Param    int32
	Type, ID string
	URL      string
}

// Date is a date value as the half-open instant range it covers.
type Date struct {
	Param  int32
	Lo, Hi time.Time
}

// Number is a decimal, kept as its text so no precision is lost.
type Number struct {
	Param int32
	Value string
}

// Quantity is a quantity (or a range of one: Range, or a Quantity's value
// alone has Lo == Hi); empty Lo/Hi mean unbounded.
type Quantity struct {
	Param              int32
	Lo, Hi             string
	System, Code, Unit string
}

// URI is a uri/url/canonical value.
type URI struct {
	Param int32
	Value string
}

// Composite is one combination of a composite parameter's two components:
// a token A and a second value B of the kind the parameter defines.
type Composite struct {
	Param            int32
	ASystem, ACode   string
	BSystem, BCode   string // token B, or a quantity's system/code
	BLo, BHi         string // number/quantity B
	BDateLo, BDateHi time.Time
	BString          string // string B (normalised)
}

// Open date bounds: PostgreSQL timestamptz holds these exactly.
var (
	MinTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// maxIndexedString bounds what is indexed of a string (a B-tree entry is
// limited; a search value longer than this cannot be meaningful anyway).
const maxIndexedString = 256

// Extract computes the index entries of a resource of type typ.
func Extract(typ string, doc []byte) (*Entries, error) {
	params := spec.SearchParams(typ)
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var root any
	if err := d.Decode(&root); err != nil {
		return nil, fmt.Errorf("index: decode %s: %w", typ, err)
	}
	e := &Entries{typ: typ}
	for _, sp := range params {
		if sp.Column != "" {
			continue
		}
		if sp.Fallback {
			if e.nativeFallback(sp, root) {
				continue
			}
			if err := e.fallback(sp, doc); err != nil {
				return nil, err
			}
			continue
		}
		if sp.Type == spec.Composite {
			e.composite(sp, root)
			continue
		}
		for _, p := range sp.Paths {
			walk(root, p.Steps, p.Types, func(v any, t string) { e.add(sp, v, t) })
		}
	}
	return e, nil
}

// walk follows steps from node, calling emit for each value reached with its
// FHIR datatype.
func walk(node any, steps []spec.Step, types []string, emit func(v any, typ string)) {
	if len(steps) == 0 {
		t := ""
		if len(types) == 1 {
			t = types[0]
		}
		forEach(node, func(v any) { emit(v, t) })
		return
	}
	st := steps[0]
	forEach(node, func(n any) {
		obj, ok := n.(map[string]any)
		if !ok {
			return
		}
		var child any
		var childType string
		switch {
		case st.Choice && st.As != "":
			child = obj[st.Field+upperFirst(st.As)]
		case st.Choice:
			for k, v := range obj {
				if len(k) > len(st.Field) && strings.HasPrefix(k, st.Field) && unicode.IsUpper(rune(k[len(st.Field)])) {
					child, childType = v, typeFromSuffix(k[len(st.Field):])
					break
				}
			}
		default:
			child = obj[st.Field]
		}
		if child == nil {
			return
		}
		if st.Index >= 0 {
			arr, ok := child.([]any)
			if !ok || st.Index >= len(arr) {
				return
			}
			child = arr[st.Index]
		}
		if st.WhereField != "" || st.ResolveIs != "" {
			child = filter(child, st)
		}
		if len(steps) == 1 && childType != "" {
			forEach(child, func(v any) { emit(v, childType) })
			return
		}
		walk(child, steps[1:], types, emit)
	})
}

func forEach(v any, fn func(any)) {
	if arr, ok := v.([]any); ok {
		for _, x := range arr {
			if x != nil {
				fn(x)
			}
		}
		return
	}
	if v != nil {
		fn(v)
	}
}

func filter(v any, st spec.Step) any {
	var out []any
	forEach(v, func(x any) {
		obj, ok := x.(map[string]any)
		if !ok {
			return
		}
		if st.WhereField != "" {
			if s, _ := obj[st.WhereField].(string); s != st.WhereValue {
				return
			}
		}
		if st.ResolveIs != "" && refType(obj) != st.ResolveIs {
			return
		}
		out = append(out, x)
	})
	return out
}

// refType is the resource type a Reference points to, from its reference
// string or its type element.
func refType(ref map[string]any) string {
	if s, ok := ref["reference"].(string); ok {
		if t, _, ok := splitRef(s); ok {
			return t
		}
	}
	s, _ := ref["type"].(string)
	return s
}

var primitiveSuffixes = map[string]string{
	"Boolean": "boolean", "Integer": "integer", "String": "string", "Decimal": "decimal", "Uri": "uri",
	"Url": "url", "Canonical": "canonical", "Base64Binary": "base64Binary", "Instant": "instant",
	"Date": "date", "DateTime": "dateTime", "Time": "time", "Code": "code", "Oid": "oid", "Id": "id",
	"Markdown": "markdown", "UnsignedInt": "unsignedInt", "PositiveInt": "positiveInt", "Uuid": "uuid",
}

func typeFromSuffix(s string) string {
	if p, ok := primitiveSuffixes[s]; ok {
		return p
	}
	return s
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Normalize folds case and strips accents for string search: "Müller" and
// "MULLER" both become "muller".
func Normalize(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	out := b.String()
	if len(out) > maxIndexedString {
		out = truncateUTF8(out, maxIndexedString)
	}
	return out
}

func truncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && !utf8Start(s[n]) {
		n--
	}
	return s[:n]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// add converts one value reached by a parameter's path into index entries.
func (e *Entries) add(sp *spec.SearchParam, v any, typ string) {
	switch sp.Type {
	case spec.String:
		e.addString(sp.ID, v, typ)
	case spec.Token:
		e.addToken(sp.ID, v, typ)
	case spec.Reference:
		e.addRef(sp, v, typ)
	case spec.Date:
		e.addDate(sp.ID, v, typ)
	case spec.Number:
		if n, ok := v.(json.Number); ok {
			e.Numbers = append(e.Numbers, Number{Param: sp.ID, Value: n.String()})
		}
	case spec.Quantity:
		if q, ok := quantity(v, typ); ok {
			q.Param = sp.ID
			e.Quantities = append(e.Quantities, q)
		}
	case spec.URI:
		if s, ok := v.(string); ok {
			e.URIs = append(e.URIs, URI{Param: sp.ID, Value: s})
		}
	}
}

func (e *Entries) addString(param int32, v any, typ string) {
	put := func(s string) {
		if s != "" {
			exact := s
			if len(exact) > maxIndexedString {
				exact = truncateUTF8(exact, maxIndexedString)
			}
			e.Strings = append(e.Strings, String{Param: param, Norm: Normalize(s), Exact: exact})
		}
	}
	switch x := v.(type) {
	case string:
		put(x)
	case map[string]any:
		switch typ {
		case "HumanName":
			for _, k := range []string{"text", "family", "given", "prefix", "suffix"} {
				forEach(x[k], func(s any) { put(str(s)) })
			}
		case "Address":
			for _, k := range []string{"text", "line", "city", "district", "state", "postalCode", "country"} {
				forEach(x[k], func(s any) { put(str(s)) })
			}
		default: // CodeableConcept, Annotation, ... : their text
			put(str(x["text"]))
		}
	}
}

func str(v any) string { s, _ := v.(string); return s }

func (e *Entries) addToken(param int32, v any, typ string) {
	switch x := v.(type) {
	case string:
		e.Tokens = append(e.Tokens, Token{Param: param, Code: x})
	case bool:
		c := "false"
		if x {
			c = "true"
		}
		e.Tokens = append(e.Tokens, Token{Param: param, Code: c})
	case json.Number:
		e.Tokens = append(e.Tokens, Token{Param: param, Code: x.String()})
	case map[string]any:
		switch typ {
		case "CodeableConcept":
			forEach(x["coding"], func(c any) { e.addCoding(param, c) })
			if t := str(x["text"]); t != "" {
				e.Tokens = append(e.Tokens, Token{Param: param, Text: Normalize(t)})
			}
		case "Identifier":
			tok := Token{Param: param, System: str(x["system"]), Code: str(x["value"]), HasSystem: x["system"] != nil}
			if it, ok := x["type"].(map[string]any); ok {
				tok.Text = Normalize(str(it["text"]))
				forEach(it["coding"], func(c any) {
					if cm, ok := c.(map[string]any); ok && tok.TypeCode == "" {
						tok.TypeSystem, tok.TypeCode = str(cm["system"]), str(cm["code"])
					}
				})
			}
			if tok.Code != "" {
				e.Tokens = append(e.Tokens, tok)
			}
		case "ContactPoint":
			if c := str(x["value"]); c != "" {
				e.Tokens = append(e.Tokens, Token{Param: param, System: str(x["system"]), Code: c, HasSystem: x["system"] != nil})
			}
		default: // Coding and Coding-shaped values
			e.addCoding(param, x)
		}
	}
}

func (e *Entries) addCoding(param int32, c any) {
	cm, ok := c.(map[string]any)
	if !ok {
		return
	}
	code := str(cm["code"])
	display := Normalize(str(cm["display"]))
	if code == "" && display == "" {
		return
	}
	e.Tokens = append(e.Tokens, Token{Param: param, System: str(cm["system"]), Code: code, Text: display, HasSystem: cm["system"] != nil})
}

// IdentifierParam is the parameter id under which a reference parameter's
// Reference.identifier values are indexed (as tokens) for :identifier.
func IdentifierParam(typ, code string) int32 { return spec.ParamID(typ, code+":identifier") }

func (e *Entries) addRef(sp *spec.SearchParam, v any, typ string) {
	switch x := v.(type) {
	case string: // canonical or uri used as a reference
		e.References = append(e.References, refEntry(sp.ID, x))
	case map[string]any:
		if s := str(x["reference"]); s != "" {
			e.References = append(e.References, refEntry(sp.ID, s))
		}
		if id, ok := x["identifier"].(map[string]any); ok {
			// Index under a derived id so Type?param:identifier=sys|val can find it.
			if val := str(id["value"]); val != "" {
				e.Tokens = append(e.Tokens, Token{Param: IdentifierParam(e.typ, sp.Code), System: str(id["system"]), Code: val, HasSystem: id["system"] != nil})
			}
		}
	}
}

func refEntry(param int32, s string) Ref {
	if t, id, ok := splitRef(s); ok && !strings.Contains(s, "://") {
		return Ref{Param: param, Type: t, ID: id}
	}
	return Ref{Param: param, URL: s}
}

// splitRef parses "Type/id", "Type/id/_history/v" or an absolute URL ending in
// Type/id[/_history/v].
func splitRef(s string) (typ, id string, ok bool) {
	if i := strings.Index(s, "/_history/"); i > 0 {
		s = s[:i]
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 {
		return "", "", false
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if !spec.IsResourceType(typ) || !fhir.ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

// SplitReference exposes splitRef for search values.
func SplitReference(s string) (typ, id string, ok bool) { return splitRef(s) }

func (e *Entries) addDate(param int32, v any, typ string) {
	switch x := v.(type) {
	case string:
		if lo, hi, err := fhir.ParseDateRange(x); err == nil {
			e.Dates = append(e.Dates, Date{Param: param, Lo: lo, Hi: hi})
		}
	case map[string]any:
		switch typ {
		case "Period":
			lo, hi := MinTime, MaxTime
			if s := str(x["start"]); s != "" {
				if l, _, err := fhir.ParseDateRange(s); err == nil {
					lo = l
				}
			}
			if s := str(x["end"]); s != "" {
				if _, h, err := fhir.ParseDateRange(s); err == nil {
					hi = h
				}
			}
			if x["start"] != nil || x["end"] != nil {
				e.Dates = append(e.Dates, Date{Param: param, Lo: lo, Hi: hi})
			}
		case "Timing":
			forEach(x["event"], func(ev any) { e.addDate(param, ev, "dateTime") })
			if rep, ok := x["repeat"].(map[string]any); ok {
				if bp, ok := rep["boundsPeriod"].(map[string]any); ok {
					e.addDate(param, bp, "Period")
				}
			}
		}
	}
}

// quantity reads a Quantity-like value (Quantity, Age, Duration, Money,
// Range, SimpleQuantity) or a bare decimal.
func quantity(v any, typ string) (Quantity, bool) {
	switch x := v.(type) {
	case json.Number:
		return Quantity{Lo: x.String(), Hi: x.String()}, true
	case map[string]any:
		if typ == "Range" {
			var q Quantity
			low, _ := x["low"].(map[string]any)
			high, _ := x["high"].(map[string]any)
			if low != nil {
				q.Lo = num(low["value"])
				q.System, q.Code, q.Unit = str(low["system"]), str(low["code"]), str(low["unit"])
			}
			if high != nil {
				q.Hi = num(high["value"])
				if q.Code == "" {
					q.System, q.Code, q.Unit = str(high["system"]), str(high["code"]), str(high["unit"])
				}
			}
			return q, q.Lo != "" || q.Hi != ""
		}
		val := num(x["value"])
		if val == "" {
			return Quantity{}, false
		}
		if cur := str(x["currency"]); cur != "" { // Money
			return Quantity{Lo: val, Hi: val, System: "urn:iso:std:iso:4217", Code: cur}, true
		}
		return Quantity{Lo: val, Hi: val, System: str(x["system"]), Code: str(x["code"]), Unit: str(x["unit"])}, true
	}
	return Quantity{}, false
}

func num(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return ""
}
