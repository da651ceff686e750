package profile

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
)

// Set is the profiles (and extension definitions) loaded, by canonical
// URL, with the value sets their bindings name. It is immutable once built
// and safe for concurrent use.
type Set struct {
	byURL map[string]*Profile
	vs    *ValueSets
}

// NewSet compiles StructureDefinitions (constraints and extension
// definitions; base types are skipped, fhir/validate holds them). The
// errors are the definitions that did not compile, each on its own.
func NewSet(sds [][]byte, vs *ValueSets) (*Set, []error) {
	s := &Set{byURL: map[string]*Profile{}, vs: vs}
	var errs []error
	for _, raw := range sds {
		var head struct {
			Derivation string `json:"derivation"`
		}
		if json.Unmarshal(raw, &head) != nil || head.Derivation != "constraint" {
			continue
		}
		p, err := Compile(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.byURL[p.URL] = p
	}
	if s.vs == nil {
		s.vs = NewValueSets(nil, nil)
	}
	return s, errs
}

// Profile returns the profile with canonical url (a |version suffix is
// ignored), or nil.
func (s *Set) Profile(url string) *Profile {
	if s == nil {
		return nil
	}
	if i := strings.IndexByte(url, '|'); i >= 0 {
		url = url[:i]
	}
	return s.byURL[url]
}

// Known reports whether url names a profile of the set.
func (s *Set) Known(url string) bool { return s.Profile(url) != nil }

// URLs lists the set's profile URLs, sorted.
func (s *Set) URLs() []string {
	out := make([]string, 0, len(s.byURL))
	for u := range s.byURL {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Check validates body, a resource of type typ that is valid R4, against
// the profile url. Error issues mean it does not conform; warnings and
// information report what was not checked and absent must-support
// elements.
func (s *Set) Check(typ string, body []byte, url string) []fhir.Issue {
	return s.check(typ, body, url, true)
}

// CheckStructure is Check for the write path. It evaluates the profile's
// FHIRPath invariants compiled to Go (invariant_compile.go) and reports
// the others as not evaluated on write: gofhir/fhirpath takes 0.2-2 ms on
// an invariant such as us-core-2 (it probes every type suffix of absent
// elements), 10-40 times the rest of the check. $validate evaluates those
// through gofhir (Check).
func (s *Set) CheckStructure(typ string, body []byte, url string) []fhir.Issue {
	return s.check(typ, body, url, false)
}

func (s *Set) check(typ string, body []byte, url string, invariants bool) []fhir.Issue {
	p := s.Profile(url)
	if p == nil {
		return []fhir.Issue{{Severity: "warning", Code: "not-supported", Diagnostics: "profile " + strconv.Quote(url) + " is not known: not checked"}}
	}
	if p.Kind != "resource" || p.Type != typ {
		return []fhir.Issue{{Severity: "error", Code: "invalid", Diagnostics: "profile " + strconv.Quote(url) + " constrains " + p.Type + ", not " + typ, Expression: []string{typ}}}
	}
	doc, ok := parse(body)
	if !ok {
		return []fhir.Issue{{Severity: "error", Code: "structure", Diagnostics: "not a JSON object"}}
	}
	c := &checker{set: s, profile: p, full: invariants, doc: doc}
	c.object(doc, p.root, typ)
	c.invariants(p.root, body, typ)
	return c.issues
}

// checker is one Check's state.
type checker struct {
	set      *Set
	profile  *Profile
	issues   []fhir.Issue
	notBound map[string]bool // value sets reported as not checked
	depth    int
	full     bool           // $validate: invariants gofhir evaluates too
	doc      map[string]any // the resource (%resource)
}

// maxDepth bounds the profile recursion (an extension whose definition
// names itself).
const maxDepth = 32

func (c *checker) add(severity, code, path, msg string) {
	if len(c.issues) >= 200 {
		return
	}
	c.issues = append(c.issues, fhir.Issue{Severity: severity, Code: code, Diagnostics: msg + " (profile " + c.profile.URL + ")", Expression: []string{path}})
}

// item is one value of an element: its JSON member (for a choice, with
// the type suffix) and FHIRPath.
type item struct {
	key     string
	val     any
	parent  string // the FHIRPath of the object holding it
	idx     int    // its index in the member's array, -1 when not one
	noValue bool   // a primitive's extensions alone
}

// path is the value's FHIRPath, built only when needed (an issue, or
// descending into it): most values never need theirs.
func (v item) path() string {
	if v.idx < 0 {
		return v.parent + "." + v.key
	}
	return v.parent + "." + v.key + "[" + strconv.Itoa(v.idx) + "]"
}

// values collects obj's values of element el (array elements one by one).
func (c *checker) values(obj map[string]any, el *element, path string) []item {
	if !el.choice {
		if v, ok := obj[el.name]; ok {
			return appendItems(nil, el.name, v, path)
		}
		x, ok := obj[el.extName]
		if !ok {
			return nil
		}
		// A primitive with extensions and no value is present: counted,
		// with nothing of a value to check.
		n := 1
		if arr, isArr := x.([]any); isArr {
			n = len(arr)
		}
		out := make([]item, n)
		for i := range out {
			out[i] = item{key: el.extName, parent: path, idx: i, noValue: true}
		}
		return out
	}
	var out []item
	for k, v := range obj {
		if len(k) > len(el.name) && strings.HasPrefix(k, el.name) && k[len(el.name)] >= 'A' && k[len(el.name)] <= 'Z' {
			out = appendItems(out, k, v, path)
		}
	}
	return out
}

// appendItems appends the values of member key (array elements one by
// one, sized once).
func appendItems(out []item, key string, v any, path string) []item {
	arr, ok := v.([]any)
	if !ok {
		return append(out, item{key: key, val: v, parent: path, idx: -1})
	}
	if out == nil {
		out = make([]item, 0, len(arr))
	}
	for i, x := range arr {
		if x != nil {
			out = append(out, item{key: key, val: x, parent: path, idx: i})
		}
	}
	return out
}

// object checks the members of obj (at path) against el's children.
func (c *checker) object(obj map[string]any, el *element, path string) {
	for _, ch := range el.children {
		vals := c.values(obj, ch, path)
		if len(vals) < ch.min {
			c.add("error", "required", path+"."+ch.name, fmt.Sprintf("%s: minimum required = %d, but only found %d", ch.path, ch.min, len(vals)))
		}
		if ch.max >= 0 && len(vals) > ch.max {
			if ch.max == 0 {
				c.add("error", "structure", path+"."+ch.name, ch.path+" is not allowed by the profile")
			} else {
				c.add("error", "structure", path+"."+ch.name, fmt.Sprintf("%s: maximum allowed = %d, but found %d", ch.path, ch.max, len(vals)))
			}
		}
		if len(vals) == 0 {
			if ch.mustSupport && ch.min == 0 {
				c.mustSupportAbsent(path+"."+ch.name, "must-support element "+ch.path+" is absent")
			}
			continue
		}
		if ch.choice && len(ch.types) > 0 {
			for _, v := range vals {
				if !ch.allowsType(strings.TrimPrefix(v.key, ch.name)) {
					c.add("error", "structure", v.path(), "type "+strings.TrimPrefix(v.key, ch.name)+" is not allowed here by the profile")
				}
			}
		}
		for _, v := range vals {
			c.value(v, ch)
		}
		if len(ch.slices) > 0 {
			c.slices(vals, ch, path)
		}
	}
}

func (el *element) allowsType(suffix string) bool {
	for _, t := range el.types {
		if strings.EqualFold(t.code, suffix) {
			return true
		}
	}
	return false
}

// value checks one value against el: fixed and pattern values, the
// required binding, then its own members.
func (c *checker) value(v item, el *element) {
	if v.noValue {
		return
	}
	if el.fixed != nil && !equal(v.val, el.fixed) {
		c.add("error", "value", v.path(), el.path+" must be exactly "+compact(el.fixed))
	}
	if el.pattern != nil && !matches(v.val, el.pattern) {
		c.add("error", "value", v.path(), el.path+" must match the pattern "+compact(el.pattern))
	}
	if el.binding != nil && el.binding.strength == "required" {
		c.binding(v, el)
	}
	for i := range el.invariants {
		c.elementInvariant(&el.invariants[i], v, el)
	}
	obj, ok := v.val.(map[string]any)
	if !ok {
		return
	}
	if len(el.children) > 0 {
		c.object(obj, el, v.path())
		return
	}
	// No children in the snapshot: the type's own profile, when it is one
	// of the set (an extension's definition, a profiled datatype).
	for _, t := range el.types {
		for _, u := range t.profiles {
			if p := c.set.Profile(u); p != nil && c.depth < maxDepth {
				c.depth++
				saved := c.profile
				c.profile = p
				c.object(obj, p.root, v.path())
				c.profile = saved
				c.depth--
				return
			}
		}
	}
}

// slices assigns each value to the first slice it matches and checks it
// there, then each slice's cardinality.
func (c *checker) slices(vals []item, el *element, parent string) {
	path := parent + "." + el.name
	counts := make([]int, len(el.slices))
	known := make([]bool, len(el.slices))
	for i, s := range el.slices {
		known[i] = c.discriminable(el, s)
	}
	for _, v := range vals {
		matched := -1
		for i, s := range el.slices {
			if known[i] && c.matchSlice(v, el, s) {
				matched = i
				break
			}
		}
		if matched < 0 {
			if el.slicing != nil && el.slicing.closed {
				c.add("error", "structure", v.path(), "matches none of the slices of "+el.path+", and the slicing is closed")
			}
			continue
		}
		counts[matched]++
		c.value(v, el.slices[matched])
	}
	for i, s := range el.slices {
		if !known[i] {
			if counts[i] == 0 && s.min > 0 {
				c.add("information", "informational", path, "slice "+s.sliceName+" of "+el.path+" could not be told apart: its cardinality was not checked")
			}
			continue
		}
		if counts[i] < s.min {
			c.add("error", "required", path, fmt.Sprintf("slice %s of %s: minimum required = %d, but only found %d", s.sliceName, el.path, s.min, counts[i]))
		}
		if s.max >= 0 && counts[i] > s.max {
			c.add("error", "structure", path, fmt.Sprintf("slice %s of %s: maximum allowed = %d, but found %d", s.sliceName, el.path, s.max, counts[i]))
		}
		if counts[i] == 0 && s.mustSupport && s.min == 0 {
			c.mustSupportAbsent(path, "must-support slice "+s.sliceName+" of "+el.path+" is absent")
		}
	}
}

// discriminable reports whether every discriminator of el's slicing has
// something to compare in slice s.
func (c *checker) discriminable(el, s *element) bool {
	if el.slicing == nil || len(el.slicing.discriminators) == 0 {
		return false
	}
	for i, d := range el.slicing.discriminators {
		switch d.kind {
		case "value", "pattern":
			if s.expect == nil || s.expect[i].val == nil {
				return false
			}
		case "type":
			if d.path != "$this" || len(s.types) != 1 {
				return false
			}
		case "profile":
			if len(s.types) == 0 || len(s.types[0].profiles) == 0 || c.set.Profile(s.types[0].profiles[0]) == nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// expected returns the fixed or pattern value slice s gives the
// discriminator path, and whether it is a pattern.
func expected(s *element, path string, steps []string) (any, bool) {
	el := s
	if path != "$this" {
		for _, step := range steps {
			var next *element
			for _, ch := range el.children {
				if ch.name == step {
					next = ch
					break
				}
			}
			if next == nil {
				// An extension slice: its url is the profile it names.
				if path == "url" && len(s.types) == 1 && s.types[0].code == "Extension" && len(s.types[0].profiles) == 1 {
					return s.types[0].profiles[0], false
				}
				return nil, false
			}
			el = next
		}
	}
	if el.fixed != nil {
		return el.fixed, false
	}
	if el.pattern != nil {
		return el.pattern, true
	}
	return nil, false
}

// matchSlice reports whether v matches every discriminator of slice s.
func (c *checker) matchSlice(v item, el, s *element) bool {
	for i, d := range el.slicing.discriminators {
		switch d.kind {
		case "value", "pattern":
			exp := s.expect[i]
			pattern := exp.pattern || d.kind == "pattern"
			if !anyAt(v.val, d.steps, func(got any) bool {
				return equal(got, exp.val) || pattern && matches(got, exp.val)
			}) {
				return false
			}
		case "type":
			t := strings.TrimPrefix(v.key, el.name)
			if !el.choice {
				return false // only choice elements tell their type by name
			}
			if !strings.EqualFold(t, s.types[0].code) {
				return false
			}
		case "profile":
			p := c.set.Profile(s.types[0].profiles[0])
			obj, ok := v.val.(map[string]any)
			if !ok || c.depth >= maxDepth {
				return false
			}
			sub := &checker{set: c.set, profile: p, depth: c.depth + 1, doc: c.doc}
			sub.object(obj, p.root, v.path())
			for _, is := range sub.issues {
				if is.Severity == "error" {
					return false
				}
			}
		}
	}
	return true
}

// anyAt reports whether f holds for some value at the path steps below v
// (no steps: v itself), arrays flattened.
func anyAt(v any, steps []string, f func(any) bool) bool {
	if len(steps) == 0 {
		if arr, ok := v.([]any); ok {
			for _, x := range arr {
				if f(x) {
					return true
				}
			}
			return false
		}
		return f(v)
	}
	switch x := v.(type) {
	case map[string]any:
		next, ok := x[steps[0]]
		return ok && anyAt(next, steps[1:], f)
	case []any:
		for _, y := range x {
			if anyAt(y, steps, f) {
				return true
			}
		}
	}
	return false
}

// equal is fixed[x]'s exact equality on decoded JSON.
func equal(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !equal(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numEqual(x, y)
	}
	return a == b
}

func numEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, err1 := a.Float64()
	y, err2 := b.Float64()
	return err1 == nil && err2 == nil && x == y
}

// matches is pattern[x]'s rule: every member the pattern has, the value
// has with a matching value; each element of a pattern array matches some
// element of the value's.
func matches(v, pattern any) bool {
	switch p := pattern.(type) {
	case map[string]any:
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range p {
			if !matches(obj[k], pv) {
				return false
			}
		}
		return true
	case []any:
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, pe := range p {
			found := false
			for _, ve := range arr {
				if matches(ve, pe) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	return equal(v, pattern)
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		return string(b[:197]) + "..."
	}
	return string(b)
}

// binding checks a required binding where the value set expands here.
func (c *checker) binding(v item, el *element) {
	codes, ok := c.set.vs.Expand(el.binding.valueSet)
	if !ok {
		if c.notBound == nil {
			c.notBound = map[string]bool{}
		}
		if !c.notBound[el.binding.valueSet] {
			c.notBound[el.binding.valueSet] = true
			c.add("information", "informational", v.path(), "the required binding to "+el.binding.valueSet+" was not checked: the value set does not expand here (an external terminology)")
		}
		return
	}
	var codings [][2]string // system, code
	switch x := v.val.(type) {
	case string:
		codings = append(codings, [2]string{"", x})
	case map[string]any:
		if code, ok := x["code"].(string); ok {
			sys, _ := x["system"].(string)
			codings = append(codings, [2]string{sys, code})
		}
		if arr, ok := x["coding"].([]any); ok {
			for _, cd := range arr {
				if m, ok := cd.(map[string]any); ok {
					code, _ := m["code"].(string)
					sys, _ := m["system"].(string)
					if code != "" {
						codings = append(codings, [2]string{sys, code})
					}
				}
			}
		}
	}
	if len(codings) == 0 {
		return // no code to check (text only, or a data-absent extension)
	}
	for _, cd := range codings {
		if codes.Has(cd[0], cd[1]) {
			return
		}
	}
	c.add("error", "code-invalid", v.path(), fmt.Sprintf("no code of %s is in the required value set %s", el.path, el.binding.valueSet))
}

// mustSupportAbsent reports an absent must-support element (or slice) at
// path once per instance of its parent: a value matching a slice is walked
// with the sliced element's children and then the slice's, which repeat
// them. The issues are few; a scan is cheaper than a set.
func (c *checker) mustSupportAbsent(path, msg string) {
	full := msg + " (profile " + c.profile.URL + ")"
	for i := range c.issues {
		if is := &c.issues[i]; is.Diagnostics == full && is.Expression[0] == path {
			return
		}
	}
	c.add("information", "informational", path, msg)
}

// invariants evaluates the root's own invariants on the resource: the
// compiled ones always, the others through gofhir/fhirpath for $validate
// only.
func (c *checker) invariants(el *element, body []byte, path string) {
	for i := range el.invariants {
		inv := &el.invariants[i]
		if inv.fn != nil {
			doc := fpItem{v: c.doc, typ: c.profile.Type}
			ok, err := inv.fn.holds(doc, doc)
			c.verdict(inv, path, ok, err)
			continue
		}
		if !c.full {
			c.add("information", "informational", path, "invariant "+inv.key+" was not evaluated on write: "+inv.why+" ($validate evaluates it)")
			continue
		}
		if inv.compiled == nil {
			c.add("information", "informational", path, "invariant "+inv.key+" was not evaluated: its FHIRPath is outside what the engine supports")
			continue
		}
		res, err := inv.compiled.Evaluate(body)
		if err != nil {
			c.add("information", "informational", path, "invariant "+inv.key+" was not evaluated: "+err.Error())
			continue
		}
		ok := true
		if len(res) == 1 {
			if b, isBool := res[0].(interface{ Bool() bool }); isBool {
				ok = b.Bool()
			}
		}
		c.verdict(inv, path, ok, nil)
	}
}

// elementInvariant evaluates an invariant of element el on its value v,
// when compiled: gofhir/fhirpath evaluates whole resources only, without
// the type information element-level invariants ($this is DateTime) need.
func (c *checker) elementInvariant(inv *invariant, v item, el *element) {
	if inv.fn == nil {
		when := ""
		if !c.full {
			when = " on write"
		}
		c.add("information", "informational", v.path(), "invariant "+inv.key+" on "+el.path+" was not evaluated"+when+": "+inv.why)
		return
	}
	typ := ""
	switch {
	case el.choice:
		typ = strings.TrimPrefix(v.key, el.name)
	case len(el.types) == 1:
		typ = el.types[0].code
	}
	ok, err := inv.fn.holds(fpItem{v: v.val, typ: typ}, fpItem{v: c.doc})
	c.verdict(inv, v.path(), ok, err)
}

// verdict reports an invariant's outcome at path.
func (c *checker) verdict(inv *invariant, path string, ok bool, err error) {
	switch {
	case err != nil:
		c.add("information", "informational", path, "invariant "+inv.key+" was not evaluated: "+err.Error())
	case !ok:
		sev := "error"
		if inv.severity == "warning" {
			sev = "warning"
		}
		c.add(sev, "invariant", path, "invariant "+inv.key+" failed: "+inv.human)
	}
}
