package main

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/inference"
)

// TestInferRequestParameters: $infer's parameters from a Parameters body
// or the query, at instance and type level, and what is refused (400).
func TestInferRequestParameters(t *testing.T) {
	const base = "https://ember.example/fhir"
	params := func(ps ...string) []byte {
		return []byte(`{"resourceType":"Parameters","parameter":[` + strings.Join(ps, ",") + `]}`)
	}
	study := func(ref string) string { return `{"name":"study","valueReference":{"reference":"` + ref + `"}}` }
	ok := []struct {
		name string
		req  engine.OpRequest
		want inference.Request
	}{
		{"instance, no parameters", engine.OpRequest{Level: engine.InstanceLevel, ID: "s1"},
			inference.Request{ImagingStudyIDs: []string{"s1"}}},
		{"instance, body", engine.OpRequest{Level: engine.InstanceLevel, ID: "s1",
			Body: params(`{"name":"model","valueString":"m"}`, `{"name":"force","valueBoolean":true}`)},
			inference.Request{ImagingStudyIDs: []string{"s1"}, Model: "m", Force: true}},
		{"instance, query", engine.OpRequest{Level: engine.InstanceLevel, ID: "s1", Query: url.Values{"model": {"m"}, "force": {"true"}, "_pretty": {"true"}}},
			inference.Request{ImagingStudyIDs: []string{"s1"}, Model: "m", Force: true}},
		{"type, relative and absolute references, a repeat", engine.OpRequest{Level: engine.TypeLevel,
			Body: params(study("ImagingStudy/a"), study(base+"/ImagingStudy/b"), study("ImagingStudy/a"), `{"name":"model","valueCode":"m"}`)},
			inference.Request{ImagingStudyIDs: []string{"a", "b"}, Model: "m"}},
		{"type, query", engine.OpRequest{Level: engine.TypeLevel, Query: url.Values{"study": {"ImagingStudy/a"}}},
			inference.Request{ImagingStudyIDs: []string{"a"}}},
	}
	for _, c := range ok {
		got, err := inferRequest(c.req, base)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	var tooMany []string
	for i := 0; i <= inference.MaxStudies; i++ {
		tooMany = append(tooMany, study(fmt.Sprintf("ImagingStudy/s%d", i)))
	}
	bad := []struct {
		name string
		req  engine.OpRequest
	}{
		{"not JSON", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Body: []byte(`{`)}},
		{"not Parameters", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Body: []byte(`{"resourceType":"Patient"}`)}},
		{"unknown parameter", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Body: params(`{"name":"modle","valueString":"m"}`)}},
		{"model twice", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Body: params(`{"name":"model","valueString":"m"}`), Query: url.Values{"model": {"n"}}}},
		{"model not a string", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Body: params(`{"name":"model","valueBoolean":true}`)}},
		{"force not a boolean", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Query: url.Values{"force": {"yes please"}}}},
		{"study at instance level", engine.OpRequest{Level: engine.InstanceLevel, ID: "s", Body: params(study("ImagingStudy/a"))}},
		{"no study at type level", engine.OpRequest{Level: engine.TypeLevel}},
		{"another type", engine.OpRequest{Level: engine.TypeLevel, Body: params(study("Patient/a"))}},
		{"another server", engine.OpRequest{Level: engine.TypeLevel, Body: params(study("https://elsewhere/fhir/ImagingStudy/a"))}},
		{"bad id", engine.OpRequest{Level: engine.TypeLevel, Body: params(study("ImagingStudy/a b"))}},
		{"over 100 studies", engine.OpRequest{Level: engine.TypeLevel, Body: params(tooMany...)}},
	}
	for _, c := range bad {
		_, err := inferRequest(c.req, base)
		fe, ok := err.(*fhir.Error)
		if !ok || fe.Kind != fhir.BadRequest {
			t.Errorf("%s: %v, want a BadRequest fhir.Error", c.name, err)
		}
	}
}
