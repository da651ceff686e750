package scope

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]struct {
		ctx   Context
		typ   string
		perms Perm
		query string
	}{
		"patient/*.read":         {Patient, "*", Read1, ""},
		"user/Observation.write": {User, "Observation", Write, ""},
		"system/*.*":             {System, "*", All, ""},
		"patient/Observation.rs": {Patient, "Observation", Read | Search, ""},
		"user/*.cruds":           {User, "*", All, ""},
		"user/Patient.c":         {User, "Patient", Create, ""},
		"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory": {Patient, "Observation", Read | Search, "category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory"},
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		q := ""
		if got.Query != nil {
			q = got.Query.Encode()
		}
		if got.Context != want.ctx || got.Type != want.typ || got.Perms != want.perms || q != want.query {
			t.Errorf("Parse(%q) = %+v, want %+v", in, got, want)
		}
	}
	for _, in := range []string{
		"openid", "launch/patient", "patient/Observation", "doctor/*.read", "patient/Nope.read",
		"patient/Observation.sr", "patient/Observation.rr", "patient/Observation.x", "patient/Observation.",
		"patient/Observation.read?category=x", "patient/Observation.rs?",
	} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, in := range []string{"patient/*.read", "user/Observation.write", "system/*.*", "user/Patient.rs", "user/*.cruds"} {
		sc, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if sc.String() != in {
			t.Errorf("String() = %q, want %q", sc.String(), in)
		}
	}
}

func TestCheck(t *testing.T) {
	set := ParseSet([]string{"openid", "launch", "patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=vital-signs", "patient/Patient.read", "user/Practitioner.rs", "garbage/x.y"})
	if len(set) != 4 {
		t.Fatalf("ParseSet kept %d scopes, want 4", len(set))
	}
	d := set.Check("Observation", Search)
	if !d.Allowed || !d.PatientCompartment || len(d.Filters) != 2 {
		t.Errorf("Observation search: %+v", d)
	}
	if d := set.Check("Observation", Create); d.Allowed {
		t.Errorf("Observation create allowed: %+v", d)
	}
	if d := set.Check("Patient", Read); !d.Allowed || !d.PatientCompartment || d.Filters != nil {
		t.Errorf("Patient read: %+v", d)
	}
	if d := set.Check("Practitioner", Read); !d.Unrestricted() {
		t.Errorf("Practitioner read: %+v", d)
	}
	if d := set.Check("Condition", Read); d.Allowed {
		t.Errorf("Condition read allowed: %+v", d)
	}
	// An unfiltered scope beside a filtered one lifts the filter.
	d = ParseSet([]string{"patient/Observation.rs?category=laboratory", "patient/*.read"}).Check("Observation", Read)
	if !d.Allowed || !d.PatientCompartment || d.Filters != nil {
		t.Errorf("filtered + unfiltered: %+v", d)
	}
	// A user scope beside a patient scope is unrestricted.
	if d := ParseSet([]string{"patient/*.rs", "user/Observation.rs"}).Check("Observation", Search); !d.Unrestricted() {
		t.Errorf("patient + user: %+v", d)
	}
}

