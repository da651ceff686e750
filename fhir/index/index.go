// Package index extracts search index values from a resource's JSON using the
// compiled search parameter paths of fhir/spec. It does no I/O.
package index

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofhir/fhirpath"
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

// Extract computes the index entries of a resource of type typ, parameter by
// parameter in code order. The rows' strings share one copy of doc, which
// they keep alive.
func Extract(typ string, doc []byte) (*Entries, error) {
	return extract(typ, doc, nil)
}

// ExtractOnly is Extract of the parameters whose ids are in params alone,
// for a reader that needs a few (the subscriptions' matcher) and not the
// rows of all thirty of an Observation's.
func ExtractOnly(typ string, doc []byte, params map[int32]bool) (*Entries, error) {
	if params == nil {
		params = map[int32]bool{}
	}
	return extract(typ, doc, params)
}

func extract(typ string, doc []byte, only map[int32]bool) (*Entries, error) {
	x := extractors.Get().(*extractor)
	defer x.release()
	if err := x.t.decode(doc); err != nil {
		return nil, fmt.Errorf("index: decode %s: %w", typ, err)
	}
	x.e.reset()
	for _, p := range planFor(typ) {
		if only != nil && !only[p.sp.ID] {
			continue
		}
		switch {
		case p.sp.Fallback:
			if p.sp.Expression == deceasedExpr {
				x.deceased(p)
				continue
			}
			if err := x.fallback(p, doc); err != nil {
				return nil, err
			}
		case p.sp.Type == spec.Composite:
			x.composite(p)
		default:
			for i := range p.paths {
				path := &p.paths[i]
				x.hits = x.t.walk(x.hits[:0], 0, nil, path.steps, path.typ)
				for _, h := range x.hits {
					x.e.add(&x.t, p, h.n, h.typ)
				}
			}
		}
	}
	return x.e.clone(typ), nil
}

// extractor is the reusable state of one Extract call: the decoded tree and
// scratch rows, so a call allocates little beyond its result.
type extractor struct {
	t      tree
	e      Entries // rows so far; Extract returns a right-sized copy
	hits   []hit
	sub    []hit
	as, bs Entries // a composite element's component values
}

var extractors = sync.Pool{New: func() any { return new(extractor) }}

// release returns x to the pool unless a huge document grew it.
func (x *extractor) release() {
	if cap(x.t.nodes) > 1<<16 || cap(x.t.buf) > 1<<16 {
		return
	}
	extractors.Put(x)
}

func (e *Entries) reset() {
	e.Strings, e.Tokens, e.References, e.Dates = e.Strings[:0], e.Tokens[:0], e.References[:0], e.Dates[:0]
	e.Numbers, e.Quantities, e.URIs, e.Composites = e.Numbers[:0], e.Quantities[:0], e.URIs[:0], e.Composites[:0]
}

// clone copies the scratch rows out, nil for an empty table as before.
func (e *Entries) clone(typ string) *Entries {
	return &Entries{
		typ:        typ,
		Strings:    cloneRows(e.Strings),
		Tokens:     cloneRows(e.Tokens),
		References: cloneRows(e.References),
		Dates:      cloneRows(e.Dates),
		Numbers:    cloneRows(e.Numbers),
		Quantities: cloneRows(e.Quantities),
		URIs:       cloneRows(e.URIs),
		Composites: cloneRows(e.Composites),
	}
}

