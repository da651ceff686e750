package patch

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A small FHIRPath subset: the element paths FHIRPath Patch operations
// address. Supported: a leading resource type or $this; child elements
// (choice elements by prefix, backtick-quoted names); [n]; first(), last(),
// ofType(T) and where(condition), where a condition combines with and/or,
// parentheses and not() comparisons (= and !=) of relative paths and
// literals (strings, numbers, booleans, @dates), and exists()/empty().
// Anything else is reported as unsupported rather than guessed at: a patch
// aimed at the wrong element must not be applied.

// errUnsupported marks a path outside the subset.
var errUnsupported = errors.New("unsupported FHIRPath")

// path is a parsed path expression.
type path struct {
	steps []step
}

type stepKind int

const (
	stepChild  stepKind = iota // .name
	stepIndex                  // [n]
	stepWhere                  // .where(cond)
	stepFirst                  // .first()
	stepLast                   // .last()
	stepOfType                 // .ofType(T)
)

type step struct {
	kind  stepKind
	name  string // stepChild: the element; stepOfType: the type
	index int
	cond  cond
}

// cond is a boolean expression evaluated with an item as $this.
type cond interface{}

type (
	orCond  struct{ a, b cond }
	andCond struct{ a, b cond }
	notCond struct{ c cond }
	// cmpCond compares two operands; neq is !=.
	cmpCond struct {
		a, b operand
		neq  bool
	}
	// testCond is a path used as a boolean: exists(), empty(), or a single
	// boolean value.
	testCond struct {
		p  path
		fn string // "exists", "empty" or "" (the value itself)
	}
)

// operand is a relative path or a literal (lit != nil).
type operand struct {
	p   path
	lit any // string, json.Number or bool
}

// token is one lexical token.
type token struct {
	kind string // "id", "str", "num", "date", "$this", or the punctuation itself
	text string
	pos  int
}

// lex splits s into tokens.
func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '!' && i+1 < len(s) && s[i+1] == '=':
			out = append(out, token{"!=", "!=", i})
			i += 2
		case strings.IndexByte(".[]()=,", c) >= 0:
			out = append(out, token{string(c), string(c), i})
			i++
		case c == '\'':
			text, n, err := lexString(s[i:])
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			out = append(out, token{"str", text, i})
			i += n
		case c == '`':
			end := strings.IndexByte(s[i+1:], '`')
			if end < 0 {
				return nil, fmt.Errorf("at %d: unterminated `name`", i)
			}
			out = append(out, token{"id", s[i+1 : i+1+end], i})
			i += end + 2
		case c == '@':
			n := scan(s[i+1:], func(c byte) bool { return isIdent(c) || strings.IndexByte("-:.+", c) >= 0 })
			out = append(out, token{"date", s[i+1 : i+1+n], i})
			i += n + 1
		case c >= '0' && c <= '9' || c == '-':
			n := 1 + scan(s[i+1:], func(c byte) bool { return c >= '0' && c <= '9' || c == '.' })
			out = append(out, token{"num", s[i : i+n], i})
			i += n
		case c == '$' || isIdent(c):
			n := 1 + scan(s[i+1:], isIdent)
			kind := "id"
			if c == '$' {
				kind = s[i : i+n]
			}
			out = append(out, token{kind, s[i : i+n], i})
			i += n
		default:
			return nil, fmt.Errorf("at %d: unexpected %q", i, c)
		}
	}
	return out, nil
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func scan(s string, ok func(byte) bool) int {
	n := 0
	for n < len(s) && ok(s[n]) {
		n++
	}
	return n
}

// lexString reads a 'quoted' string with FHIRPath's escapes and returns it
// with the number of bytes consumed.
func lexString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\'':
			return b.String(), i + 1, nil
		case '\\':
			i++
			if i == len(s) {
				return "", 0, errors.New("unterminated string")
			}
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'f':
				b.WriteByte('\f')
			case 'u':
				if i+4 >= len(s) {
					return "", 0, errors.New(`bad \u escape`)
				}
				r, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
				if err != nil {
					return "", 0, errors.New(`bad \u escape`)
				}
				b.WriteRune(rune(r))
				i += 4
			default:
				b.WriteByte(e) // \' \" \` \\ \/
			}
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, errors.New("unterminated string")
}

// parser is a recursive-descent parser over tokens.
type parser struct {
	toks []token
	pos  int
	src  string
}

// parsePath parses a FHIRPath Patch path. resourceType is the patched
// resource's type: a path starting with it starts at the resource; a path
// starting with an element name is relative to the resource.
func parsePath(src, resourceType string) (path, error) {
	toks, err := lex(src)
	if err != nil {
		return path{}, fmt.Errorf("%w %q: %v", errUnsupported, src, err)
	}
	p := &parser{toks: toks, src: src}
	out, err := p.path(resourceType)
	if err != nil {
		return path{}, err
	}
	if p.peek().kind != "" {
		return path{}, p.fail("unexpected " + strconv.Quote(p.peek().text))
	}
	return out, nil
}

func resourceTypeName(s string) bool { return !resourceType(s).IsZero() }

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

// next2 is the kind of the token after the next one.
func (p *parser) next2() string {
	if p.pos+1 < len(p.toks) {
		return p.toks[p.pos+1].kind
	}
	return ""
}

