package ig_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/server"
)

// serve runs the HTTP server over e's store with the guide loaded as
// ember serve loads it (cmd/ember/igflags.go does the same mapping).
func serve(t *testing.T, e *env, pe engine.ProfileEnforcement) string {
	t.Helper()
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	l := e.loaded
	g := &server.Guides{Instantiates: l.Instantiates, Profiles: l.SupportedProfiles, Combinations: l.Combinations, NotIndexed: map[string]bool{}}
	for _, p := range l.Params {
		if p.NotIndexed {
			g.NotIndexed[p.Base+"."+p.Code] = true
		}
	}
	srv, err := server.New(server.Config{BaseURL: ts.URL + "/fhir", Profiles: l.Profiles, ProfileEnforcement: pe, Guides: g}, e.st)
	if err != nil {
		t.Fatal(err)
	}
	h = srv.Handler()
	return ts.URL + "/fhir"
}

func do(t *testing.T, method, url string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Prefer", "handling=strict")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func issues(m map[string]any) []string {
	var out []string
	list, _ := m["issue"].([]any)
	for _, x := range list {
		is := x.(map[string]any)
		var expr []string
		if es, ok := is["expression"].([]any); ok {
			for _, e := range es {
				expr = append(expr, e.(string))
			}
		}
		out = append(out, is["severity"].(string)+" "+strings.Join(expr, ",")+": "+is["diagnostics"].(string))
	}
	return out
}

