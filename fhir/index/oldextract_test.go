package index

// This file is a frozen copy of Extract as it was before the tree-based
// rewrite (index.go, composite.go and oldParseDateRange at aa7907a), with
// identifiers prefixed "old". The equality tests compare the new Extract
// against it; do not "fix" it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/types"
	"golang.org/x/text/unicode/norm"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// oldEntries carries the old methods; it converts to and from oldEntries.
type oldEntries Entries

const oldmaxIndexedString = 256

// oldExtract computes the index entries of a resource of type typ.
func oldExtract(typ string, doc []byte) (*Entries, error) {
	params := spec.SearchParams(typ)
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var root any
	if err := d.Decode(&root); err != nil {
		return nil, fmt.Errorf("index: decode %s: %w", typ, err)
	}
	e := &oldEntries{typ: typ}
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
			oldwalk(root, p.Steps, p.Types, func(v any, t string) { e.add(sp, v, t) })
		}
	}
	return (*Entries)(e), nil
}

// oldwalk follows steps from node, calling emit for each value reached with its
// FHIR datatype.
func oldwalk(node any, steps []spec.Step, types []string, emit func(v any, typ string)) {
	if len(steps) == 0 {
		t := ""
		if len(types) == 1 {
			t = types[0]
		}
		oldforEach(node, func(v any) { emit(v, t) })
		return
	}
	st := steps[0]
	oldforEach(node, func(n any) {
		obj, ok := n.(map[string]any)
		if !ok {
			return
		}
		var child any
		var childType string
		switch {
		case st.Choice && st.As != "":
			child = obj[st.Field+oldupperFirst(st.As)]
		case st.Choice:
			for k, v := range obj {
				if len(k) > len(st.Field) && strings.HasPrefix(k, st.Field) && unicode.IsUpper(rune(k[len(st.Field)])) {
					child, childType = v, oldtypeFromSuffix(k[len(st.Field):])
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
			child = oldfilter(child, st)
		}
		if len(steps) == 1 && childType != "" {
			oldforEach(child, func(v any) { emit(v, childType) })
			return
		}
		oldwalk(child, steps[1:], types, emit)
	})
}

func oldforEach(v any, fn func(any)) {
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

func oldfilter(v any, st spec.Step) any {
	var out []any
	oldforEach(v, func(x any) {
		obj, ok := x.(map[string]any)
		if !ok {
			return
		}
		if st.WhereField != "" {
			if s, _ := obj[st.WhereField].(string); s != st.WhereValue {
				return
			}
		}
		if st.ResolveIs != "" && oldrefType(obj) != st.ResolveIs {
			return
		}
		out = append(out, x)
	})
	return out
}

// oldrefType is the resource type a Reference points to, from its reference
// string or its type element.
func oldrefType(ref map[string]any) string {
	if s, ok := ref["reference"].(string); ok {
		if t, _, ok := oldsplitRef(s); ok {
			return t
		}
	}
	s, _ := ref["type"].(string)
	return s
}

var oldprimitiveSuffixes = map[string]string{
	"Boolean": "boolean", "Integer": "integer", "String": "string", "Decimal": "decimal", "Uri": "uri",
	"Url": "url", "Canonical": "canonical", "Base64Binary": "base64Binary", "Instant": "instant",
	"Date": "date", "DateTime": "dateTime", "Time": "time", "Code": "code", "Oid": "oid", "Id": "id",
	"Markdown": "markdown", "UnsignedInt": "unsignedInt", "PositiveInt": "positiveInt", "Uuid": "uuid",
}

func oldtypeFromSuffix(s string) string {
	if p, ok := oldprimitiveSuffixes[s]; ok {
		return p
	}
	return s
}

func oldupperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// oldNormalize folds case and strips accents for string search: "Müller" and
// "MULLER" both become "muller".
func oldNormalize(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	out := b.String()
	if len(out) > oldmaxIndexedString {
		out = oldtruncateUTF8(out, oldmaxIndexedString)
	}
	return out
}

func oldtruncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && !oldutf8Start(s[n]) {
		n--
	}
	return s[:n]
}

func oldutf8Start(b byte) bool { return b&0xC0 != 0x80 }

// add converts one value reached by a parameter's path into index entries.
func (e *oldEntries) add(sp *spec.SearchParam, v any, typ string) {
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
		if q, ok := oldquantity(v, typ); ok {
			q.Param = sp.ID
			e.Quantities = append(e.Quantities, q)
		}
	case spec.URI:
		if s, ok := v.(string); ok {
			e.URIs = append(e.URIs, URI{Param: sp.ID, Value: s})
		}
	}
}

func (e *oldEntries) addString(param int32, v any, typ string) {
	put := func(s string) {
		if s != "" {
			exact := s
			if len(exact) > oldmaxIndexedString {
				exact = oldtruncateUTF8(exact, oldmaxIndexedString)
			}
			e.Strings = append(e.Strings, String{Param: param, Norm: oldNormalize(s), Exact: exact})
		}
	}
	switch x := v.(type) {
	case string:
		put(x)
	case map[string]any:
		switch typ {
		case "HumanName":
			for _, k := range []string{"text", "family", "given", "prefix", "suffix"} {
				oldforEach(x[k], func(s any) { put(oldstr(s)) })
			}
		case "Address":
			for _, k := range []string{"text", "line", "city", "district", "state", "postalCode", "country"} {
				oldforEach(x[k], func(s any) { put(oldstr(s)) })
			}
		default: // CodeableConcept, Annotation, ... : their text
			put(oldstr(x["text"]))
		}
	}
}

func oldstr(v any) string { s, _ := v.(string); return s }

func (e *oldEntries) addToken(param int32, v any, typ string) {
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
			oldforEach(x["coding"], func(c any) { e.addCoding(param, c) })
			if t := oldstr(x["text"]); t != "" {
				e.Tokens = append(e.Tokens, Token{Param: param, Text: oldNormalize(t)})
			}
		case "Identifier":
			tok := Token{Param: param, System: oldstr(x["system"]), Code: oldstr(x["value"]), HasSystem: x["system"] != nil}
			if it, ok := x["type"].(map[string]any); ok {
				tok.Text = oldNormalize(oldstr(it["text"]))
				oldforEach(it["coding"], func(c any) {
					if cm, ok := c.(map[string]any); ok && tok.TypeCode == "" {
						tok.TypeSystem, tok.TypeCode = oldstr(cm["system"]), oldstr(cm["code"])
					}
				})
			}
			if tok.Code != "" {
				e.Tokens = append(e.Tokens, tok)
			}
		case "ContactPoint":
			if c := oldstr(x["value"]); c != "" {
				e.Tokens = append(e.Tokens, Token{Param: param, System: oldstr(x["system"]), Code: c, HasSystem: x["system"] != nil})
			}
		default: // Coding and Coding-shaped values
			e.addCoding(param, x)
		}
	}
}

