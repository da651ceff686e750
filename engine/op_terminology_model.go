package engine

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// The model behind the terminology operations (op_terminology.go): code
// systems and value sets read from the database (through the caller's
// grant) or, failing that, from the R4 core definitions the binary embeds
// (spec.CodeSystem, spec.ValueSet), and the expansion of ValueSet.compose
// over them. Everything is computed per request: a request reads a handful
// of resources, and stored ones may change at any time.

// tsCodeSystem is the part of a CodeSystem the operations read.
type tsCodeSystem struct {
	ID               string      `json:"id"`
	URL              string      `json:"url"`
	Version          string      `json:"version"`
	Name             string      `json:"name"`
	Title            string      `json:"title"`
	Content          string      `json:"content"`
	HierarchyMeaning string      `json:"hierarchyMeaning"`
	Concept          []tsConcept `json:"concept"`
}

// tsConcept is one CodeSystem.concept, with its nested concepts.
type tsConcept struct {
	Code        string            `json:"code"`
	Display     string            `json:"display"`
	Definition  string            `json:"definition"`
	Designation []json.RawMessage `json:"designation"`
	Property    []tsProperty      `json:"property"`
	Concept     []tsConcept       `json:"concept"`
}

// tsProperty is one CodeSystem.concept.property; raw keeps the value[x]
// member for $lookup's answer.
type tsProperty struct {
	Code  string
	Value string // the value as text (a Coding by its code)
	raw   jsonMember
}

func (p *tsProperty) UnmarshalJSON(b []byte) error {
	ms, err := jsonMembers(b)
	if err != nil {
		return err
	}
	for _, m := range ms {
		switch {
		case m.key == "code":
			if err := json.Unmarshal(m.value, &p.Code); err != nil {
				return err
			}
		case strings.HasPrefix(m.key, "value"):
			p.raw = m
			p.Value = propertyText(m.value)
		}
	}
	return nil
}

// propertyText renders a property value for comparisons: strings and codes
// as themselves, booleans and numbers as written, a Coding as its code.
func propertyText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var c struct{ Code string }
	if len(v) > 0 && v[0] == '{' && json.Unmarshal(v, &c) == nil {
		return c.Code
	}
	return string(v)
}

// csNode is a concept in a code system's hierarchy.
type csNode struct {
	c                 *tsConcept
	parents, children []*csNode
}

// codeSystemIndex is a code system with its concepts by code and their
// hierarchy: concept nesting, plus the "parent", "child" and "subsumedBy"
// properties some systems use instead.
type codeSystemIndex struct {
	cs    *tsCodeSystem
	nodes map[string]*csNode
	order []*csNode // every concept, in the definition's order
}

func indexCodeSystem(cs *tsCodeSystem) *codeSystemIndex {
	x := &codeSystemIndex{cs: cs, nodes: map[string]*csNode{}}
	var walk func(parent *csNode, cs []tsConcept)
	walk = func(parent *csNode, cs []tsConcept) {
		for i := range cs {
			c := &cs[i]
			n := x.nodes[c.Code]
			if n == nil {
				n = &csNode{c: c}
				x.nodes[c.Code] = n
				x.order = append(x.order, n)
			}
			if parent != nil {
				link(parent, n)
			}
			walk(n, c.Concept)
		}
	}
	walk(nil, cs.Concept)
	for _, n := range x.order {
		for _, p := range n.c.Property {
			switch p.Code {
			case "parent", "subsumedBy":
				if o := x.nodes[p.Value]; o != nil {
					link(o, n)
				}
			case "child":
				if o := x.nodes[p.Value]; o != nil {
					link(n, o)
				}
			}
		}
	}
	return x
}

// link records parent -> child once.
func link(parent, child *csNode) {
	for _, c := range parent.children {
		if c == child {
			return
		}
	}
	parent.children = append(parent.children, child)
	child.parents = append(child.parents, parent)
}

