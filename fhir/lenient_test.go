package fhir_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/fhir"
)

func TestParseLenientDropsUnknownElements(t *testing.T) {
	p, _ := fhir.NewParser()
	body := []byte(`{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
		"period":{"start":"2020-01-01","stop":"2020-01-02"},
		"contained":[{"resourceType":"Patient","id":"p","colour":"blue","name":[{"family":"A","nick":"x"}]}],
		"participant":[{"individual":{"reference":"#p"}},{"period":{"start":"2020-01-01","finish":"x"}}]}`)
	if _, err := p.Parse(body, ""); err == nil {
		t.Fatal("strict parse accepted Period.stop")
	}
	res, warnings, err := p.ParseLenient(body, "Encounter")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warnings {
		if w.Severity != "warning" {
			t.Errorf("severity %q", w.Severity)
		}
		got = append(got, strings.Join(w.Expression, ","))
	}
	want := []string{"Encounter.period.stop", "Encounter.contained[0].colour", "Encounter.contained[0].name[0].nick", "Encounter.participant[1].period.finish"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("dropped %v, want %v", got, want)
	}
	out := res.Stamp("e1", 1, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if p := m["period"].(map[string]any); p["start"] != "2020-01-01" || p["stop"] != nil {
		t.Errorf("period %v", p)
	}
	// Other errors still fail; a valid body parses unchanged, with no warning.
	if _, _, err := p.ParseLenient([]byte(`{"resourceType":"Patient","gender":"x","stop":1}`), ""); err == nil {
		t.Error("an invalid code passed lenient parsing")
	}
	if _, w, err := p.ParseLenient([]byte(`{"resourceType":"Patient","gender":"male"}`), ""); err != nil || w != nil {
		t.Errorf("valid body: %v %v", w, err)
	}
}
