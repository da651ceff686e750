package search

import (
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
)

// Matching a query in memory: whether one resource, given its index entries,
// satisfies a parsed search, without asking the database. Subscriptions test
// every change against many filter criteria, so a query is compiled once
// (Compile) into a Matcher that is immutable, safe for concurrent use and
// evaluates without allocating.
//
// The semantics are store/search.go's SQL, condition for condition,
// including how the index tables store values: empty strings are NULL
// (NULLIF), so an empty code, system or URL matches nothing; a composite
// date component whose start is open (index.MinTime, the zero time) is
// stored NULL and matches nothing; timestamps are compared at microsecond
// precision, as timestamptz keeps them; NULL in a condition under NOT (the
// "ne" prefix) follows SQL's three-valued logic. store's match oracle test
// (store/match_oracle_test.go) compares both on real data.

// Matcher is a compiled query. The zero value is not usable; see Compile.
type Matcher struct {
	typ   string   // Query.Type; "" for a system search
	types []string // Query.Types of a system search
	conds []cond   // all must hold
}

// Matchable reports whether q can be evaluated in memory (Compile's error).
func Matchable(q *Query) error {
	_, err := Compile(q)
	return err
}

// Match reports whether the resource typ/id, whose current version was
// last updated at lastUpdated and has index entries e, satisfies q as the
// store's search would (a deleted resource never does; that is the
// caller's to know). It compiles q on every call and reports false for a
// query Matchable rejects: callers matching one query many times should
// Compile it once.
func Match(q *Query, typ, id string, lastUpdated time.Time, e *index.Entries) bool {
	m, err := Compile(q)
	if err != nil {
		return false
	}
	return m.Match(typ, id, lastUpdated, e)
}

// Compile prepares q for Match. Sorting, paging, _include/_revinclude,
// _summary, _elements, _count and _total select no resources and are
// ignored; so are the parameters Parse left out (Query.Ignored), as the
// store ignores them. Chains, _has and compartment searches need other
// resources and give a 400 *fhir.Error naming the first such parameter.
func Compile(q *Query) (*Matcher, error) {
	if q.Compartment != nil {
		return nil, notMatchable("a compartment search (%s/%s/…) cannot be matched in memory", q.Compartment.Type, q.Compartment.ID)
	}
	m := &Matcher{typ: q.Type, types: append([]string(nil), q.Types...), conds: make([]cond, 0, len(q.Params))}
	for i := range q.Params {
		c, err := compileParam(&q.Params[i])
		if err != nil {
			return nil, err
		}
		m.conds = append(m.conds, c)
	}
	return m, nil
}

// Params adds to set the ids of typ's search parameters whose index rows
// m reads, so a caller can extract those alone (index.ExtractOnly):
// a reference's :identifier rows come from the reference parameter's own
// extraction; _id and _lastUpdated read no rows.
func (m *Matcher) Params(typ string, set map[int32]bool) {
	for i := range m.conds {
		c := &m.conds[i]
		if c.kind == kID || c.kind == kLastUpdated {
			continue
		}
		if sp := spec.SearchParams(typ)[c.code]; sp != nil {
			set[sp.ID] = true
		}
	}
}

func notMatchable(format string, args ...any) *fhir.Error {
	return fhir.NewError(fhir.BadRequest, "not-supported", fmt.Sprintf(format, args...))
}

// Match reports whether the resource satisfies every condition; see the
// function Match.
func (m *Matcher) Match(typ, id string, lastUpdated time.Time, e *index.Entries) bool {
	if !m.typeOK(typ) {
		return false
	}
	if e == nil {
		e = new(index.Entries)
	}
	r := resource{typ: typ, id: id, lastUpdated: lastUpdated.UnixMicro(), e: e}
	for i := range m.conds {
		if !m.conds[i].match(&r) {
			return false
		}
	}
	return true
}

