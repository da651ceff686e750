package fhir

import "testing"

func TestRewriteReferences(t *testing.T) {
	doc := []byte(`{"resourceType":"Observation","subject":{"reference":"urn:uuid:1","display":"x"},"performer":[{"reference":"urn:uuid:2"},{"reference":"Practitioner/keep"}],"note":[{"text":"reference"}],"reference":"urn:uuid:1","extension":[{"url":"u","valueReference":{"reference":"urn:uuid:1"}}]}`)
	got := RewriteReferences(doc, func(ref string) (string, bool) {
		switch ref {
		case "urn:uuid:1":
			return "Patient/p1", true
		case "urn:uuid:2":
			return "Practitioner/é\"q", true
		}
		return "", false
	})
	want := `{"resourceType":"Observation","subject":{"reference":"Patient/p1","display":"x"},"performer":[{"reference":"Practitioner/é\"q"},{"reference":"Practitioner/keep"}],"note":[{"text":"reference"}],"reference":"Patient/p1","extension":[{"url":"u","valueReference":{"reference":"Patient/p1"}}]}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	same := RewriteReferences(doc, func(string) (string, bool) { return "", false })
	if &same[0] != &doc[0] {
		t.Fatal("a document without rewrites must be returned as is")
	}
}
