// Package scope parses SMART on FHIR scopes (App Launch 1.0 "v1" and 2.0 "v2",
// granular v2 scopes with search constraints), decides what a set of granted
// scopes allows for one interaction, and holds the role ceilings that bound
// what a user may be granted.
package scope

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/emberfhir/ember/fhir/spec"
)

// Context is a scope's compartment prefix.
type Context string

// The three SMART scope contexts.
const (
	Patient Context = "patient" // confined to the launch patient's compartment
	User    Context = "user"    // whatever the user may see
	System  Context = "system"  // backend services, no user
)

// Perm is a set of v2 permissions.
type Perm uint8

// The v2 permissions, in their canonical "cruds" order.
const (
	Create Perm = 1 << iota
	Read
	Update
	Delete
	Search

	All   = Create | Read | Update | Delete | Search
	Read1 = Read | Search            // v1 "read"
	Write = Create | Update | Delete // v1 "write"
)

// String renders p in v2 form ("cruds" order).
func (p Perm) String() string {
	var b strings.Builder
	for i, c := range "cruds" {
		if p&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Scope is one resource scope.
type Scope struct {
	Context Context
	Type    string // a resource type or "*"
	Perms   Perm
	// Query is a granular scope's search constraint (v2 only), nil if none.
	Query url.Values
	// V1 records that the scope was written in v1 form (read/write/*).
	V1 bool
}

// Parse parses one resource scope. Non-resource scopes (openid, launch, …)
// are not Scopes: see IsResourceScope.
func Parse(s string) (Scope, error) {
	var sc Scope
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return sc, fmt.Errorf("scope %q: not a resource scope (context/Type.permissions)", s)
	}
	switch Context(ctx) {
	case Patient, User, System:
		sc.Context = Context(ctx)
	default:
		return sc, fmt.Errorf("scope %q: unknown context %q (patient, user or system)", s, ctx)
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perms, ok := strings.Cut(rest, ".")
	if !ok {
		return sc, fmt.Errorf("scope %q: missing .permissions", s)
	}
	if typ != "*" && !spec.IsResourceType(typ) {
		return sc, fmt.Errorf("scope %q: unknown resource type %q", s, typ)
	}
	sc.Type = typ
	switch perms {
	case "read":
		sc.Perms, sc.V1 = Read1, true
	case "write":
		sc.Perms, sc.V1 = Write, true
	case "*":
		sc.Perms, sc.V1 = All, true
	default:
		last := -1
		for _, c := range perms {
			i := strings.IndexRune("cruds", c)
			if i <= last { // unknown letter, repeated or out of order
				return sc, fmt.Errorf("scope %q: permissions %q must be letters of \"cruds\" in that order", s, perms)
			}
			last = i
			sc.Perms |= 1 << i
		}
		if sc.Perms == 0 {
			return sc, fmt.Errorf("scope %q: no permissions", s)
		}
	}
	if hasQuery {
		if sc.V1 {
			return sc, fmt.Errorf("scope %q: search constraints need v2 permissions", s)
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return sc, fmt.Errorf("scope %q: bad search constraint %q", s, query)
		}
		sc.Query = q
	}
	return sc, nil
}

// String renders the scope, in v1 form when it was parsed from one.
func (s Scope) String() string {
	p := s.Perms.String()
	if s.V1 {
		switch s.Perms {
		case Read1:
			p = "read"
		case Write:
			p = "write"
		case All:
			p = "*"
		}
	}
	out := string(s.Context) + "/" + s.Type + "." + p
	if s.Query != nil {
		out += "?" + s.Query.Encode()
	}
	return out
}

// IsResourceScope reports whether s looks like a resource scope
// (context/Type.perms) rather than openid, launch/patient, offline_access….
func IsResourceScope(s string) bool {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok || !strings.Contains(rest, ".") {
		return false
	}
	switch Context(ctx) {
	case Patient, User, System:
		return true
	}
	return false
}

// Set is the resource scopes of one grant.
type Set []Scope

// ParseSet parses the resource scopes among scopes and skips the others
// (openid, launch, …). Unparseable resource scopes are skipped too: a grant
// never gains authority from a scope it cannot read.
func ParseSet(scopes []string) Set {
	var set Set
	for _, s := range scopes {
		if !IsResourceScope(s) {
			continue
		}
		if sc, err := Parse(s); err == nil {
			set = append(set, sc)
		}
	}
	return set
}

// Decision is what a Set allows for one action on one resource type.
type Decision struct {
	Allowed bool
	// PatientCompartment confines the action to the launch patient's
	// compartment.
	PatientCompartment bool
	// Filters, when not empty, confine the action to resources matching at
	// least one of these search constraints (granular scopes).
	Filters []url.Values
}

// Unrestricted reports an allowed decision without any confinement.
func (d Decision) Unrestricted() bool {
	return d.Allowed && !d.PatientCompartment && len(d.Filters) == 0
}

// Check decides perm on resources of typ. When several scopes match, the
// decision is their union, approximated from below where it cannot be
// expressed exactly (a patient scope beside a user scope with a search
// constraint): confinement never grants more than some scope does.
func (s Set) Check(typ string, perm Perm) Decision {
	var d Decision
	unfiltered := false
	for _, sc := range s {
		if (sc.Type != "*" && sc.Type != typ) || sc.Perms&perm != perm {
			continue
		}
		if sc.Context != Patient && sc.Query == nil {
			return Decision{Allowed: true}
		}
		d.Allowed = true
		if sc.Context == Patient {
			d.PatientCompartment = true
		}
		if sc.Query == nil {
			unfiltered = true
		} else {
			d.Filters = append(d.Filters, sc.Query)
		}
	}
	if unfiltered {
		d.Filters = nil
	}
	return d
}