func (m *Matcher) typeOK(typ string) bool {
	switch {
	case m.typ != "":
		return typ == m.typ
	case len(m.types) > 0:
		for _, t := range m.types {
			if t == typ {
				return true
			}
		}
		return false
	}
	return true
}

// resource is what a condition is evaluated on.
type resource struct {
	typ, id     string
	lastUpdated int64 // µs since the Unix epoch, as timestamptz stores it
	e           *index.Entries
	now         time.Time // for the ap date prefix, read at most once
}

// clock is the time a date ap condition widens from, as the SQL reads it
// when the query is built.
func (r *resource) clock() time.Time {
	if r.now.IsZero() {
		r.now = time.Now()
	}
	return r.now
}

type condKind uint8

const (
	kID condKind = iota
	kLastUpdated
	kMissing
	kToken    // code, system|code, |code, system|; :not, :in, :not-in, reference :identifier
	kText     // token :text
	kOfType   // token :of-type
	kString   // normalised prefix
	kExact    // string :exact
	kContains // string :contains
	kURI
	kBelow
	kAbove
	kRef
	kDate
	kNumber
	kQuantity
	kComposite
)

// cond is one compiled parameter: true when some index row of the
// parameter matches some value (OR), negated for :not, :not-in and
// :missing=true.
type cond struct {
	kind  condKind
	neg   bool
	code  string // the parameter's code, for a parameter common to types
	fixed bool   // id is the parameter id (a search of one type)
	id    int32
	ident bool           // the id is the reference's :identifier id
	table spec.ParamType // :missing: whose rows count
	bType spec.ParamType // a composite's second component
	strs  []string       // _id values; string, uri and :text values, prepared
	toks  tokenSet       // token values
	vals  []value        // of-type, reference, date, number, quantity, composite
}

// prefix is a comparison prefix; pEq also stands for none.
type prefix uint8

const (
	pEq prefix = iota
	pNe
	pGt
	pLt
	pGe
	pLe
	pSa
	pEb
	pAp
)

var prefixCodes = map[string]prefix{"": pEq, "eq": pEq, "ne": pNe, "gt": pGt, "lt": pLt, "ge": pGe, "le": pLe, "sa": pSa, "eb": pEb, "ap": pAp}

// value is one compiled search value (of whatever kind the condition is).
type value struct {
	prefix prefix
	// date: [lo, hi) in µs; the parsed times for ap
	lo, hi   int64
	tLo, tHi time.Time
	// number / quantity: the number, its precision range [nlo, nhi) and
	// the ap bounds; the quantity's system and code
	n, nlo, nhi, apLo, apHi dec
	qSystem, qCode          string
	// reference
	refType, refID, refURL string
	// token :of-type; a composite's first component (system "" when not
	// compared) and token second component
	system, code, typeSystem, typeCode string
	bSystem, bCode                     string
	// composite string second component (normalised)
	str string
}

