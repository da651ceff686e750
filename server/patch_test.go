package server_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
)

const (
	ctJSONPatch = "Content-Type: application/json-patch+json"
	ctFHIR      = "Content-Type: application/fhir+json"
)

// putPatient stores Patient/id with the given extra members.
func putPatient(t *testing.T, e *env, id, members string) {
	t.Helper()
	r := e.do("PUT", "/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`"`+members+`}`))
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("PUT Patient/%s: %d %s", id, r.status, r.body)
	}
}

// family and given read a Patient's first name.
func firstName(t *testing.T, r response) (family string, given []string) {
	t.Helper()
	names, _ := r.json(t)["name"].([]any)
	if len(names) == 0 {
		t.Fatalf("no name: %s", r.body)
	}
	n := names[0].(map[string]any)
	family, _ = n["family"].(string)
	gs, _ := n["given"].([]any)
	for _, g := range gs {
		given = append(given, g.(string))
	}
	return family, given
}

func TestPatchJSONPatch(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"name":[{"family":"Old","given":["A"]}],"birthDate":"1970-01-01"`)
	r := e.do("PATCH", "/Patient/p1", []byte(`[
		{"op":"test","path":"/name/0/family","value":"Old"},
		{"op":"replace","path":"/name/0/family","value":"New"},
		{"op":"add","path":"/name/0/given/-","value":"B"},
		{"op":"remove","path":"/birthDate"}]`), ctJSONPatch)
	expect(t, r, http.StatusOK)
	if r.header.Get("ETag") != `W/"2"` || r.header.Get("Last-Modified") == "" {
		t.Fatalf("headers %v", r.header)
	}
	if family, given := firstName(t, r); family != "New" || strings.Join(given, ",") != "A,B" {
		t.Fatalf("response %s", r.body)
	}
	got := e.do("GET", "/Patient/p1", nil)
	expect(t, got, http.StatusOK)
	if family, given := firstName(t, got); family != "New" || strings.Join(given, ",") != "A,B" || bytes.Contains(got.body, []byte("birthDate")) {
		t.Fatalf("read back %s", got.body)
	}
	if m := got.json(t)["meta"].(map[string]any); m["versionId"] != "2" {
		t.Fatalf("meta %v", m)
	}

	// A failing test operation patches nothing.
	r = e.do("PATCH", "/Patient/p1", []byte(`[{"op":"test","path":"/name/0/family","value":"Old"},{"op":"remove","path":"/name"}]`), ctJSONPatch)
	expectOutcome(t, r, http.StatusUnprocessableEntity)
	expect(t, e.do("GET", "/Patient/p1/_history/3", nil), http.StatusNotFound)
}

