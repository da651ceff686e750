package xml

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/emberfhir/ember/internal/testenv"
)

// TestOfficialExamplesRoundTrip converts every example of
// hl7.fhir.r4.examples to XML and back: the JSON must equal the original
// (numbers compared by their text, so decimals keep their written form),
// and the XML must keep the R4 XML rules (checkRules).
func TestOfficialExamplesRoundTrip(t *testing.T) {
	dir := testenv.FHIRPackage(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Each file is independent: spread them over the cores.
	var (
		mu   sync.Mutex
		n    int
		errs []string
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				err := exampleRoundTrip(files[i], i%7 == 0) // the slower pretty layout on a seventh
				mu.Lock()
				if err != "" {
					errs = append(errs, filepath.Base(files[i])+": "+err)
				} else {
					n++
				}
				mu.Unlock()
			}
		}()
	}
	for i, f := range files {
		base := filepath.Base(f)
		if base != "package.json" && !strings.HasPrefix(base, ".") {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	sort.Strings(errs)
	for _, e := range errs {
		t.Error(e)
	}
	t.Logf("%d official examples round-tripped through XML", n)
	if n < 5000 {
		t.Errorf("only %d examples round-tripped", n)
	}
}

// exampleRoundTrip returns what went wrong with one file, "" if nothing.
func exampleRoundTrip(file string, pretty bool) string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	x, err := Marshal(nil, raw, pretty)
	if err != nil {
		return "Marshal: " + err.Error()
	}
	if err := checkRules(x); err != nil {
		return "the XML breaks the R4 XML rules: " + err.Error()
	}
	back, err := Unmarshal(nil, x)
	if err != nil {
		return "Unmarshal: " + err.Error()
	}
	want, werr := decode(raw)
	got, gerr := decode(back)
	if werr != nil || gerr != nil {
		return fmt.Sprint("not JSON: ", werr, gerr)
	}
	if !reflect.DeepEqual(want, got) {
		return "the round trip differs: " + firstDiff("", want, got)
	}
	return ""
}

func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, clip(string(b)))
	}
	return v
}

// firstDiff names the first place where two decoded JSON values differ.
func firstDiff(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path + ": not an object"
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return path + "." + k + ": missing"
			}
			if !reflect.DeepEqual(wv, gv) {
				return firstDiff(path+"."+k, wv, gv)
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return path + "." + k + ": not in the original"
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			wb, _ := json.Marshal(want)
			gb, _ := json.Marshal(got)
			return path + ": " + clip(string(wb)) + " became " + clip(string(gb))
		}
		for i := range w {
			if !reflect.DeepEqual(w[i], g[i]) {
				return firstDiff(path+"[]", w[i], g[i])
			}
		}
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	return path + ": " + clip(string(wb)) + " became " + clip(string(gb))
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