func compileParam(prm *Param) (cond, error) {
	if prm.Has != nil || prm.SP == nil {
		return cond{}, notMatchable("%q is a reverse chain (_has), which cannot be matched in memory", prm.Name)
	}
	if len(prm.Chains) > 0 {
		return cond{}, notMatchable("%q is a chained parameter, which cannot be matched in memory", prm.Name)
	}
	sp := prm.SP
	c := cond{code: sp.Code, fixed: prm.Type != "" && prm.Type != "Resource", id: sp.ID}
	switch sp.Column {
	case "id":
		c.kind, c.neg = kID, prm.Modifier == "not"
		for _, v := range prm.Values {
			c.strs = append(c.strs, v.Code)
		}
		return c, nil
	case "last_updated":
		c.kind = kLastUpdated
		for _, v := range prm.Values {
			c.vals = append(c.vals, dateValue(v))
		}
		return c, nil
	case "":
	default:
		return cond{}, notMatchable("search parameter %q (column %s) cannot be matched in memory", sp.Code, sp.Column)
	}
	if sp.Type == spec.Special || !index.Supported(sp) {
		return cond{}, notMatchable("search parameter %q cannot be matched in memory", sp.Code)
	}
	if prm.Modifier == "missing" {
		c.kind, c.table, c.neg = kMissing, sp.Type, len(prm.Values) > 0 && prm.Values[0].Missing
		return c, nil
	}
	var err error
	switch sp.Type {
	case spec.Token:
		err = c.compileToken(prm)
	case spec.String:
		c.compileString(prm)
	case spec.URI:
		err = c.compileURI(prm)
	case spec.Reference:
		err = c.compileRef(prm)
	case spec.Date:
		c.kind = kDate
		for _, v := range prm.Values {
			c.vals = append(c.vals, dateValue(v))
		}
	case spec.Number, spec.Quantity:
		c.kind = kNumber
		if sp.Type == spec.Quantity {
			c.kind = kQuantity
		}
		for _, v := range prm.Values {
			nv, err := numberValue(v)
			if err != nil {
				return cond{}, err
			}
			c.vals = append(c.vals, nv)
		}
	case spec.Composite:
		err = c.compileComposite(prm)
	default:
		err = notMatchable("search parameter %q of type %s cannot be matched in memory", sp.Code, sp.Type)
	}
	if err != nil {
		return cond{}, err
	}
	return c, nil
}

func (c *cond) compileToken(prm *Param) error {
	switch prm.Modifier {
	case "", "not":
		c.kind, c.neg = kToken, prm.Modifier == "not"
		c.toks = newTokenSet(prm.Values)
	case "text":
		c.kind = kText
		for _, v := range prm.Values {
			c.strs = append(c.strs, index.Normalize(v.Code))
		}
	case "of-type":
		c.kind = kOfType
		for _, v := range prm.Values {
			if v.QSystem != "" && v.QCode != "" && v.Code != "" { // NULL columns equal nothing
				c.vals = append(c.vals, value{typeSystem: v.QSystem, typeCode: v.QCode, code: v.Code})
			}
		}
	case "in", "not-in":
		// The store expands each value set (an unknown one matches nothing).
		c.kind, c.neg = kToken, prm.Modifier == "not-in"
		var vs []Value
		for _, v := range prm.Values {
			codes, _ := spec.ValueSetCodes(v.Code)
			for _, cd := range codes {
				vs = append(vs, Value{System: cd.System, Code: cd.Code, HasSystem: true})
			}
		}
		c.toks = newTokenSet(vs)
	default:
		return notMatchable("modifier :%s of %q cannot be matched in memory", prm.Modifier, prm.SP.Code)
	}
	return nil
}

func (c *cond) compileString(prm *Param) {
	switch prm.Modifier {
	case "exact":
		c.kind = kExact
	case "contains":
		c.kind = kContains
	default:
		c.kind = kString
	}
	for _, v := range prm.Values {
		s := v.Code
		if c.kind != kExact {
			s = index.Normalize(s)
		}
		c.strs = append(c.strs, s)
	}
}

func (c *cond) compileURI(prm *Param) error {
	switch prm.Modifier {
	case "":
		c.kind = kURI
	case "below":
		c.kind = kBelow
	case "above":
		c.kind = kAbove
	default:
		return notMatchable("modifier :%s of %q cannot be matched in memory", prm.Modifier, prm.SP.Code)
	}
	for _, v := range prm.Values {
		c.strs = append(c.strs, v.Code)
	}
	return nil
}

func (c *cond) compileRef(prm *Param) error {
	if prm.Modifier == "identifier" {
		// Reference.identifier values are token rows under a derived id.
		c.kind, c.ident = kToken, true
		c.toks = newTokenSet(prm.Values)
		if c.fixed {
			c.id = index.IdentifierParam(prm.Type, prm.SP.Code)
		}
		return nil
	}
	if prm.Modifier != "" && !spec.IsResourceType(prm.Modifier) {
		return notMatchable("modifier :%s of %q cannot be matched in memory", prm.Modifier, prm.SP.Code)
	}
	c.kind = kRef
	for _, v := range prm.Values {
		// store's ref: the URL, else id and type, else the id alone.
		rv := value{refURL: v.RefURL}
		if rv.refURL == "" {
			rv.refID, rv.refType = v.RefID, v.RefType
			if rv.refType == "" && spec.IsResourceType(prm.Modifier) {
				rv.refType = prm.Modifier
			}
			if rv.refID == "" {
				continue // target_id = '' holds for no row
			}
		}
		c.vals = append(c.vals, rv)
	}
	return nil
}

