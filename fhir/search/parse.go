package search

import (
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
)

// Options tune parsing.
type Options struct {
	// Strict rejects unknown or unsupported parameters (Prefer: handling=strict)
	// instead of ignoring them.
	Strict bool
	// Base is the server's FHIR base URL; absolute references under it are local.
	Base         string
	DefaultCount int
	MaxCount     int
	// Limits bound the work the search may ask for (zero: the defaults).
	Limits Limits
}

// maxChainDepth bounds chained and reverse-chained parameters.
const maxChainDepth = 4

// Parse parses the parameters of a search on typ ("" for a system search).
// Malformed values, unsupported modifiers (R4: servers SHALL reject them) and
// searches beyond opts.Limits always give a 400 *fhir.Error; unknown or
// unsupported parameters are ignored (and listed in Query.Ignored) unless
// opts.Strict.
func Parse(typ string, params url.Values, opts Options) (*Query, error) {
	if opts.DefaultCount <= 0 {
		opts.DefaultCount = 20
	}
	if opts.MaxCount <= 0 {
		opts.MaxCount = 1000
	}
	if err := checkText(params); err != nil {
		return nil, err
	}
	if err := checkLimits(params, opts.Limits.withDefaults()); err != nil {
		return nil, err
	}
	q := &Query{Type: typ, Count: opts.DefaultCount, Total: ""}
	p := &parser{opts: opts, q: q}
	// Deterministic order: the self link and the SQL come out the same for
	// the same request whatever the map order.
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	if typ == "" {
		if v := params.Get("_type"); v != "" {
			for _, t := range splitValues(v) {
				if !spec.IsResourceType(t) {
					return nil, badRequest("unknown resource type %q in _type", t)
				}
				q.Types = append(q.Types, t)
			}
		}
	}
	for _, name := range names {
		// The same condition ANDed again selects nothing more.
		for _, raw := range distinct(params[name]) {
			if err := p.param(name, raw); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

type parser struct {
	opts    Options
	q       *Query
	current string // the parameter name being parsed
}

func badRequest(format string, args ...any) *fhir.Error {
	return fhir.NewError(fhir.BadRequest, "invalid", fmt.Sprintf(format, args...))
}

// ignore records a parameter Ember cannot answer; under strict handling it
// is an error instead, never a silently wider result.
func (p *parser) ignore(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p.opts.Strict {
		return fhir.NewError(fhir.BadRequest, "not-supported", msg)
	}
	p.q.Ignored = append(p.q.Ignored, msg)
	p.q.Dropped = append(p.q.Dropped, p.current)
	return nil
}

// searchTypes are the types a system search's parameter must exist on.
func (p *parser) searchTypes() []string {
	if p.q.Type != "" {
		return []string{p.q.Type}
	}
	if len(p.q.Types) > 0 {
		return p.q.Types
	}
	return nil
}

func (p *parser) param(name, raw string) error {
	p.current = name
	switch name {
	case "_format", "_pretty", "_type":
		return nil
	case "_count":
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return badRequest("invalid _count %q: expected a non-negative integer", raw)
		}
		p.q.Count = min(n, p.opts.MaxCount)
		return nil
	case "_total":
		switch raw {
		case "none", "estimate", "accurate":
			p.q.Total = raw
			return nil
		}
		return badRequest("invalid _total %q: expected none, estimate or accurate", raw)
	case "_summary":
		switch raw {
		case "true", "text", "data", "count", "false":
			p.q.Summary = raw
			return nil
		}
		return badRequest("invalid _summary %q: expected true, text, data, count or false", raw)
	case "_elements":
		for _, e := range splitValues(raw) {
			if e = strings.TrimSpace(e); e != "" {
				// Allow Type.element as well as element.
				if i := strings.LastIndex(e, "."); i >= 0 {
					e = e[i+1:]
				}
				p.q.Elements = append(p.q.Elements, e)
			}
		}
		return nil
	case "_sort":
		return p.sort(raw)
	case "_cursor":
		p.q.Cursor = raw
		return nil
	case "_include", "_include:iterate", "_include:recurse":
		return p.include(raw, false, name != "_include")
	case "_revinclude", "_revinclude:iterate", "_revinclude:recurse":
		return p.include(raw, true, name != "_revinclude")
	}
	if strings.HasPrefix(name, "_has:") {
		types := p.searchTypes()
		if len(types) != 1 {
			return p.ignore("_has needs a single resource type to search")
		}
		prm, err := p.has(types[0], name, raw, 0)
		if err != nil || prm == nil {
			return err
		}
		p.q.Params = append(p.q.Params, *prm)
		return nil
	}
	types := p.searchTypes()
	if len(types) == 0 {
		// A system search over all types supports the common parameters only.
		types = []string{"Resource"}
	}
	multi := len(types) > 1
	if multi {
		// Several _type values: parse against the first; the SQL looks the
		// code up on every searched type (ids are per type).
		types = types[:1]
	}
	prm, err := p.parse(types[0], name, raw, 0)
	if err != nil || prm == nil {
		return err
	}
	if multi {
		prm.Type = "Resource"
	}
	p.q.Params = append(p.q.Params, *prm)
	return nil
}

// lookup finds a parameter on typ ("Resource" means a common parameter).
func lookup(typ, code string) *spec.SearchParam {
	if typ == "Resource" {
		// Common parameters are the same on every type; Patient is a
		// representative holder of the DomainResource ones.
		return spec.SearchParams("Patient")[code]
	}
	return spec.SearchParams(typ)[code]
}

// parse parses name=raw for a parameter of typ. It returns nil, nil when the
// parameter was ignored.
func (p *parser) parse(typ, name, raw string, depth int) (*Param, error) {
	if strings.Contains(name, "._has:") {
		return nil, chainEndsInHas(name)
	}
	code, modifier, _ := strings.Cut(name, ":")
	var chain string
	if i := strings.Index(code, "."); i >= 0 {
		code, chain = code[:i], code[i+1:]
	} else if i := strings.Index(modifier, "."); i >= 0 {
		modifier, chain = modifier[:i], modifier[i+1:]
	}
	sp := lookup(typ, code)
	if sp == nil {
		return nil, p.ignore("unknown search parameter %q for %s", code, typ)
	}
	if !index.Supported(sp) {
		return nil, p.ignore("search parameter %q of %s is not supported", code, typ)
	}
	prm := &Param{Name: name, SP: sp, Type: typ, Modifier: modifier}
	if chain != "" {
		return p.chain(prm, chain, raw, depth)
	}
	if err := checkModifier(sp, modifier); err != nil {
		// Never ignored: without its modifier the parameter means something
		// else (name:bogus=x would become name=x, a wider match).
		return nil, fhir.NewError(fhir.BadRequest, "not-supported", err.Error())
	}
	if modifier == "missing" {
		switch raw {
		case "true", "false":
			prm.Values = []Value{{Raw: raw, Missing: raw == "true"}}
			return prm, nil
		}
		return nil, badRequest("invalid :missing value %q for %s: expected true or false", raw, code)
	}
	for _, v := range splitValues(raw) {
		val, err := p.value(sp, modifier, v)
		if err != nil {
			return nil, err
		}
		prm.Values = append(prm.Values, val)
	}
	if len(prm.Values) == 0 {
		return nil, badRequest("empty value for search parameter %q", name)
	}
	return prm, nil
}

// chain parses subject:Patient.name=x (and deeper chains).
func (p *parser) chain(prm *Param, chain, raw string, depth int) (*Param, error) {
	if depth >= maxChainDepth {
		return nil, badRequest("chain %q is deeper than %d levels", prm.Name, maxChainDepth)
	}
	if prm.SP.Type != spec.Reference {
		return nil, badRequest("%q is not a reference parameter, so it cannot be chained", prm.SP.Code)
	}
	targets := prm.SP.Targets
	if prm.Modifier != "" {
		if !spec.IsResourceType(prm.Modifier) {
			return nil, badRequest("invalid chain type %q", prm.Modifier)
		}
		targets = []string{prm.Modifier}
	}
	nextName, _, _ := strings.Cut(chain, ".")
	nextCode, _, _ := strings.Cut(nextName, ":")
	if nextCode == "_has" {
		return nil, chainEndsInHas(prm.Name)
	}
	var types []string
	for _, t := range targets {
		if spec.SearchParams(t)[nextCode] != nil {
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		return nil, p.ignore("no target type of %s has the search parameter %q", prm.SP.Code, nextCode)
	}
	sort.Strings(types)
	for _, t := range types {
		inner, err := p.parse(t, chain, raw, depth+1)
		if err != nil || inner == nil {
			return nil, err
		}
		prm.Chains = append(prm.Chains, inner)
	}
	return prm, nil
}

// chainEndsInHas is the error for subject._has:…: R4 defines no reverse
// chain at the end of a forward chain, and ignoring it would widen the
// result.
func chainEndsInHas(name string) error {
	return fhir.NewError(fhir.BadRequest, "not-supported", fmt.Sprintf("%q chains into _has, which is not supported: search the referring type with _has instead", name))
}

// has parses _has:Type:refParam:param=value (nested _has allowed).
func (p *parser) has(typ, name, raw string, depth int) (*Param, error) {
	if depth >= maxChainDepth {
		return nil, badRequest("_has nested deeper than %d levels", maxChainDepth)
	}
	rest := strings.TrimPrefix(name, "_has:")
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 {
		return nil, badRequest("invalid _has parameter %q: expected _has:Type:reference:parameter", name)
	}
	srcType, refCode, inner := parts[0], parts[1], parts[2]
	if !spec.IsResourceType(srcType) {
		return nil, badRequest("invalid _has type %q", srcType)
	}
	ref := spec.SearchParams(srcType)[refCode]
	if ref == nil || ref.Type != spec.Reference {
		return nil, p.ignore("%s has no reference search parameter %q", srcType, refCode)
	}
	prm := &Param{Name: name, Type: typ, HasRef: ref}
	var sub *Param
	var err error
	if strings.HasPrefix(inner, "_has:") {
		sub, err = p.has(srcType, inner, raw, depth+1)
	} else {
		sub, err = p.parse(srcType, inner, raw, depth+1)
	}
	if err != nil || sub == nil {
		return nil, err
	}
	sub.Type = srcType
	prm.Has = sub
	return prm, nil
}

func checkModifier(sp *spec.SearchParam, m string) error {
	if m == "" || m == "missing" {
		return nil
	}
	ok := false
	switch sp.Type {
	case spec.String:
		ok = m == "exact" || m == "contains"
	case spec.Token:
		ok = m == "not" || m == "text" || m == "of-type" || m == "in" || m == "not-in"
		if m == "of-type" && !strings.HasSuffix(sp.Code, "identifier") {
			ok = false
		}
	case spec.Reference:
		ok = m == "identifier" || spec.IsResourceType(m)
	case spec.URI:
		ok = m == "above" || m == "below"
	}
	if sp.Column == "id" {
		ok = m == "not"
	}
	if !ok {
		return fmt.Errorf("modifier :%s is not supported on %s parameter %q", m, sp.Type, sp.Code)
	}
	return nil
}

var prefixes = map[string]bool{"eq": true, "ne": true, "gt": true, "lt": true, "ge": true, "le": true, "sa": true, "eb": true, "ap": true}

// splitPrefix separates a comparison prefix from an ordered value.
func splitPrefix(v string) (string, string) {
	if len(v) > 2 && prefixes[v[:2]] && (v[2] == '-' || v[2] >= '0' && v[2] <= '9' || v[2] == '.') {
		return v[:2], v[2:]
	}
	return "", v
}

func (p *parser) value(sp *spec.SearchParam, modifier, raw string) (Value, error) {
	v := Value{Raw: raw}
	var err error
	switch {
	case sp.Column == "id":
		v.Code = unescape(raw)
	case sp.Type == spec.Token && modifier == "of-type":
		parts := splitUnescaped(raw, '|')
		if len(parts) != 3 {
			return v, badRequest("invalid :of-type value %q: expected system|code|value", raw)
		}
		v.QSystem, v.QCode, v.Code = parts[0], parts[1], parts[2]
	case sp.Type == spec.Token || (sp.Type == spec.Reference && modifier == "identifier"):
		v.System, v.Code, v.HasSystem = splitToken(raw)
	case sp.Type == spec.String || sp.Type == spec.URI:
		v.Code = unescape(raw)
	case sp.Type == spec.Date:
		err = parseDate(&v, raw)
	case sp.Type == spec.Number:
		v.Prefix, v.Number = splitPrefix(raw)
		v.NumLo, v.NumHi, err = precisionRange(v.Number)
	case sp.Type == spec.Quantity:
		err = parseQuantity(&v, raw)
	case sp.Type == spec.Reference:
		p.parseRef(&v, modifier, raw)
	case sp.Type == spec.Composite:
		parts := splitUnescaped(raw, '$')
		if len(parts) != len(sp.Components) {
			return v, badRequest("invalid value %q for composite %s: expected %d parts separated by $", raw, sp.Code, len(sp.Components))
		}
		for i, c := range sp.Components {
			part, err := p.value(&spec.SearchParam{Code: c.Code, Type: c.Type}, "", parts[i])
			if err != nil {
				return v, err
			}
			v.Parts = append(v.Parts, part)
		}
	}
	if err != nil {
		return v, badRequest("invalid value %q for %s parameter %q: %v", raw, sp.Type, sp.Code, err)
	}
	return v, nil
}

func parseDate(v *Value, raw string) error {
	prefix, rest := splitPrefix(raw)
	v.Prefix = prefix
	lo, hi, err := fhir.ParseDateRange(rest)
	if err != nil {
		return err
	}
	v.Lo, v.Hi = lo, hi
	return nil
}

func parseQuantity(v *Value, raw string) error {
	parts := splitUnescaped(raw, '|')
	if len(parts) != 1 && len(parts) != 3 {
		return fmt.Errorf("expected number or number|system|code")
	}
	v.Prefix, v.Number = splitPrefix(parts[0])
	var err error
	if v.NumLo, v.NumHi, err = precisionRange(v.Number); err != nil {
		return err
	}
	if len(parts) == 3 {
		v.QSystem, v.QCode = parts[1], parts[2]
	}
	return nil
}

func (p *parser) parseRef(v *Value, modifier, raw string) {
	s := unescape(raw)
	if base := strings.TrimRight(p.opts.Base, "/"); base != "" && strings.HasPrefix(s, base+"/") {
		s = strings.TrimPrefix(s, base+"/")
	}
	if strings.Contains(s, "://") || strings.HasPrefix(s, "urn:") {
		v.RefURL = s
		return
	}
	if t, id, ok := index.SplitReference(s); ok {
		v.RefType, v.RefID = t, id
		return
	}
	v.RefID = s
	if spec.IsResourceType(modifier) {
		v.RefType = modifier
	}
}

// precisionRange returns the bounds a decimal's written precision implies:
// "100" covers [99.5, 100.5), "100.00" covers [99.995, 100.005).
func precisionRange(s string) (string, string, error) {
	exp, _, frac, err := checkDecimal(s)
	if err != nil {
		return "", "", err
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", "", fmt.Errorf("not a number")
	}
	decimals := frac - exp
	half := new(big.Rat).SetFrac(big.NewInt(5), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(decimals)+1)), nil))
	if decimals < 0 {
		half = new(big.Rat).Mul(big.NewRat(5, 1), new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-decimals-1)), nil)))
	}
	digits := max(decimals+1, 0)
	lo := new(big.Rat).Sub(r, half)
	hi := new(big.Rat).Add(r, half)
	return lo.FloatString(digits), hi.FloatString(digits), nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// splitToken reads system|code, |code or code.
