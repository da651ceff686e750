package fhir

import (
	"testing"
	"time"
)

func TestParseSmoke(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Parse([]byte(`{"resourceType":"Patient","id":"a1","meta":{"versionId":"9","source":"x"},"gender":"male","birthDate":"1970-01-01"}`), "Patient")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", r.Stamp("a1", 2, time.Unix(0, 0)))
	for _, bad := range []string{`{"resourceType":"Patient","foo":1}`, `{"resourceType":"Patient","birthDate":"1970-13-01"}`, `{"resourceType":"Patient","name":[{"family":""}]}`, `{"resourceType":"Patient","gender":"mail"}`, `{"resourceType":"Observation"}`, `{`, `{"resourceType":"Patient","active":"true"}`} {
		_, err := p.Parse([]byte(bad), "")
		t.Logf("%s -> %v", bad, err)
	}
}