func (c *cond) compileComposite(prm *Param) error {
	sp := prm.SP
	if len(sp.Components) != 2 {
		return notMatchable("composite %q cannot be matched in memory", sp.Code)
	}
	c.kind, c.bType = kComposite, sp.Components[1].Type
	for _, v := range prm.Values {
		if len(v.Parts) != 2 {
			return notMatchable("composite %q value %q cannot be matched in memory", sp.Code, v.Raw)
		}
		a, b := v.Parts[0], v.Parts[1]
		cv := value{code: a.Code}
		if a.HasSystem {
			cv.system = a.System
		}
		switch c.bType {
		case spec.Token:
			cv.bCode = b.Code
			if b.HasSystem {
				cv.bSystem = b.System
			}
		case spec.Quantity:
			nv, err := numberValue(b)
			if err != nil {
				return err
			}
			nv.code, nv.system = cv.code, cv.system
			cv = nv
		case spec.Date:
			dv := dateValue(b)
			dv.code, dv.system = cv.code, cv.system
			cv = dv
		case spec.String:
			cv.str = index.Normalize(b.Code)
		case spec.Reference:
			cv.bCode = b.RefID
		}
		c.vals = append(c.vals, cv)
	}
	return nil
}

func dateValue(v Value) value {
	return value{prefix: prefixCodes[v.Prefix], lo: v.Lo.UnixMicro(), hi: v.Hi.UnixMicro(), tLo: v.Lo, tHi: v.Hi}
}

func numberValue(v Value) (value, error) {
	nv := value{prefix: prefixCodes[v.Prefix], qSystem: v.QSystem, qCode: v.QCode}
	var ok [3]bool
	nv.n, ok[0] = parseDec(v.Number)
	nv.nlo, ok[1] = parseDec(v.NumLo)
	nv.nhi, ok[2] = parseDec(v.NumHi)
	if !ok[0] || !ok[1] || !ok[2] {
		return value{}, badRequest("invalid number %q", v.Raw)
	}
	if nv.prefix == pAp {
		// store's number: 10% either side, as decimals rounded to 12 places.
		r, _ := new(big.Rat).SetString(v.Number)
		d := new(big.Rat).Abs(new(big.Rat).Mul(r, big.NewRat(1, 10)))
		nv.apHi, _ = parseDec(new(big.Rat).Add(r, d).FloatString(12))
		nv.apLo, _ = parseDec(new(big.Rat).Sub(r, d).FloatString(12))
	}
	return nv, nil
}

// match evaluates the condition on r.
func (c *cond) match(r *resource) bool {
	switch c.kind {
	case kID:
		found := false
		for _, s := range c.strs {
			if s == r.id {
				found = true
				break
			}
		}
		return found != c.neg
	case kLastUpdated:
		for i := range c.vals {
			if c.vals[i].dateMatch(r.lastUpdated, r.lastUpdated+1, r) {
				return true
			}
		}
		return false
	}
	id, ok := c.paramID(r.typ)
	if !ok {
		return c.neg // the resource has no rows of the parameter
	}
	return c.rows(id, r) != c.neg
}

// paramID is the parameter's id on typ (ids are per type).
func (c *cond) paramID(typ string) (int32, bool) {
	if c.fixed {
		return c.id, true
	}
	if spec.SearchParams(typ)[c.code] == nil {
		return 0, false
	}
	if c.ident {
		return index.IdentifierParam(typ, c.code), true
	}
	return spec.SearchParams(typ)[c.code].ID, true
}