func (e *oldEntries) addCoding(param int32, c any) {
	cm, ok := c.(map[string]any)
	if !ok {
		return
	}
	code := oldstr(cm["code"])
	display := oldNormalize(oldstr(cm["display"]))
	if code == "" && display == "" {
		return
	}
	e.Tokens = append(e.Tokens, Token{Param: param, System: oldstr(cm["system"]), Code: code, Text: display, HasSystem: cm["system"] != nil})
}

// oldIdentifierParam is the parameter id under which a reference parameter's
// Reference.identifier values are indexed (as tokens) for :identifier.
func oldIdentifierParam(typ, code string) int32 { return spec.ParamID(typ, code+":identifier") }

func (e *oldEntries) addRef(sp *spec.SearchParam, v any, typ string) {
	switch x := v.(type) {
	case string: // canonical or uri used as a reference
		e.References = append(e.References, oldrefEntry(sp.ID, x))
	case map[string]any:
		if s := oldstr(x["reference"]); s != "" {
			e.References = append(e.References, oldrefEntry(sp.ID, s))
		}
		if id, ok := x["identifier"].(map[string]any); ok {
			// Index under a derived id so Type?param:identifier=sys|val can find it.
			if val := oldstr(id["value"]); val != "" {
				e.Tokens = append(e.Tokens, Token{Param: oldIdentifierParam(e.typ, sp.Code), System: oldstr(id["system"]), Code: val, HasSystem: id["system"] != nil})
			}
		}
	}
}

func oldrefEntry(param int32, s string) Ref {
	if t, id, ok := oldsplitRef(s); ok && !strings.Contains(s, "://") {
		return Ref{Param: param, Type: t, ID: id}
	}
	return Ref{Param: param, URL: s}
}

