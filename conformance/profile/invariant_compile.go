package profile

// A small FHIRPath compiler for profile invariants. gofhir/fhirpath takes
// 0.2-2 ms to evaluate one invariant (it re-reads the JSON bytes at each
// step and probes every type suffix of an absent choice element), which
// the write path cannot afford; the invariants implementation guides
// declare are short (US Core's: exists(), empty(), where(), implies,
// status comparisons, matches(), a Luhn digit sum), so they are compiled
// here into Go closures over the resource the checker has already decoded,
// costing a few hundred nanoseconds each. An expression using anything
// outside the subset (resolve(), memberOf(), external constants…) does
// not compile and keeps the slower path.
//
// Semantics follow FHIRPath N1: empty propagation, three-valued logic,
// singleton evaluation of collections (one non-Boolean item is true in a
// Boolean context, several are an error), and choice elements reached by
// their name without the type suffix (value -> valueQuantity).

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// fpItem is one item of a FHIRPath collection: a decoded JSON value and
// its FHIR type where the JSON tells it (a choice element's suffix, the
// element's only type).
type fpItem struct {
	// v is a map[string]any, string, bool, json.Number, int64 or float64;
	// nil for a primitive that has extensions and no value.
	v   any
	typ string // a FHIR type name ("Quantity", "DateTime", "HumanName"), "" when unknown
}

// fpEnv is what an expression reads besides its input: $this and
// %resource.
type fpEnv struct {
	this     fpItem
	resource fpItem
}

// fpFunc evaluates a compiled (sub)expression on an input collection.
type fpFunc func(env *fpEnv, in []fpItem) ([]fpItem, error)

// goInvariant is a compiled invariant.
type goInvariant struct {
	fn fpFunc
}

// holds evaluates the invariant with context ctx: false when it evaluates
// to false; an error when it cannot be evaluated (several items where one
// is needed). Empty and non-Boolean results hold, as with the gofhir path.
func (g *goInvariant) holds(ctx, resource fpItem) (bool, error) {
	env := fpEnv{this: ctx, resource: resource}
	res, err := g.fn(&env, []fpItem{ctx})
	if err != nil {
		return false, err
	}
	if len(res) == 1 {
		if b, ok := res[0].v.(bool); ok {
			return b, nil
		}
	}
	return true, nil
}

// errUnsupported marks an expression outside the compiled subset.
type errUnsupported struct{ what string }

func (e errUnsupported) Error() string { return "not compiled: " + e.what }

// compileInvariant compiles a FHIRPath invariant. onRoot says the
// invariant's context is the resource, whose text.div the checker's
// decoding skips: an expression reading it there does not compile.
func compileInvariant(expr string, onRoot bool) (*goInvariant, error) {
	toks, err := fpLex(expr)
	if err != nil {
		return nil, err
	}
	p := &fpParser{toks: toks}
	fn, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tkEOF {
		return nil, fmt.Errorf("fhirpath: unexpected %q", p.peek().text)
	}
	if p.usesDiv && (onRoot || p.usesResource) {
		return nil, errUnsupported{"the narrative's XHTML"}
	}
	return &goInvariant{fn: fn}, nil
}

// Tokens.
const (
	tkEOF = iota
	tkIdent
	tkString
	tkNumber
	tkPunct
	tkVar    // $this
	tkExtVar // %resource
)

type fpToken struct {
	kind int
	text string
}