// rows reports whether some index row of parameter id matches some value.
func (c *cond) rows(id int32, r *resource) bool {
	e := r.e
	switch c.kind {
	case kMissing:
		return hasRows(c.table, id, e)
	case kToken:
		for i := range e.Tokens {
			if t := &e.Tokens[i]; t.Param == id && c.toks.match(t) {
				return true
			}
		}
	case kText:
		for i := range e.Tokens {
			if t := &e.Tokens[i]; t.Param == id && t.Text != "" && anyPrefix(t.Text, c.strs) {
				return true
			}
		}
	case kOfType:
		for i := range e.Tokens {
			t := &e.Tokens[i]
			if t.Param != id {
				continue
			}
			for j := range c.vals {
				if v := &c.vals[j]; t.TypeSystem == v.typeSystem && t.TypeCode == v.typeCode && t.Code == v.code {
					return true
				}
			}
		}
	case kString, kExact, kContains:
		return c.stringRows(id, e)
	case kURI, kBelow, kAbove:
		return c.uriRows(id, e)
	case kRef:
		for i := range e.References {
			if ref := &e.References[i]; ref.Param == id && c.refMatch(ref) {
				return true
			}
		}
	case kDate:
		for i := range e.Dates {
			d := &e.Dates[i]
			if d.Param != id {
				continue
			}
			lo, hi := d.Lo.UnixMicro(), d.Hi.UnixMicro()
			for j := range c.vals {
				if c.vals[j].dateMatch(lo, hi, r) {
					return true
				}
			}
		}
	case kNumber:
		for i := range e.Numbers {
			n := &e.Numbers[i]
			if n.Param != id {
				continue
			}
			d, ok := parseDec(n.Value)
			for j := range c.vals {
				if c.vals[j].numberMatch(d, d, ok, ok) {
					return true
				}
			}
		}
	case kQuantity:
		for i := range e.Quantities {
			if q := &e.Quantities[i]; q.Param == id && c.quantityRow(q.Lo, q.Hi, q.System, q.Code, q.Unit) {
				return true
			}
		}
	case kComposite:
		for i := range e.Composites {
			if x := &e.Composites[i]; x.Param == id && c.compositeRow(x, r) {
				return true
			}
		}
	}
	return false
}

// hasRows reports whether e has a row of parameter id in the table of t.
func hasRows(t spec.ParamType, id int32, e *index.Entries) bool {
	switch t {
	case spec.String:
		return anyParam(e.Strings, id, func(r *index.String) int32 { return r.Param })
	case spec.Token:
		return anyParam(e.Tokens, id, func(r *index.Token) int32 { return r.Param })
	case spec.Reference:
		return anyParam(e.References, id, func(r *index.Ref) int32 { return r.Param })
	case spec.Date:
		return anyParam(e.Dates, id, func(r *index.Date) int32 { return r.Param })
	case spec.Number:
		return anyParam(e.Numbers, id, func(r *index.Number) int32 { return r.Param })
	case spec.Quantity:
		return anyParam(e.Quantities, id, func(r *index.Quantity) int32 { return r.Param })
	case spec.URI:
		return anyParam(e.URIs, id, func(r *index.URI) int32 { return r.Param })
	case spec.Composite:
		return anyParam(e.Composites, id, func(r *index.Composite) int32 { return r.Param })
	}
	return false
}

func anyParam[T any](rows []T, id int32, param func(*T) int32) bool {
	for i := range rows {
		if param(&rows[i]) == id {
			return true
		}
	}
	return false
}

func anyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func (c *cond) stringRows(id int32, e *index.Entries) bool {
	for i := range e.Strings {
		s := &e.Strings[i]
		if s.Param != id {
			continue
		}
		for _, v := range c.strs {
			var ok bool
			switch c.kind {
			case kExact:
				ok = s.Exact == v
			case kContains:
				ok = strings.Contains(s.Norm, v)
			default:
				ok = strings.HasPrefix(s.Norm, v)
			}
			if ok {
				return true
			}
		}
	}
	return false
}