func TestPatchFHIRPathPatch(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"name":[{"family":"Old","given":["A"]}],"telecom":[{"system":"phone","use":"home","value":"1"},{"system":"phone","use":"work","value":"2"}]`)
	params := `{"resourceType":"Parameters","parameter":[
		{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.name[0].family"},{"name":"value","valueString":"New"}]},
		{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient.name[0]"},{"name":"name","valueString":"given"},{"name":"value","valueString":"B"}]},
		{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.telecom.where(system='phone' and use='home')"}]},
		{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"birthDate"},{"name":"value","valueDate":"1980-02-03"}]}]}`
	r := e.do("PATCH", "/Patient/p1", []byte(params), ctFHIR)
	expect(t, r, http.StatusOK)
	if r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("ETag %q", r.header.Get("ETag"))
	}
	got := e.do("GET", "/Patient/p1", nil)
	expect(t, got, http.StatusOK)
	m := got.json(t)
	if family, given := firstName(t, got); family != "New" || strings.Join(given, ",") != "A,B" {
		t.Fatalf("read back %s", got.body)
	}
	if tel := m["telecom"].([]any); len(tel) != 1 || tel[0].(map[string]any)["use"] != "work" || m["birthDate"] != "1980-02-03" {
		t.Fatalf("read back %s", got.body)
	}

	// application/json is FHIRPath Patch too; an unsupported path is 422.
	bad := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name.select(given)"}]}]}`
	expectOutcome(t, e.do("PATCH", "/Patient/p1", []byte(bad), "Content-Type: application/json"), http.StatusUnprocessableEntity)
	// A resource other than Parameters is not a FHIRPath Patch.
	expectOutcome(t, e.do("PATCH", "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1"}`), ctFHIR), http.StatusBadRequest)
}

func TestPatchIfMatchAndPrefer(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"active":true`)
	body := []byte(`[{"op":"replace","path":"/active","value":false}]`)
	expect(t, e.do("PATCH", "/Patient/p1", body, ctJSONPatch, `If-Match: W/"1"`), http.StatusOK)
	expectOutcome(t, e.do("PATCH", "/Patient/p1", body, ctJSONPatch, `If-Match: W/"1"`), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("PATCH", "/Patient/p1", body, ctJSONPatch, `If-Match: nonsense`), http.StatusBadRequest)
	r := e.do("PATCH", "/Patient/p1", body, ctJSONPatch, `If-Match: W/"2"`, "Prefer: return=minimal")
	expect(t, r, http.StatusOK)
	if len(r.body) != 0 || r.header.Get("ETag") != `W/"3"` {
		t.Fatalf("minimal: %q %v", r.body, r.header)
	}
	r = e.do("PATCH", "/Patient/p1", body, ctJSONPatch, "Prefer: return=OperationOutcome")
	expect(t, r, http.StatusOK)
	if r.json(t)["resourceType"] != "OperationOutcome" {
		t.Fatalf("%s", r.body)
	}
}

func TestPatchConditional(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "one", `,"identifier":[{"system":"http://x","value":"1"}]`)
	putPatient(t, e, "two", `,"identifier":[{"system":"http://x","value":"2"}]`)
	putPatient(t, e, "dup", `,"identifier":[{"system":"http://x","value":"2"}]`)
	body := []byte(`[{"op":"add","path":"/active","value":true}]`)
	expectOutcome(t, e.do("PATCH", "/Patient?identifier=http://x|0", body, ctJSONPatch), http.StatusNotFound)
	expectOutcome(t, e.do("PATCH", "/Patient?identifier=http://x|2", body, ctJSONPatch), http.StatusPreconditionFailed)
	expectOutcome(t, e.do("PATCH", "/Patient?nonsense=1", body, ctJSONPatch), http.StatusBadRequest)
	r := e.do("PATCH", "/Patient?identifier=http://x|1", body, ctJSONPatch)
	expect(t, r, http.StatusOK)
	if m := r.json(t); m["id"] != "one" || m["active"] != true {
		t.Fatalf("%s", r.body)
	}
	for _, id := range []string{"two", "dup"} {
		if r := e.do("GET", "/Patient/"+id, nil); r.header.Get("ETag") != `W/"1"` {
			t.Fatalf("%s was changed: %s", id, r.body)
		}
	}
}

