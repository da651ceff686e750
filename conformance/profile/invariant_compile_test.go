package profile

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/emberfhir/ember/conformance/igtest"
	"github.com/emberfhir/ember/fhir"
	"github.com/gofhir/fhirpath"
)

// cannotFail lists the compiled invariants no valid resource breaks, with
// the reason; every other one must be broken somewhere in the
// differential corpus, so that a compiled form always true is caught.
var cannotFail = map[string]string{
	// On the element value[x] the context is the Quantity (or
	// CodeableConcept) itself, whose "value" is its number: the ofType()
	// filter leaves nothing, and empty() holds. The same expression on the
	// resource (us-core-observation-screening-assessment) does fail.
	"Observation.value[x] us-core-3": "value.ofType(Quantity) from the value itself is empty",
	"Observation.value[x] us-core-4": "value.ofType(CodeableConcept) from the value itself is empty",
	// 'a or b' on non-Boolean operands: one item converts to true, none is
	// empty, so the result is never false (gofhir gives empty throughout).
	"PractitionerRole pd-1":       "or on non-Boolean operands is never false",
	"PractitionerRole us-core-13": "or on non-Boolean operands is never false",
}

// gofhirWrong lists the invariants gofhir/fhirpath evaluates wrongly,
// with an oracle written in Go that the compiled form is held to instead.
var gofhirWrong = map[string]struct {
	why    string
	oracle func(ctx any) string
}{
	// gofhir's repeat() returns its input's first level only
	// (repeat(item).count() is 1 on an item holding two), so sdcqr-2 never
	// sees nested items.
	"QuestionnaireResponse sdcqr-2": {"gofhir's repeat() does not descend", answeredLinkIdsDistinct},
}

// answeredLinkIdsDistinct is sdcqr-2 by hand: below the resource and
// every item and answer, the items with an answer value have distinct
// linkIds.
func answeredLinkIdsDistinct(ctx any) string {
	ok := true
	var walk func(v any)
	walk = func(v any) {
		m, isObj := v.(map[string]any)
		if !isObj {
			return
		}
		seen := map[string]bool{}
		items, _ := m["item"].([]any)
		for _, it := range items {
			im := it.(map[string]any)
			answered := false
			ans, _ := im["answer"].([]any)
			for _, a := range ans {
				for k := range a.(map[string]any) {
					answered = answered || strings.HasPrefix(k, "value")
				}
			}
			if id, _ := im["linkId"].(string); answered {
				ok = ok && !seen[id]
				seen[id] = true
			}
		}
		for _, k := range []string{"item", "answer"} {
			arr, _ := m[k].([]any)
			for _, x := range arr {
				walk(x)
			}
		}
	}
	walk(ctx)
	if ok {
		return "pass"
	}
	return "fail"
}

// compiledInvariant is one invariant of the guide with its Go form.
type compiledInvariant struct {
	el  *element
	inv *invariant
}

func (ci compiledInvariant) name() string { return ci.el.path + " " + ci.inv.key }

