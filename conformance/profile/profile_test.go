package profile_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/emberfhir/ember/conformance/igpkg"
	"github.com/emberfhir/ember/conformance/igtest"
	"github.com/emberfhir/ember/conformance/profile"
	"github.com/emberfhir/ember/fhir"
)

func usCoreSet(t testing.TB) (*profile.Set, *igpkg.Package) {
	t.Helper()
	pkg, _ := igtest.USCore(t)
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
	for _, err := range errs {
		t.Error(err)
	}
	return set, pkg
}

func claimed(t testing.TB, body []byte) (string, []string) {
	var head struct {
		ResourceType string
		Meta         struct{ Profile []string }
	}
	if err := json.Unmarshal(body, &head); err != nil {
		t.Fatal(err)
	}
	return head.ResourceType, head.Meta.Profile
}

// invalidExamples are US Core examples a careful reading finds invalid
// against the profile they declare, with the reason.
var invalidExamples = map[string]string{}

// Every US Core example is valid R4 and conforms to each profile it
// declares, on $validate's check and on the write path's.
func TestUSCoreExamplesConform(t *testing.T) {
	set, pkg := usCoreSet(t)
	p, _ := fhir.NewParser()
	checked := 0
	for _, ex := range pkg.Examples {
		typ, profiles := claimed(t, ex.JSON)
		if _, err := p.Parse(ex.JSON, ""); err != nil {
			t.Errorf("%s: not valid R4: %v", ex.File, err)
			continue
		}
		for _, u := range profiles {
			if !set.Known(u) {
				continue
			}
			checked++
			var errs []string
			for _, is := range append(set.Check(typ, ex.JSON, u), set.CheckStructure(typ, ex.JSON, u)...) {
				if is.Severity == "error" {
					errs = append(errs, strings.Join(is.Expression, ",")+": "+is.Diagnostics)
				}
			}
			if why, listed := invalidExamples[ex.File]; listed {
				if len(errs) == 0 {
					t.Errorf("%s is listed as invalid (%s) but conforms", ex.File, why)
				}
				continue
			}
			if len(errs) > 0 {
				t.Errorf("%s against %s:\n  %s", ex.File, u, strings.Join(errs, "\n  "))
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d example/profile pairs checked", checked)
	}
}

func example(t *testing.T, pkg *igpkg.Package, file string) map[string]any {
	t.Helper()
	for _, ex := range pkg.Examples {
		if ex.File == "example/"+file {
			var m map[string]any
			if err := json.Unmarshal(ex.JSON, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no example %s", file)
	return nil
}

// Mutations that break a profile rule are errors at the element.
func TestProfileViolations(t *testing.T) {
	set, pkg := usCoreSet(t)
	const (
		patientProfile = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
		labProfile     = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"
		bpProfile      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure"
	)
	for _, c := range []struct {
		name, file, profile string
		mutate              func(m map[string]any)
		expr, diag          string
	}{
		{"no identifier", "Patient-example.json", patientProfile, func(m map[string]any) { delete(m, "identifier") },
			"Patient.identifier", "minimum required = 1"},
		{"identifier without system", "Patient-example.json", patientProfile, func(m map[string]any) {
			delete(m["identifier"].([]any)[0].(map[string]any), "system")
		}, "Patient.identifier[0].system", "minimum required = 1"},
		{"gender not in the value set", "Patient-example.json", patientProfile, func(m map[string]any) { delete(m, "gender") },
			"Patient.gender", "minimum required = 1"},
		{"race ombCategory not a Coding", "Patient-example.json", patientProfile, func(m map[string]any) {
			for _, x := range m["extension"].([]any) {
				ext := x.(map[string]any)
				if strings.HasSuffix(ext["url"].(string), "us-core-race") {
					sub := ext["extension"].([]any)[0].(map[string]any)
					delete(sub, "valueCoding")
					sub["valueString"] = "white"
				}
			}
		}, "Patient.extension[0].extension[0].valueString", "not allowed"},
		{"race without its text", "Patient-example.json", patientProfile, func(m map[string]any) {
			for _, x := range m["extension"].([]any) {
				ext := x.(map[string]any)
				if strings.HasSuffix(ext["url"].(string), "us-core-race") {
					var keep []any
					for _, s := range ext["extension"].([]any) {
						if s.(map[string]any)["url"] != "text" {
							keep = append(keep, s)
						}
					}
					ext["extension"] = keep
				}
			}
		}, "Patient.extension[0].extension", "slice text"},
		{"lab category replaced", "Observation-cbc-hemoglobin.json", labProfile, func(m map[string]any) {
			m["category"] = []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}}
		}, "Observation.category", "slice us-core"},
		{"blood pressure without the systolic component", "Observation-blood-pressure.json", bpProfile, func(m map[string]any) {
			m["component"] = m["component"].([]any)[1:]
		}, "Observation.component", "slice systolic"},
		{"blood pressure code changed", "Observation-blood-pressure.json", bpProfile, func(m map[string]any) {
			m["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] = "12345-6"
		}, "Observation.code", "pattern"},
		{"observation status outside the required binding", "Observation-cbc-hemoglobin.json", labProfile, func(m map[string]any) {
			m["status"] = "entered-in-error"
		}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := example(t, pkg, c.file)
			c.mutate(m)
			body, _ := json.Marshal(m)
			issues := set.Check(m["resourceType"].(string), body, c.profile)
			var errs []string
			found := false
			for _, is := range issues {
				if is.Severity != "error" {
					continue
				}
				errs = append(errs, strings.Join(is.Expression, ",")+": "+is.Diagnostics)
				if len(is.Expression) == 1 && is.Expression[0] == c.expr && strings.Contains(is.Diagnostics, c.diag) {
					found = true
				}
			}
			if c.expr == "" {
				if len(errs) > 0 {
					t.Errorf("want no error, got %v", errs)
				}
				return
			}
			if !found {
				t.Errorf("want an error at %s (%s); got %v", c.expr, c.diag, errs)
			}
		})
	}
}
