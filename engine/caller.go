package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store"
)

// Caller is on whose authority an interaction runs. Every engine call
// takes one explicitly, so a producer cannot forget to say who it acts for:
// a nil Caller is refused.
//
// A token's Caller (Engine.Grant) enforces its SMART grant: the caller's
// policy is the store.Guard the store applies on every read, search,
// include, history entry and write, whichever path reached them. System
// is unrestricted: producers that act for the server itself (ember import,
// DICOM ingest, inference, auth mode none).
type Caller struct {
	p     *policy // nil: System
	trail bool    // AuditTrail
}

// System is the unrestricted caller of producers that act for the server
// itself, not for a token's holder.
var System = &Caller{}

var errNoCaller = errors.New("engine: no caller: pass engine.System or a token's Caller")

// bind returns ctx carrying the caller's guard for the store.
func (c *Caller) bind(ctx context.Context) (context.Context, error) {
	if c == nil {
		return ctx, errNoCaller
	}
	if c.trail {
		ctx = context.WithValue(ctx, trailKey{}, c)
	}
	ctx = context.WithValue(ctx, callerKey{}, c)
	if c.p == nil {
		return ctx, nil
	}
	return store.WithGuard(ctx, c.p), nil
}

// Grant is the caller's grant, nil for System.
func (c *Caller) Grant() *access.Grant {
	if c == nil || c.p == nil {
		return nil
	}
	return c.p.grant
}

// policy returns the caller's policy, nil when unrestricted.
func (c *Caller) policy() *policy {
	if c == nil {
		return nil
	}
	return c.p
}

// policy enforces one token's SMART grant.
//
// Semantics:
//   - A scope must grant the action on the type (v1 read = rs, write = cud).
//   - patient/ scopes confine the types of the Patient compartment (and
//     Task: beyondR4) to the launch patient's compartment. Types outside it
//     (Medication, Practitioner, Organization, …) hold no patient's data and
//     are readable as granted.
//   - Granular scopes (patient/Observation.rs?category=…) add their search
//     constraint; several on one type are ORed when they constrain the same
//     parameter, else the first applies (never more than granted).
//   - Reads of hidden resources answer not found, as if absent; a missing
//     scope is Forbidden.
type policy struct {
	en     *Engine
	grant  *access.Grant
	scopes scope.Set
}

var _ store.Guard = (*policy)(nil)

// Grant returns the Caller for a verified token's grant. The token has been
// verified (and checked for revocation) already; its parsed policy is
// reused across its requests.
func (en *Engine) Grant(token string, g *access.Grant) *Caller {
	if c := en.policies.get(token); c != nil {
		return c
	}
	c := &Caller{p: &policy{en: en, grant: g, scopes: scope.ParseSet(g.Scopes)}}
	en.policies.put(token, c)
	return c
}

// policyCache maps verified tokens to their parsed policies. A token's
// grant never changes, so entries need no invalidation; the map is simply
// emptied when it grows past maxPolicies (expired tokens never get here:
// the verifier refuses them first).
type policyCache struct {
	m sync.Map // token → *Caller
	n atomic.Int64
}

const maxPolicies = 10000

func (c *policyCache) get(token string) *Caller {
	if v, ok := c.m.Load(token); ok {
		return v.(*Caller)
	}
	return nil
}

func (c *policyCache) put(token string, p *Caller) {
	if c.n.Add(1) > maxPolicies {
		c.m.Clear()
		c.n.Store(0)
	}
	c.m.Store(token, p)
}

func forbidden(msg string) *fhir.Error {
	return fhir.NewError(fhir.Forbidden, "forbidden", msg)
}

var permWords = map[scope.Perm]string{
	scope.Create: "create", scope.Read: "read", scope.Update: "update",
	scope.Delete: "delete", scope.Search: "search",
}

// decide is the grant's decision for perm on typ, or Forbidden.
func (p *policy) decide(typ string, perm scope.Perm) (scope.Decision, error) {
	d := p.scopes.Check(typ, perm)
	if !d.Allowed {
		return d, forbidden(fmt.Sprintf("the access token's scopes do not permit %s of %s", permWords[perm], typ))
	}
	if d.PatientCompartment {
		if patientParams(typ) == nil {
			d.PatientCompartment = false // holds no patient's data
		} else if p.grant.Patient == "" {
			return d, forbidden("patient/ scopes need a patient in the token's launch context")
		}
	}
	return d, nil
}