func has(list []string, prefix, sub string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestProfilesOverHTTP(t *testing.T) {
	e := setup(t)
	base := serve(t, e, engine.ProfileEnforcement{})
	patient := `{"resourceType":"Patient","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},` +
		`"identifier":[{"system":"urn:mrn","value":"1"}],"name":[{"family":"Shaw"}],"gender":"female"}`
	if st, m := do(t, "POST", base+"/Patient", []byte(patient)); st != http.StatusCreated {
		t.Fatalf("conforming patient: %d %v", st, issues(m))
	}
	noID := strings.Replace(patient, `"identifier":[{"system":"urn:mrn","value":"1"}],`, "", 1)
	st, m := do(t, "POST", base+"/Patient", []byte(noID))
	if st != http.StatusUnprocessableEntity || !has(issues(m), "error Patient.identifier:", "minimum required = 1") {
		t.Errorf("patient without identifier: %d %v", st, issues(m))
	}
	// Not claiming the profile: base R4 only (claimed enforcement).
	unclaimed := strings.Replace(noID, `"meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},`, "", 1)
	if st, m := do(t, "POST", base+"/Patient", []byte(unclaimed)); st != http.StatusCreated {
		t.Errorf("unclaimed: %d %v", st, issues(m))
	}
	// A transaction entry is held to its claim too.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + noID + `,"request":{"method":"POST","url":"Patient"}}]}`
	if st, m := do(t, "POST", base, []byte(tx)); st != http.StatusUnprocessableEntity || !has(issues(m), "error Bundle.entry[0].resource.Patient.identifier", "minimum") {
		t.Errorf("transaction: %d %v", st, issues(m))
	}

	// $validate?profile=: the error at the element; must-support as information.
	st, m = do(t, "POST", base+"/Patient/$validate?profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient", []byte(unclaimed))
	if st != http.StatusOK || !has(issues(m), "error Patient.identifier:", "minimum required = 1") || !has(issues(m), "information", "must-support") {
		t.Errorf("$validate: %d %v", st, issues(m))
	}
	// A wrong fixed category on a lab Observation.
	lab := `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},"subject":{"reference":"Patient/example"},"effectiveDateTime":"2020-01-01","valueQuantity":{"value":1}}`
	st, m = do(t, "POST", base+"/Observation/$validate?profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab", []byte(lab))
	if st != http.StatusOK || !has(issues(m), "error Observation.category:", "slice us-core") {
		t.Errorf("lab category: %d %v", st, issues(m))
	}
	// The invariant us-core-2 is evaluated by $validate.
	noValue := strings.Replace(lab, `,"valueQuantity":{"value":1}`, "", 1)
	st, m = do(t, "POST", base+"/Observation/$validate?profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab", []byte(noValue))
	if st != http.StatusOK || !has(issues(m), "error Observation:", "us-core-2") {
		t.Errorf("us-core-2: %d %v", st, issues(m))
	}
	// And enforced on writes: a lab Observation claiming the profile with
	// neither a value nor a dataAbsentReason is refused naming us-core-2.
	vitalsFixed := strings.Replace(noValue, `"code":"vital-signs"`, `"code":"laboratory"`, 1)
	claimed := strings.Replace(vitalsFixed, `{"resourceType":"Observation",`, `{"resourceType":"Observation","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]},`, 1)
	if st, m := do(t, "POST", base+"/Observation", []byte(claimed)); st != http.StatusUnprocessableEntity || !has(issues(m), "error Observation", "us-core-2") {
		t.Errorf("a claimed lab Observation breaking us-core-2: %d %v", st, issues(m))
	}
	withValue := strings.Replace(claimed, `"effectiveDateTime":"2020-01-01"`, `"effectiveDateTime":"2020-01-01","valueQuantity":{"value":1}`, 1)
	if st, m := do(t, "POST", base+"/Observation", []byte(withValue)); st != http.StatusCreated {
		t.Errorf("the same with a value: %d %v", st, issues(m))
	}
	// required:URL holds every Patient to US Core, claimed or not.
	req := serve(t, e, engine.ProfileEnforcement{Required: map[string][]string{"Patient": {"http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"}}})
	if st, m := do(t, "POST", req+"/Patient", []byte(unclaimed)); st != http.StatusUnprocessableEntity || !has(issues(m), "error Patient.identifier:", "minimum") {
		t.Errorf("required enforcement: %d %v", st, issues(m))
	}
	// Off: claims are not enforced.
	off := serve(t, e, engine.ProfileEnforcement{Off: true})
	if st, m := do(t, "POST", off+"/Patient", []byte(noID)); st != http.StatusCreated {
		t.Errorf("enforcement off: %d %v", st, issues(m))
	}
}

func TestCapabilityStatementWithUSCore(t *testing.T) {
	e := setup(t)
	base := serve(t, e, engine.ProfileEnforcement{})
	st, cs := do(t, "GET", base+"/metadata", nil)
	if st != http.StatusOK {
		t.Fatal(st)
	}
	if inst, _ := cs["instantiates"].([]any); len(inst) != 1 || inst[0] != "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server" {
		t.Errorf("instantiates %v", cs["instantiates"])
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	combos, profiles := 0, 0
	for _, x := range rest["resource"].([]any) {
		r := x.(map[string]any)
		typ := r["type"].(string)
		params := map[string]map[string]any{}
		for _, p := range asList(r["searchParam"]) {
			pm := p.(map[string]any)
			params[pm["name"].(string)] = pm
		}
		for _, p := range asList(r["supportedProfile"]) {
			profiles++
			if !e.loaded.Profiles.Known(p.(string)) || e.loaded.Profiles.Profile(p.(string)).Type != typ {
				t.Errorf("%s: supportedProfile %v", typ, p)
			}
		}
		// Every combination listed is searchable as such, strictly.
		for _, ext := range asList(r["extension"]) {
			em := ext.(map[string]any)
			if !strings.HasSuffix(em["url"].(string), "search-parameter-combination") {
				continue
			}
			combos++
			q := []string{}
			for _, req := range asList(em["extension"]) {
				code := req.(map[string]any)["valueString"].(string)
				if params[code] == nil {
					t.Errorf("%s: combination names %s, which is not advertised", typ, code)
				}
				v := "x"
				if params[code] != nil && params[code]["type"] == "date" {
					v = "2020"
				}
				q = append(q, code+"="+v)
			}
			if st, m := do(t, "GET", base+"/"+typ+"?"+strings.Join(q, "&"), nil); st != http.StatusOK {
				t.Errorf("%s?%s: %d %v", typ, strings.Join(q, "&"), st, issues(m))
			}
		}
		if typ == "Patient" {
			for _, code := range []string{"race", "ethnicity", "gender-identity"} {
				p := params[code]
				if p == nil {
					t.Errorf("Patient.%s not advertised", code)
					continue
				}
				if doc, _ := p["documentation"].(string); !strings.Contains(doc, "ember reindex") {
					t.Errorf("Patient.%s: installed over stored Patients, but not documented as not yet indexed: %v", code, p)
				}
				if st, m := do(t, "GET", base+"/Patient?"+code+"=x", nil); st != http.StatusOK {
					t.Errorf("Patient?%s: %d %v", code, st, issues(m))
				}
			}
		}
	}
	if combos < 20 || profiles < 40 {
		t.Errorf("%d combinations, %d supported profiles", combos, profiles)
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
