package importer

import (
	"encoding/json"
	"testing"

	"github.com/emberfhir/ember/store"
)

func TestBundleFootprint(t *testing.T) {
	fp := func(entries string) *footprint {
		t.Helper()
		var b struct {
			Entry []bundleEntry `json:"entry"`
		}
		if err := json.Unmarshal([]byte(`{"entry":`+entries+`}`), &b); err != nil {
			t.Fatal(err)
		}
		return bundleFootprint(b.Entry)
	}
	items := func(typ, id string) *footprint {
		f := &footprint{}
		f.add(&f.writes, typ)
		if id != "" {
			f.ids = map[store.ResourceKey]bool{{Type: typ, ID: id}: true}
		}
		return f
	}
	if f := fp(`[{"request":{"method":"GET","url":"Patient?name=x&_count=5"}}]`); f.all || !f.reads["Patient"] {
		t.Errorf("a plain search: footprint %+v, want it to read Patient", f)
	}
	createPatient := fp(`[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]`)
	createObsForOrg := fp(`[{"resource":{"resourceType":"Observation","performer":[{"reference":"Organization?identifier=x|1"}]},"request":{"method":"POST","url":"Observation"}}]`)
	putPatient := fp(`[{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}}]`)
	condPut := fp(`[{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?identifier=a|b"}}]`)
	ifNoneExist := fp(`[{"resource":{"resourceType":"Organization"},"request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=x|1"}}]`)
	for _, f := range []*footprint{createPatient, createObsForOrg, putPatient, condPut, ifNoneExist} {
		if f.all {
			t.Fatalf("footprint %+v runs alone; want it bounded", f)
		}
	}
	for _, entries := range []string{
		`[{"request":{"method":"POST","url":"Patient/$validate"}}]`,
		`[{"request":{"method":"GET","url":"metadata"}}]`,
		`[{"request":{"method":"GET","url":"?_type=Patient"}}]`,
		`[{"request":{"method":"DELETE","url":"http://elsewhere/fhir/Patient/1"}}]`,
		`[{"request":{"method":"PATCH","url":"Patient/1"}}]`,
		`[{"request":{"method":"PUT","url":"Patient"}}]`,
		`[{"request":{"method":"TRACE","url":"Patient/1"}}]`,
		`[{"request":{"method":"GET","url":"Patient?_revinclude=Observation:subject"}}]`,
		`[{"request":{"method":"GET","url":"Observation?subject.name=x"}}]`,
		`[{"request":{"method":"GET","url":"Patient?_has:Observation:subject:code=1"}}]`,
		`[{"request":{"method":"POST","url":"Patient/_search"}}]`,
	} {
		if f := fp(entries); !f.all {
			t.Errorf("%s: footprint %+v, want it to run alone", entries, f)
		}
	}
	for _, tc := range []struct {
		name string
		a, b *footprint
		want bool
	}{
		{"two plain creates", createPatient, createPatient, false},
		{"creates of different types", createPatient, createObsForOrg, false},
		{"conditional reference after writes of its type", items("Organization", "o1"), createObsForOrg, true},
		{"conditional reference before writes of its type", createObsForOrg, items("Organization", ""), true},
		{"conditional reference beside other writes", items("Patient", "p9"), createObsForOrg, false},
		{"same id", putPatient, items("Patient", "p1"), true},
		{"other id", putPatient, items("Patient", "p2"), false},
		{"conditional update and any write of its type", condPut, items("Patient", "p2"), true},
		{"conditional update and a create of its type", createPatient, condPut, true},
		{"ifNoneExist and a write of its type", items("Organization", "o2"), ifNoneExist, true},
		{"alone", &footprint{all: true}, createPatient, true},
	} {
		if got := conflicts(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: conflicts = %v, want %v", tc.name, got, tc.want)
		}
		if got := conflicts(tc.b, tc.a); got != tc.want {
			t.Errorf("%s (swapped): conflicts = %v, want %v", tc.name, got, tc.want)
		}
	}
}