func cloneRows[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// paramPlan is a search parameter compiled for the tree walk.
type paramPlan struct {
	sp         *spec.SearchParam
	paths      []path
	identParam int32 // IdentifierParam of a reference parameter
	a, b       [][]path
}

// path is a spec.Path with its JSON keys precomputed.
type path struct {
	steps []step
	typ   string // the datatype the walk ends on; "" when a choice's key tells
}

type step struct {
	key    string // JSON key; for an untyped choice, the prefix
	choice bool   // untyped choice: key followed by an upper-case type name
	index  int    // element index, -1 for all
	filter bool   // where() or resolve() is applies
	spec.Step
}

// plans holds each resource type's indexed parameters (all but the
// resources-table columns) in code order, compiled once per state of the
// search parameter registry (spec.Generation: implementation guides add
// parameters at start). The order makes Extract's output deterministic.
// The hot path pays two atomic loads to find the current set.
type planSet struct {
	gen      uint64
	byType   map[string][]*paramPlan
	fallback map[string]*fhirpath.Expression // see fallbackExprs
}

var (
	plans   atomic.Pointer[planSet]
	plansMu sync.Mutex // serialises rebuilding
)

// currentPlans returns the plans of the registry's current state.
func currentPlans() *planSet {
	if ps := plans.Load(); ps != nil && ps.gen == spec.Generation() {
		return ps
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	gen := spec.Generation()
	if ps := plans.Load(); ps != nil && ps.gen == gen {
		return ps
	}
	ps := &planSet{gen: gen, byType: map[string][]*paramPlan{}, fallback: fallbackExprs()}
	for _, typ := range spec.ResourceTypes() {
		ps.byType[typ] = plan(typ)
	}
	plans.Store(ps)
	return ps
}

// planFor returns typ's plan, compiling one for a type spec has parameters
// for but does not list as a resource type.
func planFor(typ string) []*paramPlan {
	if ps, ok := currentPlans().byType[typ]; ok {
		return ps
	}
	return plan(typ)
}

func plan(typ string) []*paramPlan {
	var ps []*paramPlan
	for _, sp := range spec.SearchParams(typ) {
		if sp.Column != "" {
			continue
		}
		p := &paramPlan{sp: sp, paths: compile(sp.Paths), identParam: IdentifierParam(typ, sp.Code)}
		if len(sp.Components) == 2 {
			for _, cp := range sp.Components[0].Paths {
				p.a = append(p.a, compile(cp))
			}
			for _, cp := range sp.Components[1].Paths {
				p.b = append(p.b, compile(cp))
			}
		}
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].sp.Code < ps[j].sp.Code })
	return ps
}

func compile(ps []spec.Path) []path {
	out := make([]path, len(ps))
	for i, p := range ps {
		if len(p.Types) == 1 {
			out[i].typ = p.Types[0]
		}
		for _, st := range p.Steps {
			s := step{key: st.Field, choice: st.Choice && st.As == "", index: st.Index, filter: st.WhereField != "" || st.ResolveIs != "", Step: st}
			if st.Choice && st.As != "" {
				s.key = st.Field + upperFirst(st.As)
			}
			out[i].steps = append(out[i].steps, s)
		}
	}
	return out
}

// hit is a value reached by a walk, with its FHIR datatype.
type hit struct {
	n   int
	typ string
}

// walk follows steps from node n (an array's elements, when n is an array),
// appending each value reached to dst. flt, when set, keeps only the objects
// it matches (where(), resolve() is), as the step that set it required.
func (t *tree) walk(dst []hit, n int, flt *step, steps []step, typ string) []hit {
	if n < 0 {
		return dst
	}
	if t.nodes[n].kind != kArray {
		return t.walkOne(dst, n, flt, steps, typ)
	}
	for c, end := n+1, t.nodes[n].end; c < end; c = t.nodes[c].end {
		dst = t.walkOne(dst, c, flt, steps, typ)
	}
	return dst
}

func (t *tree) walkOne(dst []hit, n int, flt *step, steps []step, typ string) []hit {
	k := t.nodes[n].kind
	if k == kNull || flt != nil && !t.keep(n, flt) {
		return dst
	}
	if len(steps) == 0 {
		return append(dst, hit{n, typ})
	}
	if k != kObject {
		return dst
	}
	st := &steps[0]
	child, childType := -1, ""
	if st.choice {
		child, childType = t.choice(n, st.key)
	} else {
		child = t.get(n, st.key)
	}
	if child < 0 {
		return dst
	}
	if st.index >= 0 {
		if child = t.elem(child, st.index); child < 0 {
			return dst
		}
	}
	var f *step
	if st.filter {
		f = st
	}
	if len(steps) == 1 && childType != "" {
		return t.walk(dst, child, f, nil, childType)
	}
	return t.walk(dst, child, f, steps[1:], typ)
}

