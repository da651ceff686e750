package profile_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

const usCore = "http://hl7.org/fhir/us/core/StructureDefinition/"

// checkMutated runs the write path's check on a mutated example, which
// must still be valid R4 (what the write path receives).
func checkMutated(t *testing.T, file, profileURL string, mutate func(m map[string]any)) []fhir.Issue {
	t.Helper()
	set, pkg := usCoreSet(t)
	m := example(t, pkg, file)
	mutate(m)
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(body, ""); err != nil {
		t.Fatalf("the mutation is not valid R4: %v", err)
	}
	return set.CheckStructure(m["resourceType"].(string), body, profileURL)
}

// The write path (CheckStructure) evaluates the compiled invariants: a
// resource breaking one gets an error naming the invariant at the
// element's instance.
func TestWritePathEnforcesInvariants(t *testing.T) {
	for _, c := range []struct {
		name, file, profile string
		mutate              func(m map[string]any)
		key, expr           string
	}{
		{"name without family, given or data-absent-reason", "Patient-example.json", "us-core-patient", func(m map[string]any) {
			n := m["name"].([]any)[0].(map[string]any)
			delete(n, "family")
			delete(n, "given")
		}, "us-core-6", "Patient.name[0]"},
		{"name with a family and a data-absent-reason", "Patient-example.json", "us-core-patient", func(m map[string]any) {
			n := m["name"].([]any)[0].(map[string]any)
			n["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}}
		}, "us-core-6", "Patient.name[0]"},
		{"observation with neither value nor data-absent-reason", "Observation-cbc-hemoglobin.json", "us-core-observation-lab", func(m map[string]any) {
			delete(m, "valueQuantity")
		}, "us-core-2", "Observation"},
		{"lab effective to the year only", "Observation-cbc-hemoglobin.json", "us-core-observation-lab", func(m map[string]any) {
			m["effectiveDateTime"] = "2005"
		}, "us-core-1", "Observation.effectiveDateTime"},
		{"NPI with a wrong check digit", "Organization-example-organization-2.json", "us-core-organization", func(m map[string]any) {
			m["identifier"].([]any)[0].(map[string]any)["value"] = "1407071235"
		}, "us-core-17", "Organization.identifier[0]"},
		{"NPI of nine digits", "Organization-example-organization-2.json", "us-core-organization", func(m map[string]any) {
			m["identifier"].([]any)[0].(map[string]any)["value"] = "140707123"
		}, "us-core-16", "Organization.identifier[0]"},
		{"final lab report without effective", "DiagnosticReport-cbc.json", "us-core-diagnosticreport-lab", func(m map[string]any) {
			delete(m, "effectiveDateTime")
		}, "us-core-8", "DiagnosticReport"},
	} {
		t.Run(c.name, func(t *testing.T) {
			issues := checkMutated(t, c.file, usCore+c.profile, c.mutate)
			var errs []string
			found := false
			for _, is := range issues {
				if is.Severity != "error" {
					continue
				}
				errs = append(errs, strings.Join(is.Expression, ",")+": "+is.Diagnostics)
				if is.Code == "invariant" && len(is.Expression) == 1 && is.Expression[0] == c.expr &&
					strings.Contains(is.Diagnostics, "invariant "+c.key+" failed") {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error for %s at %s; got %v", c.key, c.expr, errs)
			}
		})
	}
}

// An invariant outside the compiled subset is reported as not evaluated
// on write, never as an error.
func TestWritePathReportsUncompiledInvariants(t *testing.T) {
	issues := checkMutated(t, "Provenance-example-targeted-provenance.json", usCore+"us-core-provenance", func(map[string]any) {})
	found := false
	for _, is := range issues {
		if is.Severity == "error" {
			t.Errorf("error: %v %s", is.Expression, is.Diagnostics)
		}
		if is.Severity == "information" && strings.Contains(is.Diagnostics, "invariant provenance-1") &&
			strings.Contains(is.Diagnostics, "not evaluated on write") && strings.HasPrefix(is.Expression[0], "Provenance.agent[") {
			found = true
		}
	}
	if !found {
		t.Errorf("no information that provenance-1 was not evaluated: %v", issues)
	}
}

// Must-support elements absent below a present element are reported, once
// per instance, at the instance's path; below an absent one they are not.
func TestMustSupportBelowTheTop(t *testing.T) {
	for _, c := range []struct {
		name, file, profile string
		mutate              func(m map[string]any)
		expr, element       string // want an issue at expr about element
		notUnder            string // and none below this path
	}{
		{"name without family", "Patient-example.json", "us-core-patient", func(m map[string]any) {
			delete(m["name"].([]any)[0].(map[string]any), "family")
		}, "Patient.name[0].family", "Patient.name.family", ""},
		{"second address without city", "Patient-example.json", "us-core-patient", func(m map[string]any) {
			second := map[string]any{"line": []any{"1 Main St"}, "state": "MA", "postalCode": "01880"}
			m["address"] = []any{m["address"].([]any)[0], second}
		}, "Patient.address[1].city", "Patient.address.city", ""},
		{"no address at all", "Patient-example.json", "us-core-patient", func(m map[string]any) {
			delete(m, "address")
		}, "Patient.address", "Patient.address", "Patient.address"},
		{"blood pressure component without value", "Observation-blood-pressure.json", "us-core-blood-pressure", func(m map[string]any) {
			comp := m["component"].([]any)[0].(map[string]any)
			delete(comp, "valueQuantity")
			comp["dataAbsentReason"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}}}
		}, "Observation.component[0].value", "Observation.component.value[x]", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			issues := checkMutated(t, c.file, usCore+c.profile, c.mutate)
			n := 0
			for _, is := range issues {
				if is.Severity == "error" {
					t.Errorf("error: %v %s", is.Expression, is.Diagnostics)
				}
				if is.Expression[0] == c.expr && strings.Contains(is.Diagnostics, "must-support element "+c.element+" is absent") {
					n++
				}
				if c.notUnder != "" && strings.HasPrefix(is.Expression[0], c.notUnder+".") {
					t.Errorf("reported below the absent %s: %v %s", c.notUnder, is.Expression, is.Diagnostics)
				}
			}
			if n != 1 {
				t.Errorf("%d issues at %s about %s, want 1; got %v", n, c.expr, c.element, issues)
			}
		})
	}
}

