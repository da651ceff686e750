package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/server"
)

// knownInvalidExamples are official R4 examples that are not valid R4, each
// with the reason Ember rejects it. The test fails if one of them is
// accepted (the list must stay honest) or if any other example is rejected.
var knownInvalidExamples = map[string]string{
	"DeviceMetric-example.json":                                                                "DeviceMetric.parent refers to a DeviceDefinition; R4 allows Reference(Device)",
	"DeviceUseStatement-example.json":                                                          "DeviceUseStatement.reasonReference refers to a Procedure; R4 allows Condition|Observation|DiagnosticReport|DocumentReference|Media",
	"ImplementationGuide-fhir.json":                                                            "ImplementationGuide.name and .status (1..1) are missing",
	"ig-r4.json":                                                                               "ImplementationGuide.name and .status (1..1) are missing",
	"MedicationRequest-medrx0301.json":                                                         "MedicationRequest.dispenseRequest.performer refers to a Practitioner; R4 allows Reference(Organization)",
	"Observation-clinical-gender.json":                                                         "Observation.performer refers to an Encounter, which R4 does not allow",
	"Questionnaire-qs1.json":                                                                   "Questionnaire.item.linkId (1..1) is missing on nested items",
	"SearchParameter-codesystem-extensions-CodeSystem-author.json":                             "SearchParameter.base (1..*) is missing",
	"SearchParameter-codesystem-extensions-CodeSystem-effective.json":                          "SearchParameter.base (1..*) is missing",
	"SearchParameter-codesystem-extensions-CodeSystem-end.json":                                "SearchParameter.base (1..*) is missing",
	"SearchParameter-codesystem-extensions-CodeSystem-keyword.json":                            "SearchParameter.base (1..*) is missing",
	"SearchParameter-codesystem-extensions-CodeSystem-workflow.json":                           "SearchParameter.base (1..*) is missing",
	"SearchParameter-valueset-extensions-ValueSet-author.json":                                 "SearchParameter.base (1..*) is missing",
	"SearchParameter-valueset-extensions-ValueSet-effective.json":                              "SearchParameter.base (1..*) is missing",
	"SearchParameter-valueset-extensions-ValueSet-end.json":                                    "SearchParameter.base (1..*) is missing",
	"SearchParameter-valueset-extensions-ValueSet-keyword.json":                                "SearchParameter.base (1..*) is missing",
	"SearchParameter-valueset-extensions-ValueSet-workflow.json":                               "SearchParameter.base (1..*) is missing",
	"SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": "its id has 68 characters; the id type allows at most 64",
}

// TestOfficialExamplesRoundTrip PUTs every example of hl7.fhir.r4.examples at
// its own id and reads it back: the stored resource must equal what was sent
// apart from meta.versionId and meta.lastUpdated.
func TestOfficialExamplesRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 5,300-example round trip")
	}
	dir := testenv.FHIRPackage(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Two examples (Bundle-resources, Bundle-dataelements) exceed the default
	// 16 MiB body limit; they are valid, so the limit is raised here.
	e := newEnv(t, func(c *server.Config) { c.MaxBody = 64 << 20 })
	type result struct {
		file, reason string
	}
	var (
		mu       sync.Mutex
		rejected []result
		noID     int
		ok       int
	)
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				status, reason := roundTrip(e, f)
				mu.Lock()
				switch status {
				case "ok":
					ok++
				case "no-id":
					noID++
				default:
					rejected = append(rejected, result{filepath.Base(f), reason})
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "package.json" || strings.HasPrefix(base, ".") {
			continue
		}
		work <- f
	}
	close(work)
	wg.Wait()

	sort.Slice(rejected, func(i, j int) bool { return rejected[i].file < rejected[j].file })
	t.Logf("official R4 examples: %d round-tripped, %d rejected, %d without an id (skipped)", ok, len(rejected), noID)
	seen := map[string]bool{}
	for _, r := range rejected {
		seen[r.file] = true
		if _, known := knownInvalidExamples[r.file]; !known {
			t.Errorf("%s: %s", r.file, r.reason)
		}
	}
	for f := range knownInvalidExamples {
		if !seen[f] {
			t.Errorf("%s is listed as invalid but was accepted: remove it from knownInvalidExamples", f)
		}
	}
	if ok < 5000 {
		t.Errorf("only %d examples round-tripped", ok)
	}
}

// roundTrip PUTs one example and compares the read-back.
func roundTrip(e *env, file string) (status, reason string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "error", err.Error()
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "error", "not JSON: " + err.Error()
	}
	if head.ID == "" {
		return "no-id", ""
	}
	path := "/" + head.ResourceType + "/" + head.ID
	// roundTrip runs on worker goroutines: send, not do (which calls t.Fatal).
	r, err := e.send("PUT", path, raw)
	if err != nil {
		return "error", err.Error()
	}
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		return "rejected", string(r.body)
	}
	if r, err = e.send("GET", path, nil); err != nil {
		return "error", "read back: " + err.Error()
	}
	if r.status != http.StatusOK {
		return "error", "read back: " + string(r.body)
	}
	want, got := normalise(raw), normalise(r.body)
	if !reflect.DeepEqual(want, got) {
		return "error", "read back differs: " + diff(want, got)
	}
	return "ok", ""
}

// normalise decodes JSON keeping numbers' text, and drops the server-owned meta fields.
func normalise(b []byte) map[string]any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return map[string]any{"undecodable": err.Error()}
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
	return m
}

func diff(want, got map[string]any) string {
	for k, w := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(w, g) {
			wb, _ := json.Marshal(w)
			gb, _ := json.Marshal(g)
			return k + ": sent " + clip(string(wb)) + ", stored " + clip(string(gb))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return k + ": not sent but stored"
		}
	}
	return "?"
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
