package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// TestCapabilityStatementIsValidAndTrue checks the statement validates as an
// R4 CapabilityStatement, lists every resource type, and that every
// interaction it claims actually works.
func TestCapabilityStatementIsValidAndTrue(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/metadata", nil)
	expect(t, r, http.StatusOK)
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(r.body, "CapabilityStatement"); err != nil {
		t.Fatalf("CapabilityStatement is not valid R4: %v", err)
	}
	cs := r.json(t)
	if cs["fhirVersion"] != "4.0.1" || fmt.Sprint(cs["format"]) != "[json xml]" {
		t.Fatalf("fhirVersion %v format %v", cs["fhirVersion"], cs["format"])
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	resources := rest["resource"].([]any)
	if len(resources) != len(spec.ResourceTypes()) {
		t.Fatalf("%d resource types listed, want %d", len(resources), len(spec.ResourceTypes()))
	}

	// Every advertised search parameter of a few types is accepted under
	// strict handling (nothing advertised is silently ignored).
	for _, typ := range []string{"Patient", "Observation", "Encounter", "DiagnosticReport", "MedicationRequest"} {
		for _, sp := range byTypeOf(resources, typ)["searchParam"].([]any) {
			m := sp.(map[string]any)
			name := m["name"].(string)
			value := map[string]string{"date": "ge2020", "number": "1", "quantity": "1", "reference": "Patient/x", "composite": "a$b"}[m["type"].(string)]
			if value == "" {
				value = "x"
			}
			if m["type"] == "composite" {
				continue // component value shapes vary; composite search is tested on its own
			}
			if r := e.do("GET", "/"+typ+"?"+name+"="+value, nil, "Prefer: handling=strict"); r.status != http.StatusOK {
				t.Errorf("advertised %s?%s=%s: %d %s", typ, name, value, r.status, r.body)
			}
		}
	}

	// Each claimed interaction, exercised on a few types (all types share
	// one code path, so a sample proves the claim).
	exercise := map[string]func(typ string) int{
		"create": func(typ string) int { return e.do("POST", "/"+typ, minimal(typ, "")).status },
		"update": func(typ string) int { return e.do("PUT", "/"+typ+"/cap-1", minimal(typ, "cap-1")).status },
		"patch": func(typ string) int {
			return e.do("PATCH", "/"+typ+"/cap-1", []byte(`[{"op":"test","path":"/id","value":"cap-1"}]`),
				"Content-Type: application/json-patch+json").status
		},
		"read":  func(typ string) int { return e.do("GET", "/"+typ+"/cap-1", nil).status },
		"vread": func(typ string) int { return e.do("GET", "/"+typ+"/cap-1/_history/1", nil).status },
		"history-instance": func(typ string) int {
			return e.do("GET", "/"+typ+"/cap-1/_history", nil).status
		},
		"history-type": func(typ string) int { return e.do("GET", "/"+typ+"/_history", nil).status },
		"search-type":  func(typ string) int { return e.do("GET", "/"+typ+"?_id=cap-1", nil).status },
		"delete":       func(typ string) int { return e.do("DELETE", "/"+typ+"/cap-1", nil).status },
	}
	order := []string{"create", "update", "patch", "read", "vread", "history-instance", "history-type", "search-type", "delete"}
	byType := map[string]map[string]any{}
	for _, res := range resources {
		m := res.(map[string]any)
		byType[m["type"].(string)] = m
	}
	for _, typ := range []string{"Patient", "Observation", "Basic", "Binary"} {
		claimed := map[string]bool{}
		for _, in := range byType[typ]["interaction"].([]any) {
			code := in.(map[string]any)["code"].(string)
			if exercise[code] == nil {
				t.Fatalf("%s claims %q, which this test does not exercise: add it", typ, code)
			}
			claimed[code] = true
		}
		for _, code := range order {
			if !claimed[code] {
				continue
			}
			if status := exercise[code](typ); status < 200 || status > 299 {
				t.Errorf("%s %s: status %d", typ, code, status)
			}
		}
	}
	for _, in := range rest["interaction"].([]any) {
		code := in.(map[string]any)["code"].(string)
		switch code {
		case "history-system":
			expect(t, e.do("GET", "/_history", nil), http.StatusOK)
		case "search-system":
			expect(t, e.do("GET", "?_type=Patient&_id=cap-1", nil), http.StatusOK)
		default:
			t.Errorf("system interaction %q claimed but not exercised", code)
		}
	}
}

// minimal returns the smallest valid instance of typ used above.
func minimal(typ, id string) []byte {
	idPart := ""
	if id != "" {
		idPart = fmt.Sprintf(`,"id":%q`, id)
	}
	extra := map[string]string{
		"Observation": `,"status":"final","code":{"text":"x"}`,
		"Basic":       `,"code":{"text":"x"}`,
		"Binary":      `,"contentType":"text/plain","data":"aGk="`,
	}[typ]
	return []byte(`{"resourceType":"` + typ + `"` + idPart + extra + `}`)
}

func byTypeOf(resources []any, typ string) map[string]any {
	for _, r := range resources {
		if m := r.(map[string]any); m["type"] == typ {
			return m
		}
	}
	return nil
}

// TestCapabilityStatementListsOperations checks the statement lists each
// registered operation with its canonical definition, and exercises every
// listed operation once, so no operation is claimed that does not answer.
func TestCapabilityStatementListsOperations(t *testing.T) {
	e := newEnv(t)
	cs := e.do("GET", "/metadata", nil).json(t)
	rest := cs["rest"].([]any)[0].(map[string]any)
	expect(t, e.do("PUT", "/Patient/op-1", minimal("Patient", "op-1")), http.StatusCreated)
	tag := []byte(`{"resourceType":"Parameters","parameter":[{"name":"meta","valueMeta":{"tag":[{"system":"http://t","code":"x"}]}}]}`)
	// exercise invokes an operation at the level it is listed for: typ is
	// "" at system level.
	exercise := map[string]func(typ string) response{
		"validate": func(typ string) response { return e.do("POST", "/"+typ+"/$validate", minimal(typ, "")) },
		"meta": func(typ string) response {
			if typ == "" {
				return e.do("GET", "/$meta", nil)
			}
			return e.do("GET", "/"+typ+"/op-1/$meta", nil)
		},
		"meta-add":    func(typ string) response { return e.do("POST", "/"+typ+"/op-1/$meta-add", tag) },
		"meta-delete": func(typ string) response { return e.do("POST", "/"+typ+"/op-1/$meta-delete", tag) },
		"everything":  func(typ string) response { return e.do("GET", "/"+typ+"/op-1/$everything", nil) },
		"stats":       func(string) response { return e.do("GET", "/$stats", nil) },
	}
	definitions := map[string]string{
		"validate":    "http://hl7.org/fhir/OperationDefinition/Resource-validate",
		"meta":        "http://hl7.org/fhir/OperationDefinition/Resource-meta",
		"meta-add":    "http://hl7.org/fhir/OperationDefinition/Resource-meta-add",
		"meta-delete": "http://hl7.org/fhir/OperationDefinition/Resource-meta-delete",
		"everything":  "http://hl7.org/fhir/OperationDefinition/Patient-everything",
	}
	done := map[string]bool{}
	check := func(where, typ string, ops []any) {
		for _, op := range ops {
			m := op.(map[string]any)
			name, def := m["name"].(string), m["definition"].(string)
			if def == "" {
				t.Errorf("%s: operation %s has no definition", where, name)
			}
			if want, ok := definitions[name]; ok && def != want {
				t.Errorf("%s: operation %s: definition %q, want %q", where, name, def, want)
			}
			key := name + "@" + map[bool]string{true: "system", false: "type"}[typ == ""]
			if done[key] {
				continue
			}
			done[key] = true
			f := exercise[name]
			if f == nil {
				t.Errorf("%s claims operation %q, which this test does not exercise: add it", where, name)
				continue
			}
			if r := f(typ); r.status != http.StatusOK {
				t.Errorf("%s: $%s: status %d: %s", where, name, r.status, r.body)
			}
		}
	}
	sysOps, _ := rest["operation"].([]any)
	check("rest", "", sysOps)
	for _, res := range rest["resource"].([]any) {
		m := res.(map[string]any)
		ops, _ := m["operation"].([]any)
		names := map[string]bool{}
		for _, op := range ops {
			names[op.(map[string]any)["name"].(string)] = true
		}
		typ := m["type"].(string)
		if !names["validate"] || !names["meta"] || !names["meta-add"] || !names["meta-delete"] || names["everything"] != (typ == "Patient") {
			t.Errorf("%s lists operations %v", typ, names)
		}
		if typ == "Patient" {
			check(typ, typ, ops)
		}
		// The terminology operations are defined on their own types.
		for _, op := range ops {
			o := op.(map[string]any)
			switch name := o["name"].(string); name {
			case "expand", "validate-code", "lookup", "subsumes":
				if want := "http://hl7.org/fhir/OperationDefinition/" + typ + "-" + name; o["definition"] != want {
					t.Errorf("%s: operation %s: definition %v, want %s", typ, name, o["definition"], want)
				}
			}
		}
	}
	for typ, want := range map[string]string{"ValueSet": "expand validate-code", "CodeSystem": "lookup subsumes validate-code"} {
		names := map[string]bool{}
		for _, op := range byTypeOf(rest["resource"].([]any), typ)["operation"].([]any) {
			names[op.(map[string]any)["name"].(string)] = true
		}
		for _, n := range strings.Fields(want) {
			if !names[n] {
				t.Errorf("%s does not list $%s", typ, n)
			}
		}
	}
	if !done["meta@system"] || !done["everything@type"] {
		t.Errorf("expected operations not listed: exercised %v", done)
	}
}