// oldsplitRef parses "Type/id", "Type/id/_history/v" or an absolute URL ending in
// Type/id[/_history/v].
func oldsplitRef(s string) (typ, id string, ok bool) {
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

func (e *oldEntries) addDate(param int32, v any, typ string) {
	switch x := v.(type) {
	case string:
		if lo, hi, err := oldParseDateRange(x); err == nil {
			e.Dates = append(e.Dates, Date{Param: param, Lo: lo, Hi: hi})
		}
	case map[string]any:
		switch typ {
		case "Period":
			lo, hi := MinTime, MaxTime
			if s := oldstr(x["start"]); s != "" {
				if l, _, err := oldParseDateRange(s); err == nil {
					lo = l
				}
			}
			if s := oldstr(x["end"]); s != "" {
				if _, h, err := oldParseDateRange(s); err == nil {
					hi = h
				}
			}
			if x["start"] != nil || x["end"] != nil {
				e.Dates = append(e.Dates, Date{Param: param, Lo: lo, Hi: hi})
			}
		case "Timing":
			oldforEach(x["event"], func(ev any) { e.addDate(param, ev, "dateTime") })
			if rep, ok := x["repeat"].(map[string]any); ok {
				if bp, ok := rep["boundsPeriod"].(map[string]any); ok {
					e.addDate(param, bp, "Period")
				}
			}
		}
	}
}

// oldquantity reads a Quantity-like value (Quantity, Age, Duration, Money,
// Range, SimpleQuantity) or a bare decimal.
func oldquantity(v any, typ string) (Quantity, bool) {
	switch x := v.(type) {
	case json.Number:
		return Quantity{Lo: x.String(), Hi: x.String()}, true
	case map[string]any:
		if typ == "Range" {
			var q Quantity
			low, _ := x["low"].(map[string]any)
			high, _ := x["high"].(map[string]any)
			if low != nil {
				q.Lo = oldnum(low["value"])
				q.System, q.Code, q.Unit = oldstr(low["system"]), oldstr(low["code"]), oldstr(low["unit"])
			}
			if high != nil {
				q.Hi = oldnum(high["value"])
				if q.Code == "" {
					q.System, q.Code, q.Unit = oldstr(high["system"]), oldstr(high["code"]), oldstr(high["unit"])
				}
			}
			return q, q.Lo != "" || q.Hi != ""
		}
		val := oldnum(x["value"])
		if val == "" {
			return Quantity{}, false
		}
		if cur := oldstr(x["currency"]); cur != "" { // Money
			return Quantity{Lo: val, Hi: val, System: "urn:iso:std:iso:4217", Code: cur}, true
		}
		return Quantity{Lo: val, Hi: val, System: oldstr(x["system"]), Code: oldstr(x["code"]), Unit: oldstr(x["unit"])}, true
	}
	return Quantity{}, false
}

func oldnum(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return ""
}

// composite indexes a two-part composite parameter (token + any): for each
// base element, every combination of its first and second component values.
func (e *oldEntries) composite(sp *spec.SearchParam, root any) {
	if len(sp.Components) != 2 || sp.Components[0].Type != spec.Token {
		return // not expressible in the composite table (e.g. 3-part coordinates)
	}
	a, b := sp.Components[0], sp.Components[1]
	for i, base := range sp.Paths {
		oldwalk(root, base.Steps, base.Types, func(el any, _ string) {
			var as, bs oldEntries
			for _, p := range a.Paths[i] {
				oldwalk(el, p.Steps, p.Types, func(v any, t string) { as.addToken(0, v, t) })
			}
			for _, p := range b.Paths[i] {
				oldwalk(el, p.Steps, p.Types, func(v any, t string) {
					switch b.Type {
					case spec.Token:
						bs.addToken(0, v, t)
					case spec.Quantity:
						if q, ok := oldquantity(v, t); ok {
							bs.Quantities = append(bs.Quantities, q)
						}
					case spec.Date:
						bs.addDate(0, v, t)
					case spec.String:
						bs.addString(0, v, t)
					case spec.Reference:
						if m, ok := v.(map[string]any); ok {
							if s := oldstr(m["reference"]); s != "" {
								bs.References = append(bs.References, oldrefEntry(0, s))
							}
						}
					}
				})
			}
			for _, at := range as.Tokens {
				if at.Code == "" {
					continue
				}
				row := Composite{Param: sp.ID, ASystem: at.System, ACode: at.Code}
				for _, t := range bs.Tokens {
					if t.Code != "" {
						r := row
						r.BSystem, r.BCode = t.System, t.Code
						e.Composites = append(e.Composites, r)
					}
				}
				for _, q := range bs.Quantities {
					r := row
					r.BSystem, r.BCode, r.BLo, r.BHi = q.System, q.Code, q.Lo, q.Hi
					e.Composites = append(e.Composites, r)
				}
				for _, d := range bs.Dates {
					r := row
					r.BDateLo, r.BDateHi = d.Lo, d.Hi
					e.Composites = append(e.Composites, r)
				}
				for _, s := range bs.Strings {
					r := row
					r.BString = s.Norm
					e.Composites = append(e.Composites, r)
				}
				for _, ref := range bs.References {
					r := row
					r.BSystem, r.BCode = ref.Type, ref.ID
					if ref.ID == "" {
						r.BCode = ref.URL
					}
					e.Composites = append(e.Composites, r)
				}
			}
		})
	}
}

// oldfallbackExprs holds the few search expressions outside the compiled subset
// (e.g. Patient.deceased), compiled once for the general FHIRPath engine.
// Built at init and only read afterwards.
var oldfallbackExprs = func() map[string]*fhirpath.Expression {
	out := map[string]*fhirpath.Expression{}
	for _, t := range spec.ResourceTypes() {
		for _, sp := range spec.SearchParams(t) {
			if !sp.Fallback || sp.Expression == "" || sp.Type == spec.Special || sp.Type == spec.Composite {
				continue
			}
			if x, err := fhirpath.Compile(sp.Expression); err == nil {
				out[sp.Expression] = x
			}
		}
	}
	return out
}()

// oldSupported reports whether a parameter's values are indexed (and so whether
// searching by it gives right answers).
func oldSupported(sp *spec.SearchParam) bool {
	switch {
	case sp.Column != "":
		return true
	case sp.Type == spec.Special:
		return false
	case sp.Type == spec.Composite:
		return !sp.Fallback && len(sp.Components) == 2 && sp.Components[0].Type == spec.Token
	case sp.Fallback:
		return oldfallbackExprs[sp.Expression] != nil
	}
	return true
}

// olddeceasedExpr is Patient.deceased's expression, the one common resource
// parameter outside the compiled subset. gofhir spends ~0.4-0.8 ms on it when
// deceased[x] is absent (it tries every type suffix), more than validation
// itself, so it is evaluated here directly.
const olddeceasedExpr = "Patient.deceased.exists() and Patient.deceased != false"

// nativeFallback evaluates known fallback expressions without the engine.
func (e *oldEntries) nativeFallback(sp *spec.SearchParam, root any) bool {
	if sp.Expression != olddeceasedExpr {
		return false
	}
	obj, _ := root.(map[string]any)
	b, isBool := obj["deceasedBoolean"].(bool)
	_, isDate := obj["deceasedDateTime"].(string)
	e.add(sp, isDate || (isBool && b), "boolean")
	return true
}

// fallback evaluates a parameter with the general FHIRPath engine.
func (e *oldEntries) fallback(sp *spec.SearchParam, doc []byte) error {
	x := oldfallbackExprs[sp.Expression]
	if x == nil || !oldSupported(sp) {
		return nil
	}
	out, err := x.Evaluate(doc)
	if err != nil {
		return fmt.Errorf("index: %s: %w", sp.Expression, err)
	}
	for _, v := range out {
		switch val := v.(type) {
		case types.Boolean:
			e.add(sp, val.Bool(), "boolean")
		case types.String:
			e.add(sp, val.Value(), "string")
		case *types.ObjectValue:
			var decoded any
			if err := json.Unmarshal(val.Data(), &decoded); err == nil {
				e.add(sp, decoded, val.Type())
			}
		default:
			e.add(sp, v.String(), "string")
		}
	}
	return nil
}

var olddateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// oldParseDateRange parses a FHIR date, dateTime or instant (as used by search
// and history parameters) and returns the half-open interval [start, end)
// that its precision covers: "2024" covers the whole year. A time without a
// zone is taken as UTC.
func oldParseDateRange(s string) (start, end time.Time, err error) {
	m := olddateRE.FindStringSubmatch(s)
	if m == nil {
		return start, end, fmt.Errorf("invalid date/time %q: expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]", s)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		t, err := time.Parse("-07:00", z)
		if err != nil {
			return start, end, fmt.Errorf("invalid time zone in %q", s)
		}
		loc = t.Location()
	}
	oldnum := func(i int, def int) int {
		if m[i] == "" {
			return def
		}
		var n int
		fmt.Sscanf(m[i], "%d", &n)
		return n
	}
	year, month, day := oldnum(1, 0), oldnum(2, 1), oldnum(3, 1)
	hour, minute, sec := oldnum(4, 0), oldnum(5, 0), oldnum(6, 0)
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return start, end, fmt.Errorf("invalid date/time %q: field out of range", s)
	}
	var nanos int
	if f := m[7]; f != "" {
		nanos = oldnum(7, 0) * oldpow10(9-len(f))
	}
	start = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	if start.Day() != day {
		return start, end, fmt.Errorf("invalid date %q: no such day", s)
	}
	switch {
	case m[2] == "":
		end = start.AddDate(1, 0, 0)
	case m[3] == "":
		end = start.AddDate(0, 1, 0)
	case m[4] == "":
		end = start.AddDate(0, 0, 1)
	case m[6] == "":
		end = start.Add(time.Minute)
	case m[7] == "":
		end = start.Add(time.Second)
	default:
		end = start.Add(time.Duration(oldpow10(9 - len(m[7]))))
	}
	return start.UTC(), end.UTC(), nil
}

func oldpow10(n int) int {
	p := 1
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}
