package main

import (
	"context"
	"fmt"
	"time"

	"github.com/emberfhir/ember/conformance/igpkg"
	"github.com/emberfhir/ember/conformance/profile"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/testfiles"
)

// profileRounds is how many checks each profile figure averages.
const profileRounds = 2000

// profileBench measures, in process, what checking a resource against a
// US Core profile costs (issue 16: ≤ 50 µs for a US Core Patient or
// Observation on top of base validation): the write path's check
// (CheckStructure, with the profile's invariants compiled to Go) and
// $validate's, which evaluates through gofhir/fhirpath the invariants that
// do not compile (none on these two profiles), on the guide's own
// examples.
func profileBench(_ context.Context, _ *env) ([]figure, error) {
	path, err := testfiles.Path("ig/hl7.fhir.us.core-6.1.0.tgz")
	if err != nil {
		return nil, err
	}
	pkg, _, err := igpkg.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sds, vss, css [][]byte
	for _, r := range pkg.Resources {
		switch r.ResourceType {
		case "StructureDefinition":
			sds = append(sds, r.JSON)
		case "ValueSet":
			vss = append(vss, r.JSON)
		case "CodeSystem":
			css = append(css, r.JSON)
		}
	}
	set, errs := profile.NewSet(sds, profile.NewValueSets(vss, css))
	if len(errs) > 0 {
		return nil, fmt.Errorf("profiles: %v", errs[0])
	}
	var figs []figure
	for _, c := range []struct{ name, typ, file, url string }{
		{"patient", "Patient", "example/Patient-example.json", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"},
		{"observation", "Observation", "example/Observation-cbc-hemoglobin.json", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"},
	} {
		var body []byte
		for _, ex := range pkg.Examples {
			if ex.File == c.file {
				body = ex.JSON
			}
		}
		if body == nil {
			return nil, fmt.Errorf("no example %s", c.file)
		}
		for _, is := range set.Check(c.typ, body, c.url) {
			if is.Severity == "error" {
				return nil, fmt.Errorf("%s does not conform: %s", c.file, is.Diagnostics)
			}
		}
		for _, m := range []struct {
			suffix string
			check  func(string, []byte, string) []fhir.Issue
		}{
			{"", func(t string, b []byte, u string) []fhir.Issue { return set.CheckStructure(t, b, u) }},
			{"_validate", func(t string, b []byte, u string) []fhir.Issue { return set.Check(t, b, u) }},
		} {
			rounds := profileRounds
			for range rounds / 10 { // warm-up: caches, the GC's pace
				m.check(c.typ, body, c.url)
			}
			start := time.Now()
			for range rounds {
				m.check(c.typ, body, c.url)
			}
			figs = append(figs, figure{"profile_check_" + c.name + m.suffix, float64(time.Since(start).Microseconds()) / float64(rounds), "µs"})
		}
	}
	return figs, nil
}