// On every US Core example, each absent must-support element reported is
// absent from the JSON while its parent is present, each reported once;
// and some are reported below the top level.
func TestMustSupportReportsOnExamples(t *testing.T) {
	set, pkg := usCoreSet(t)
	nested := 0
	for _, ex := range pkg.Examples {
		typ, profiles := claimed(t, ex.JSON)
		var doc map[string]any
		if err := json.Unmarshal(ex.JSON, &doc); err != nil {
			t.Fatal(err)
		}
		for _, u := range profiles {
			if !set.Known(u) {
				continue
			}
			seen := map[string]bool{}
			for _, is := range set.CheckStructure(typ, ex.JSON, u) {
				if !strings.HasPrefix(is.Diagnostics, "must-support ") {
					continue
				}
				path := is.Expression[0]
				if seen[path+is.Diagnostics] {
					t.Errorf("%s: reported twice: %s %s", ex.File, path, is.Diagnostics)
				}
				seen[path+is.Diagnostics] = true
				parent, last := path[:strings.LastIndexByte(path, '.')], path[strings.LastIndexByte(path, '.')+1:]
				if strings.Count(path, ".") > 1 {
					nested++
				}
				holder, ok := at(doc, parent).(map[string]any)
				if !ok {
					t.Errorf("%s: %s reported, but its parent %s is not there", ex.File, path, parent)
					continue
				}
				slice := strings.HasPrefix(is.Diagnostics, "must-support slice ")
				if present := hasMember(holder, last); present != slice {
					t.Errorf("%s: %s reported (%s) but present=%v", ex.File, path, is.Diagnostics, present)
				}
			}
		}
	}
	if nested == 0 {
		t.Error("no must-support element reported below the top level on any example")
	}
}

// at follows a FHIRPath of names and indexes (Patient.name[0].family)
// through decoded JSON.
func at(doc map[string]any, path string) any {
	var cur any = doc
	for _, step := range strings.Split(path, ".")[1:] {
		name, idx, indexed := strings.Cut(strings.TrimSuffix(step, "]"), "[")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[name]
		if indexed {
			i, _ := strconv.Atoi(idx)
			arr, ok := cur.([]any)
			if !ok || i >= len(arr) {
				return nil
			}
			cur = arr[i]
		}
	}
	return cur
}

// hasMember reports whether obj has the element name, as itself, with a
// choice type suffix or as a primitive's extensions.
func hasMember(obj map[string]any, name string) bool {
	for k := range obj {
		k = strings.TrimPrefix(k, "_")
		if k == name || strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] >= 'A' && k[len(name)] <= 'Z' {
			return true
		}
	}
	return false
}
