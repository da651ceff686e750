package ig_test

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gofhir/fhirpath"

	"github.com/emberfhir/ember/conformance/ig"
	"github.com/emberfhir/ember/conformance/igpkg"
	"github.com/emberfhir/ember/conformance/igtest"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/igdb"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	pgtest.Main(m)
}

type env struct {
	eng    *engine.Engine
	st     *store.Store
	db     *igdb.DB
	loaded *ig.Loaded
	pkg    *igpkg.Package
}

// setup installs US Core into a fresh database (with a Patient stored
// before, so its new parameters wait for a reindex), loads it, and stores
// every example through an engine that checks claimed profiles.
func setup(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pkg, raw := igtest.USCore(t)
	plain, err := engine.New(engine.Config{BaseURL: "http://example.org/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	res, err := plain.Parser().Parse([]byte(`{"resourceType":"Patient","id":"before"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Update(ctx, engine.System, engine.UpdateRequest{Resource: res, ID: "before"}); err != nil {
		t.Fatal(err)
	}
	db := igdb.New(st)
	rep, err := ig.Install(ctx, plain, db, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Changed || rep.Created < 200 || !rep.Pending || len(rep.Notes) > 0 {
		t.Fatalf("install: %+v", rep)
	}
	for _, p := range []string{"Patient.race", "Patient.ethnicity", "Patient.gender-identity", "Condition.asserted-date", "Encounter.discharge-disposition"} {
		if !contains(rep.NewParams, p) {
			t.Errorf("install: %s not among the new parameters %v", p, rep.NewParams)
		}
	}
	// Installing again writes nothing.
	again, err := ig.Install(ctx, plain, db, raw)
	if err != nil || again.Changed || again.Created != 0 || again.Existing != rep.Created {
		t.Fatalf("second install: %+v %v", again, err)
	}
	pkgs, pending, err := ig.Installed(ctx, db)
	if err != nil || len(pkgs) != 1 || !pending[pkg.Key()] {
		t.Fatalf("installed: %v %v %v", pkgs, pending, err)
	}
	loaded, err := ig.Load(pkgs, pending)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range loaded.Notes {
		t.Logf("load note: %s", n)
	}
	eng, err := engine.New(engine.Config{BaseURL: "http://example.org/fhir", Profiles: loaded.Profiles}, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range pkg.Examples {
		if ex.ResourceType == "Bundle" || ex.ID == "" {
			continue
		}
		res, err := eng.Parser().Parse(ex.JSON, "")
		if err != nil {
			t.Fatalf("%s: %v", ex.File, err)
		}
		if _, err := eng.Update(ctx, engine.System, engine.UpdateRequest{Resource: res, ID: ex.ID}); err != nil {
			t.Fatalf("%s: %v", ex.File, err)
		}
	}
	return &env{eng: eng, st: st, db: db, loaded: loaded, pkg: pkg}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (e *env) search(t *testing.T, typ string, q url.Values) []string {
	t.Helper()
	q.Set("_count", "1000")
	body, err := e.eng.Search(t.Context(), engine.System, engine.SearchRequest{Type: typ, Params: q, Strict: true})
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, q.Encode(), err)
	}
	var b struct {
		Entry []struct {
			Resource struct{ ID string }
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, en := range b.Entry {
		if en.Search.Mode == "match" {
			ids = append(ids, en.Resource.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// TestUSCoreSearchParameters checks every US Core search parameter on the
// US Core examples against expectations computed independently: the
// parameter's FHIRPath expression evaluated by gofhir/fhirpath on each
// example (not Ember's compiled paths or index), and the search semantics
// of each type written out plainly below.
func TestUSCoreSearchParameters(t *testing.T) {
	e := setup(t)
	// Examples by type, as stored.
	byType := map[string][]exampleDoc{}
	for _, ex := range e.pkg.Examples {
		if ex.ResourceType != "Bundle" && ex.ID != "" {
			byType[ex.ResourceType] = append(byType[ex.ResourceType], exampleDoc{ex.ID, ex.JSON})
		}
	}
	queries := 0
	for _, r := range e.pkg.ByType("SearchParameter") {
		var d struct {
			Code, Type, Expression string
			Base                   []string
		}
		if err := json.Unmarshal(r.JSON, &d); err != nil {
			t.Fatal(err)
		}
		for _, base := range d.Base {
			if spec.SearchParams(base)[d.Code] == nil {
				t.Errorf("%s.%s is not registered", base, d.Code)
				continue
			}
			docs := byType[base]
			values := map[string][]string{} // query value -> ids expected
			candidates := map[string]bool{}
			for _, doc := range docs {
				for _, v := range evalParam(t, d.Expression, doc.json) {
					for _, q := range queryValues(d.Type, v) {
						candidates[q] = true
					}
				}
			}
			for q := range candidates {
				for _, doc := range docs {
					if matchesQuery(t, d.Type, d.Expression, doc.json, q) {
						values[q] = append(values[q], doc.id)
					}
				}
			}
			if len(values) == 0 && len(docs) > 0 && d.Code != "_id" {
				t.Logf("%s.%s: no example has a value", base, d.Code)
			}
			for q, want := range values {
				queries++
				sort.Strings(want)
				got := e.search(t, base, url.Values{d.Code: {q}})
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("%s?%s=%s: got %v, want %v", base, d.Code, q, got, want)
				}
			}
		}
	}
	if queries < 150 {
		t.Errorf("only %d queries compared", queries)
	}
	// race and ethnicity, spelled out.
	for _, c := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"race": {"2106-3"}}, "example"},
		{url.Values{"race": {"urn:oid:2.16.840.1.113883.6.238|2106-3"}}, "example"},
		{url.Values{"ethnicity": {"2135-2"}}, "example"},
		{url.Values{"ethnicity": {"urn:oid:2.16.840.1.113883.6.238|2184-0"}}, "example"},
		{url.Values{"race": {"9999-9"}}, ""},
	} {
		if got := strings.Join(e.search(t, "Patient", c.q), ","); !strings.Contains(","+got+",", ","+c.want+",") || c.want == "" && got != "" {
			t.Errorf("Patient?%s: got %q, want %q among them", c.q.Encode(), got, c.want)
		}
	}
}

type exampleDoc struct {
	id   string
	json []byte
}

var resolveIs = regexp.MustCompile(`\.where\(resolve\(\) is (\w+)\)`)

// evalParam evaluates a parameter's expression with gofhir/fhirpath,
// resolve() is T written as a test of the reference's type (gofhir
// resolves nothing), and returns the values as JSON.
func evalParam(t *testing.T, expr string, doc []byte) []any {
	t.Helper()
	expr = resolveIs.ReplaceAllString(expr, ".where(reference.startsWith('$1/'))")
	col, err := fhirpath.Evaluate(doc, expr)
	if err != nil {
		t.Fatalf("fhirpath %s: %v", expr, err)
	}
	var out []any
	for _, v := range col {
		var x any
		s := v.String()
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			x = s // a primitive's text
		}
		out = append(out, x)
	}
	return out
}

// queryValues are the search values to try for one value.
func queryValues(typ string, v any) []string {
	var out []string
	switch typ {
	case "token":
		for _, sc := range tokens(v) {
			out = append(out, sc[1])
			if sc[0] != "" {
				out = append(out, sc[0]+"|"+sc[1])
			}
		}
	case "string":
		for _, s := range stringsOf(v) {
			if len(s) >= 3 && isASCII(s) {
				out = append(out, strings.ToLower(s[:3]))
			}
		}
	case "reference":
		if m, ok := v.(map[string]any); ok {
			if r, ok := m["reference"].(string); ok && strings.Count(r, "/") == 1 {
				out = append(out, r)
			}
		}
	case "date":
		if s, ok := v.(string); ok && len(s) >= 10 {
			out = append(out, s[:10])
		}
		if m, ok := v.(map[string]any); ok {
			if s, ok := m["start"].(string); ok && len(s) >= 10 {
				out = append(out, s[:10])
			}
		}
	}
	return out
}

// matchesQuery computes whether the example matches param=q by the R4
// search rules, from the expression's values.
func matchesQuery(t *testing.T, typ, expr string, doc []byte, q string) bool {
	for _, v := range evalParam(t, expr, doc) {
		switch typ {
		case "token":
			sys, code, hasSys := strings.Cut(q, "|")
			if !hasSys {
				code, sys = q, ""
			}
			for _, sc := range tokens(v) {
				if sc[1] == code && (!hasSys || sc[0] == sys) {
					return true
				}
			}
		case "string":
			for _, s := range stringsOf(v) {
				if strings.HasPrefix(strings.ToLower(s), q) {
					return true
				}
			}
		case "reference":
			if m, ok := v.(map[string]any); ok && m["reference"] == q {
				return true
			}
		case "date":
			lo, hi := dayRange(q)
			for _, r := range dateRanges(v) {
				if !r[0].Before(lo) && !r[1].After(hi) {
					return true
				}
			}
		}
	}
	return false
}

// tokens returns a value's (system, code) pairs: a code, a Coding, a
// CodeableConcept's codings, an Identifier's system and value.
func tokens(v any) [][2]string {
	switch x := v.(type) {
	case string:
		return [][2]string{{"", x}}
	case bool:
		if x {
			return [][2]string{{"", "true"}}
		}
		return [][2]string{{"", "false"}}
	case map[string]any:
		var out [][2]string
		sys, _ := x["system"].(string)
		if c, ok := x["code"].(string); ok {
			out = append(out, [2]string{sys, c})
		}
		if c, ok := x["value"].(string); ok {
			out = append(out, [2]string{sys, c})
		}
		if arr, ok := x["coding"].([]any); ok {
			for _, c := range arr {
				out = append(out, tokens(c)...)
			}
		}
		return out
	}
	return nil
}

// stringsOf returns the strings a string parameter matches in a value: a
// string, or every string part of a HumanName or Address.
func stringsOf(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case map[string]any:
		var out []string
		for k, y := range x {
			if k == "use" || k == "period" || k == "type" || k == "extension" {
				continue
			}
			out = append(out, stringsOf(y)...)
		}
		return out
	case []any:
		var out []string
		for _, y := range x {
			out = append(out, stringsOf(y)...)
		}
		return out
	}
	return nil
}

func isASCII(s string) bool {
	for _, c := range s {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// dayRange is the day q (YYYY-MM-DD) as [start, end] in UTC.
func dayRange(q string) (time.Time, time.Time) {
	d, _ := time.Parse("2006-01-02", q)
	return d, d.Add(24*time.Hour - time.Nanosecond)
}

// dateRanges are the ranges a date, dateTime, instant or Period covers.
func dateRanges(v any) [][2]time.Time {
	switch x := v.(type) {
	case string:
		if lo, hi, ok := precisionRange(x); ok {
			return [][2]time.Time{{lo, hi}}
		}
	case map[string]any:
		s, _ := x["start"].(string)
		e, _ := x["end"].(string)
		lo, _, ok1 := precisionRange(s)
		_, hi, ok2 := precisionRange(e)
		if !ok1 {
			lo = time.Time{}
		}
		if !ok2 {
			hi = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
		}
		if ok1 || ok2 {
			return [][2]time.Time{{lo, hi}}
		}
	}
	return nil
}

// precisionRange is the range a date or dateTime's precision covers.
func precisionRange(s string) (time.Time, time.Time, bool) {
	for _, l := range []struct {
		layout string
		span   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{time.RFC3339Nano, func(t time.Time) time.Time { return t.Add(time.Second) }},
	} {
		if t, err := time.Parse(l.layout, s); err == nil {
			t = t.UTC()
			return t, l.span(t).Add(-time.Nanosecond), true
		}
	}
	return time.Time{}, time.Time{}, false
}

// The server-side state: a package installed over stored resources marks
// its parameters not indexed until a reindex, which finds the older
// resources by them.
func TestReindexFillsNewParameters(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	notIndexed := 0
	for _, p := range e.loaded.Params {
		if p.NotIndexed {
			notIndexed++
		}
	}
	if notIndexed == 0 {
		t.Fatal("no parameter reported as not indexed after installing over stored resources")
	}
	start, err := e.db.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Reindex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.db.MarkIndexed(ctx, start); err != nil {
		t.Fatal(err)
	}
	_, pending, err := ig.Installed(context.Background(), e.db)
	if err != nil || pending[e.pkg.Key()] {
		t.Fatalf("still pending after reindex: %v %v", pending, err)
	}
}