// Every invariant of US Core that compiles agrees with gofhir/fhirpath on
// the guide's examples and on mutations made to break it: the same
// outcome (holds, fails, not evaluated) on every instance of its element.
func TestCompiledInvariantsAgreeWithGofhir(t *testing.T) {
	pkg, _ := igtest.USCore(t)
	var sds [][]byte
	for _, r := range pkg.Resources {
		if r.ResourceType == "StructureDefinition" {
			sds = append(sds, r.JSON)
		}
	}
	set, errs := NewSet(sds, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	examples := map[string][][]byte{} // by resource type
	for _, ex := range pkg.Examples {
		var head struct{ ResourceType string }
		if err := json.Unmarshal(ex.JSON, &head); err != nil {
			t.Fatal(err)
		}
		examples[head.ResourceType] = append(examples[head.ResourceType], ex.JSON)
	}
	// No example of PractitionerRole: one made for the test.
	examples["PractitionerRole"] = append(examples["PractitionerRole"], []byte(`{"resourceType":"PractitionerRole","id":"pr",
		"practitioner":{"reference":"Practitioner/1"},"organization":{"reference":"Organization/1"},
		"telecom":[{"system":"phone","value":"555-0100"}],"endpoint":[{"reference":"Endpoint/1"}]}`))
	parser, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	invs := compiledInvariants(set)
	if len(invs) < 20 {
		t.Fatalf("only %d compiled invariants", len(invs))
	}
	for _, ci := range invs {
		t.Run(ci.name(), func(t *testing.T) {
			typ, _, _ := strings.Cut(ci.el.path, ".")
			outcomes := map[string]int{}
			for _, body := range examples[typ] {
				for _, doc := range mutations(t, body, ci) {
					if _, err := parser.Parse(doc, typ); err != nil {
						continue // a mutation that is no valid R4: never checked
					}
					for _, o := range compareOnInstances(t, doc, ci) {
						outcomes[o]++
					}
				}
			}
			t.Logf("outcomes %v", outcomes)
			if outcomes["pass"] == 0 {
				t.Errorf("no instance in the corpus holds: %v", outcomes)
			}
			if why, listed := cannotFail[ci.name()]; listed {
				if outcomes["fail"] > 0 {
					t.Errorf("listed as never failing (%s), but failed %d times", why, outcomes["fail"])
				}
			} else if outcomes["fail"] == 0 {
				t.Errorf("no mutation breaks it: %v", outcomes)
			}
		})
	}
}

// compiledInvariants lists the set's compiled invariants, each element
// path and expression once.
func compiledInvariants(set *Set) []compiledInvariant {
	var out []compiledInvariant
	seen := map[string]bool{}
	var walk func(el *element)
	walk = func(el *element) {
		for i := range el.invariants {
			inv := &el.invariants[i]
			if inv.fn == nil || seen[el.path+" "+inv.expr] {
				continue
			}
			seen[el.path+" "+inv.expr] = true
			out = append(out, compiledInvariant{el: el, inv: inv})
		}
		for _, ch := range el.children {
			walk(ch)
		}
		for _, sl := range el.slices {
			walk(sl)
		}
	}
	for _, u := range set.URLs() {
		if p := set.Profile(u); p.Kind == "resource" {
			walk(p.root)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name() < out[j].name() })
	return out
}

// instance is one value of an element in a document: the value, its type
// where a choice tells it, and a FHIRPath naming it alone.
type instance struct {
	val  any
	typ  string
	path string
}

// instances finds the values at an element path (Observation.effective[x],
// DocumentReference.content.attachment) in a decoded resource.
func instances(doc map[string]any, elPath string) []instance {
	steps := strings.Split(elPath, ".")
	cur := []instance{{val: doc, path: steps[0]}}
	for _, step := range steps[1:] {
		name, choice := strings.CutSuffix(step, "[x]")
		var next []instance
		for _, in := range cur {
			obj, ok := in.val.(map[string]any)
			if !ok {
				continue
			}
			for k, v := range obj {
				typ := ""
				switch {
				case k == name && !choice:
				case choice && strings.HasPrefix(k, name) && isChoiceSuffix(k[len(name):]):
					typ = k[len(name):]
				default:
					continue
				}
				if arr, ok := v.([]any); ok {
					for i, x := range arr {
						next = append(next, instance{val: x, typ: typ, path: in.path + "." + name + "[" + strconv.Itoa(i) + "]"})
					}
				} else {
					next = append(next, instance{val: v, typ: typ, path: in.path + "." + name})
				}
			}
		}
		cur = next
	}
	return cur
}

// compareOnInstances evaluates the invariant on each instance of its
// element with both engines, failing the test where they differ, and
// returns the outcomes.
func compareOnInstances(t *testing.T, body []byte, ci compiledInvariant) []string {
	t.Helper()
	doc, ok := parse(body)
	if !ok {
		t.Fatalf("unparsable: %s", body)
	}
	var out []string
	for _, in := range instances(doc, ci.el.path) {
		expr := ci.inv.expr
		if strings.Contains(ci.el.path, ".") {
			expr = in.path + ".select(" + ci.inv.expr + ")"
		}
		typ := in.typ
		if typ == "" && len(ci.el.types) == 1 {
			typ = ci.el.types[0].code
		}
		got := outcome(ci.inv.fn.holds(fpItem{v: in.val, typ: typ}, fpItem{v: doc}))
		var want string
		if w, listed := gofhirWrong[ci.name()]; listed {
			want = w.oracle(in.val)
		} else {
			want = gofhirOutcome(t, body, expr)
		}
		if got != want {
			t.Errorf("%s at %s: compiled %s, gofhir %s (%s)\n%.400s", ci.inv.key, in.path, got, want, expr, body)
		}
		out = append(out, got)
	}
	return out
}

func outcome(ok bool, err error) string {
	switch {
	case err != nil:
		return "error"
	case ok:
		return "pass"
	}
	return "fail"
}

func gofhirOutcome(t *testing.T, body []byte, expr string) string {
	t.Helper()
	x, err := fhirpath.Compile(expr)
	if err != nil {
		t.Fatalf("gofhir does not compile %s: %v", expr, err)
	}
	res, err := x.Evaluate(body)
	if err != nil {
		return "error"
	}
	if len(res) == 1 {
		if b, isBool := res[0].(interface{ Bool() bool }); isBool && !b.Bool() {
			return "fail"
		}
	}
	return "pass"
}

// mutations returns the document and variants of it made to break the
// invariant: each member of each instance of its element removed, each
// string member there set to something else, and the changes listed for
// the invariant's key.
func mutations(t *testing.T, body []byte, ci compiledInvariant) [][]byte {
	t.Helper()
	out := [][]byte{body}
	var base map[string]any
	if err := json.Unmarshal(body, &base); err != nil {
		t.Fatal(err)
	}
	n := len(instances(base, ci.el.path))
	mutate := func(f func(doc map[string]any, in instance)) {
		for i := range n {
			var doc map[string]any
			_ = json.Unmarshal(body, &doc)
			f(doc, instances(doc, ci.el.path)[i])
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if obj, ok := firstObject(base, ci.el.path); ok {
		for k, v := range obj {
			if k == "resourceType" || k == "id" {
				continue
			}
			mutate(func(_ map[string]any, in instance) { delete(in.val.(map[string]any), k) })
			if _, isString := v.(string); isString {
				mutate(func(_ map[string]any, in instance) {
					if m := in.val.(map[string]any); m[k] != nil {
						m[k] = "other"
					}
				})
			}
		}
	}
	for _, f := range breakers[ci.inv.key] {
		mutate(func(doc map[string]any, in instance) {
			if m, ok := in.val.(map[string]any); ok {
				f(doc, m)
			} else {
				f(doc, nil)
			}
		})
	}
	return out
}

// firstObject is the first instance of the element, when an object
// (instances of a choice may differ: mutations touch what each has).
func firstObject(doc map[string]any, path string) (map[string]any, bool) {
	ins := instances(doc, path)
	if len(ins) == 0 {
		return nil, false
	}
	m, ok := ins[0].val.(map[string]any)
	return m, ok
}

// breakers are changes made to break an invariant that removing or
// replacing one member does not: on the document and the instance (nil
// when it is no object).
var breakers = map[string][]func(doc, in map[string]any){
	"us-core-1": {func(doc, _ map[string]any) {
		if _, ok := doc["effectiveDateTime"]; ok {
			doc["effectiveDateTime"] = "2021"
		}
	}, func(doc, _ map[string]any) {
		if _, ok := doc["effectiveDateTime"]; ok {
			doc["effectiveDateTime"] = "2021-03"
		}
	}},
	"us-core-3": {func(doc, _ map[string]any) {
		if q, ok := doc["valueQuantity"].(map[string]any); ok {
			q["system"] = "http://example.org/units"
		}
	}},
	"us-core-4": {func(doc, _ map[string]any) {
		doc["valueCodeableConcept"] = map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "LA6576-8"}}}
		for k := range doc {
			if k != "valueCodeableConcept" && strings.HasPrefix(k, "value") {
				delete(doc, k)
			}
		}
	}},
	"us-core-5": {func(doc, _ map[string]any) {
		vc := doc["vaccineCode"].(map[string]any)
		vc["coding"] = append(vc["coding"].([]any), map[string]any{"system": "http://hl7.org/fhir/sid/ndc", "code": "49281-0215-88"})
	}, func(doc, _ map[string]any) {
		vc := doc["vaccineCode"].(map[string]any)
		vc["coding"] = []any{map[string]any{"system": "http://hl7.org/fhir/sid/cvx", "code": "150"}}
	}},
	"us-core-6": {
		func(_, in map[string]any) {
			delete(in, "family")
			delete(in, "given")
			delete(in, "url")
			delete(in, "data")
		},
		func(_, in map[string]any) {
			in["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}}
		},
	},
	"us-core-13": {func(doc, _ map[string]any) {
		for _, k := range []string{"practitioner", "organization", "healthcareService", "location"} {
			delete(doc, k)
		}
	}},
	"pd-1":      {func(doc, _ map[string]any) { delete(doc, "telecom"); delete(doc, "endpoint") }},
	"us-core-7": {func(doc, _ map[string]any) { doc["status"] = "in-progress"; deletePrefix(doc, "performed") }},
	"us-core-8": {func(doc, _ map[string]any) { doc["status"] = "amended"; deletePrefix(doc, "effective") }},
	"us-core-9": {func(doc, _ map[string]any) { doc["status"] = "preliminary"; delete(doc, "issued") }},
	"us-core-10": {func(doc, _ map[string]any) {
		doc["status"] = "corrected"
		deletePrefix(doc, "effective")
	}},
	"us-core-14": {func(doc, _ map[string]any) { delete(doc, "name"); delete(doc, "relationship") }},
	"us-core-15": {func(doc, _ map[string]any) { delete(doc, "subscriberId"); delete(doc, "identifier") }},
	"us-core-17": {
		func(_, in map[string]any) { in["value"] = "1234567893" }, // a valid check digit
		func(_, in map[string]any) { in["value"] = "1234567890" },
	},
	"us-core-20": {func(doc, _ map[string]any) { doc["status"] = "completed"; delete(doc, "whenHandedOver") }},
	"us-core-21": {func(doc, _ map[string]any) { doc["intent"] = "reflex-order"; delete(doc, "requester") }},
	"sdcqr-2":    {duplicateAnsweredItem},
}

func deletePrefix(doc map[string]any, prefix string) {
	for k := range doc {
		if strings.HasPrefix(k, prefix) {
			delete(doc, k)
		}
	}
}

// duplicateAnsweredItem repeats the first answered item of the first
// item list holding one, so that two siblings share a linkId.
func duplicateAnsweredItem(doc, _ map[string]any) {
	var walk func(obj map[string]any) bool
	walk = func(obj map[string]any) bool {
		items, _ := obj["item"].([]any)
		for _, it := range items {
			m := it.(map[string]any)
			if ans, ok := m["answer"].([]any); ok && len(ans) > 0 {
				obj["item"] = append(items, m)
				return true
			}
		}
		for _, it := range items {
			if walk(it.(map[string]any)) {
				return true
			}
		}
		return false
	}
	walk(doc)
}

func TestCompileInvariantRejectsOutsideTheSubset(t *testing.T) {
	for _, expr := range []string{
		"who.resolve() is Practitioner",
		"code.memberOf('http://example.org/vs')",
		"%ucum = 'x'",
		"$index > 0",
		"text.div.exists()", // on the root, whose text.div the decoding skips
		"name.given.matches(family)",
	} {
		if _, err := compileInvariant(expr, true); err == nil {
			t.Errorf("%s compiled", expr)
		}
	}
	for _, expr := range []string{"code.text.exists()", "(a | b).count() = 2", "{}.empty()", "-1 < 0 and 7 div 2 = 3 and 7 mod 2 = 1"} {
		if _, err := compileInvariant(expr, false); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
}

// The compiled semantics on small cases, each against gofhir where it
// agrees with FHIRPath, written out where it does not.
func TestCompiledSemantics(t *testing.T) {
	doc := `{"resourceType":"Patient","active":true,"name":[{"family":"A","given":["B","C"]},{"given":["D"]}],"_gender":{"extension":[{"url":"u","valueCode":"x"}]},"deceasedBoolean":false,"multipleBirthInteger":2}`
	for _, c := range []struct {
		expr         string
		want         string // outcome
		sameAsGofhir bool
	}{
		{"name.given.count() = 3", "pass", true},
		{"name.given.count() = 2", "fail", true},
		{"name.where(family.exists()).given.count() = 2", "pass", true},
		{"name.family = 'A'", "pass", true},
		{"name.family != 'A'", "fail", true},
		{"deceased.exists() and deceased = false", "pass", true},
		{"deceased is Boolean", "pass", true},
		{"multipleBirth.ofType(Integer) > 1", "pass", true},
		{"multipleBirth + 1 = 3 and (multipleBirth * 2) mod 3 = 1", "pass", true},
		{"name.given.first() = 'B' and name.given.last() = 'D'", "pass", true},
		{"name.given.isDistinct()", "pass", true},
		{"name.select(given.first()).isDistinct() and (name.given.first() = 'B')", "pass", true},
		{"name.given.select('x').isDistinct()", "fail", true},
		{"name.select($this).isDistinct()", "pass", true},
		{"repeat(name.exists()).count() = 2", "pass", false}, // gofhir: 1 (its repeat does not go on)
		{"repeat(1 + 1).count() = 1", "pass", false},
		{"repeat(iif($this is Integer, $this + 1, 0)).count() > 0", "error", false}, // bounded
		{"name.repeat($this.given | %resource.name).count() = 5", "pass", false},
		{"(name.given | name.given).count() = 3", "pass", true},
		{"(name.given | 'B' | 'E').count() = 4", "pass", true},
		{"(name.given | name.family).isDistinct()", "pass", true},
		{"(name.given.first() | name.given.last() | name.given).count() = 3", "pass", true},
		{"name.given.substring(0, 1) = 'B'", "error", false}, // several strings: FHIRPath's error
		{"name[1].given.substring(0, 1) = 'D'", "pass", true},
		{"iif(active, 'y', 'n') = 'n'", "fail", true},
		{"active implies name.exists()", "pass", true},
		{"active.not()", "fail", true},
		{"Patient.name.exists()", "pass", true},
		// A primitive with extensions alone exists (gofhir does not see it).
		{"gender.exists()", "pass", false},
		{"gender.hasValue()", "fail", false},
		// One non-Boolean item is true in a Boolean context.
		{"name.first() and false", "fail", true},
		{"name.first() implies false", "fail", false},
	} {
		t.Run(c.expr, func(t *testing.T) {
			g, err := compileInvariant(c.expr, true)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := parse([]byte(doc))
			root := fpItem{v: m, typ: "Patient"}
			got := outcome(g.holds(root, root))
			if got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
			if c.sameAsGofhir {
				if g := gofhirOutcome(t, []byte(doc), c.expr); g != c.want {
					t.Errorf("gofhir says %s: the case is not one it agrees on", g)
				}
			}
		})
	}
}

// Neither compiling an expression nor evaluating it on a resource panics,
// whatever either holds.
func FuzzCompiledInvariant(f *testing.F) {
	for _, seed := range []struct{ expr, doc string }{
		{"(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())", `{"resourceType":"Observation","valueQuantity":{"value":1}}`},
		{"$this is DateTime implies $this.toString().length() >= 10", `{"resourceType":"Observation","effectiveDateTime":"2020"}`},
		{"(QuestionnaireResponse|repeat(answer|item)).select(item.where(answer.value.exists()).linkId.isDistinct()).allTrue()", `{"resourceType":"QuestionnaireResponse","item":[{"linkId":"a","answer":[{"valueString":"x"}]}]}`},
		{"(((select(value.substring(0,1).toInteger()).select(iif($this<5, $this*2, (($this*2)-9))))+(value.substring(1,1).toInteger()) + 24) mod 10=0)", `{"value":"1234567893"}`},
		{"name.where(given.first() ~ 'a').count() div 2 > -1 | 'x' & 'y'", `{"name":[{"given":["A",null],"_given":[null,{"id":"1"}]}]}`},
	} {
		f.Add(seed.expr, seed.doc)
	}
	f.Fuzz(func(t *testing.T, expr, doc string) {
		g, err := compileInvariant(expr, true)
		if err != nil {
			return
		}
		m, ok := parse([]byte(doc))
		if !ok {
			return
		}
		root := fpItem{v: m}
		_, _ = g.holds(root, root)
	})
}