// Confine implements store.Guard.
func (p *policy) Confine(ctx context.Context, q *search.Query) error {
	types := []string{q.Type}
	if q.Type == "" {
		types = q.Types
		if len(types) == 0 {
			if !p.scopes.Check("*", scope.Search).Unrestricted() {
				return forbidden("a search across all types needs _type with these scopes")
			}
			types = nil
		}
	}
	for _, t := range types {
		d, err := p.decide(t, scope.Search)
		if err != nil {
			return err
		}
		if d.Unrestricted() || (!d.PatientCompartment && len(d.Filters) == 0) {
			continue
		}
		if len(types) > 1 {
			return forbidden("with patient or granular scopes, search one type at a time (" + t + " is confined)")
		}
		if err := p.confineType(q, t, d); err != nil {
			return err
		}
	}
	return p.checkChains(q.Params)
}

// confineType applies d's compartment and filters to a search of typ.
func (p *policy) confineType(q *search.Query, typ string, d scope.Decision) error {
	if d.PatientCompartment {
		if c := q.Compartment; c != nil {
			if c.Type != "Patient" || c.ID != p.grant.Patient {
				return forbidden("these scopes reach only the launch patient's compartment")
			}
		} else {
			q.Compartment = &search.Compartment{Type: "Patient", ID: p.grant.Patient, Params: patientParams(typ)}
		}
	}
	if len(d.Filters) == 0 {
		return nil
	}
	fq, err := search.Parse(typ, mergeFilters(d.Filters), search.Options{Strict: true, Base: p.en.base, DefaultCount: 1, MaxCount: 1})
	if err != nil {
		return forbidden("the access token's search constraint on " + typ + " is not understood: " + err.Error())
	}
	q.Params = append(q.Params, fq.Params...)
	return nil
}

// mergeFilters ORs granular constraints when they are values of one and the
// same parameter; otherwise the first alone applies (a subset of the grant).
func mergeFilters(fs []url.Values) url.Values {
	if len(fs) == 1 {
		return fs[0]
	}
	var name string
	var values []string
	for _, f := range fs {
		if len(f) != 1 {
			return fs[0]
		}
		for k, vs := range f {
			if name != "" && k != name {
				return fs[0]
			}
			name = k
			if len(vs) != 1 {
				return fs[0]
			}
			values = append(values, vs[0])
		}
	}
	return url.Values{name: {strings.Join(values, ",")}}
}

