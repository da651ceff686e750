package scope

import (
	"net/url"
	"slices"
)

// Roles are the user roles Ember knows, carried over from the hospital
// system it replaces. Each is a ceiling on the scopes its users can be
// granted (see Ceiling).
var roleCeilings = map[string][]string{
	// Administrators manage everything.
	"admin": {"user/*.cruds", "patient/*.cruds"},
	// Doctors read and write all clinical data.
	"doctor": {"user/*.cruds", "patient/*.cruds"},
	// Nurses read everything and record care, but delete nothing and do not
	// prescribe or order.
	"nurse": {
		"user/*.rs", "patient/*.rs",
		"user/Observation.cu", "patient/Observation.cu",
		"user/MedicationAdministration.cu", "patient/MedicationAdministration.cu",
		"user/Procedure.cu", "patient/Procedure.cu",
		"user/Condition.cu", "patient/Condition.cu",
		"user/AllergyIntolerance.cu", "patient/AllergyIntolerance.cu",
		"user/CarePlan.cu", "patient/CarePlan.cu",
		"user/Encounter.cu", "patient/Encounter.cu",
		"user/DocumentReference.cu", "patient/DocumentReference.cu",
	},
	// Pharmacists dispense: medications and dispenses in full, the orders
	// and the patient (with allergies) to check them against, read only.
	"pharmacist": {
		"user/MedicationDispense.cruds", "patient/MedicationDispense.cruds",
		"user/Medication.cruds", "patient/Medication.cruds",
		"user/MedicationRequest.rs", "patient/MedicationRequest.rs",
		"user/Patient.rs", "patient/Patient.rs",
		"user/AllergyIntolerance.rs", "patient/AllergyIntolerance.rs",
		"user/Practitioner.rs", "user/Organization.rs",
	},
	// Receptionists register patients and book orders and appointments;
	// no clinical results.
	"receptionist": {
		"user/Patient.crus", "patient/Patient.crus",
		"user/ServiceRequest.crus", "patient/ServiceRequest.crus",
		"user/Appointment.cruds", "patient/Appointment.cruds",
		"user/Practitioner.rs", "user/PractitionerRole.rs",
		"user/Organization.rs", "user/Location.rs",
		"user/Schedule.rs", "user/Slot.rs",
	},
	// Patients read their own compartment.
	"patient": {"patient/*.rs"},
}

// Roles lists the known roles.
func Roles() []string {
	return []string{"admin", "doctor", "nurse", "pharmacist", "receptionist", "patient"}
}

// IsRole reports whether role is a known role.
func IsRole(role string) bool {
	_, ok := roleCeilings[role]
	return ok
}

// Ceiling is the most a user of role may be granted (nil for unknown roles).
func Ceiling(role string) Set {
	return ParseSet(roleCeilings[role])
}

// Allowed narrows requested scopes to what a user of role may be granted.
// Non-resource scopes (openid, fhirUser, launch/patient, offline_access, …)
// pass unchanged; each resource scope is intersected with the role's ceiling
// and may come back narrowed (fewer permissions, a named type instead of "*")
// or split into several scopes, or dropped. Unknown roles get no resource
// scopes. The result keeps the requested order and has no duplicates.
func Allowed(role string, requested []string) []string {
	return Narrow(Ceiling(role), requested)
}

// Narrow intersects each requested resource scope with ceiling (see
// Allowed).
func Narrow(ceiling Set, requested []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, r := range requested {
		if r == "" {
			continue
		}
		if !IsResourceScope(r) {
			add(r)
			continue
		}
		req, err := Parse(r)
		if err != nil {
			continue
		}
		for _, c := range ceiling {
			if c.Context != req.Context {
				continue
			}
			n, ok := intersect(req, c)
			if !ok {
				continue
			}
			if n.Type == req.Type && n.Perms == req.Perms && n.Query.Encode() == req.Query.Encode() {
				add(r) // fully within this ceiling scope: keep as written
				break
			}
			add(n.String())
		}
	}
	return dedupeCovered(out)
}

// intersect is the part of req within ceiling scope c (same context).
func intersect(req, c Scope) (Scope, bool) {
	n := req
	switch {
	case req.Type == "*" && c.Type != "*":
		n.Type = c.Type
	case req.Type != "*" && c.Type != "*" && req.Type != c.Type:
		return n, false
	}
	n.Perms = req.Perms & c.Perms
	if n.Perms == 0 {
		return n, false
	}
	// A granular ceiling's constraint stays on: the request without one is
	// narrowed to it, and a request with another constraint keeps both
	// (different parameters are ANDed, so the union of the two queries is
	// within each); two constraints on the same parameter that differ are
	// not expressible as one scope and grant nothing.
	if c.Query != nil {
		q := url.Values{}
		for k, v := range req.Query {
			q[k] = v
		}
		for k, v := range c.Query {
			if have, ok := q[k]; ok && !slices.Equal(have, v) {
				return n, false
			}
			q[k] = v
		}
		n.Query = q
	}
	if n.Query != nil {
		n.V1 = false // v1 has no granular scopes
	}
	if n.Perms != req.Perms && n.V1 {
		// v1 has no way to write partial permissions.
		switch n.Perms {
		case Read1, Write, All:
		default:
			n.V1 = false
		}
	}
	return n, true
}

// dedupeCovered drops scopes that another kept scope of the same context and
// query fully covers, so "user/*.rs" and "user/Patient.rs" do not both
// appear.
func dedupeCovered(in []string) []string {
	parsed := make([]*Scope, len(in))
	for i, s := range in {
		if IsResourceScope(s) {
			if sc, err := Parse(s); err == nil {
				parsed[i] = &sc
			}
		}
	}
	out := in[:0:0]
	for i, s := range in {
		p := parsed[i]
		covered := false
		for j, q := range parsed {
			if p == nil || q == nil || i == j || q.Context != p.Context || q.Query != nil {
				continue
			}
			covers := (q.Type == "*" || q.Type == p.Type) && q.Perms&p.Perms == p.Perms
			same := q.Type == p.Type && q.Perms == p.Perms && p.Query == nil
			if covers && (!same || j < i) { // of two equal scopes keep the first
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// Subset reports whether every scope in narrower is among granted (for a
// refresh, which may only narrow). Resource scopes may also be narrowed
// within a granted one (patient/Observation.rs within patient/*.rs).
func Subset(narrower, granted []string) bool {
	g := ParseSet(granted)
	plain := map[string]bool{}
	for _, s := range granted {
		plain[s] = true
	}
	for _, s := range narrower {
		if s == "" || plain[s] {
			continue
		}
		if !IsResourceScope(s) {
			return false
		}
		sc, err := Parse(s)
		if err != nil {
			return false
		}
		ok := false
		for _, c := range g {
			if c.Context == sc.Context && (c.Type == "*" || c.Type == sc.Type) && c.Perms&sc.Perms == sc.Perms &&
				(c.Query == nil || (sc.Query != nil && sc.Query.Encode() == c.Query.Encode())) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