func fpLex(s string) ([]fpToken, error) {
	var out []fpToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(s) && (s[i+1] == '/' || s[i+1] == '*'):
			return nil, errUnsupported{"comments"}
		case c == '\'':
			str, n, err := fpString(s[i:])
			if err != nil {
				return nil, err
			}
			out = append(out, fpToken{tkString, str})
			i += n
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j <= 0 {
				return nil, fmt.Errorf("fhirpath: unterminated or empty identifier")
			}
			out = append(out, fpToken{tkIdent, s[i+1 : i+1+j]})
			i += j + 2
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' && j+1 < len(s) && s[j+1] >= '0' && s[j+1] <= '9') {
				j++
			}
			out = append(out, fpToken{tkNumber, s[i:j]})
			i = j
		case isIdentStart(c) || c == '$' || c == '%':
			j := i + 1
			for j < len(s) && (isIdentStart(s[j]) || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			kind := tkIdent
			switch c {
			case '$':
				kind = tkVar
			case '%':
				kind = tkExtVar
			}
			out = append(out, fpToken{kind, s[i:j]})
			i = j
		default:
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch two {
			case "<=", ">=", "!=", "!~":
				out = append(out, fpToken{tkPunct, two})
				i += 2
				continue
			}
			if !strings.ContainsRune(".()[]{},|=~<>+-*/&", rune(c)) {
				return nil, fmt.Errorf("fhirpath: unexpected character %q", c)
			}
			out = append(out, fpToken{tkPunct, string(c)})
			i++
		}
	}
	return append(out, fpToken{kind: tkEOF}), nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// fpString reads a quoted string literal at the start of s, returning it
// unescaped and the bytes it took.
func fpString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\'':
			return b.String(), i + 1, nil
		case '\\':
			i++
			if i >= len(s) {
				return "", 0, fmt.Errorf("fhirpath: unterminated string")
			}
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'f':
				b.WriteByte('\f')
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(s[i])
			default:
				return "", 0, errUnsupported{"escape \\" + string(s[i])}
			}
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("fhirpath: unterminated string")
}

type fpParser struct {
	toks         []fpToken
	pos          int
	usesDiv      bool
	usesResource bool
}

func (p *fpParser) peek() fpToken { return p.toks[p.pos] }

func (p *fpParser) next() fpToken {
	t := p.toks[p.pos]
	if t.kind != tkEOF {
		p.pos++
	}
	return t
}

func (p *fpParser) expect(punct string) error {
	if t := p.next(); t.kind != tkPunct || t.text != punct {
		return fmt.Errorf("fhirpath: want %q, got %q", punct, t.text)
	}
	return nil
}

// binaryPrec is FHIRPath's operator precedence, higher binding tighter;
// 0 for a token that is no binary operator.
func binaryPrec(t fpToken) int {
	if t.kind != tkPunct && t.kind != tkIdent {
		return 0
	}
	switch t.text {
	case "implies":
		return 1
	case "or", "xor":
		return 2
	case "and":
		return 3
	case "in", "contains":
		return 4
	case "=", "~", "!=", "!~":
		return 5
	case "<", ">", "<=", ">=":
		return 6
	case "|":
		return 7
	case "is", "as":
		return 8
	case "+", "-", "&":
		return 9
	case "*", "/", "div", "mod":
		return 10
	}
	return 0
}

// expr parses operators of precedence above min (left-associative).
func (p *fpParser) expr(min int) (fpFunc, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op := p.peek()
		prec := binaryPrec(op)
		if prec == 0 || prec <= min {
			return left, nil
		}
		p.next()
		if op.text == "is" || op.text == "as" {
			typ, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			left = typeOp(op.text, left, typ)
			continue
		}
		right, err := p.expr(prec)
		if err != nil {
			return nil, err
		}
		if left, err = binary(op.text, left, right); err != nil {
			return nil, err
		}
	}
}

func (p *fpParser) unary() (fpFunc, error) {
	if t := p.peek(); t.kind == tkPunct && (t.text == "-" || t.text == "+") {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return x, nil
		}
		return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
			r, err := x(env, in)
			if err != nil || len(r) == 0 {
				return nil, err
			}
			return arith("*", r, []fpItem{{v: int64(-1)}})
		}, nil
	}
	return p.postfix()
}

// postfix parses a term followed by invocations (.name, .f()) and
// indexers.
func (p *fpParser) postfix() (fpFunc, error) {
	f, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tkPunct || t.text != "." && t.text != "[" {
			return f, nil
		}
		p.next()
		var step fpFunc
		if t.text == "[" {
			idx, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			step = indexer(idx)
		} else {
			name := p.next()
			if name.kind != tkIdent {
				return nil, fmt.Errorf("fhirpath: want a name after '.', got %q", name.text)
			}
			if step, err = p.invocation(name.text); err != nil {
				return nil, err
			}
		}
		f = chain(f, step)
	}
}

func chain(first, then fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		mid, err := first(env, in)
		if err != nil {
			return nil, err
		}
		return then(env, mid)
	}
}