// descendants calls f for every concept below n (n excluded), once each.
func (n *csNode) descendants(f func(*csNode)) {
	seen := map[*csNode]bool{n: true}
	var walk func(*csNode)
	walk = func(n *csNode) {
		for _, c := range n.children {
			if !seen[c] {
				seen[c] = true
				f(c)
				walk(c)
			}
		}
	}
	walk(n)
}

// ancestors calls f for every concept above n (n excluded), once each.
func (n *csNode) ancestors(f func(*csNode)) {
	seen := map[*csNode]bool{n: true}
	var walk func(*csNode)
	walk = func(n *csNode) {
		for _, p := range n.parents {
			if !seen[p] {
				seen[p] = true
				f(p)
				walk(p)
			}
		}
	}
	walk(n)
}

// property returns the concept's property code as text, and whether it has it.
func (n *csNode) property(code string) (string, bool) {
	for _, p := range n.c.Property {
		if p.Code == code {
			return p.Value, true
		}
	}
	return "", false
}

// abstract: not selectable (notSelectable=true, or the v3 "abstract" flag).
func (n *csNode) abstract() bool {
	v, _ := n.property("notSelectable")
	return v == "true"
}

// inactive: retired or deprecated by status, or inactive=true.
func (n *csNode) inactive() bool {
	if v, ok := n.property("status"); ok && (v == "retired" || v == "inactive" || v == "deprecated") {
		return true
	}
	v, _ := n.property("inactive")
	return v == "true"
}

// complete reports whether the code system lists all its codes here.
func (x *codeSystemIndex) complete() bool {
	return x.cs.Content == "complete" || x.cs.Content == ""
}

// externalNames names the terminologies users most often ask for that no
// FHIR package carries, for the errors that say what is missing.
var externalNames = map[string]string{
	"http://snomed.info/sct":                      "SNOMED CT",
	"http://loinc.org":                            "LOINC",
	"http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
	"http://unitsofmeasure.org":                   "UCUM",
	"http://hl7.org/fhir/sid/icd-10-cm":           "ICD-10-CM",
	"http://hl7.org/fhir/sid/icd-10":              "ICD-10",
	"http://www.ama-assn.org/go/cpt":              "CPT",
	"http://hl7.org/fhir/sid/cvx":                 "CVX",
	"http://hl7.org/fhir/sid/ndc":                 "NDC",
	"urn:ietf:bcp:47":                             "BCP-47 language tags",
	"urn:ietf:bcp:13":                             "MIME types",
}

// needsExternal is the error for content Ember does not hold: 422 with
// what is missing, never a 5xx.
func needsExternal(system, what string) *fhir.Error {
	name := system
	if n, ok := externalNames[system]; ok {
		name = n + " (" + system + ")"
	}
	return fhir.NewError(fhir.Unprocessable, "not-supported",
		what+" needs the content of code system "+name+", which this server does not hold: it is external terminology "+
			"(or a CodeSystem with content "+quote("not-present")+"/"+quote("fragment")+"); store a complete CodeSystem resource for it to use it here")
}

// termSource resolves canonical URLs for one request: stored resources
// first (the caller's grant applies), then the R4 core definitions. It
// caches what it read for the request's duration only.
type termSource struct {
	en     *Engine
	ctx    context.Context
	caller *Caller
	cs     map[string]*codeSystemIndex // by url|version; nil value: unknown
	active map[string]bool             // value sets being expanded (cycles)
}

func (en *Engine) termSource(ctx context.Context, caller *Caller) *termSource {
	return &termSource{en: en, ctx: ctx, caller: caller, cs: map[string]*codeSystemIndex{}, active: map[string]bool{}}
}

// stored returns the JSON of the stored resource of typ with canonical url
// (and version, when given), nil when there is none.
func (s *termSource) stored(typ, canonical, version string) ([]byte, error) {
	params := url.Values{"url": {canonical}, "_count": {"2"}}
	if version != "" {
		params.Set("version", version)
	}
	ctx, err := s.caller.bind(s.ctx)
	if err != nil {
		return nil, err
	}
	q, err := s.en.parseSearch(false, typ, params)
	if err != nil {
		return nil, err
	}
	q.Total = "none"
	res, err := s.en.store.Search(ctx, q)
	var fe *fhir.Error
	if errors.As(err, &fe) && fe.Kind == fhir.Forbidden {
		// A grant that may not search this type (a patient app's) still
		// gets the core definitions, which are public.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(res.Matches) == 0 {
		return nil, nil
	}
	return res.Matches[0].Content, nil
}

