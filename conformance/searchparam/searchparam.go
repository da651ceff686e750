// Package searchparam compiles the SearchParameter resources of
// implementation guides into the registry's form (spec.SearchParam: paths
// that fhir/index walks at write time), at load rather than at generation:
// the element model comes from fhir/validate's generated tables, so no
// StructureDefinition is read at run time.
//
// The subset compiled is fhir/spec/gen's (field steps, choice casts with as()
// or ofType() or a typed member name such as valueDateTime, [n],
// where(resolve() is T), where(field='value')), plus navigation into an
// untyped choice (extension.value.code: one path per type of value[x] that
// has the field). What falls outside is reported, never silently dropped.
package searchparam

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/fhir/spec/pathsyntax"
	"github.com/emberfhir/ember/fhir/validate"
)

// Definition is the part of a SearchParameter resource compiled.
type Definition struct {
	URL        string   `json:"url"`
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Type       string   `json:"type"`
	Expression string   `json:"expression"`
	Target     []string `json:"target"`
	Component  []struct {
		Definition string `json:"definition"`
	} `json:"component"`
}

// Parse reads a SearchParameter resource.
func Parse(raw []byte) (Definition, error) {
	var d Definition
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return d, fmt.Errorf("searchparam: %w", err)
	}
	if head.ResourceType != "SearchParameter" {
		return d, fmt.Errorf("searchparam: a %s is not a SearchParameter", head.ResourceType)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("searchparam: %w", err)
	}
	return d, nil
}

var paramTypes = map[string]spec.ParamType{
	"number": spec.Number, "date": spec.Date, "string": spec.String, "token": spec.Token,
	"reference": spec.Reference, "composite": spec.Composite, "quantity": spec.Quantity,
	"uri": spec.URI, "special": spec.Special,
}

// Compiled is one parameter compiled for one base type.
type Compiled struct {
	Base  string
	Param spec.SearchParam
}

// Compile compiles d for each of its base resource types. A base whose
// expression is outside the compiled subset gives an error naming the
// base and why; the others compile.
func Compile(d Definition) ([]Compiled, []error) {
	var out []Compiled
	var errs []error
	typ, ok := paramTypes[d.Type]
	if !ok {
		return nil, []error{fmt.Errorf("%s: unknown search parameter type %q", d.URL, d.Type)}
	}
	if d.Code == "" || d.Expression == "" {
		return nil, []error{fmt.Errorf("%s: no code or no expression", d.URL)}
	}
	for _, base := range d.Base {
		t, ok := validate.ResourceType(base)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: base %q is not an R4 resource type", d.URL, base))
			continue
		}
		sp := spec.SearchParam{Code: d.Code, Type: typ, URL: d.URL, ID: spec.ParamID(base, d.Code), Targets: d.Target}
		switch typ {
		case spec.Special, spec.Composite:
			errs = append(errs, fmt.Errorf("%s (%s.%s): %s parameters are not compiled", d.URL, base, d.Code, d.Type))
			continue
		}
		var alts []string
		for _, alt := range pathsyntax.SplitTop(d.Expression, '|') {
			if r := pathsyntax.RootOf(alt); r == base || r == "Resource" || r == "DomainResource" {
				alts = append(alts, alt)
			}
		}
		if len(alts) == 0 {
			errs = append(errs, fmt.Errorf("%s: no part of %q applies to %s", d.URL, d.Expression, base))
			continue
		}
		sp.Expression = strings.Join(alts, " | ")
		var err error
		for _, alt := range alts {
			var ps []spec.Path
			if ps, err = compileAlternative(alt, base, t, typ == spec.Token); err != nil {
				break
			}
			sp.Paths = append(sp.Paths, ps...)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s.%s): %w", d.URL, base, d.Code, err))
			continue
		}
		out = append(out, Compiled{Base: base, Param: sp})
	}
	return out, errs
}

// partial is one path being compiled: its steps and where it stands.
type partial struct {
	steps  []spec.Step
	t      validate.Type     // the current type; zero after an untyped choice
	choin  *validate.Element // the untyped choice element the walk stands on
	parent validate.Type     // the type the last step was taken from
}

func (p partial) with(st spec.Step, t validate.Type, choice *validate.Element) partial {
	steps := append(append([]spec.Step(nil), p.steps...), st)
	return partial{steps: steps, t: t, choin: choice, parent: p.t}
}

