package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/emberfhir/ember/fhir"
)

// The terminology operations (https://hl7.org/fhir/R4/terminology-service.html):
// ValueSet/$expand, ValueSet/$validate-code, CodeSystem/$lookup and
// CodeSystem/$subsumes, at type and instance level, GET and POST. They
// read the CodeSystems and ValueSets stored in the database (implementation
// guides install theirs as ordinary resources; the caller's grant applies)
// and the R4 core ones the binary embeds, stored ones first
// (op_terminology_model.go). What needs a terminology Ember does not hold
// (SNOMED CT, LOINC, a CodeSystem with content "not-present") is a 422
// naming the code system, never a 5xx.

// terminologyOperations are registered with the core operations.
func (en *Engine) terminologyOperations() []Operation {
	get := []string{"GET", "POST"}
	return []Operation{
		{Name: "expand", Levels: TypeLevel | InstanceLevel, Types: []string{"ValueSet"}, Methods: get,
			Invoke: en.expandOp},
		// ValueSet/$validate-code and CodeSystem/$validate-code share the
		// name: validateCodeOp dispatches on the type.
		{Name: "validate-code", Levels: TypeLevel | InstanceLevel, Types: []string{"ValueSet", "CodeSystem"}, Methods: get,
			Invoke: en.validateCodeOp},
		{Name: "lookup", Levels: TypeLevel | InstanceLevel, Types: []string{"CodeSystem"}, Methods: get,
			Invoke: en.lookupOp},
		{Name: "subsumes", Levels: TypeLevel | InstanceLevel, Types: []string{"CodeSystem"}, Methods: get,
			Invoke: en.subsumesOp},
	}
}

// termArgs are an invocation's parameters, from the query and a Parameters
// body together: primitives as text, complex values (Coding,
// CodeableConcept, a resource) as JSON.
type termArgs struct {
	prim    map[string]string
	complex map[string]json.RawMessage
}

func readTermArgs(req OpRequest) (termArgs, error) {
	a := termArgs{prim: map[string]string{}, complex: map[string]json.RawMessage{}}
	for k, vs := range req.Query {
		if len(vs) > 0 && k != "_format" && k != "_pretty" {
			a.prim[k] = vs[0]
		}
	}
	if len(bytes.TrimSpace(req.Body)) == 0 {
		return a, nil
	}
	var p struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(req.Body, &p); err != nil {
		return a, fhir.NewError(fhir.BadRequest, "structure", "the body is not a valid Parameters resource: "+err.Error())
	}
	if p.ResourceType != "Parameters" {
		return a, fhir.Invalid("expected a Parameters resource, got resourceType "+quote(p.ResourceType), "resourceType")
	}
	for i, prm := range p.Parameter {
		var name string
		if err := json.Unmarshal(prm["name"], &name); err != nil || name == "" {
			where := "Parameters.parameter[" + strconv.Itoa(i) + "]"
			return a, fhir.Invalid(where+" has no name", where+".name")
		}
		for k, v := range prm {
			switch {
			case k == "resource":
				a.complex[name] = v
			case strings.HasPrefix(k, "value") && len(v) > 0 && v[0] == '{':
				a.complex[name] = v
			case strings.HasPrefix(k, "value"):
				var s string
				if json.Unmarshal(v, &s) != nil {
					s = string(v) // a boolean or a number, as written
				}
				a.prim[name] = s
			}
		}
	}
	return a, nil
}