// checkChains drops chained alternatives into types the grant cannot search
// and refuses _has into confined types, whose resources could be another
// patient's.
func (p *policy) checkChains(params []search.Param) error {
	for i := range params {
		if err := p.checkParam(&params[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *policy) checkParam(prm *search.Param) error {
	if len(prm.Chains) > 0 {
		kept := prm.Chains[:0]
		for _, ch := range prm.Chains {
			if _, err := p.decide(ch.Type, scope.Search); err == nil {
				kept = append(kept, ch)
			}
		}
		if len(kept) == 0 {
			return forbidden("the access token's scopes do not permit the chained search " + quote(prm.Name))
		}
		prm.Chains = kept
		for _, ch := range kept {
			if err := p.checkParam(ch); err != nil {
				return err
			}
		}
	}
	if prm.Has != nil {
		d, err := p.decide(prm.Has.Type, scope.Search)
		if err != nil {
			return err
		}
		if d.PatientCompartment || len(d.Filters) > 0 {
			return forbidden("_has into " + prm.Has.Type + " is not available with patient or granular scopes")
		}
		return p.checkParam(prm.Has)
	}
	return nil
}

// Visible implements store.Guard.
func (p *policy) Visible(ctx context.Context, typ, id string, content []byte) (bool, error) {
	d, err := p.decide(typ, scope.Read)
	if err != nil {
		return false, err
	}
	if d.Unrestricted() {
		return true, nil
	}
	if content == nil {
		return false, nil // a tombstone shows no compartment
	}
	if d.PatientCompartment && !inCompartment(typ, id, content, p.grant.Patient) {
		return false, nil
	}
	if len(d.Filters) == 0 {
		return true, nil
	}
	// The constraint is a search: ask the store whether the resource
	// matches it (evaluated on the current version).
	for _, f := range d.Filters {
		params := url.Values{"_id": {id}}
		for k, vs := range f {
			params[k] = vs
		}
		q, err := search.Parse(typ, params, search.Options{Strict: true, Base: p.en.base, DefaultCount: 1, MaxCount: 1})
		if err != nil {
			return false, nil
		}
		res, err := p.en.store.Search(store.WithoutGuard(ctx), q)
		if err != nil {
			return false, err
		}
		if len(res.Matches) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// CheckWrite implements store.Guard.
func (p *policy) CheckWrite(ctx context.Context, op store.WriteOp, typ, id string, content, old []byte) error {
	perm := map[store.WriteOp]scope.Perm{store.OpCreate: scope.Create, store.OpUpdate: scope.Update, store.OpDelete: scope.Delete}[op]
	d, err := p.decide(typ, perm)
	if err != nil {
		return err
	}
	if len(d.Filters) > 0 {
		return forbidden("scopes with search constraints do not permit writes of " + typ)
	}
	if !d.PatientCompartment {
		return nil
	}
	if old != nil && !inCompartment(typ, id, old, p.grant.Patient) {
		return forbidden(typ + "/" + id + " is outside the launch patient's compartment")
	}
	if content != nil && !inCompartment(typ, id, content, p.grant.Patient) {
		return forbidden("the " + typ + " would be outside the launch patient's compartment")
	}
	return nil
}

// beyondR4 are the types R4 leaves out of the Patient compartment though
// they name a patient in a field of their own, with the R4 search
// parameter that holds it. A Task (an AI inference job, an order's
// fulfilment) says whose data it works on in Task.for; R5 puts Task in the
// compartment. Without this a patient/Task.rs token read every patient's
// Tasks. Provenance stays out: its patient parameter is its target, which
// for clinical Provenance is the Observation, not the Patient, so confining
// it would hide the Provenance of the patient's own data.
var beyondR4 = map[string][]string{"Task": {"patient"}}

// patientParams are the search parameters that put a resource of typ in a
// patient's reach for patient/ scopes: the R4 Patient compartment's, or
// beyondR4's. Compartment searches and $everything keep R4's definition.
func patientParams(typ string) []string {
	if p := spec.CompartmentParams("Patient", typ); p != nil {
		return p
	}
	return beyondR4[typ]
}

// inCompartment reports whether a resource is in Patient/patient's
// compartment: it is that Patient, or one of its compartment parameters
// refers to it.
func inCompartment(typ, id string, content []byte, patient string) bool {
	codes := patientParams(typ)
	if typ == "Patient" && id == patient {
		return true
	}
	if len(codes) == 0 {
		return false
	}
	entries, err := index.Extract(typ, content)
	if err != nil {
		return false
	}
	ids := make(map[int32]bool, len(codes))
	for _, c := range codes {
		if c != "_id" {
			ids[spec.ParamID(typ, c)] = true
		}
	}
	for _, r := range entries.References {
		if ids[r.Param] && r.Type == "Patient" && r.ID == patient {
			return true
		}
	}
	return false
}

// requireUnrestricted refuses operations that read across patients
// ($export, $meta at type or system level) unless the grant reads every
// type it touches without confinement.
func (p *policy) requireUnrestricted(types []string) error {
	if p == nil {
		return nil
	}
	if len(types) == 0 {
		if !p.scopes.Check("*", scope.Read).Unrestricted() {
			return forbidden("this operation reads every resource type: it needs user/*.rs or system/*.rs (or v1 read)")
		}
		return nil
	}
	for _, t := range types {
		if !p.scopes.Check(t, scope.Read).Unrestricted() {
			return forbidden("this operation needs unconfined read access to " + t)
		}
	}
	return nil
}

// RequireUnrestricted refuses, for callers whose grant is confined, work
// that reads across patients past the store's guarded paths ($export, $meta
// at type or system level): the grant must read every type in types (all
// types when empty) without confinement.
func (c *Caller) RequireUnrestricted(types []string) error {
	return c.policy().requireUnrestricted(types)
}
