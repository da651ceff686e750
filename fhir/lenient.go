package fhir

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/emberfhir/ember/fhir/internal/jsonread"
	"github.com/emberfhir/ember/fhir/validate"
)

// ParseLenient is Parse for migrations from lenient servers: members R4
// does not define where they stand (a Period.stop) are dropped, each
// reported as a warning issue whose expression is the dropped element; the
// rest must be valid as for Parse. It is opt-in (ember import --lenient,
// Prefer: handling=lenient on a transaction or batch), never the default:
// dropping data silently is what a strict server must not do.
//
// A valid body costs what Parse costs: the drop pass runs only when Parse
// refused it.
func (p *Parser) ParseLenient(body []byte, wantType string) (*Resource, []Issue, error) {
	res, err := p.Parse(body, wantType)
	if err == nil {
		return res, nil, nil
	}
	trimmed, dropped := DropUnknown(body)
	if len(dropped) == 0 {
		return nil, nil, err
	}
	res, err = p.Parse(trimmed, wantType)
	if err != nil {
		return nil, nil, err
	}
	return res, dropped, nil
}

// DropUnknown returns body without the object members R4 does not define
// at their position, and one warning per member dropped. Objects are
// rewritten without insignificant whitespace only where something was
// dropped inside them; every value kept keeps its bytes. body must be a
// well-formed JSON object (fhir's strict scan passed); otherwise it is
// returned as is.
func DropUnknown(body []byte) ([]byte, []Issue) {
	if err := CheckJSON(body); err != nil {
		return body, nil
	}
	i := jsonread.SkipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return body, nil
	}
	rt, _ := topLevelString(body, "resourceType")
	t, ok := validate.ResourceType(rt)
	if !ok {
		return body, nil
	}
	d := &dropper{data: body}
	out, _ := d.object(i, t, rt)
	if len(d.issues) == 0 {
		return body, nil
	}
	return out, d.issues
}

type dropper struct {
	data   []byte
	issues []Issue
}

// object returns the object at i (of type t, at FHIRPath path) with its
// unknown members dropped, and the offset past it.
func (d *dropper) object(i int, t validate.Type, path string) ([]byte, int) {
	start := i
	els := elementsOf(t)
	var out []byte
	changed := false
	kept := 0
	pos := i + 1
	for {
		keyStart := jsonread.SkipSpace(d.data, pos)
		if keyStart < len(d.data) && d.data[keyStart] == ',' {
			keyStart = jsonread.SkipSpace(d.data, keyStart+1)
		}
		rawKey, vi, ok := jsonread.NextMember(d.data, pos)
		if !ok {
			pos = vi
			break
		}
		key := string(rawKey)
		if bytes.IndexByte(rawKey, '\\') >= 0 {
			key = string(jsonread.Unescape(nil, rawKey))
		}
		end, err := jsonread.SkipValue(d.data, vi, 0)
		if err != nil {
			return d.data[start:], len(d.data)
		}
		value := d.data[vi:end]
		keep := true
		if !(t.IsResource() && key == "resourceType") {
			name := key
			if len(name) > 1 && name[0] == '_' {
				name = name[1:]
			}
			ct, known := els[name]
			switch {
			case !known:
				keep = false
				d.issues = append(d.issues, Issue{Severity: "warning", Code: "structure",
					Diagnostics: "unknown element " + strconv.Quote(key) + " dropped (lenient handling)", Expression: []string{path + "." + key}})
			case key[0] != '_' && !ct.Primitive():
				if nv, ch := d.value(vi, ct, path+"."+key); ch {
					value, changed = nv, true
				}
			}
		}
		if !keep {
			changed = true
		} else {
			if kept == 0 {
				out = append(out, '{')
			} else {
				out = append(out, ',')
			}
			kept++
			out = append(out, d.data[keyStart:vi]...)
			out = append(out, value...)
		}
		pos = end
	}
	if !changed {
		return d.data[start:pos], pos
	}
	if kept == 0 {
		out = append(out, '{')
	}
	return append(out, '}'), pos
}

// value rewrites the value at i (an object or an array of them) of type t;
// changed is false when nothing inside was dropped.
func (d *dropper) value(i int, t validate.Type, path string) ([]byte, bool) {
	switch d.data[i] {
	case '{':
		if out, end := d.nested(i, t, path); !bytes.Equal(out, d.data[i:end]) {
			return out, true
		}
	case '[':
		out := []byte{'['}
		changed := false
		n := 0
		pos := i + 1
		for {
			ei, ok := jsonread.NextElement(d.data, pos)
			if !ok {
				break
			}
			end, err := jsonread.SkipValue(d.data, ei, 0)
			if err != nil {
				return nil, false
			}
			v := d.data[ei:end]
			if d.data[ei] == '{' {
				nv, _ := d.nested(ei, t, path+"["+strconv.Itoa(n)+"]")
				if !bytes.Equal(nv, v) {
					v, changed = nv, true
				}
			}
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, v...)
			n++
			pos = end
		}
		if changed {
			return append(out, ']'), true
		}
	}
	return nil, false
}

// nested walks an object of type t, or, for a nested resource ("Resource"
// as in contained and Bundle.entry.resource), of its own resourceType.
func (d *dropper) nested(i int, t validate.Type, path string) ([]byte, int) {
	if t.Name() == "Resource" {
		end, _ := jsonread.SkipValue(d.data, i, 0)
		rt, _ := topLevelString(d.data[i:end], "resourceType")
		rtype, ok := validate.ResourceType(rt)
		if !ok {
			return d.data[i:end], end
		}
		t = rtype
	}
	return d.object(i, t, path)
}

// elementsOf maps a type's JSON member names (choice members by their full
// name, valueQuantity) to their types. Cached: the tables are fixed.
func elementsOf(t validate.Type) map[string]validate.Type {
	if m, ok := elementCache.Load(t); ok {
		return m.(map[string]validate.Type)
	}
	m := map[string]validate.Type{}
	for _, e := range t.Elements() {
		if len(e.Choices) == 0 {
			m[e.Name] = e.Type
			continue
		}
		for _, c := range e.Choices {
			m[e.Name+c.Suffix] = c.Type
		}
	}
	elementCache.Store(t, m)
	return m
}

var elementCache sync.Map // validate.Type -> map[string]validate.Type