// codeSystem returns the code system with canonical url ("url|version"
// accepted), nil when neither the database nor the core definitions have it.
func (s *termSource) codeSystem(canonical, version string) (*codeSystemIndex, error) {
	if u, v, ok := strings.Cut(canonical, "|"); ok {
		canonical, version = u, v
	}
	key := canonical + "|" + version
	if x, ok := s.cs[key]; ok {
		return x, nil
	}
	raw, err := s.stored("CodeSystem", canonical, version)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		if core, ok := spec.CodeSystem(canonical); ok {
			raw = core
		}
	}
	var x *codeSystemIndex
	if raw != nil {
		var cs tsCodeSystem
		if err := json.Unmarshal(raw, &cs); err != nil {
			return nil, fhir.Invalid("CodeSystem " + canonical + " cannot be read: " + err.Error())
		}
		if version == "" || cs.Version == version {
			x = indexCodeSystem(&cs)
		}
	}
	s.cs[key] = x
	return x, nil
}

// valueSet returns the JSON of the value set with canonical url ("url|version"
// accepted), or a NotFound error.
func (s *termSource) valueSet(canonical, version string) ([]byte, error) {
	if u, v, ok := strings.Cut(canonical, "|"); ok {
		canonical, version = u, v
	}
	raw, err := s.stored("ValueSet", canonical, version)
	if err != nil || raw != nil {
		return raw, err
	}
	if core, ok := spec.ValueSet(canonical); ok {
		var head struct{ Version string }
		if json.Unmarshal(core, &head) == nil && (version == "" || head.Version == version) {
			return core, nil
		}
	}
	what := canonical
	if version != "" {
		what += " version " + version
	}
	return nil, fhir.Missing("value set " + what + " is not known to this server")
}

// tsValueSet is the part of a ValueSet the expansion reads.
type tsValueSet struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	Version string `json:"version"`
	Compose *struct {
		Inactive *bool          `json:"inactive"`
		Include  []tsConceptSet `json:"include"`
		Exclude  []tsConceptSet `json:"exclude"`
	} `json:"compose"`
	Expansion *struct {
		Contains []tsContains `json:"contains"`
	} `json:"expansion"`
}