func (c *cond) uriRows(id int32, e *index.Entries) bool {
	for i := range e.URIs {
		u := &e.URIs[i]
		if u.Param != id {
			continue
		}
		for _, v := range c.strs {
			var ok bool
			switch c.kind {
			case kBelow:
				ok = strings.HasPrefix(u.Value, v)
			case kAbove:
				ok = above(v, u.Value)
			default:
				ok = u.Value == v
			}
			if ok {
				return true
			}
		}
	}
	return false
}

// above is store's uri :above: search LIKE the stored value, with its % and
// _ escaped (but not its backslashes, which stay LIKE escapes), then '%'.
func above(search, stored string) bool {
	if !strings.ContainsAny(stored, `\%_`) {
		return strings.HasPrefix(search, stored)
	}
	p := strings.NewReplacer("%", `\%`, "_", `\_`).Replace(stored) + "%"
	return like(search, p)
}

// like is SQL LIKE with the escape character '\': '%' matches any run of
// characters, '_' one character.
func like(s, p string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '%':
			for len(p) > 0 && p[0] == '%' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if (i == len(s) || utf8.RuneStart(s[i])) && like(s[i:], p) {
					return true
				}
			}
			return false
		case '_':
			if s == "" {
				return false
			}
			_, n := utf8.DecodeRuneInString(s)
			s, p = s[n:], p[1:]
			continue
		case '\\':
			if len(p) < 2 {
				return false // PostgreSQL rejects the pattern
			}
			p = p[1:]
		}
		_, n := utf8.DecodeRuneInString(p)
		if !strings.HasPrefix(s, p[:n]) {
			return false
		}
		s, p = s[n:], p[n:]
	}
	return s == ""
}

func (c *cond) refMatch(ref *index.Ref) bool {
	for i := range c.vals {
		v := &c.vals[i]
		switch {
		case v.refURL != "":
			if ref.URL == v.refURL {
				return true
			}
		case ref.ID == v.refID && (v.refType == "" || ref.Type == v.refType):
			return true
		}
	}
	return false
}

// dateMatch is store's dateRange: the stored range [lo, hi) against the
// value's, per the prefix (all in µs).
func (v *value) dateMatch(lo, hi int64, r *resource) bool {
	contained := lo >= v.lo && hi <= v.hi
	switch v.prefix {
	case pNe:
		return !contained
	case pGt:
		return hi > v.hi
	case pLt:
		return lo < v.lo
	case pGe:
		return hi > v.hi || contained
	case pLe:
		return lo < v.lo || contained
	case pSa:
		return lo >= v.hi
	case pEb:
		return hi <= v.lo
	case pAp:
		// Widened by 10% of the distance from now, at least a day.
		gap := r.clock().Sub(v.tLo)
		if gap < 0 {
			gap = -gap
		}
		widen := max(gap/10, 24*time.Hour)
		return lo < v.tHi.Add(widen).UnixMicro() && hi > v.tLo.Add(-widen).UnixMicro()
	}
	return contained
}

// numberMatch is store's number on the stored [lo, hi]; loOK and hiOK are
// false for NULL ends (a Range open on that side).
func (v *value) numberMatch(lo, hi dec, loOK, hiOK bool) bool {
	switch v.prefix {
	case pNe:
		// NOT (lo >= nlo AND hi < nhi): true only when a known side fails.
		return loOK && cmpDec(lo, v.nlo) < 0 || hiOK && cmpDec(hi, v.nhi) >= 0
	case pGt, pSa:
		return hiOK && cmpDec(hi, v.n) > 0
	case pLt, pEb:
		return loOK && cmpDec(lo, v.n) < 0
	case pGe:
		return hiOK && cmpDec(hi, v.n) >= 0
	case pLe:
		return loOK && cmpDec(lo, v.n) <= 0
	case pAp:
		return loOK && hiOK && cmpDec(lo, v.apHi) <= 0 && cmpDec(hi, v.apLo) >= 0
	}
	return loOK && hiOK && cmpDec(lo, v.nlo) >= 0 && cmpDec(hi, v.nhi) < 0
}

