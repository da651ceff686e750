package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/fhir/spec/pathsyntax"
)

// element is one ElementDefinition of a StructureDefinition snapshot.
type element struct {
	Path             string `json:"path"`
	ContentReference string `json:"contentReference"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	IsSummary        bool   `json:"isSummary"`
	Type             []struct {
		Code string `json:"code"`
	} `json:"type"`
}

func (e element) types() []string {
	var out []string
	for _, t := range e.Type {
		out = append(out, t.Code)
	}
	return out
}

// model holds every StructureDefinition's elements by path.
type model struct {
	elements map[string]map[string]element // SD type name -> path -> element
	order    map[string][]element          // SD type name -> elements in order
}

func loadModel(dir string) (*model, error) {
	m := &model{elements: map[string]map[string]element{}, order: map[string][]element{}}
	for _, f := range []string{"Bundle-resources.json", "Bundle-types.json"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		var b bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, e := range b.Entry {
			var sd struct {
				ResourceType string `json:"resourceType"`
				Type         string `json:"type"`
				Derivation   string `json:"derivation"`
				Snapshot     struct {
					Element []element `json:"element"`
				} `json:"snapshot"`
			}
			if err := json.Unmarshal(e.Resource, &sd); err != nil || sd.ResourceType != "StructureDefinition" {
				continue
			}
			if sd.Derivation == "constraint" { // profiles such as SimpleQuantity reuse the base type's elements
				continue
			}
			els := map[string]element{}
			for _, el := range sd.Snapshot.Element {
				els[el.Path] = el
			}
			m.elements[sd.Type] = els
			m.order[sd.Type] = sd.Snapshot.Element
		}
	}
	return m, nil
}

// walkCtx is where a path walk stands: inside StructureDefinition sd, at
// element path (for backbone elements) or at the type's root.
type walkCtx struct {
	sd, path string
}

func isComplex(t string) bool { return t != "" && t[0] >= 'A' && t[0] <= 'Z' }

// step resolves one field from ctx: the element's types and, when it has a
// single complex type, the context to continue from.
func (m *model) step(ctx walkCtx, field string) (types []string, choice bool, next []walkCtx, err error) {
	els := m.elements[ctx.sd]
	if els == nil {
		return nil, false, nil, fmt.Errorf("no StructureDefinition %q", ctx.sd)
	}
	el, ok := els[ctx.path+"."+field]
	if !ok {
		el, ok = els[ctx.path+"."+field+"[x]"]
		choice = true
	}
	if !ok {
		return nil, false, nil, fmt.Errorf("no element %s.%s", ctx.path, field)
	}
	if ref := el.ContentReference; ref != "" {
		p := strings.TrimPrefix(ref, "#")
		return []string{"BackboneElement"}, false, []walkCtx{{ctx.sd, p}}, nil
	}
	types = el.types()
	for _, t := range types {
		next = append(next, m.contextOf(ctx.sd, ctx.path+"."+field, t))
	}
	return types, choice, next, nil
}

// contextOf is the context entered by an element of type t at path.
func (m *model) contextOf(sd, path, t string) walkCtx {
	switch t {
	case "BackboneElement", "Element":
		return walkCtx{sd, path}
	}
	return walkCtx{t, t}
}

// compileAlternative compiles one "|"-separated alternative of a search
// expression, rooted at root (a resource type), into a Path.
func (m *model) compileAlternative(expr string, start walkCtx, rooted bool) (spec.Path, error) {
	var p spec.Path
	segs, cast := pathsyntax.Alternative(expr)
	if rooted {
		if len(segs) == 0 || segs[0] != start.sd {
			return p, fmt.Errorf("expression %q is not rooted at %s", expr, start.sd)
		}
		segs = segs[1:]
	}
	if cast != "" {
		segs = append(segs, "as("+cast+")")
	}
	ctxs := []walkCtx{start}
	var types []string
	var last *spec.Step
	for _, seg := range segs {
		switch {
		case strings.HasPrefix(seg, "where(resolve() is ") && strings.HasSuffix(seg, ")"):
			if last == nil {
				return p, fmt.Errorf("%q: where() without a field", expr)
			}
			last.ResolveIs = strings.TrimSuffix(strings.TrimPrefix(seg, "where(resolve() is "), ")")
		case strings.HasPrefix(seg, "where(") && strings.HasSuffix(seg, ")"):
			cond := strings.TrimSuffix(strings.TrimPrefix(seg, "where("), ")")
			f, v, ok := strings.Cut(cond, "=")
			if !ok || last == nil || !strings.HasPrefix(v, "'") || !strings.HasSuffix(v, "'") || strings.ContainsAny(f, "() ") {
				return p, fmt.Errorf("%q: unsupported where(%s)", expr, cond)
			}
			last.WhereField, last.WhereValue = f, strings.Trim(v, "'")
		case (strings.HasPrefix(seg, "as(") || strings.HasPrefix(seg, "ofType(")) && strings.HasSuffix(seg, ")"):
			t := seg[strings.Index(seg, "(")+1 : len(seg)-1]
			if last == nil || !last.Choice {
				return p, fmt.Errorf("%q: cast of a non-choice element", expr)
			}
			found := false
			for i, ty := range types {
				if strings.EqualFold(ty, t) {
					t, found = ty, true
					ctxs = []walkCtx{ctxs[i]}
				}
			}
			if !found {
				return p, fmt.Errorf("%q: %s is not a type of the choice", expr, t)
			}
			last.As = t
			types = []string{t}
		default:
			field, index := seg, -1
			if i := strings.Index(seg, "["); i > 0 && strings.HasSuffix(seg, "]") {
				n, err := strconv.Atoi(seg[i+1 : len(seg)-1])
				if err != nil {
					return p, fmt.Errorf("%q: bad index", expr)
				}
				field, index = seg[:i], n
			}
			if !pathsyntax.IsIdent(field) {
				return p, fmt.Errorf("%q: unsupported segment %q", expr, seg)
			}
			if len(ctxs) != 1 {
				return p, fmt.Errorf("%q: navigation into an untyped choice", expr)
			}
			if len(types) == 1 && !isComplex(types[0]) {
				return p, fmt.Errorf("%q: navigation into primitive %s", expr, types[0])
			}
			ts, choice, next, err := m.step(ctxs[0], field)
			if err != nil {
				return p, fmt.Errorf("%q: %w", expr, err)
			}
			p.Steps = append(p.Steps, spec.Step{Field: field, Choice: choice, Index: index})
			last = &p.Steps[len(p.Steps)-1]
			types, ctxs = ts, next
		}
	}
	if len(types) == 0 {
		types = []string{start.sd} // the base itself (composite over the resource)
	}
	p.Types = types
	return p, nil
}

type searchParameterDef struct {
	ResourceType string   `json:"resourceType"`
	URL          string   `json:"url"`
	Code         string   `json:"code"`
	Base         []string `json:"base"`
	Type         string   `json:"type"`
	Expression   string   `json:"expression"`
	Target       []string `json:"target"`
	Component    []struct {
		Definition string `json:"definition"`
		Expression string `json:"expression"`
	} `json:"component"`
}

var paramTypes = map[string]spec.ParamType{
	"number": spec.Number, "date": spec.Date, "string": spec.String, "token": spec.Token,
	"reference": spec.Reference, "composite": spec.Composite, "quantity": spec.Quantity,
	"uri": spec.URI, "special": spec.Special,
}

// searchParams compiles every SearchParameter of the R4 definitions, per
// base type. Parameters of Resource/DomainResource go to every type they
// apply to. Expressions outside the compiled subset are marked Fallback.
func searchParams(dir string, m *model, resourceTypes []string) (map[string][]spec.SearchParam, []string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "Bundle-searchParams.json"))
	if err != nil {
		return nil, nil, err
	}
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, nil, err
	}
	var defs []searchParameterDef
	byURL := map[string]searchParameterDef{}
	for _, e := range b.Entry {
		var d searchParameterDef
		if err := json.Unmarshal(e.Resource, &d); err != nil {
			return nil, nil, err
		}
		if d.ResourceType != "SearchParameter" {
			continue
		}
		defs = append(defs, d)
		byURL[d.URL] = d
	}
	out := map[string][]spec.SearchParam{}
	var notes []string
	ids := map[int32]string{}
	for _, d := range defs {
		var bases []string
		for _, base := range d.Base {
			switch base {
			case "Resource", "DomainResource":
				for _, t := range resourceTypes {
					if base == "DomainResource" && (t == "Binary" || t == "Bundle" || t == "Parameters") {
						continue
					}
					bases = append(bases, t)
				}
			default:
				bases = append(bases, base)
			}
		}
		for _, base := range bases {
			sp, note := compileParam(d, base, m, byURL)
			if note != "" {
				notes = append(notes, note)
			}
			if prev, dup := ids[sp.ID]; dup {
				return nil, nil, fmt.Errorf("parameter id collision: %s.%s and %s", base, d.Code, prev)
			}
			ids[sp.ID] = base + "." + d.Code
			out[base] = append(out[base], sp)
		}
	}
	for t := range out {
		sort.Slice(out[t], func(i, j int) bool { return out[t][i].Code < out[t][j].Code })
	}
	return out, notes, nil
}

func compileParam(d searchParameterDef, base string, m *model, byURL map[string]searchParameterDef) (spec.SearchParam, string) {
	sp := spec.SearchParam{Code: d.Code, Type: paramTypes[d.Type], URL: d.URL, ID: spec.ParamID(base, d.Code), Targets: d.Target}
	switch d.Code {
	case "_id":
		sp.Column, sp.Expression = "id", base+".id"
		return sp, ""
	case "_lastUpdated":
		sp.Column, sp.Expression = "last_updated", base+".meta.lastUpdated"
		return sp, ""
	}
	// Keep the alternatives that belong to this base; Resource.x applies to all.
	var alts []string
	for _, alt := range pathsyntax.SplitTop(d.Expression, '|') {
		switch r := pathsyntax.RootOf(alt); {
		case r == base:
			alts = append(alts, alt)
		case r == "Resource" || r == "DomainResource":
			alts = append(alts, strings.Replace(alt, r+".", base+".", 1))
		case len(d.Base) == 1 && r != "" && r[0] >= 'a' && r[0] <= 'z':
			// An unrooted path (InsurancePlan.name is "name | alias").
			alts = append(alts, base+"."+strings.TrimSpace(alt))
		}
	}
	sp.Expression = strings.Join(alts, " | ")
	if sp.Type == spec.Special || len(alts) == 0 {
		sp.Fallback = true
		return sp, fmt.Sprintf("%s.%s: %s parameter %q not compiled", base, d.Code, d.Type, d.Expression)
	}
	for _, alt := range alts {
		p, err := m.compileAlternative(alt, walkCtx{base, base}, true)
		if err != nil {
			sp.Paths, sp.Fallback = nil, true
			return sp, fmt.Sprintf("%s.%s: fallback: %v", base, d.Code, err)
		}
		sp.Paths = append(sp.Paths, p)
	}
	if sp.Type == spec.Composite {
		for _, c := range d.Component {
			def, ok := byURL[c.Definition]
			if !ok {
				sp.Paths, sp.Fallback = nil, true
				return sp, fmt.Sprintf("%s.%s: composite component %s unknown", base, d.Code, c.Definition)
			}
			comp := spec.Component{Code: def.Code, Type: paramTypes[def.Type]}
			for i, p := range sp.Paths {
				start := walkCtx{base, base}
				if len(p.Steps) > 0 {
					// Re-walk to find the base element's context.
					ctx, err := m.contextAfter(sp.Paths[i], base)
					if err != nil {
						sp.Paths, sp.Fallback = nil, true
						return sp, fmt.Sprintf("%s.%s: %v", base, d.Code, err)
					}
					start = ctx
				}
				var cps []spec.Path
				for _, alt := range pathsyntax.SplitTop(c.Expression, '|') {
					cp, err := m.compileAlternative(alt, start, false)
					if err != nil {
						sp.Paths, sp.Fallback = nil, true
						return sp, fmt.Sprintf("%s.%s: component: %v", base, d.Code, err)
					}
					cps = append(cps, cp)
				}
				comp.Paths = append(comp.Paths, cps)
			}
			sp.Components = append(sp.Components, comp)
		}
	}
	return sp, ""
}

// contextAfter returns the context a compiled path ends in.
func (m *model) contextAfter(p spec.Path, base string) (walkCtx, error) {
	ctx := walkCtx{base, base}
	for _, st := range p.Steps {
		types, _, next, err := m.step(ctx, st.Field)
		if err != nil {
			return ctx, err
		}
		if st.As != "" {
			for i, t := range types {
				if t == st.As {
					next = []walkCtx{next[i]}
				}
			}
		}
		if len(next) != 1 {
			return ctx, fmt.Errorf("ambiguous composite base")
		}
		ctx = next[0]
	}
	return ctx, nil
}

// writeSearchParams renders the table as Go source.
func writeSearchParams(w *strings.Builder, params map[string][]spec.SearchParam) {
	w.WriteString("// searchParams lists every search parameter per resource type.\n")
	w.WriteString("var searchParams = map[string][]SearchParam{\n")
	types := make([]string, 0, len(params))
	for t := range params {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		fmt.Fprintf(w, "%q: {\n", t)
		for _, sp := range params[t] {
			fmt.Fprintf(w, "{Code: %q, Type: %s, URL: %q, Expression: %q, ID: %d", sp.Code, typeName(sp.Type), sp.URL, sp.Expression, sp.ID)
			if sp.Column != "" {
				fmt.Fprintf(w, ", Column: %q", sp.Column)
			}
			if sp.Fallback {
				w.WriteString(", Fallback: true")
			}
			if len(sp.Targets) > 0 {
				fmt.Fprintf(w, ", Targets: %#v", sp.Targets)
			}
			if len(sp.Paths) > 0 {
				w.WriteString(", Paths: ")
				writePaths(w, sp.Paths)
			}
			if len(sp.Components) > 0 {
				w.WriteString(", Components: []Component{")
				for _, c := range sp.Components {
					fmt.Fprintf(w, "{Code: %q, Type: %s, Paths: [][]Path{", c.Code, typeName(c.Type))
					for _, ps := range c.Paths {
						writePaths(w, ps)
						w.WriteString(",")
					}
					w.WriteString("}},")
				}
				w.WriteString("}")
			}
			w.WriteString("},\n")
		}
		w.WriteString("},\n")
	}
	w.WriteString("}\n")
}

func writePaths(w *strings.Builder, ps []spec.Path) {
	w.WriteString("[]Path{")
	for _, p := range ps {
		w.WriteString("{Steps: []Step{")
		for _, s := range p.Steps {
			fmt.Fprintf(w, "{Field: %q, Index: %d", s.Field, s.Index)
			if s.Choice {
				w.WriteString(", Choice: true")
			}
			if s.As != "" {
				fmt.Fprintf(w, ", As: %q", s.As)
			}
			if s.WhereField != "" {
				fmt.Fprintf(w, ", WhereField: %q, WhereValue: %q", s.WhereField, s.WhereValue)
			}
			if s.ResolveIs != "" {
				fmt.Fprintf(w, ", ResolveIs: %q", s.ResolveIs)
			}
			w.WriteString("},")
		}
		fmt.Fprintf(w, "}, Types: %#v},", p.Types)
	}
	w.WriteString("}")
}

func typeName(t spec.ParamType) string {
	s := t.String()
	switch s {
	case "uri":
		return "URI"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