// tsConceptSet is ValueSet.compose.include or .exclude.
type tsConceptSet struct {
	System  string `json:"system"`
	Version string `json:"version"`
	Concept []struct {
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"concept"`
	Filter []struct {
		Property string `json:"property"`
		Op       string `json:"op"`
		Value    string `json:"value"`
	} `json:"filter"`
	ValueSet []string `json:"valueSet"`
}

// tsContains is ValueSet.expansion.contains, read from a value set that
// comes expanded and written in $expand's answer.
type tsContains struct {
	System   string       `json:"system,omitempty"`
	Version  string       `json:"version,omitempty"`
	Code     string       `json:"code,omitempty"`
	Display  string       `json:"display,omitempty"`
	Abstract bool         `json:"abstract,omitempty"`
	Inactive bool         `json:"inactive,omitempty"`
	Contains []tsContains `json:"contains,omitempty"`
}

// codeKey identifies a member of an expansion.
type codeKey struct{ system, code string }

// expansion is an ordered set of codes.
type expansion struct {
	codes []tsContains
	index map[codeKey]int
}

func (e *expansion) add(c tsContains) {
	if e.index == nil {
		e.index = map[codeKey]int{}
	}
	k := codeKey{c.System, c.Code}
	if _, ok := e.index[k]; ok {
		return
	}
	e.index[k] = len(e.codes)
	e.codes = append(e.codes, c)
}

func (e *expansion) has(system, code string) bool {
	_, ok := e.index[codeKey{system, code}]
	return ok
}

// member returns the expansion's entry for system|code.
func (e *expansion) member(system, code string) (tsContains, bool) {
	i, ok := e.index[codeKey{system, code}]
	if !ok {
		return tsContains{}, false
	}
	return e.codes[i], true
}

// maxExpansion bounds one expansion, so a value set drawing in a large
// code system cannot hold a request's memory without limit.
const maxExpansion = 100_000

// expand computes the expansion of the value set raw (JSON).
func (s *termSource) expand(raw []byte) (*expansion, *tsValueSet, error) {
	var vs tsValueSet
	if err := json.Unmarshal(raw, &vs); err != nil {
		return nil, nil, fhir.Invalid("the ValueSet cannot be read: " + err.Error())
	}
	name := vs.URL
	if name == "" {
		name = "ValueSet/" + vs.ID
	}
	if s.active[name] {
		return nil, nil, fhir.NewError(fhir.Unprocessable, "processing", "value set "+name+" includes itself")
	}
	s.active[name] = true
	defer delete(s.active, name)
	out := &expansion{}
	if vs.Compose == nil {
		if vs.Expansion == nil {
			return nil, nil, fhir.NewError(fhir.Unprocessable, "processing", "value set "+name+" has neither compose nor expansion")
		}
		var walk func([]tsContains)
		walk = func(cs []tsContains) {
			for _, c := range cs {
				if c.Code != "" {
					c.Contains = nil
					out.add(c)
				}
				walk(c.Contains)
			}
		}
		walk(vs.Expansion.Contains)
		return out, &vs, nil
	}
	for i, inc := range vs.Compose.Include {
		codes, err := s.conceptSet(name, inc)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range codes {
			out.add(c)
		}
		if len(out.codes) > maxExpansion {
			return nil, nil, fhir.NewError(fhir.Unprocessable, "too-costly", "value set "+name+" has more than "+strconv.Itoa(maxExpansion)+" codes (include "+strconv.Itoa(i)+")")
		}
	}
	if len(vs.Compose.Exclude) > 0 {
		drop := &expansion{}
		for _, exc := range vs.Compose.Exclude {
			codes, err := s.conceptSet(name, exc)
			if err != nil {
				return nil, nil, err
			}
			for _, c := range codes {
				drop.add(c)
			}
		}
		kept := &expansion{}
		for _, c := range out.codes {
			if !drop.has(c.System, c.Code) {
				kept.add(c)
			}
		}
		out = kept
	}
	if vs.Compose.Inactive != nil && !*vs.Compose.Inactive {
		kept := &expansion{}
		for _, c := range out.codes {
			if !c.Inactive {
				kept.add(c)
			}
		}
		out = kept
	}
	return out, &vs, nil
}

// conceptSet evaluates one include or exclude: the system part (listed
// concepts, filters, or the whole code system) intersected with every
// value set it names.
func (s *termSource) conceptSet(owner string, set tsConceptSet) ([]tsContains, error) {
	var out []tsContains
	have := false
	if set.System != "" {
		have = true
		var err error
		out, err = s.systemPart(owner, set)
		if err != nil {
			return nil, err
		}
	}
	for _, ref := range set.ValueSet {
		raw, err := s.valueSet(ref, "")
		if err != nil {
			return nil, err
		}
		sub, _, err := s.expand(raw)
		if err != nil {
			return nil, err
		}
		if !have {
			out, have = sub.codes, true
			continue
		}
		kept := out[:0:0]
		for _, c := range out {
			if sub.has(c.System, c.Code) {
				kept = append(kept, c)
			}
		}
		out = kept
	}
	if !have {
		return nil, fhir.NewError(fhir.Unprocessable, "invalid", "value set "+owner+" has an include or exclude with neither system nor valueSet")
	}
	return out, nil
}

// systemPart evaluates the system, concept and filter members of a
// concept set.
func (s *termSource) systemPart(owner string, set tsConceptSet) ([]tsContains, error) {
	x, err := s.codeSystem(set.System, set.Version)
	if err != nil {
		return nil, err
	}
	if len(set.Concept) > 0 {
		// Listed codes need no code system: their displays come from it
		// when Ember has it, else from the value set.
		out := make([]tsContains, 0, len(set.Concept))
		for _, c := range set.Concept {
			m := tsContains{System: set.System, Code: c.Code, Display: c.Display}
			if x != nil {
				if n := x.nodes[c.Code]; n != nil {
					if m.Display == "" {
						m.Display = n.c.Display
					}
					m.Abstract, m.Inactive = n.abstract(), n.inactive()
					m.Version = x.cs.Version
				}
			}
			out = append(out, m)
		}
		return out, nil
	}
	if x == nil || !x.complete() {
		return nil, needsExternal(set.System, "value set "+owner)
	}
	selected := x.order
	for _, f := range set.Filter {
		sel, err := filterConcepts(x, f.Property, f.Op, f.Value)
		if err != nil {
			return nil, fhir.NewError(fhir.Unprocessable, "not-supported", "value set "+owner+": "+err.Error())
		}
		in := make(map[*csNode]bool, len(sel))
		for _, n := range sel {
			in[n] = true
		}
		kept := selected[:0:0]
		for _, n := range selected {
			if in[n] {
				kept = append(kept, n)
			}
		}
		selected = kept
	}
	out := make([]tsContains, 0, len(selected))
	for _, n := range selected {
		out = append(out, x.contains(n))
	}
	return out, nil
}

// contains renders a concept as an expansion member.
func (x *codeSystemIndex) contains(n *csNode) tsContains {
	return tsContains{System: x.cs.URL, Version: x.cs.Version, Code: n.c.Code, Display: n.c.Display, Abstract: n.abstract(), Inactive: n.inactive()}
}

// filterError is a filter Ember cannot evaluate.
type filterError string

func (e filterError) Error() string { return string(e) }

// filterConcepts returns the concepts one ValueSet.compose.include.filter
// selects: hierarchy operators on "concept"/"code", and =, in, not-in,
// regex and exists on the code, the display or a concept property.
func filterConcepts(x *codeSystemIndex, property, op, value string) ([]*csNode, error) {
	hierarchy := property == "concept" || property == "code"
	var out []*csNode
	switch {
	case hierarchy && (op == "is-a" || op == "descendent-of" || op == "generalizes" || op == "is-not-a"):
		root := x.nodes[value]
		if root == nil {
			if op == "is-not-a" {
				return x.order, nil
			}
			return nil, nil
		}
		in := map[*csNode]bool{}
		if op != "descendent-of" {
			in[root] = true
		}
		if op == "generalizes" {
			root.ancestors(func(n *csNode) { in[n] = true })
		} else {
			root.descendants(func(n *csNode) { in[n] = true })
		}
		for _, n := range x.order {
			if in[n] != (op == "is-not-a") {
				out = append(out, n)
			}
		}
		return out, nil
	case op == "=" || op == "in" || op == "not-in" || op == "regex" || op == "exists":
		get := func(n *csNode) (string, bool) {
			switch {
			case hierarchy:
				return n.c.Code, true
			case property == "display":
				return n.c.Display, n.c.Display != ""
			}
			return n.property(property)
		}
		var re *regexp.Regexp
		if op == "regex" {
			var err error
			if re, err = regexp.Compile("^(?:" + value + ")$"); err != nil {
				return nil, filterError("filter regex " + quote(value) + ": " + err.Error())
			}
		}
		list := map[string]bool{}
		for _, v := range strings.Split(value, ",") {
			list[strings.TrimSpace(v)] = true
		}
		for _, n := range x.order {
			v, ok := get(n)
			var keep bool
			switch op {
			case "=":
				keep = ok && v == value
			case "in":
				keep = ok && list[v]
			case "not-in":
				keep = !ok || !list[v]
			case "regex":
				keep = ok && re.MatchString(v)
			case "exists":
				keep = ok == (value == "true")
			}
			if keep {
				out = append(out, n)
			}
		}
		return out, nil
	}
	return nil, filterError("filter " + quote(property+" "+op+" "+value) + " is not supported on " + x.cs.URL)
}
