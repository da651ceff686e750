package searchparam_test

import (
	"sync"
	"testing"

	"github.com/emberfhir/ember/conformance/searchparam"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
)

// Parameters added while other goroutines extract index rows: readers see
// the registry before or after, never torn (run with -race), and
// extraction picks the new parameter up at once.
func TestAddWhileExtracting(t *testing.T) {
	doc := []byte(`{"resourceType":"Patient","extension":[{"url":"http://example.org/eye","valueCode":"green"}]}`)
	d := searchparam.Definition{URL: "http://example.org/SearchParameter/eye", Code: "eye-colour", Base: []string{"Patient"}, Type: "token",
		Expression: "Patient.extension.where(url='http://example.org/eye').value.as(code)"}
	cs, errs := searchparam.Compile(d)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	id := cs[0].Param.ID
	count := func() int {
		e, err := index.Extract("Patient", doc)
		if err != nil {
			t.Error(err)
			return 0
		}
		n := 0
		for _, tok := range e.Tokens {
			if tok.Param == id && tok.Code == "green" {
				n++
			}
		}
		return n
	}
	if count() != 0 {
		t.Fatal("indexed before it was added")
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					count()
					_ = spec.SearchParams("Patient")["eye-colour"]
				}
			}
		}()
	}
	if err := spec.AddSearchParams(map[string][]spec.SearchParam{"Patient": {cs[0].Param}}); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if count() != 1 {
		t.Error("not indexed after it was added")
	}
	if !index.Supported(spec.SearchParams("Patient")["eye-colour"]) {
		t.Error("not supported")
	}
	// Adding a code the type has is refused, whole.
	if err := spec.AddSearchParams(map[string][]spec.SearchParam{"Patient": {cs[0].Param}}); err == nil {
		t.Error("a duplicate code was added")
	}
}
