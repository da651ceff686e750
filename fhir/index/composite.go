package index

import (
	"encoding/json"
	"fmt"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/types"

	"github.com/emberfhir/ember/fhir/spec"
)

// composite indexes a two-part composite parameter (token + any): for each
// base element, every combination of its first and second component values.
func (x *extractor) composite(p *paramPlan) {
	sp := p.sp
	if len(sp.Components) != 2 || sp.Components[0].Type != spec.Token {
		return // not expressible in the composite table (e.g. 3-part coordinates)
	}
	t, bType := &x.t, sp.Components[1].Type
	for i := range p.paths {
		base := &p.paths[i]
		x.hits = t.walk(x.hits[:0], 0, nil, base.steps, base.typ)
		for _, el := range x.hits {
			as, bs := &x.as, &x.bs
			as.reset()
			bs.reset()
			for j := range p.a[i] {
				c := &p.a[i][j]
				x.sub = t.walk(x.sub[:0], el.n, nil, c.steps, c.typ)
				for _, v := range x.sub {
					as.addToken(t, 0, v.n, v.typ)
				}
			}
			for j := range p.b[i] {
				c := &p.b[i][j]
				x.sub = t.walk(x.sub[:0], el.n, nil, c.steps, c.typ)
				for _, v := range x.sub {
					switch bType {
					case spec.Token:
						bs.addToken(t, 0, v.n, v.typ)
					case spec.Quantity:
						if q, ok := t.quantity(v.n, v.typ); ok {
							bs.Quantities = append(bs.Quantities, q)
						}
					case spec.Date:
						bs.addDate(t, 0, v.n, v.typ)
					case spec.String:
						bs.addString(t, 0, v.n, v.typ)
					case spec.Reference:
						if t.nodes[v.n].kind == kObject {
							if s := t.member(v.n, "reference"); s != "" {
								bs.References = append(bs.References, refEntry(0, s))
							}
						}
					}
				}
			}
			x.e.combine(sp.ID, as, bs)
		}
	}
}

// combine adds a composite row for each pair of a token of as and a value of
// bs.
func (e *Entries) combine(param int32, as, bs *Entries) {
	for _, at := range as.Tokens {
		if at.Code == "" {
			continue
		}
		row := Composite{Param: param, ASystem: at.System, ACode: at.Code}
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
}

// fallbackExprs compiles the few search expressions outside the compiled
// subset (e.g. Patient.deceased) for the general FHIRPath engine; the plans
// of each registry state hold the result.
func fallbackExprs() map[string]*fhirpath.Expression {
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
}

// Supported reports whether a parameter's values are indexed (and so whether
// searching by it gives right answers).
func Supported(sp *spec.SearchParam) bool {
	switch {
	case sp.Column != "":
		return true
	case sp.Type == spec.Special:
		return false
	case sp.Type == spec.Composite:
		return !sp.Fallback && len(sp.Components) == 2 && sp.Components[0].Type == spec.Token
	case sp.Fallback:
		return currentPlans().fallback[sp.Expression] != nil
	}
	return true
}

// deceasedExpr is Patient.deceased's expression, the one common resource
// parameter outside the compiled subset. gofhir spends ~0.4-0.8 ms on it when
// deceased[x] is absent (it tries every type suffix), more than validation
// itself, so it is evaluated here directly.
const deceasedExpr = "Patient.deceased.exists() and Patient.deceased != false"

// deceased evaluates deceasedExpr natively.
func (x *extractor) deceased(p *paramPlan) {
	t := &x.t
	isTrue := false
	if root := t.object(0); root >= 0 {
		b, d := t.get(root, "deceasedBoolean"), t.get(root, "deceasedDateTime")
		isTrue = b >= 0 && t.nodes[b].kind == kTrue || d >= 0 && t.nodes[d].kind == kString
	}
	code := "false"
	if isTrue {
		code = "true"
	}
	x.e.Tokens = append(x.e.Tokens, Token{Param: p.sp.ID, Code: code})
}

// fallback evaluates a parameter with the general FHIRPath engine.
func (x *extractor) fallback(p *paramPlan, doc []byte) error {
	sp := p.sp
	fx := currentPlans().fallback[sp.Expression]
	if fx == nil || !Supported(sp) {
		return nil
	}
	out, err := fx.Evaluate(doc)
	if err != nil {
		return fmt.Errorf("index: %s: %w", sp.Expression, err)
	}
	for _, v := range out {
		switch val := v.(type) {
		case types.Boolean:
			x.addValue(p, val.Bool(), "boolean")
		case types.String:
			x.addValue(p, val.Value(), "string")
		case *types.ObjectValue:
			var decoded any
			if err := json.Unmarshal(val.Data(), &decoded); err == nil {
				x.addValue(p, decoded, val.Type())
			}
		default:
			x.addValue(p, v.String(), "string")
		}
	}
	return nil
}

// addValue indexes a value the engine returned, through a tree of its own.
func (x *extractor) addValue(p *paramPlan, v any, typ string) {
	var t tree
	t.fromAny("", v)
	x.e.add(&t, p, 0, typ)
}