func (p *fpParser) term() (fpFunc, error) {
	t := p.next()
	switch t.kind {
	case tkString:
		return constant(fpItem{v: t.text, typ: "String"}), nil
	case tkNumber:
		if n, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return constant(fpItem{v: n, typ: "Integer"}), nil
		}
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("fhirpath: number %q", t.text)
		}
		return constant(fpItem{v: f, typ: "Decimal"}), nil
	case tkVar:
		if t.text != "$this" {
			return nil, errUnsupported{t.text}
		}
		return func(env *fpEnv, _ []fpItem) ([]fpItem, error) { return []fpItem{env.this}, nil }, nil
	case tkExtVar:
		switch t.text {
		case "%resource", "%rootResource", "%context":
			p.usesResource = true
			return func(env *fpEnv, _ []fpItem) ([]fpItem, error) { return []fpItem{env.resource}, nil }, nil
		}
		return nil, errUnsupported{t.text}
	case tkPunct:
		switch t.text {
		case "(":
			f, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			return f, p.expect(")")
		case "{":
			return constant(), p.expect("}")
		}
	case tkIdent:
		switch t.text {
		case "true", "false":
			return constant(fpItem{v: t.text == "true", typ: "Boolean"}), nil
		}
		return p.invocation(t.text)
	}
	return nil, fmt.Errorf("fhirpath: unexpected %q", t.text)
}

// constant returns the same collection whatever its input.
func constant(items ...fpItem) fpFunc {
	return func(*fpEnv, []fpItem) ([]fpItem, error) { return items, nil }
}

// invocation compiles name, either a member (navigation) or, followed by
// '(', a function applied to the input.
func (p *fpParser) invocation(name string) (fpFunc, error) {
	if t := p.peek(); t.kind != tkPunct || t.text != "(" {
		if name == "div" {
			p.usesDiv = true
		}
		return navigate(name), nil
	}
	p.next() // (
	if name == "ofType" || name == "is" || name == "as" {
		typ, err := p.typeSpec()
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		if name == "is" {
			return typeOp("is", identity, typ), nil
		}
		return ofType(typ), nil
	}
	var args []fpFunc
	if t := p.peek(); t.kind != tkPunct || t.text != ")" {
		for {
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if t := p.peek(); t.kind == tkPunct && t.text == "," {
				p.next()
				continue
			}
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	return function(name, args)
}

// typeSpec reads a type name, optionally qualified (FHIR.Quantity,
// System.String).
func (p *fpParser) typeSpec() (string, error) {
	t := p.next()
	if t.kind != tkIdent {
		return "", fmt.Errorf("fhirpath: want a type name, got %q", t.text)
	}
	name := t.text
	if n := p.peek(); n.kind == tkPunct && n.text == "." && (name == "FHIR" || name == "System") {
		p.next()
		q := p.next()
		if q.kind != tkIdent {
			return "", fmt.Errorf("fhirpath: want a type name after %s.", name)
		}
		if name == "System" {
			return "System." + q.text, nil
		}
		name = q.text
	}
	return name, nil
}

func identity(_ *fpEnv, in []fpItem) ([]fpItem, error) { return in, nil }

// indexer compiles [n].
func indexer(idx fpFunc) fpFunc {
	return func(env *fpEnv, in []fpItem) ([]fpItem, error) {
		i, err := idx(env, []fpItem{env.this})
		if err != nil {
			return nil, err
		}
		n, ok := singleInt(i)
		if !ok || n < 0 || n >= int64(len(in)) {
			return nil, nil
		}
		return in[n : n+1], nil
	}
}

// matchesRegexp compiles a literal pattern once.
func matchesRegexp(arg fpFunc) (*regexp.Regexp, error) {
	lit, err := arg(&fpEnv{}, nil)
	if err != nil || len(lit) != 1 {
		return nil, errUnsupported{"matches() with a pattern that is no literal"}
	}
	s, ok := lit[0].v.(string)
	if !ok {
		return nil, errUnsupported{"matches() with a pattern that is no string"}
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, errUnsupported{"matches() pattern " + strconv.Quote(s) + ": " + err.Error()}
	}
	return re, nil
}
