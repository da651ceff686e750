package index_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/internal/testenv"
)

// input is one resource to extract.
type input struct {
	typ, name string
	doc       []byte
}

var (
	syntheaOnce  sync.Once
	syntheaInput []input
	syntheaErr   error
)

// syntheaInputs returns every resource of the Synthea data set as the bulk
// import writes it (references resolved by synthea.Loader), loaded once.
func syntheaInputs(tb testing.TB) []input {
	tb.Helper()
	dir, err := synthea.Dir()
	if err != nil {
		tb.Fatal(err)
	}
	syntheaOnce.Do(func() {
		files, err := synthea.Files(dir)
		if err != nil {
			syntheaErr = err
			return
		}
		l := synthea.NewLoader()
		for _, f := range files {
			res, err := l.Resources(f)
			if err != nil {
				syntheaErr = err
				return
			}
			for _, r := range res {
				syntheaInput = append(syntheaInput, input{r.Type, filepath.Base(f) + ":" + r.Type + "/" + r.ID, r.JSON})
			}
		}
	})
	if syntheaErr != nil {
		tb.Fatal(syntheaErr)
	}
	return syntheaInput
}

// exampleInputs returns every resource of the official R4 examples package,
// plus the resources inside Bundle entries and contained lists.
func exampleInputs(tb testing.TB) []input {
	tb.Helper()
	dir := testenv.FHIRPackage(tb)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no examples in %s: %v", dir, err)
	}
	var out []input
	var add func(name string, raw []byte)
	add = func(name string, raw []byte) {
		var head struct {
			ResourceType string            `json:"resourceType"`
			Entry        []json.RawMessage `json:"entry"`
			Contained    []json.RawMessage `json:"contained"`
		}
		if json.Unmarshal(raw, &head) != nil || !spec.IsResourceType(head.ResourceType) {
			return
		}
		out = append(out, input{head.ResourceType, name, raw})
		for _, c := range head.Contained {
			add(name+":contained", c)
		}
		if head.ResourceType == "Bundle" {
			for _, e := range head.Entry {
				var ent struct {
					Resource json.RawMessage `json:"resource"`
				}
				if json.Unmarshal(e, &ent) == nil && len(ent.Resource) > 0 {
					add(name+":entry", ent.Resource)
				}
			}
		}
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		add(filepath.Base(f), raw)
	}
	return out
}

// canonical orders each table's rows by parameter, keeping the order within
// a parameter. The old Extract visited parameters in map order, so only the
// order within a parameter was ever defined.
func canonical(e *index.Entries) *index.Entries {
	if e == nil {
		return nil
	}
	c := *e
	c.Strings = sortedBy(c.Strings, func(x index.String) int32 { return x.Param })
	c.Tokens = sortedBy(c.Tokens, func(x index.Token) int32 { return x.Param })
	c.References = sortedBy(c.References, func(x index.Ref) int32 { return x.Param })
	c.Dates = sortedBy(c.Dates, func(x index.Date) int32 { return x.Param })
	c.Numbers = sortedBy(c.Numbers, func(x index.Number) int32 { return x.Param })
	c.Quantities = sortedBy(c.Quantities, func(x index.Quantity) int32 { return x.Param })
	c.URIs = sortedBy(c.URIs, func(x index.URI) int32 { return x.Param })
	c.Composites = sortedBy(c.Composites, func(x index.Composite) int32 { return x.Param })
	return &c
}

func sortedBy[T any](s []T, key func(T) int32) []T {
	if s == nil {
		return nil
	}
	out := append([]T(nil), s...)
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// sameAsOld reports a difference between Extract and the frozen old one.
func sameAsOld(t *testing.T, in input) bool {
	t.Helper()
	want, werr := index.OldExtract(in.typ, in.doc)
	got, gerr := index.Extract(in.typ, in.doc)
	if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
		t.Errorf("%s: error %v, old %v", in.name, gerr, werr)
		return false
	}
	if !reflect.DeepEqual(canonical(got), canonical(want)) {
		if ambiguousChoice(in.doc) {
			return true // the old walk picked one of several value[x] keys at random
		}
		t.Errorf("%s (%s):\n got %+v\nwant %+v", in.name, in.typ, canonical(got), canonical(want))
		return false
	}
	return true
}

// TestExtractMatchesOldSynthea checks every Synthea resource.
func TestExtractMatchesOldSynthea(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the Synthea data set")
	}
	bad := 0
	for _, in := range syntheaInputs(t) {
		if !sameAsOld(t, in) {
			if bad++; bad > 10 {
				t.Fatal("too many differences")
			}
		}
	}
}

// TestExtractMatchesOldExamples checks every official R4 example resource.
func TestExtractMatchesOldExamples(t *testing.T) {
	bad := 0
	for _, in := range exampleInputs(t) {
		if !sameAsOld(t, in) {
			if bad++; bad > 10 {
				t.Fatal("too many differences")
			}
		}
	}
}

// choiceFields are the names of the untyped choice elements compiled paths
// step into (value, effective, ...).
var choiceFields = func() map[string]bool {
	out := map[string]bool{}
	var steps func([]spec.Path)
	steps = func(ps []spec.Path) {
		for _, p := range ps {
			for _, st := range p.Steps {
				if st.Choice && st.As == "" {
					out[st.Field] = true
				}
			}
		}
	}
	for _, t := range spec.ResourceTypes() {
		for _, sp := range spec.SearchParams(t) {
			steps(sp.Paths)
			for _, c := range sp.Components {
				for _, ps := range c.Paths {
					steps(ps)
				}
			}
		}
	}
	return out
}()

// ambiguousChoice reports whether some object of doc has two keys for one
// choice element (valueString and valueQuantity): the old Extract then
// indexed either at random.
func ambiguousChoice(doc []byte) bool {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return false
	}
	var visit func(any) bool
	visit = func(v any) bool {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				if visit(e) {
					return true
				}
			}
		case map[string]any:
			seen := map[string]bool{}
			for k, e := range x {
				for f := range choiceFields {
					if len(k) > len(f) && strings.HasPrefix(k, f) && unicode.IsUpper(rune(k[len(f)])) {
						if seen[f] {
							return true
						}
						seen[f] = true
					}
				}
				if visit(e) {
					return true
				}
			}
		}
		return false
	}
	return visit(v)
}

// FuzzExtract compares Extract with the old one on mutated resources.
func FuzzExtract(f *testing.F) {
	for i, in := range exampleInputs(f) {
		if i%5 == 0 && len(in.doc) < 16<<10 {
			f.Add(in.doc, uint16(0))
		}
	}
	types := spec.ResourceTypes()
	f.Fuzz(func(t *testing.T, doc []byte, pick uint16) {
		var head struct{ ResourceType string }
		typ := types[int(pick)%len(types)]
		if json.Unmarshal(doc, &head) == nil && spec.IsResourceType(head.ResourceType) && pick%7 != 1 {
			typ = head.ResourceType
		}
		sameAsOld(t, input{typ, "fuzz", doc})
	})
}

// BenchmarkExtract reports the cost of Extract per resource over the whole
// Synthea data set (mixed types, as the bulk import sees them; one op is one
// pass over all of it); "old" is the implementation before the rewrite.
func BenchmarkExtract(b *testing.B) {
	res := syntheaInputs(b)
	for _, bm := range []struct {
		name string
		fn   func(string, []byte) (*index.Entries, error)
	}{{"new", index.Extract}, {"old", index.OldExtract}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, r := range res {
					if _, err := bm.fn(r.typ, r.doc); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(res)), "ns/resource")
		})
	}
}
