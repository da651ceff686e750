package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/server"
)

// TestOfficialExamplesXMLRoundTrip takes every example of
// hl7.fhir.r4.examples through Ember in both syntaxes: PUT as JSON, read
// as XML, PUT that XML back, read as JSON. The result must equal the
// original apart from meta.versionId and meta.lastUpdated, as in
// TestOfficialExamplesRoundTrip (fhir/xml's own test does the same
// without a server, and checks the XML against the R4 XML rules).
func TestOfficialExamplesXMLRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 5,300-example XML round trip")
	}
	dir := testenv.FHIRPackage(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *server.Config) { c.MaxBody = 64 << 20 })
	var (
		mu     sync.Mutex
		failed []string
		ok     int
	)
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				reason := xmlRoundTrip(e, f)
				mu.Lock()
				switch reason {
				case "":
					ok++
				case "skip":
				default:
					failed = append(failed, filepath.Base(f)+": "+reason)
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "package.json" || strings.HasPrefix(base, ".") || knownInvalidExamples[base] != "" {
			continue
		}
		work <- f
	}
	close(work)
	wg.Wait()
	for _, f := range failed {
		t.Error(f)
	}
	t.Logf("official R4 examples: %d round-tripped through XML", ok)
	if ok < 5000 {
		t.Errorf("only %d examples round-tripped through XML", ok)
	}
}

// xmlRoundTrip returns "" when the example came back equal, "skip" when it
// has no id, else what went wrong.
func xmlRoundTrip(e *env, file string) string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "not JSON: " + err.Error()
	}
	if head.ID == "" {
		return "skip"
	}
	path := "/" + head.ResourceType + "/" + head.ID
	steps := []struct {
		method  string
		body    func() []byte
		headers []string
	}{
		{"PUT", func() []byte { return raw }, nil},
		{"GET", nil, []string{acceptXML}},
		{"PUT", nil, []string{ctXML, "Accept: application/fhir+json"}},
		{"GET", nil, nil},
	}
	var last response
	for i, s := range steps {
		var body []byte
		if s.method == "PUT" {
			body = last.body
			if s.body != nil {
				body = s.body()
			}
		}
		r, err := e.send(s.method, path, body, s.headers...)
		if err != nil {
			return err.Error()
		}
		if r.status != http.StatusOK && r.status != http.StatusCreated {
			return "step " + s.method + " " + strings.Join(s.headers, " ") + ": " + clip(string(r.body))
		}
		if i == 1 && !strings.HasPrefix(r.header.Get("Content-Type"), "application/fhir+xml") {
			return "not XML: " + r.header.Get("Content-Type")
		}
		last = r
	}
	want, got := normalise(raw), normalise(last.body)
	if !reflect.DeepEqual(want, got) {
		return "differs after XML: " + diff(want, got)
	}
	return ""
}