// choice finds a choice element's value (value[x]) and its type from its
// key. Of several keys (invalid FHIR) the first is taken; the map-based walk
// took a random one.
func (t *tree) choice(obj int, field string) (int, string) {
	end := t.nodes[obj].end
	for c := obj + 1; c < end; c = t.nodes[c].end {
		k := t.nodes[c].key
		if len(k) > len(field) && strings.HasPrefix(k, field) && unicode.IsUpper(rune(k[len(field)])) {
			return t.get(obj, k), typeFromSuffix(k[len(field):])
		}
	}
	return -1, ""
}

// keep reports whether n passes a where()/resolve() is filter.
func (t *tree) keep(n int, st *step) bool {
	if t.nodes[n].kind != kObject {
		return false
	}
	if st.WhereField != "" && t.member(n, st.WhereField) != st.WhereValue {
		return false
	}
	return st.ResolveIs == "" || t.refType(n) == st.ResolveIs
}

// refType is the resource type a Reference points to, from its reference
// string or its type element.
func (t *tree) refType(ref int) string {
	if r := t.get(ref, "reference"); r >= 0 && t.nodes[r].kind == kString {
		if typ, _, ok := splitRef(t.nodes[r].val); ok {
			return typ
		}
	}
	return t.member(ref, "type")
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
	if out, ok := normalizeASCII(s); ok {
		return out
	}
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

// normalizeASCII is Normalize for ASCII text (most of it), which NFD leaves
// alone: lower-casing only, without allocating when nothing changes.
func normalizeASCII(s string) (string, bool) {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return "", false
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if len(s) > maxIndexedString {
		s = s[:maxIndexedString]
	}
	if !upper {
		return s, true
	}
	b := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return string(b), true
}

func truncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && !utf8Start(s[n]) {
		n--
	}
	return s[:n]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// add converts one value reached by a parameter's path into index entries.
func (e *Entries) add(t *tree, p *paramPlan, n int, typ string) {
	id := p.sp.ID
	switch p.sp.Type {
	case spec.String:
		e.addString(t, id, n, typ)
	case spec.Token:
		e.addToken(t, id, n, typ)
	case spec.Reference:
		e.addRef(t, p, n)
	case spec.Date:
		e.addDate(t, id, n, typ)
	case spec.Number:
		if t.nodes[n].kind == kNumber {
			e.Numbers = append(e.Numbers, Number{Param: id, Value: t.nodes[n].val})
		}
	case spec.Quantity:
		if q, ok := t.quantity(n, typ); ok {
			q.Param = id
			e.Quantities = append(e.Quantities, q)
		}
	case spec.URI:
		if t.nodes[n].kind == kString {
			e.URIs = append(e.URIs, URI{Param: id, Value: t.nodes[n].val})
		}
	}
}

var (
	humanNameStrings = []string{"text", "family", "given", "prefix", "suffix"}
	addressStrings   = []string{"text", "line", "city", "district", "state", "postalCode", "country"}
)

func (e *Entries) addString(t *tree, param int32, n int, typ string) {
	switch t.nodes[n].kind {
	case kString:
		e.putString(param, t.nodes[n].val)
	case kObject:
		var keys []string
		switch typ {
		case "HumanName":
			keys = humanNameStrings
		case "Address":
			keys = addressStrings
		default: // CodeableConcept, Annotation, ... : their text
			e.putString(param, t.member(n, "text"))
			return
		}
		for _, k := range keys {
			v := t.get(n, k)
			if v < 0 {
				continue
			}
			if t.nodes[v].kind != kArray {
				e.putString(param, t.str(v))
				continue
			}
			for c, end := v+1, t.nodes[v].end; c < end; c = t.nodes[c].end {
				e.putString(param, t.str(c))
			}
		}
	}
}

func (e *Entries) putString(param int32, s string) {
	if s == "" {
		return
	}
	exact := s
	if len(exact) > maxIndexedString {
		exact = truncateUTF8(exact, maxIndexedString)
	}
	e.Strings = append(e.Strings, String{Param: param, Norm: Normalize(s), Exact: exact})
}

func (e *Entries) addToken(t *tree, param int32, n int, typ string) {
	switch t.nodes[n].kind {
	case kString, kNumber:
		e.Tokens = append(e.Tokens, Token{Param: param, Code: t.nodes[n].val})
	case kTrue:
		e.Tokens = append(e.Tokens, Token{Param: param, Code: "true"})
	case kFalse:
		e.Tokens = append(e.Tokens, Token{Param: param, Code: "false"})
	case kObject:
		switch typ {
		case "CodeableConcept":
			if c := t.get(n, "coding"); c >= 0 {
				if t.nodes[c].kind != kArray {
					e.addCoding(t, param, c)
				} else {
					for i, end := c+1, t.nodes[c].end; i < end; i = t.nodes[i].end {
						e.addCoding(t, param, i)
					}
				}
			}
			if s := t.member(n, "text"); s != "" {
				e.Tokens = append(e.Tokens, Token{Param: param, Text: Normalize(s)})
			}
		case "Identifier":
			sys := t.get(n, "system")
			tok := Token{Param: param, System: t.str(sys), Code: t.member(n, "value"), HasSystem: sys >= 0}
			if it := t.object(t.get(n, "type")); it >= 0 {
				tok.Text = Normalize(t.member(it, "text"))
				if c := t.get(it, "coding"); c >= 0 {
					first, end := c, c+1
					if t.nodes[c].kind == kArray {
						first, end = c+1, t.nodes[c].end
					}
					for i := first; i < end && tok.TypeCode == ""; i = t.nodes[i].end {
						if t.nodes[i].kind == kObject {
							tok.TypeSystem, tok.TypeCode = t.member(i, "system"), t.member(i, "code")
						}
					}
				}
			}
			if tok.Code != "" {
				e.Tokens = append(e.Tokens, tok)
			}
		case "ContactPoint":
			if c := t.member(n, "value"); c != "" {
				sys := t.get(n, "system")
				e.Tokens = append(e.Tokens, Token{Param: param, System: t.str(sys), Code: c, HasSystem: sys >= 0})
			}
		default: // Coding and Coding-shaped values
			e.addCoding(t, param, n)
		}
	}
}

func (e *Entries) addCoding(t *tree, param int32, c int) {
	if t.nodes[c].kind != kObject {
		return
	}
	code := t.member(c, "code")
	display := Normalize(t.member(c, "display"))
	if code == "" && display == "" {
		return
	}
	sys := t.get(c, "system")
	e.Tokens = append(e.Tokens, Token{Param: param, System: t.str(sys), Code: code, Text: display, HasSystem: sys >= 0})
}

// IdentifierParam is the parameter id under which a reference parameter's
// Reference.identifier values are indexed (as tokens) for :identifier.
func IdentifierParam(typ, code string) int32 { return spec.ParamID(typ, code+":identifier") }

func (e *Entries) addRef(t *tree, p *paramPlan, n int) {
	switch t.nodes[n].kind {
	case kString: // canonical or uri used as a reference
		e.References = append(e.References, refEntry(p.sp.ID, t.nodes[n].val))
	case kObject:
		if s := t.member(n, "reference"); s != "" {
			e.References = append(e.References, refEntry(p.sp.ID, s))
		}
		if id := t.object(t.get(n, "identifier")); id >= 0 {
			// Index under a derived id so Type?param:identifier=sys|val can find it.
			if val := t.member(id, "value"); val != "" {
				sys := t.get(id, "system")
				e.Tokens = append(e.Tokens, Token{Param: p.identParam, System: t.str(sys), Code: val, HasSystem: sys >= 0})
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
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	typ, id = s[strings.LastIndexByte(s[:i], '/')+1:i], s[i+1:]
	if !spec.IsResourceType(typ) || !validID(id) {
		return "", "", false
	}
	return typ, id, true
}

// validID is fhir.ValidID (the id regex [A-Za-z0-9\-\.]{1,64}) without the
// regexp, which cost a tenth of Extract. TestValidID keeps them equal.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// SplitReference exposes splitRef for search values.
func SplitReference(s string) (typ, id string, ok bool) { return splitRef(s) }

func (e *Entries) addDate(t *tree, param int32, n int, typ string) {
	switch t.nodes[n].kind {
	case kString:
		if lo, hi, err := fhir.ParseDateRange(t.nodes[n].val); err == nil {
			e.Dates = append(e.Dates, Date{Param: param, Lo: lo, Hi: hi})
		}
	case kObject:
		switch typ {
		case "Period":
			lo, hi := MinTime, MaxTime
			start, end := t.get(n, "start"), t.get(n, "end")
			if s := t.str(start); s != "" {
				if l, _, err := fhir.ParseDateRange(s); err == nil {
					lo = l
				}
			}
			if s := t.str(end); s != "" {
				if _, h, err := fhir.ParseDateRange(s); err == nil {
					hi = h
				}
			}
			if start >= 0 || end >= 0 {
				e.Dates = append(e.Dates, Date{Param: param, Lo: lo, Hi: hi})
			}
		case "Timing":
			if ev := t.get(n, "event"); ev >= 0 {
				if t.nodes[ev].kind != kArray {
					e.addDate(t, param, ev, "dateTime")
				} else {
					for c, end := ev+1, t.nodes[ev].end; c < end; c = t.nodes[c].end {
						if t.nodes[c].kind != kNull {
							e.addDate(t, param, c, "dateTime")
						}
					}
				}
			}
			if rep := t.object(t.get(n, "repeat")); rep >= 0 {
				if bp := t.object(t.get(rep, "boundsPeriod")); bp >= 0 {
					e.addDate(t, param, bp, "Period")
				}
			}
		}
	}
}

// quantity reads a Quantity-like value (Quantity, Age, Duration, Money,
// Range, SimpleQuantity) or a bare decimal.
func (t *tree) quantity(n int, typ string) (Quantity, bool) {
	switch t.nodes[n].kind {
	case kNumber:
		v := t.nodes[n].val
		return Quantity{Lo: v, Hi: v}, true
	case kObject:
		if typ == "Range" {
			var q Quantity
			low, high := t.object(t.get(n, "low")), t.object(t.get(n, "high"))
			if low >= 0 {
				q.Lo = t.num(t.get(low, "value"))
				q.System, q.Code, q.Unit = t.member(low, "system"), t.member(low, "code"), t.member(low, "unit")
			}
			if high >= 0 {
				q.Hi = t.num(t.get(high, "value"))
				if q.Code == "" {
					q.System, q.Code, q.Unit = t.member(high, "system"), t.member(high, "code"), t.member(high, "unit")
				}
			}
			return q, q.Lo != "" || q.Hi != ""
		}
		val := t.num(t.get(n, "value"))
		if val == "" {
			return Quantity{}, false
		}
		if cur := t.member(n, "currency"); cur != "" { // Money
			return Quantity{Lo: val, Hi: val, System: "urn:iso:std:iso:4217", Code: cur}, true
		}
		return Quantity{Lo: val, Hi: val, System: t.member(n, "system"), Code: t.member(n, "code"), Unit: t.member(n, "unit")}, true
	}
	return Quantity{}, false
}

// num is a number's text, "" when n is absent or no number.
func (t *tree) num(n int) string {
	if n < 0 || t.nodes[n].kind != kNumber {
		return ""
	}
	return t.nodes[n].val
}