func TestPatchRejections(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"active":true`)
	for _, tc := range []struct {
		name, path, body, ct string
		status               int
	}{
		{"invalid result", "/Patient/p1", `[{"op":"add","path":"/birthDate","value":"1970-13-45"}]`, ctJSONPatch, 422},
		{"unknown element", "/Patient/p1", `[{"op":"add","path":"/colour","value":"blue"}]`, ctJSONPatch, 422},
		{"empty value", "/Patient/p1", `[{"op":"add","path":"/gender","value":""}]`, ctJSONPatch, 422},
		{"id changed", "/Patient/p1", `[{"op":"replace","path":"/id","value":"p2"}]`, ctJSONPatch, 422},
		{"id removed", "/Patient/p1", `[{"op":"remove","path":"/id"}]`, ctJSONPatch, 422},
		{"type changed", "/Patient/p1", `[{"op":"replace","path":"/resourceType","value":"Person"}]`, ctJSONPatch, 422},
		{"path not found", "/Patient/p1", `[{"op":"replace","path":"/gender","value":"male"}]`, ctJSONPatch, 422},
		{"malformed patch", "/Patient/p1", `[{"op":"add"}]`, ctJSONPatch, 400},
		{"not JSON", "/Patient/p1", `[{`, ctJSONPatch, 400},
		{"text/plain", "/Patient/p1", `[]`, "Content-Type: text/plain", 415},
		{"Turtle", "/Patient/p1", `@prefix fhir: <http://hl7.org/fhir/> .`, "Content-Type: application/fhir+turtle", 415},
		{"merge patch", "/Patient/p1", `{}`, "Content-Type: application/merge-patch+json", 415},
		{"bad charset", "/Patient/p1", `[]`, "Content-Type: application/json-patch+json; charset=latin1", 415},
		{"empty body", "/Patient/p1", ` `, ctJSONPatch, 400},
		{"absent", "/Patient/nobody", `[]`, ctJSONPatch, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectOutcome(t, e.do("PATCH", tc.path, []byte(tc.body), tc.ct), tc.status)
		})
	}
	// No Content-Type at all: which patch format would it be?
	req, _ := http.NewRequest("PATCH", e.url+"/Patient/p1", strings.NewReader(`[]`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("no Content-Type: %d", resp.StatusCode)
	}

	// Nothing was stored.
	r := e.do("GET", "/Patient/p1/_history", nil)
	expect(t, r, http.StatusOK)
	if n := len(r.json(t)["entry"].([]any)); n != 1 {
		t.Fatalf("%d versions after rejected patches, want 1", n)
	}

	// A deleted resource is gone.
	expect(t, e.do("DELETE", "/Patient/p1", nil), http.StatusNoContent)
	expectOutcome(t, e.do("PATCH", "/Patient/p1", []byte(`[]`), ctJSONPatch), http.StatusGone)
}

// entryResponses returns each response entry's status and etag.
func entryResponses(t *testing.T, r response) []string {
	t.Helper()
	var out []string
	for _, en := range r.json(t)["entry"].([]any) {
		resp := en.(map[string]any)["response"].(map[string]any)
		out = append(out, fmt.Sprint(resp["status"], " ", resp["etag"]))
	}
	return out
}

func TestPatchInTransaction(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"name":[{"family":"F"}]`)
	putPatient(t, e, "p2", `,"identifier":[{"system":"http://x","value":"2"}]`)
	jsonPatch := base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/name/0/given","value":["G"]}]`))
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + jsonPatch + `"},
	  "request":{"method":"PATCH","url":"Patient/p1","ifMatch":"W/\"1\""}},
	 {"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"gender"},{"name":"value","valueCode":"female"}]}]},
	  "request":{"method":"PATCH","url":"Patient?identifier=http://x|2"}},
	 {"resource":{"resourceType":"Patient","id":"p3","active":true},"request":{"method":"PUT","url":"Patient/p3"}},
	 {"request":{"method":"GET","url":"Patient/p1"}}
	]}`
	r := e.do("POST", "", []byte(bundle))
	expect(t, r, http.StatusOK)
	if got := strings.Join(entryResponses(t, r), ","); got != `200 OK W/"2",200 OK W/"2",201 Created W/"1",200 OK W/"2"` {
		t.Fatalf("responses %s: %s", got, r.body)
	}
	if _, given := firstName(t, e.do("GET", "/Patient/p1", nil)); strings.Join(given, ",") != "G" {
		t.Fatal("Patient/p1 not patched")
	}
	if g := e.do("GET", "/Patient/p2", nil).json(t)["gender"]; g != "female" {
		t.Fatalf("Patient/p2 gender %v", g)
	}

	// A failing PATCH entry rolls the whole transaction back.
	bad := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","id":"p4"},"request":{"method":"PUT","url":"Patient/p4"}},
	 {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` +
		base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/id","value":"zz"}]`)) + `"},
	  "request":{"method":"PATCH","url":"Patient/p1"}}]}`
	m := expectOutcome(t, e.do("POST", "", []byte(bad)), http.StatusUnprocessableEntity)
	if d := m["issue"].([]any)[0].(map[string]any)["diagnostics"].(string); !strings.Contains(d, "Bundle.entry[1]") {
		t.Fatalf("diagnostics %q do not name the entry", d)
	}
	expect(t, e.do("GET", "/Patient/p4", nil), http.StatusNotFound)

	// Entries that cannot be a patch are refused before anything runs.
	for _, entry := range []string{
		`{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PATCH","url":"Patient/p1"}}`,
		`{"resource":{"resourceType":"Binary","contentType":"text/plain","data":"W10="},"request":{"method":"PATCH","url":"Patient/p1"}}`,
		`{"request":{"method":"PATCH","url":"Patient/p1"}}`,
		`{"resource":{"resourceType":"Parameters"},"request":{"method":"PATCH","url":"Patient"}}`,
	} {
		r := e.do("POST", "", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+entry+`]}`))
		if r.status < 400 || r.status >= 500 {
			t.Fatalf("%s: %d %s", entry, r.status, r.body)
		}
	}

	// Two writes to one resource are refused, a conditional PATCH included.
	twice := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","id":"p2","active":true},"request":{"method":"PUT","url":"Patient/p2"}},
	 {"resource":{"resourceType":"Parameters"},"request":{"method":"PATCH","url":"Patient?identifier=http://x|2"}}]}`
	expectOutcome(t, e.do("POST", "", []byte(twice)), http.StatusBadRequest)
}

func TestPatchInBatch(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"identifier":[{"system":"http://x","value":"1"}]`)
	ok := base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/active","value":true}]`))
	bundle := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + ok + `"},"request":{"method":"PATCH","url":"Patient?identifier=http://x|1"}},
	 {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + ok + `"},"request":{"method":"PATCH","url":"Patient/missing"}},
	 {"resource":{"resourceType":"Patient"},"request":{"method":"PATCH","url":"Patient/p1"}}]}`
	r := e.do("POST", "", []byte(bundle))
	expect(t, r, http.StatusOK)
	got := entryStatuses(t, r)
	if len(got) != 3 || got[0] != "200 OK" || !strings.HasPrefix(got[1], "404") || !strings.HasPrefix(got[2], "400") {
		t.Fatalf("statuses %v: %s", got, r.body)
	}
}

// Concurrent patches without If-Match must all land: each one patches the
// version current when it writes, never a stale read.
func TestPatchConcurrentNoLostUpdate(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "busy", `,"name":[{"family":"F","given":["start"]}]`)
	const n = 20
	statuses := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`[{"op":"add","path":"/name/0/given/-","value":"n%02d"}]`, i)
			req, err := http.NewRequest("PATCH", e.url+"/Patient/busy", strings.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Content-Type", "application/json-patch+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || statuses[i] != http.StatusOK {
			t.Fatalf("patch %d: %d %v", i, statuses[i], errs[i])
		}
	}
	r := e.do("GET", "/Patient/busy", nil)
	expect(t, r, http.StatusOK)
	_, given := firstName(t, r)
	sort.Strings(given)
	want := []string{}
	for i := range n {
		want = append(want, fmt.Sprintf("n%02d", i))
	}
	want = append(want, "start")
	if strings.Join(given, ",") != strings.Join(want, ",") {
		t.Fatalf("given %v, want %v", given, want)
	}
	if r.header.Get("ETag") != fmt.Sprintf(`W/"%d"`, n+1) {
		t.Fatalf("ETag %s, want version %d", r.header.Get("ETag"), n+1)
	}
}

// TestPatchReferencesInTransaction: references a PATCH entry adds
// (urn:uuid: fullUrls of the bundle, conditional references) are rewritten
// like those of the bundle's resources, in JSON Patch and FHIRPath Patch.
func TestPatchReferencesInTransaction(t *testing.T) {
	e := newEnv(t)
	putPatient(t, e, "p1", `,"name":[{"family":"F"}]`)
	putPatient(t, e, "gp", `,"identifier":[{"system":"http://x","value":"gp"}]`)
	jsonPatch := base64.StdEncoding.EncodeToString([]byte(
		`[{"op":"add","path":"/managingOrganization","value":{"reference":"urn:uuid:0c3e0a3c-6c52-4b8b-9e0e-3a1f2b8e1d11"}},` +
			`{"op":"add","path":"/link","value":[{"other":{"reference":"Patient?identifier=http://x|gp"},"type":"seealso"}]}]`))
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + jsonPatch + `"},
	  "request":{"method":"PATCH","url":"Patient/p1"}},
	 {"fullUrl":"urn:uuid:0c3e0a3c-6c52-4b8b-9e0e-3a1f2b8e1d11","resource":{"resourceType":"Organization","name":"Org"},
	  "request":{"method":"POST","url":"Organization"}},
	 {"fullUrl":"urn:uuid:5d0b1f9e-8f0e-4a57-8c55-0a9c3c1c2d22","resource":{"resourceType":"Practitioner","name":[{"family":"P"}]},
	  "request":{"method":"POST","url":"Practitioner"}},
	 {"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},
	   {"name":"path","valueString":"Patient"},{"name":"name","valueString":"generalPractitioner"},
	   {"name":"value","valueReference":{"reference":"urn:uuid:5d0b1f9e-8f0e-4a57-8c55-0a9c3c1c2d22"}}]}]},
	  "request":{"method":"PATCH","url":"Patient/gp"}}
	]}`
	r := e.do("POST", "", []byte(bundle))
	expect(t, r, http.StatusOK)
	var locs []string
	for _, en := range r.json(t)["entry"].([]any) {
		loc, _ := en.(map[string]any)["response"].(map[string]any)["location"].(string)
		locs = append(locs, loc)
	}
	org, prac := typeID(locs[1]), typeID(locs[2])
	p1 := e.do("GET", "/Patient/p1", nil).json(t)
	if got := p1["managingOrganization"].(map[string]any)["reference"]; got != org {
		t.Errorf("JSON Patch managingOrganization = %v, want %s", got, org)
	}
	if got := p1["link"].([]any)[0].(map[string]any)["other"].(map[string]any)["reference"]; got != "Patient/gp" {
		t.Errorf("JSON Patch conditional link = %v, want Patient/gp", got)
	}
	gp := e.do("GET", "/Patient/gp", nil).json(t)
	if got := gp["generalPractitioner"].([]any)[0].(map[string]any)["reference"]; got != prac {
		t.Errorf("FHIRPath Patch generalPractitioner = %v, want %s", got, prac)
	}
}

// typeID is the Type/id of a response location (…/Type/id/_history/n).
func typeID(loc string) string {
	parts := strings.Split(loc, "/")
	for i := len(parts) - 1; i >= 1; i-- {
		if parts[i] == "_history" && i >= 2 {
			return parts[i-2] + "/" + parts[i-1]
		}
	}
	return ""
}
