package bundleoracle

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	org := write("a.json", `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:o1","resource":{"resourceType":"Organization","id":"o1","identifier":[{"system":"s","value":"org"}]}},
	 {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Practitioner","id":"p1","identifier":[{"system":"npi","value":"1"}]}},
	 {"fullUrl":"urn:uuid:p2","resource":{"resourceType":"Practitioner","id":"p2","identifier":[{"system":"npi","value":"dup"}]}},
	 {"fullUrl":"urn:uuid:p3","resource":{"resourceType":"Practitioner","id":"p3","identifier":[{"system":"npi","value":"dup"}]}}]}`)
	pat := write("b.json", `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:x1","resource":{"resourceType":"Patient","id":"pat"}},
	 {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","id":"enc","subject":{"reference":"urn:uuid:x1"},
	   "participant":[{"individual":{"reference":"Practitioner?identifier=npi|1"}}],
	   "serviceProvider":{"reference":"Organization?identifier=s|org"},"contained":[{"resourceType":"Basic","id":"c"}],
	   "partOf":{"reference":"Encounter/other"},"extension":[{"valueReference":{"reference":"#c"}}],"length":{"value":1.5}}}]}`)
	entries, err := Read([]string{org, pat})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 6 || entries[5].Key() != "Encounter/enc" || entries[5].File != "b.json" {
		t.Fatalf("entries: %+v", entries)
	}
	ix := NewIndex(entries)
	got, err := ix.Resolved(entries[5].Resource)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"subject":         "Patient/pat",
		"participant":     "Practitioner/p1",
		"serviceProvider": "Organization/o1",
		"partOf":          "Encounter/other",
		"extension":       "#c",
	} {
		v := got[path]
		if a, ok := v.([]any); ok {
			v = a[0]
		}
		m := v.(map[string]any)
		if r, ok := m["individual"]; ok {
			m = r.(map[string]any)
		}
		if r, ok := m["valueReference"]; ok {
			m = r.(map[string]any)
		}
		if m["reference"] != want {
			t.Errorf("%s: %v, want %s", path, m["reference"], want)
		}
	}
	if got["length"].(map[string]any)["value"] != 1.5 {
		t.Errorf("length: %v", got["length"])
	}
	// The input is not changed.
	if !reflect.DeepEqual(entries[5].Resource["subject"], map[string]any{"reference": "urn:uuid:x1"}) {
		t.Errorf("input rewritten: %v", entries[5].Resource["subject"])
	}
	for ref, msg := range map[string]string{
		"urn:uuid:nobody":                   "no entry's fullUrl",
		"Practitioner?identifier=npi|dup":   "matches 2 resources",
		"Practitioner?identifier=npi|none":  "matches 0 resources",
		"Practitioner?name=x":               "only Type?identifier",
		"Practitioner?identifier=no-system": "only Type?identifier",
	} {
		if _, err := ix.Resolve(ref); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Resolve(%q): %v, want an error saying %q", ref, err, msg)
		}
	}
}