func TestAllowed(t *testing.T) {
	cases := []struct {
		role      string
		requested []string
		want      []string
	}{
		{"doctor", []string{"openid", "fhirUser", "launch/patient", "patient/*.read", "user/Observation.cruds"}, []string{"openid", "fhirUser", "launch/patient", "patient/*.read", "user/Observation.cruds"}},
		{"pharmacist", []string{"user/Observation.cruds"}, nil},
		{"pharmacist", []string{"user/MedicationDispense.write", "user/Patient.cruds"}, []string{"user/MedicationDispense.write", "user/Patient.rs"}},
		{"patient", []string{"patient/*.cruds", "user/*.read", "openid"}, []string{"patient/*.rs", "openid"}},
		{"patient", []string{"patient/Observation.rs?category=laboratory"}, []string{"patient/Observation.rs?category=laboratory"}},
		{"receptionist", []string{"user/Observation.rs", "user/Patient.cruds"}, []string{"user/Patient.crus"}},
		{"nurse", []string{"user/*.write"}, []string{"user/Observation.cu", "user/MedicationAdministration.cu", "user/Procedure.cu", "user/Condition.cu", "user/AllergyIntolerance.cu", "user/CarePlan.cu", "user/Encounter.cu", "user/DocumentReference.cu"}},
		{"nobody", []string{"openid", "user/*.read"}, []string{"openid"}},
	}
	for _, c := range cases {
		got := Allowed(c.role, c.requested)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Allowed(%s, %v) = %v, want %v", c.role, c.requested, got, c.want)
		}
	}
	// What Allowed grants never exceeds the ceiling.
	for _, role := range Roles() {
		ceiling := Ceiling(role)
		for _, s := range ParseSet(Allowed(role, []string{"patient/*.cruds", "user/*.cruds", "system/*.cruds"})) {
			for _, perm := range []Perm{Create, Read, Update, Delete, Search} {
				if s.Perms&perm == 0 {
					continue
				}
				typ := s.Type
				if typ == "*" {
					typ = "Observation"
				}
				if !(Set{s}).Check(typ, perm).Allowed || !ceiling.Check(typ, perm).Allowed {
					t.Errorf("%s granted %s beyond its ceiling", role, s)
				}
			}
		}
	}
}

// TestNarrowGranularCeiling: a granular registered scope stays granular
// whatever is asked for; never wider than the registration.
func TestNarrowGranularCeiling(t *testing.T) {
	ceiling := ParseSet([]string{"system/Observation.rs?category=laboratory", "system/Patient.rs"})
	for _, c := range []struct {
		requested []string
		want      []string
	}{
		{[]string{"system/Observation.rs"}, []string{"system/Observation.rs?category=laboratory"}},
		{[]string{"system/*.rs"}, []string{"system/Observation.rs?category=laboratory", "system/Patient.rs"}},
		{[]string{"system/Observation.read"}, []string{"system/Observation.rs?category=laboratory"}},
		{[]string{"system/Observation.rs?category=laboratory"}, []string{"system/Observation.rs?category=laboratory"}},
		{[]string{"system/Observation.rs?code=1234-5"}, []string{"system/Observation.rs?category=laboratory&code=1234-5"}},
		{[]string{"system/Observation.rs?category=vital-signs"}, nil},
	} {
		if got := Narrow(ceiling, c.requested); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Narrow(%v) = %v, want %v", c.requested, got, c.want)
		}
	}
}

func TestSubset(t *testing.T) {
	granted := []string{"openid", "offline_access", "patient/*.rs", "user/Observation.rs?category=laboratory"}
	for _, ok := range [][]string{{"openid"}, {"patient/Observation.rs"}, {"patient/*.read"}, {"user/Observation.rs?category=laboratory"}, {}} {
		if !Subset(ok, granted) {
			t.Errorf("Subset(%v) = false", ok)
		}
	}
	for _, bad := range [][]string{{"patient/*.cruds"}, {"user/Observation.rs"}, {"profile"}, {"user/Observation.rs?category=vital-signs"}} {
		if Subset(bad, granted) {
			t.Errorf("Subset(%v) = true", bad)
		}
	}
}

// FuzzParse: any string either fails to parse or round-trips through
// String to an equal scope, and narrowing never panics or widens.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"patient/*.read", "user/Observation.cruds", "system/*.*", "patient/Observation.rs?category=a|b&code=c", "launch/patient", "user/Patient.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(sc.String())
		if err != nil || again.String() != sc.String() || again.Perms != sc.Perms || again.Type != sc.Type || again.Context != sc.Context {
			t.Fatalf("%q -> %q -> %+v, %v", s, sc.String(), again, err)
		}
		for _, role := range Roles() {
			for _, g := range ParseSet(Allowed(role, []string{s})) {
				if g.Perms&^sc.Perms != 0 {
					t.Fatalf("Allowed(%s, %q) widened to %s", role, s, g)
				}
			}
		}
	})
}