// unitMatch is store's quantity system/code test (NULL columns are "").
func (v *value) unitMatch(system, code, unit string) bool {
	switch {
	case v.qCode != "" && v.qSystem != "":
		return system == v.qSystem && code == v.qCode
	case v.qCode != "":
		return code == v.qCode || unit == v.qCode
	case v.qSystem != "":
		return system == v.qSystem
	}
	return true
}

func (c *cond) quantityRow(loS, hiS, system, code, unit string) bool {
	lo, loOK := parseDec(loS)
	hi, hiOK := parseDec(hiS)
	for i := range c.vals {
		if v := &c.vals[i]; v.numberMatch(lo, hi, loOK, hiOK) && v.unitMatch(system, code, unit) {
			return true
		}
	}
	return false
}

func (c *cond) compositeRow(x *index.Composite, r *resource) bool {
	for i := range c.vals {
		v := &c.vals[i]
		if x.ACode != v.code || v.system != "" && x.ASystem != v.system {
			continue
		}
		if c.compositeB(x, v, r) {
			return true
		}
	}
	return false
}

// compositeB is store's test of a composite's second component; a type the
// store does not compare (number, uri) puts no condition on it.
func (c *cond) compositeB(x *index.Composite, v *value, r *resource) bool {
	switch c.bType {
	case spec.Token, spec.Reference:
		return x.BCode != "" && x.BCode == v.bCode && (v.bSystem == "" || x.BSystem == v.bSystem)
	case spec.Quantity:
		lo, loOK := parseDec(x.BLo)
		hi, hiOK := parseDec(x.BHi)
		return v.numberMatch(lo, hi, loOK, hiOK) && v.unitMatch(x.BSystem, x.BCode, x.BCode)
	case spec.Date:
		// Stored NULL when the range opens at the zero time (index.MinTime).
		return !x.BDateLo.IsZero() && v.dateMatch(x.BDateLo.UnixMicro(), x.BDateHi.UnixMicro(), r)
	case spec.String:
		return x.BString != "" && strings.HasPrefix(x.BString, v.str)
	}
	return true
}

// tokenSet is store's tokenValues: a row matches a plain code (any
// system), a system (any code), a code without a system (|code) or a
// system|code pair. Empty values are left out: the index stores "" as
// NULL, which equals nothing.
type tokenSet struct {
	codes, systems, noSystem set[string]
	pairs                    set[sysCode]
}

type sysCode struct{ system, code string }

func newTokenSet(vs []Value) tokenSet {
	var s tokenSet
	for _, v := range vs {
		switch {
		case !v.HasSystem:
			s.codes.add(v.Code)
		case v.Code == "":
			s.systems.add(v.System)
		case v.System == "":
			s.noSystem.add(v.Code)
		default:
			s.pairs.add(sysCode{v.System, v.Code})
		}
	}
	s.codes.seal()
	s.systems.seal()
	s.noSystem.seal()
	s.pairs.seal()
	return s
}

func (s *tokenSet) match(t *index.Token) bool {
	if t.Code != "" && s.codes.has(t.Code) {
		return true
	}
	if t.System != "" && s.systems.has(t.System) {
		return true
	}
	if t.Code == "" {
		return false
	}
	if t.System == "" {
		return s.noSystem.has(t.Code)
	}
	return s.pairs.len() > 0 && s.pairs.has(sysCode{t.System, t.Code})
}

// set is a small set: a slice, or a map once it is large.
type set[T comparable] struct {
	list []T
	m    map[T]struct{}
}

const setMapFrom = 8

func (s *set[T]) add(v T) {
	var zero T
	if v != zero {
		s.list = append(s.list, v)
	}
}