func (p *parser) accept(kind string) bool {
	if p.peek().kind == kind {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expect(kind string) error {
	if !p.accept(kind) {
		return p.fail("expected " + strconv.Quote(kind))
	}
	return nil
}

func (p *parser) fail(msg string) error {
	at := len(p.src)
	if t := p.peek(); t.kind != "" {
		at = t.pos
	}
	return fmt.Errorf("%w %q at offset %d: %s", errUnsupported, p.src, at, msg)
}

// path parses invocations separated by dots, with [n] indexers. $this, or
// root (the resource type; "" inside a condition) as the first name, is the
// context item itself.
func (p *parser) path(root string) (path, error) {
	var out path
	t := p.peek()
	switch {
	case t.kind == "$this" || root != "" && t.kind == "id" && t.text == root && p.next2() != "(":
		p.pos++
	case root != "" && t.kind == "id" && t.text != "" && t.text[0] >= 'A' && t.text[0] <= 'Z' && resourceTypeName(t.text):
		return out, fmt.Errorf("the path %q starts with %s, but the resource is a %s", p.src, t.text, root)
	default:
		if err := p.invocation(&out); err != nil {
			return out, err
		}
	}
	for {
		if err := p.indexers(&out); err != nil {
			return out, err
		}
		// A dot before exists(), empty() or not() ends the path: those are
		// boolean tests, read by the condition parser.
		if p.peek().kind != "." || isTestFn(p.toks, p.pos+1) {
			return out, nil
		}
		p.pos++
		if err := p.invocation(&out); err != nil {
			return out, err
		}
	}
}

// isTestFn reports whether toks[i:] starts with exists(), empty() or not().
func isTestFn(toks []token, i int) bool {
	if i+2 >= len(toks) || toks[i].kind != "id" || toks[i+1].kind != "(" || toks[i+2].kind != ")" {
		return false
	}
	switch toks[i].text {
	case "exists", "empty", "not":
		return true
	}
	return false
}

func (p *parser) indexers(out *path) error {
	for p.accept("[") {
		t := p.peek()
		n, err := strconv.Atoi(t.text)
		if t.kind != "num" || err != nil || n < 0 {
			return p.fail("expected a non-negative integer index")
		}
		p.pos++
		if err := p.expect("]"); err != nil {
			return err
		}
		out.steps = append(out.steps, step{kind: stepIndex, index: n})
	}
	return nil
}

// invocation parses a name or a function call.
func (p *parser) invocation(out *path) error {
	t := p.peek()
	if t.kind != "id" {
		return p.fail("expected an element name")
	}
	p.pos++
	if !p.accept("(") {
		out.steps = append(out.steps, step{kind: stepChild, name: t.text})
		return nil
	}
	switch t.text {
	case "first", "last":
		if err := p.expect(")"); err != nil {
			return err
		}
		k := stepFirst
		if t.text == "last" {
			k = stepLast
		}
		out.steps = append(out.steps, step{kind: k})
	case "ofType":
		typ := p.peek()
		if typ.kind != "id" {
			return p.fail("ofType needs a type name")
		}
		p.pos++
		if err := p.expect(")"); err != nil {
			return err
		}
		out.steps = append(out.steps, step{kind: stepOfType, name: typ.text})
	case "where":
		c, err := p.or()
		if err != nil {
			return err
		}
		if err := p.expect(")"); err != nil {
			return err
		}
		out.steps = append(out.steps, step{kind: stepWhere, cond: c})
	default:
		p.pos -= 2
		return p.fail("the function " + t.text + "() is not supported")
	}
	return nil
}

func (p *parser) or() (cond, error) {
	a, err := p.and()
	for err == nil && p.peek().kind == "id" && p.peek().text == "or" {
		p.pos++
		var b cond
		if b, err = p.and(); err == nil {
			a = orCond{a, b}
		}
	}
	return a, err
}

func (p *parser) and() (cond, error) {
	a, err := p.comparison()
	for err == nil && p.peek().kind == "id" && p.peek().text == "and" {
		p.pos++
		var b cond
		if b, err = p.comparison(); err == nil {
			a = andCond{a, b}
		}
	}
	return a, err
}

// comparison parses "(cond)", "a = b", "a != b" or a boolean path, each
// optionally followed by .not().
func (p *parser) comparison() (cond, error) {
	var c cond
	if p.accept("(") {
		inner, err := p.or()
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		c = inner
	} else {
		a, err := p.operand()
		if err != nil {
			return nil, err
		}
		switch k := p.peek().kind; {
		case k == "=" || k == "!=":
			p.pos++
			b, err := p.operand()
			if err != nil {
				return nil, err
			}
			c = cmpCond{a: a, b: b, neq: k == "!="}
		case a.lit != nil:
			return nil, p.fail("a literal alone is not a condition")
		default:
			c = testCond{p: a.p, fn: p.testFn()}
		}
	}
	for p.peek().kind == "." && isTestFn(p.toks, p.pos+1) && p.toks[p.pos+1].text == "not" {
		p.pos += 4 // . not ( )
		c = notCond{c}
	}
	return c, nil
}

// testFn consumes a trailing .exists() or .empty().
func (p *parser) testFn() string {
	if p.peek().kind == "." && isTestFn(p.toks, p.pos+1) && p.toks[p.pos+1].text != "not" {
		fn := p.toks[p.pos+1].text
		p.pos += 4
		return fn
	}
	return ""
}

func (p *parser) operand() (operand, error) {
	t := p.peek()
	switch t.kind {
	case "str":
		p.pos++
		return operand{lit: t.text}, nil
	case "date":
		p.pos++
		return operand{lit: strings.TrimPrefix(t.text, "T")}, nil
	case "num":
		p.pos++
		if _, err := strconv.ParseFloat(t.text, 64); err != nil {
			return operand{}, p.fail("bad number " + strconv.Quote(t.text))
		}
		return operand{lit: json.Number(t.text)}, nil
	case "id":
		if t.text == "true" || t.text == "false" {
			p.pos++
			return operand{lit: t.text == "true"}, nil
		}
	}
	if t.kind != "id" && t.kind != "$this" {
		return operand{}, p.fail("expected a path or a literal")
	}
	rel, err := p.path("")
	return operand{p: rel}, err
}