// coding is a Coding parameter, or one assembled from system/code/version
// primitives.
type coding struct {
	System  string `json:"system"`
	Version string `json:"version"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

// coding returns the Coding parameter name, or the one the primitives
// system/code/version/display name; ok is false when neither is there.
func (a termArgs) coding(name, system, code, version string) (coding, bool, error) {
	if raw, ok := a.complex[name]; ok {
		var c coding
		if err := json.Unmarshal(raw, &c); err != nil {
			return c, false, fhir.Invalid("parameter " + name + " is not a Coding: " + err.Error())
		}
		return c, true, nil
	}
	c := coding{System: a.prim[system], Code: a.prim[code], Version: a.prim[version], Display: a.prim["display"]}
	return c, c.Code != "", nil
}

// candidates are the codes a $validate-code checks: a codeableConcept's
// codings, a coding, or code with its system and version parameters (named
// system/systemVersion for ValueSet, url/version for CodeSystem).
func (a termArgs) candidates(system, version string) ([]coding, error) {
	if raw, ok := a.complex["codeableConcept"]; ok {
		var cc struct{ Coding []coding }
		if err := json.Unmarshal(raw, &cc); err != nil {
			return nil, fhir.Invalid("parameter codeableConcept is not a CodeableConcept: " + err.Error())
		}
		if len(cc.Coding) > 0 {
			return cc.Coding, nil
		}
	} else if c, ok, err := a.coding("coding", system, "code", version); err != nil {
		return nil, err
	} else if ok {
		return []coding{c}, nil
	}
	return nil, fhir.Invalid("$validate-code needs code (with " + system + "), coding or codeableConcept")
}

// intArg reads a non-negative integer parameter.
func (a termArgs) intArg(name string, def int) (int, error) {
	s, ok := a.prim[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fhir.Invalid("parameter " + name + " must be a non-negative integer, got " + quote(s))
	}
	return n, nil
}

// targetValueSet finds the value set an $expand or $validate-code names:
// the instance, the valueSet resource parameter, or url (+valueSetVersion).
func (s *termSource) targetValueSet(req OpRequest, a termArgs) ([]byte, error) {
	switch {
	case req.ID != "":
		v, err := s.en.Read(s.ctx, s.caller, "ValueSet", req.ID)
		if err != nil {
			return nil, err
		}
		return v.Content, nil
	case a.complex["valueSet"] != nil:
		return a.complex["valueSet"], nil
	case a.prim["url"] != "":
		return s.valueSet(a.prim["url"], a.prim["valueSetVersion"])
	}
	return nil, fhir.Invalid("name the value set: the instance (ValueSet/[id]/$op), url or valueSet")
}

// expandOp is ValueSet/$expand: filter (a case-insensitive substring of the
// code or display), count and offset paging, activeOnly.
func (en *Engine) expandOp(ctx context.Context, caller *Caller, req OpRequest) (OpResponse, error) {
	a, err := readTermArgs(req)
	if err != nil {
		return OpResponse{}, err
	}
	offset, err := a.intArg("offset", 0)
	if err != nil {
		return OpResponse{}, err
	}
	count, err := a.intArg("count", -1)
	if err != nil {
		return OpResponse{}, err
	}
	s := en.termSource(ctx, caller)
	raw, err := s.targetValueSet(req, a)
	if err != nil {
		return OpResponse{}, err
	}
	exp, _, err := s.expand(raw)
	if err != nil {
		return OpResponse{}, err
	}
	codes := exp.codes
	filter := strings.ToLower(a.prim["filter"])
	activeOnly := a.prim["activeOnly"] == "true"
	if filter != "" || activeOnly {
		kept := codes[:0:0]
		for _, c := range codes {
			if activeOnly && c.Inactive {
				continue
			}
			if filter != "" && !strings.Contains(strings.ToLower(c.Display), filter) && !strings.Contains(strings.ToLower(c.Code), filter) {
				continue
			}
			kept = append(kept, c)
		}
		codes = kept
	}
	total := len(codes)
	codes = codes[min(offset, total):]
	if count >= 0 {
		codes = codes[:min(count, len(codes))]
	}
	params := []expansionParameter{}
	for _, name := range []string{"filter", "count", "offset", "activeOnly"} {
		if v, ok := a.prim[name]; ok {
			p := expansionParameter{Name: name}
			switch name {
			case "count", "offset":
				n, _ := strconv.Atoi(v)
				p.ValueInteger = &n
			case "activeOnly":
				b := v == "true"
				p.ValueBoolean = &b
			default:
				p.ValueString = v
			}
			params = append(params, p)
		}
	}
	body, err := expandedValueSet(raw, expansionBody{
		Identifier: "urn:uuid:" + uuid.NewString(),
		Timestamp:  time.Now().UTC().Format(time.RFC3339),
		Total:      total,
		Offset:     offset,
		Parameter:  params,
		Contains:   codes,
	})
	if err != nil {
		return OpResponse{}, err
	}
	return OpResponse{Body: body}, nil
}

// expansionBody is ValueSet.expansion.
type expansionBody struct {
	Identifier string               `json:"identifier"`
	Timestamp  string               `json:"timestamp"`
	Total      int                  `json:"total"`
	Offset     int                  `json:"offset"`
	Parameter  []expansionParameter `json:"parameter,omitempty"`
	Contains   []tsContains         `json:"contains,omitempty"`
}

type expansionParameter struct {
	Name         string `json:"name"`
	ValueString  string `json:"valueString,omitempty"`
	ValueInteger *int   `json:"valueInteger,omitempty"`
	ValueBoolean *bool  `json:"valueBoolean,omitempty"`
}

// expandedValueSet is the value set raw with its expansion replaced by exp;
// its other members stay as written, narrative aside (it would describe
// the definition, not this answer).
func expandedValueSet(raw []byte, exp expansionBody) ([]byte, error) {
	ms, err := jsonMembers(raw)
	if err != nil {
		return nil, fhir.Invalid("the ValueSet is not a JSON object")
	}
	expJSON, err := json.Marshal(exp)
	if err != nil {
		return nil, err
	}
	out := ms[:0:0]
	for _, m := range ms {
		if m.key != "expansion" && m.key != "text" && m.key != "meta" {
			out = append(out, m)
		}
	}
	return encodeMembers(append(out, jsonMember{"expansion", expJSON})), nil
}

// validateCodeOp is ValueSet/$validate-code: a code (with system), a Coding
// or a CodeableConcept; the answer's result says whether the value set
// holds it, message why not, display the code's display.
func (en *Engine) validateCodeOp(ctx context.Context, caller *Caller, req OpRequest) (OpResponse, error) {
	a, err := readTermArgs(req)
	if err != nil {
		return OpResponse{}, err
	}
	if req.Type == "CodeSystem" {
		return en.codeSystemValidateCode(ctx, caller, req, a)
	}
	candidates, err := a.candidates("system", "systemVersion")
	if err != nil {
		return OpResponse{}, err
	}
	s := en.termSource(ctx, caller)
	raw, err := s.targetValueSet(req, a)
	if err != nil {
		return OpResponse{}, err
	}
	exp, vs, err := s.expand(raw)
	if err != nil {
		return OpResponse{}, err
	}
	name := vs.URL
	if name == "" {
		name = "ValueSet/" + vs.ID
	}
	var why []string
	for _, c := range candidates {
		m, ok := exp.member(c.System, c.Code)
		if !ok && c.System == "" {
			// A bare code matches when exactly one system of the value
			// set has it.
			for _, x := range exp.codes {
				if x.Code == c.Code {
					if ok {
						ok = false
						break
					}
					m, ok = x, true
				}
			}
		}
		if !ok {
			why = append(why, "the code "+quote(c.System+"|"+c.Code)+" is not in the value set "+name)
			continue
		}
		return codeValid(c, c.System, m.Display), nil
	}
	return codeInvalid(why), nil
}

// codeSystemValidateCode is CodeSystem/$validate-code: is the code (url
// + code, a coding or a codeableConcept) in the code system, and does its
// display match. A code system Ember holds only in part answers 422 as
// $lookup does.
func (en *Engine) codeSystemValidateCode(ctx context.Context, caller *Caller, req OpRequest, a termArgs) (OpResponse, error) {
	candidates, err := a.candidates("url", "version")
	if err != nil {
		return OpResponse{}, err
	}
	s := en.termSource(ctx, caller)
	var why []string
	for _, c := range candidates {
		system := c.System
		if system == "" {
			system = a.prim["url"]
		}
		x, err := s.targetCodeSystem(req, system, c.Version)
		if err != nil {
			return OpResponse{}, err
		}
		n, err := x.conceptOf(c.Code)
		if fe, ok := AsError(err); ok && err != nil && fe.Kind == fhir.NotFound {
			why = append(why, "the code "+quote(c.Code)+" is not in code system "+x.cs.URL)
			continue
		}
		if err != nil {
			return OpResponse{}, err
		}
		return codeValid(c, x.cs.URL, n.c.Display), nil
	}
	return codeInvalid(why), nil
}

// codeValid is a $validate-code answer for a code found, with its display
// (display, the one held), and a message when the caller's disagrees.
func codeValid(c coding, system, display string) OpResponse {
	out := parametersOut{}
	out.boolean("result", true)
	if c.Display != "" && display != "" && !strings.EqualFold(c.Display, display) {
		out.str("message", "the display "+quote(c.Display)+" is not the display of "+system+"|"+c.Code+" ("+quote(display)+")")
	}
	if display != "" {
		out.str("display", display)
	}
	return OpResponse{Body: out.bytes()}
}

// codeInvalid is a $validate-code answer for codes not found: why, each.
func codeInvalid(why []string) OpResponse {
	out := parametersOut{}
	out.boolean("result", false)
	out.str("message", strings.Join(why, "; "))
	return OpResponse{Body: out.bytes()}
}

// targetCodeSystem finds the code system a $lookup or $subsumes names: the
// instance, or system (+version).
func (s *termSource) targetCodeSystem(req OpRequest, system, version string) (*codeSystemIndex, error) {
	if req.ID != "" {
		v, err := s.en.Read(s.ctx, s.caller, "CodeSystem", req.ID)
		if err != nil {
			return nil, err
		}
		var cs tsCodeSystem
		if err := json.Unmarshal(v.Content, &cs); err != nil {
			return nil, fhir.Invalid("CodeSystem/" + req.ID + " cannot be read: " + err.Error())
		}
		if system != "" && system != cs.URL {
			return nil, fhir.Invalid("system " + quote(system) + " is not the url of CodeSystem/" + req.ID)
		}
		return indexCodeSystem(&cs), nil
	}
	if system == "" {
		return nil, fhir.Invalid("name the code system: system, a coding, or the instance (CodeSystem/[id]/$op)")
	}
	x, err := s.codeSystem(system, version)
	if err != nil {
		return nil, err
	}
	if x == nil {
		return nil, needsExternal(system, "this operation")
	}
	return x, nil
}

// conceptOf returns the concept code of x, or the error saying why there is
// none: absent from a complete system is NotFound, from a partial one is
// content Ember lacks.
func (x *codeSystemIndex) conceptOf(code string) (*csNode, error) {
	if n := x.nodes[code]; n != nil {
		return n, nil
	}
	if !x.complete() {
		return nil, needsExternal(x.cs.URL, "the code "+quote(code))
	}
	return nil, fhir.Missing("the code " + quote(code) + " is not in code system " + x.cs.URL)
}

// lookupOp is CodeSystem/$lookup: name, version, display, the concept's
// properties and its parents and children.
func (en *Engine) lookupOp(ctx context.Context, caller *Caller, req OpRequest) (OpResponse, error) {
	a, err := readTermArgs(req)
	if err != nil {
		return OpResponse{}, err
	}
	c, ok, err := a.coding("coding", "system", "code", "version")
	if err != nil {
		return OpResponse{}, err
	}
	if !ok {
		return OpResponse{}, fhir.Invalid("$lookup needs code (with system) or coding")
	}
	x, err := en.termSource(ctx, caller).targetCodeSystem(req, c.System, c.Version)
	if err != nil {
		return OpResponse{}, err
	}
	n, err := x.conceptOf(c.Code)
	if err != nil {
		return OpResponse{}, err
	}
	out := parametersOut{}
	name := x.cs.Name
	if name == "" {
		name = x.cs.Title
	}
	if name == "" {
		name = x.cs.URL
	}
	out.str("name", name)
	if x.cs.Version != "" {
		out.str("version", x.cs.Version)
	}
	if n.c.Display != "" {
		out.str("display", n.c.Display)
	}
	for _, d := range n.c.Designation {
		out.part("designation", d)
	}
	if n.c.Definition != "" {
		out.property("definition", "valueString", mustJSON(n.c.Definition))
	}
	for _, p := range n.c.Property {
		if p.raw.key != "" && p.Code != "parent" && p.Code != "child" {
			out.property(p.Code, p.raw.key, p.raw.value)
		}
	}
	for _, p := range n.parents {
		out.property("parent", "valueCode", mustJSON(p.c.Code))
	}
	for _, ch := range n.children {
		out.property("child", "valueCode", mustJSON(ch.c.Code))
	}
	return OpResponse{Body: out.bytes()}, nil
}

// subsumesOp is CodeSystem/$subsumes: equivalent, subsumes, subsumed-by or
// not-subsumed, from the code system's hierarchy.
func (en *Engine) subsumesOp(ctx context.Context, caller *Caller, req OpRequest) (OpResponse, error) {
	a, err := readTermArgs(req)
	if err != nil {
		return OpResponse{}, err
	}
	ca, okA, err := a.coding("codingA", "system", "codeA", "version")
	if err != nil {
		return OpResponse{}, err
	}
	cb, okB, err := a.coding("codingB", "system", "codeB", "version")
	if err != nil {
		return OpResponse{}, err
	}
	if !okA || !okB {
		return OpResponse{}, fhir.Invalid("$subsumes needs codeA and codeB (with system), or codingA and codingB")
	}
	system := ca.System
	if system == "" {
		system = cb.System
	}
	if ca.System != "" && cb.System != "" && ca.System != cb.System {
		return OpResponse{}, fhir.Invalid("codingA and codingB are from different code systems")
	}
	x, err := en.termSource(ctx, caller).targetCodeSystem(req, system, a.prim["version"])
	if err != nil {
		return OpResponse{}, err
	}
	na, err := x.conceptOf(ca.Code)
	if err != nil {
		return OpResponse{}, err
	}
	nb, err := x.conceptOf(cb.Code)
	if err != nil {
		return OpResponse{}, err
	}
	outcome := "not-subsumed"
	switch {
	case na == nb:
		outcome = "equivalent"
	case below(nb, na):
		outcome = "subsumes"
	case below(na, nb):
		outcome = "subsumed-by"
	}
	out := parametersOut{}
	out.member("outcome", "valueCode", mustJSON(outcome))
	return OpResponse{Body: out.bytes()}, nil
}

// below reports whether n is a descendant of top.
func below(n, top *csNode) bool {
	found := false
	n.ancestors(func(a *csNode) { found = found || a == top })
	return found
}

// parametersOut builds a Parameters answer in order.
type parametersOut struct{ params []json.RawMessage }

func (p *parametersOut) member(name, valueKey string, value json.RawMessage) {
	p.params = append(p.params, encodeMembers([]jsonMember{{"name", mustJSON(name)}, {valueKey, value}}))
}

func (p *parametersOut) str(name, v string) { p.member(name, "valueString", mustJSON(v)) }

func (p *parametersOut) boolean(name string, v bool) { p.member(name, "valueBoolean", mustJSON(v)) }

// part adds a parameter whose parts are the members of obj (a designation).
func (p *parametersOut) part(name string, obj json.RawMessage) {
	ms, err := jsonMembers(obj)
	if err != nil {
		return
	}
	var parts []json.RawMessage
	for _, m := range ms {
		key := "valueString"
		switch m.key {
		case "language":
			key = "valueCode"
		case "use":
			key = "valueCoding"
		}
		parts = append(parts, encodeMembers([]jsonMember{{"name", mustJSON(m.key)}, {key, m.value}}))
	}
	p.params = append(p.params, encodeMembers([]jsonMember{{"name", mustJSON(name)}, {"part", mustJSON(parts)}}))
}

// property adds a $lookup property: parts code and value.
func (p *parametersOut) property(code, valueKey string, value json.RawMessage) {
	parts := []json.RawMessage{
		encodeMembers([]jsonMember{{"name", mustJSON("code")}, {"valueCode", mustJSON(code)}}),
		encodeMembers([]jsonMember{{"name", mustJSON("value")}, {valueKey, value}}),
	}
	p.params = append(p.params, encodeMembers([]jsonMember{{"name", mustJSON("property")}, {"part", mustJSON(parts)}}))
}

func (p *parametersOut) bytes() []byte {
	if p.params == nil {
		p.params = []json.RawMessage{}
	}
	return encodeMembers([]jsonMember{{"resourceType", mustJSON("Parameters")}, {"parameter", mustJSON(p.params)}})
}

// mustJSON marshals values that cannot fail (strings, booleans, raw JSON).
func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