func (s *set[T]) seal() {
	if len(s.list) < setMapFrom {
		return
	}
	s.m = make(map[T]struct{}, len(s.list))
	for _, v := range s.list {
		s.m[v] = struct{}{}
	}
	s.list = nil
}

func (s *set[T]) len() int { return len(s.list) + len(s.m) }

func (s *set[T]) has(v T) bool {
	if s.m != nil {
		_, ok := s.m[v]
		return ok
	}
	for _, x := range s.list {
		if x == v {
			return true
		}
	}
	return false
}

// dec is a decimal's text read for exact comparison without allocating:
// its value is ±0.DDD…×10^exp, the digits D read from m (which may hold a
// '.') starting at its first non-zero digit.
type dec struct {
	m     string
	first int // index in m of the first non-zero digit; -1 for zero
	exp   int
	neg   bool
}

// maxExp bounds exponents so sums cannot overflow; PostgreSQL's numeric
// holds far less.
const maxExp = 1 << 40

// parseDec reads a JSON or FHIR decimal ([-+]digits[.digits][e[+-]digits]);
// ok is false for "" (NULL) and malformed text.
func parseDec(s string) (d dec, ok bool) {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		d.neg, s = s[0] == '-', s[1:]
	}
	mant, e := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		if e, ok = parseExp(s[i+1:]); !ok {
			return dec{}, false
		}
	}
	d.m, d.first = mant, -1
	dot, digits := len(mant), 0
	for i := 0; i < len(mant); i++ {
		switch c := mant[i]; {
		case c == '.' && dot == len(mant):
			dot = i
		case c >= '0' && c <= '9':
			digits++
			if c != '0' && d.first < 0 {
				d.first = i
			}
		default:
			return dec{}, false
		}
	}
	if digits == 0 {
		return dec{}, false
	}
	if d.first >= 0 {
		if d.first < dot {
			d.exp = dot - d.first
		} else {
			d.exp = -(d.first - dot - 1)
		}
		d.exp += e
	}
	return d, true
}

func parseExp(s string) (int, bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if s == "" {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v < maxExp {
			v = v*10 + int(c-'0')
		}
	}
	v = min(v, maxExp)
	if neg {
		v = -v
	}
	return v, true
}

func (d dec) sign() int {
	switch {
	case d.first < 0:
		return 0
	case d.neg:
		return -1
	}
	return 1
}

// cmpDec compares two decimals' values: -1, 0 or 1.
func cmpDec(a, b dec) int {
	sa, sb := a.sign(), b.sign()
	if sa != sb {
		if sa < sb {
			return -1
		}
		return 1
	}
	if sa == 0 {
		return 0
	}
	return sa * cmpMag(a, b)
}

// cmpMag compares the magnitudes of two non-zero decimals.
func cmpMag(a, b dec) int {
	if a.exp != b.exp {
		if a.exp < b.exp {
			return -1
		}
		return 1
	}
	i, j := a.first, b.first
	for {
		i, j = nextDigit(a.m, i), nextDigit(b.m, j)
		switch {
		case i == len(a.m) && j == len(b.m):
			return 0
		case i == len(a.m):
			return -nonZeroFrom(b.m, j)
		case j == len(b.m):
			return nonZeroFrom(a.m, i)
		case a.m[i] != b.m[j]:
			if a.m[i] < b.m[j] {
				return -1
			}
			return 1
		}
		i, j = i+1, j+1
	}
}

// nextDigit is the index of the digit at or after i (len(m) when none).
func nextDigit(m string, i int) int {
	for i < len(m) && m[i] == '.' {
		i++
	}
	return i
}

// nonZeroFrom is 1 when a non-zero digit remains in m from i, else 0.
func nonZeroFrom(m string, i int) int {
	for ; i < len(m); i++ {
		if m[i] >= '1' && m[i] <= '9' {
			return 1
		}
	}
	return 0
}
