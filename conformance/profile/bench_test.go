package profile_test

import (
	"testing"
)

func BenchmarkCheck(b *testing.B) {
	set, pkg := usCoreSet(b)
	for _, c := range []struct{ name, file, profile string }{
		{"Patient", "example/Patient-example.json", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"},
		{"ObservationLab", "example/Observation-cbc-hemoglobin.json", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"},
	} {
		var body []byte
		for _, ex := range pkg.Examples {
			if ex.File == c.file {
				body = ex.JSON
			}
		}
		typ, _ := claimed(b, body)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				set.CheckStructure(typ, body, c.profile)
			}
		})
		b.Run(c.name+"/invariants", func(b *testing.B) {
			for b.Loop() {
				set.Check(typ, body, c.profile)
			}
		})
	}
}