// compileAlternative compiles one "|"-separated alternative, rooted at the
// base type, into one path, or several when it navigates into an untyped
// choice.
func compileAlternative(expr, base string, root validate.Type, tokenParam bool) ([]spec.Path, error) {
	segs, cast := pathsyntax.Alternative(expr)
	if len(segs) == 0 || (segs[0] != base && segs[0] != "Resource" && segs[0] != "DomainResource") {
		return nil, fmt.Errorf("expression %q is not rooted at %s", expr, base)
	}
	segs = segs[1:]
	if cast != "" {
		segs = append(segs, "as("+cast+")")
	}
	ps := []partial{{t: root}}
	for _, seg := range segs {
		var next []partial
		switch {
		case strings.HasPrefix(seg, "where(") && strings.HasSuffix(seg, ")"):
			cond := strings.TrimSpace(seg[len("where(") : len(seg)-1])
			for _, p := range ps {
				if len(p.steps) == 0 {
					return nil, fmt.Errorf("%q: where() without a field", expr)
				}
				last := &p.steps[len(p.steps)-1]
				if t, ok := strings.CutPrefix(cond, "resolve() is "); ok {
					last.ResolveIs = strings.TrimSpace(t)
					continue
				}
				f, v, ok := strings.Cut(cond, "=")
				f, v = strings.TrimSpace(f), strings.TrimSpace(v)
				if !ok || !pathsyntax.IsIdent(f) || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' || strings.ContainsAny(v[1:len(v)-1], "'\\") {
					return nil, fmt.Errorf("%q: unsupported where(%s)", expr, cond)
				}
				if last.WhereField != "" || last.ResolveIs != "" {
					return nil, fmt.Errorf("%q: two conditions on one step", expr)
				}
				last.WhereField, last.WhereValue = f, v[1:len(v)-1]
			}
			next = ps
		case (strings.HasPrefix(seg, "as(") || strings.HasPrefix(seg, "ofType(")) && strings.HasSuffix(seg, ")"):
			want := strings.TrimSpace(seg[strings.Index(seg, "(")+1 : len(seg)-1])
			for _, p := range ps {
				if p.choin == nil {
					return nil, fmt.Errorf("%q: cast of a non-choice element", expr)
				}
				c, ok := choiceOf(p.choin, want)
				if !ok {
					return nil, fmt.Errorf("%q: %s is not a type of %s[x]", expr, want, p.choin.Name)
				}
				last := &p.steps[len(p.steps)-1]
				last.As = asName(c)
				next = append(next, partial{steps: p.steps, t: c.Type})
			}
		default:
			field, index := seg, -1
			if i := strings.Index(seg, "["); i > 0 && strings.HasSuffix(seg, "]") {
				n, err := strconv.Atoi(seg[i+1 : len(seg)-1])
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%q: bad index", expr)
				}
				field, index = seg[:i], n
			}
			if !pathsyntax.IsIdent(field) {
				return nil, fmt.Errorf("%q: unsupported segment %q", expr, seg)
			}
			for _, p := range ps {
				if p.choin == nil {
					q, err := step(p, field, index)
					if err != nil {
						return nil, fmt.Errorf("%q: %w", expr, err)
					}
					next = append(next, q)
					continue
				}
				// Into an untyped choice: one path per type that has field.
				for _, c := range p.choin.Choices {
					if c.Type.Primitive() {
						continue
					}
					steps := append([]spec.Step(nil), p.steps...)
					steps[len(steps)-1].As = asName(c)
					if q, err := step(partial{steps: steps, t: c.Type}, field, index); err == nil {
						next = append(next, q)
					}
				}
			}
			if len(next) == 0 {
				return nil, fmt.Errorf("%q: no type of the choice has %q", expr, field)
			}
		}
		ps = next
	}
	out := make([]spec.Path, 0, len(ps))
	for _, p := range ps {
		// A token path ending in Coding.code (race's extension.value.code)
		// indexes the Coding: the same codes, with their system, so that
		// system|code searches work (US Core: "the client MAY provide both
		// the system and code values, the server SHALL support both").
		if n := len(p.steps); tokenParam && n >= 2 && p.steps[n-1].Field == "code" && p.steps[n-1].WhereField == "" &&
			p.steps[n-1].Index < 0 && p.parent.Name() == "Coding" {
			out = append(out, spec.Path{Steps: p.steps[:n-1], Types: []string{"Coding"}})
			continue
		}
		path := spec.Path{Steps: p.steps}
		switch {
		case p.choin != nil:
			for _, c := range p.choin.Choices {
				path.Types = append(path.Types, asName(c))
			}
		case p.t.IsZero():
			path.Types = []string{base}
		default:
			path.Types = []string{typeName(p.t)}
		}
		out = append(out, path)
	}
	return out, nil
}

// step navigates from p into field (field may be a typed choice member:
// valueDateTime).
func step(p partial, field string, index int) (partial, error) {
	if p.t.Primitive() {
		return p, fmt.Errorf("navigation into primitive %s", p.t.Name())
	}
	for _, el := range p.t.Elements() {
		if len(el.Choices) == 0 {
			if el.Name == field {
				return p.with(spec.Step{Field: field, Index: index}, el.Type, nil), nil
			}
			continue
		}
		if el.Name == field {
			e := el
			return p.with(spec.Step{Field: field, Index: index, Choice: true}, validate.Type{}, &e), nil
		}
		if suffix, ok := strings.CutPrefix(field, el.Name); ok {
			for _, c := range el.Choices {
				if c.Suffix == suffix {
					return p.with(spec.Step{Field: el.Name, Index: index, Choice: true, As: asName(c)}, c.Type, nil), nil
				}
			}
		}
	}
	return p, fmt.Errorf("%s has no element %q", typeName(p.t), field)
}

// choiceOf finds the type named t (any case of its initial) among a choice's.
func choiceOf(el *validate.Element, t string) (validate.Choice, bool) {
	for _, c := range el.Choices {
		if strings.EqualFold(c.Suffix, t) || strings.EqualFold(c.Type.Name(), t) {
			return c, true
		}
	}
	return validate.Choice{}, false
}

// asName is a choice type's name as spec.Step.As holds it: the type's name,
// whose upper-cased initial gives the JSON member's suffix.
func asName(c validate.Choice) string {
	if c.Type.Primitive() {
		return c.Type.Name()
	}
	return c.Suffix
}

// typeName is a type's name as spec.Path.Types holds it; backbone elements
// (named by their path in fhir/validate) are BackboneElement.
func typeName(t validate.Type) string {
	n := t.Name()
	if strings.Contains(n, ".") {
		return "BackboneElement"
	}
	return n
}
