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
func (e *Entries) composite(sp *spec.SearchParam, root any) {
	if len(sp.Components) != 2 || sp.Components[0].Type != spec.Token {
		return // not expressible in the composite table (e.g. 3-part coordinates)
	}
	a, b := sp.Components[0], sp.Components[1]
	for i, base := range sp.Paths {
		walk(root, base.Steps, base.Types, func(el any, _ string) {
			var as, bs Entries
			for _, p := range a.Paths[i] {
				walk(el, p.Steps, p.Types, func(v any, t string) { as.addToken(0, v, t) })
			}
			for _, p := range b.Paths[i] {
				walk(el, p.Steps, p.Types, func(v any, t string) {
					switch b.Type {
					case spec.Token:
						bs.addToken(0, v, t)
					case spec.Quantity:
						if q, ok := quantity(v, t); ok {
							bs.Quantities = append(bs.Quantities, q)
						}
					case spec.Date:
						bs.addDate(0, v, t)
					case spec.String:
						bs.addString(0, v, t)
					case spec.Reference:
						if m, ok := v.(map[string]any); ok {
							if s := str(m["reference"]); s != "" {
								bs.References = append(bs.References, refEntry(0, s))
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

// fallbackExprs holds the few search expressions outside the compiled subset
// (e.g. Patient.deceased), compiled once for the general FHIRPath engine.
// Built at init and only read afterwards.
var fallbackExprs = func() map[string]*fhirpath.Expression {
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
		return fallbackExprs[sp.Expression] != nil
	}
	return true
}

// deceasedExpr is Patient.deceased's expression, the one common resource
// parameter outside the compiled subset. gofhir spends ~0.4-0.8 ms on it when
// deceased[x] is absent (it tries every type suffix), more than validation
// itself, so it is evaluated here directly.
const deceasedExpr = "Patient.deceased.exists() and Patient.deceased != false"

// nativeFallback evaluates known fallback expressions without the engine.
func (e *Entries) nativeFallback(sp *spec.SearchParam, root any) bool {
	if sp.Expression != deceasedExpr {
		return false
	}
	obj, _ := root.(map[string]any)
	b, isBool := obj["deceasedBoolean"].(bool)
	_, isDate := obj["deceasedDateTime"].(string)
	e.add(sp, isDate || (isBool && b), "boolean")
	return true
}

// fallback evaluates a parameter with the general FHIRPath engine.
func (e *Entries) fallback(sp *spec.SearchParam, doc []byte) error {
	x := fallbackExprs[sp.Expression]
	if x == nil || !Supported(sp) {
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