func splitToken(raw string) (system, code string, hasSystem bool) {
	parts := splitUnescaped(raw, '|')
	if len(parts) >= 2 {
		return parts[0], strings.Join(parts[1:], "|"), true
	}
	return "", parts[0], false
}

// splitValues splits a parameter value on unescaped commas (OR).
func splitValues(raw string) []string {
	var out []string
	for _, v := range splitRaw(raw, ',') {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// splitRaw splits on sep unless escaped with a backslash, keeping escapes.
func splitRaw(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// splitUnescaped splits on sep and then unescapes each part.
func splitUnescaped(s string, sep byte) []string {
	parts := splitRaw(s, sep)
	for i := range parts {
		parts[i] = unescape(parts[i])
	}
	return parts
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (p *parser) sort(raw string) error {
	types := p.searchTypes()
	for _, key := range splitValues(raw) {
		desc := strings.HasPrefix(key, "-")
		code := strings.TrimPrefix(key, "-")
		var sp *spec.SearchParam
		if len(types) == 1 {
			sp = lookup(types[0], code)
		} else {
			sp = lookup("Resource", code)
		}
		if sp == nil || !index.Supported(sp) || sp.Type == spec.Composite || sp.Type == spec.Special {
			return badRequest("cannot sort by %q: not a sortable search parameter of %s", code, strings.Join(types, ","))
		}
		p.q.Sort = append(p.q.Sort, SortKey{SP: sp, Desc: desc, Name: key})
	}
	return nil
}

func (p *parser) include(raw string, rev, iterate bool) error {
	inc := Include{Raw: raw, Iterate: iterate}
	if raw == "*" {
		if rev {
			return p.ignore("_revinclude=* is not supported")
		}
		if len(p.searchTypes()) != 1 {
			return p.ignore("_include=* needs a single resource type")
		}
		inc.Type = p.searchTypes()[0]
		p.q.Includes = append(p.q.Includes, inc)
		return nil
	}
	parts := strings.Split(raw, ":")
	if len(parts) < 2 || len(parts) > 3 || !spec.IsResourceType(parts[0]) {
		return badRequest("invalid %s value %q: expected Type:parameter[:targetType]", map[bool]string{false: "_include", true: "_revinclude"}[rev], raw)
	}
	inc.Type = parts[0]
	if parts[1] != "*" {
		inc.SP = spec.SearchParams(parts[0])[parts[1]]
		if inc.SP == nil || inc.SP.Type != spec.Reference {
			return p.ignore("%s has no reference search parameter %q", parts[0], parts[1])
		}
	}
	if len(parts) == 3 {
		if !spec.IsResourceType(parts[2]) {
			return badRequest("invalid target type %q in %q", parts[2], raw)
		}
		inc.Target = parts[2]
	}
	if rev {
		p.q.RevIncludes = append(p.q.RevIncludes, inc)
	} else {
		p.q.Includes = append(p.q.Includes, inc)
	}
	return nil
}
