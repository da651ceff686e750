package engine

import (
	"context"
	"errors"
	"net/url"
	"strconv"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// CreateRequest is a create: POST [type], or a producer's create.
type CreateRequest struct {
	Resource *fhir.Resource
	// ID, when set, is the id the caller assigned (a transaction's entry);
	// otherwise the store assigns a fresh one.
	ID string
	// IfNoneExist makes the create conditional: when the search (a query
	// string, as in the If-None-Exist header) matches one resource that
	// one is returned (Found) and nothing is written; several matches
	// fail PreconditionFailed. IfNoneExistParams is the same condition as
	// typed parameters; give one or the other.
	IfNoneExist       string
	IfNoneExistParams url.Values
}

// UpdateRequest is an update: PUT [type]/[id] (ID), or a conditional update
// PUT [type]?condition (Condition). An update of an absent resource creates
// it (Created), unless IfMatch is set.
type UpdateRequest struct {
	Resource  *fhir.Resource
	ID        string
	Condition string // a query string; ID must then be ""
	// IfMatch is the version the update requires: 0 for none, IfMatchAny
	// for "*" (the resource must exist).
	IfMatch int64
}

// DeleteRequest is a delete of Type/ID, or of every match of Type?Condition.
type DeleteRequest struct {
	Type, ID  string
	Condition string
	IfMatch   int64
}

// Create creates req.Resource, or with a condition returns the one existing
// match instead. The condition's lock (conditional.go) is the same for
// every producer, so racing conditional creates make one resource.
func (tx *Tx) Create(req CreateRequest) (Result, error) {
	res, err := tx.en.admit(tx.ctx, req.Resource)
	if err != nil {
		return Result{}, err
	}
	req.Resource = res
	if req.IfNoneExistParams != nil {
		return tx.en.doCreate(tx.ctx, tx.tx, req.Resource, req.ID, req.IfNoneExistParams)
	}
	var cond url.Values
	if req.IfNoneExist != "" {
		var err error
		if cond, err = parseCondition(req.IfNoneExist); err != nil {
			return Result{}, err
		}
	}
	return tx.en.doCreate(tx.ctx, tx.tx, req.Resource, req.ID, cond)
}

// Update updates (or creates) a resource.
func (tx *Tx) Update(req UpdateRequest) (Result, error) {
	res, err := tx.en.admit(tx.ctx, req.Resource)
	if err != nil {
		return Result{}, err
	}
	req.Resource = res
	if req.Condition != "" {
		return tx.en.doConditionalUpdate(tx.ctx, tx.tx, req.Resource, req.Condition, req.IfMatch)
	}
	return tx.en.doUpdate(tx.ctx, tx.tx, req.Resource, req.ID, req.IfMatch)
}

// Delete deletes Type/ID (deleting what is absent or deleted succeeds), or
// every match of the condition.
func (tx *Tx) Delete(req DeleteRequest) (Result, error) {
	if req.Condition != "" {
		return tx.en.doConditionalDelete(tx.ctx, tx.tx, req.Type, req.Condition)
	}
	return tx.en.doDelete(tx.ctx, tx.tx, req.Type, req.ID, req.IfMatch)
}

// Read reads the current version of typ/id inside the transaction.
func (tx *Tx) Read(typ, id string) (store.Version, error) {
	v, err := tx.tx.Read(tx.ctx, typ, id)
	return v, readError(v, err)
}

// The interaction cores below run on a store.Tx, so REST requests (one
// transaction each) and Bundle entries (many per transaction) behave the same.

// doCreate creates res (under id when the caller assigned one), or with
// a condition returns the one existing match instead.
func (en *Engine) doCreate(ctx context.Context, tx *store.Tx, res *fhir.Resource, id string, cond url.Values) (Result, error) {
	if err := refuseAuditForgery(ctx, res); err != nil {
		return Result{}, err
	}
	if cond != nil {
		q, key, err := en.condition(res.Type(), cond)
		if err != nil {
			return Result{}, err
		}
		if err := tx.Lock(ctx, key); err != nil {
			return Result{}, err
		}
		found, err := tx.Search(ctx, q)
		if err != nil {
			return Result{}, err
		}
		switch len(found.Matches) {
		case 0:
		case 1:
			m := found.Matches[0]
			return Result{Outcome: Found, Message: "exists",
				Version: store.Version{Type: m.Type, ID: m.ID, VersionID: m.VersionID, LastUpdated: m.LastUpdated, Content: m.Content}}, nil
		default:
			return Result{}, errMultipleMatches
		}
	}
	var v store.Version
	var err error
	if id != "" {
		v, err = tx.CreateAs(ctx, res, id)
	} else {
		v, err = tx.Create(ctx, res)
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: Created, Version: v, Message: "created"}, nil
}

// doUpdate updates (or creates) typ/id. The If-Match: * of IfMatchAny
// (here and in the other cores) means the resource must exist:
// PreconditionFailed if not.
func (en *Engine) doUpdate(ctx context.Context, tx *store.Tx, res *fhir.Resource, id string, ifMatch int64) (Result, error) {
	switch res.ID() {
	case "":
		return Result{}, fhir.Invalid("the resource has no id: an update must carry the id of the URL ("+quote(id)+")", res.Type()+".id")
	case id:
	default:
		return Result{}, fhir.Invalid("the resource's id "+quote(res.ID())+" does not match the URL's id "+quote(id), res.Type()+".id")
	}
	if err := refuseAuditForgery(ctx, res); err != nil {
		return Result{}, err
	}
	if err := refuseAuditEdit(ctx, tx, res.Type(), id); err != nil {
		return Result{}, err
	}
	if ifMatch == IfMatchAny {
		return withCurrent(ctx, tx, res.Type(), id, func(v int64) (Result, error) { return updated(tx.Update(ctx, res, id, v)) })
	}
	return updated(tx.Update(ctx, res, id, ifMatch))
}

// updated describes the outcome of tx.Update.
func updated(v store.Version, created bool, err error) (Result, error) {
	if err != nil {
		return Result{}, err
	}
	if created {
		return Result{Outcome: Created, Version: v, Message: "created"}, nil
	}
	return Result{Outcome: Updated, Version: v, Message: "updated"}, nil
}

// resolveConditional finds the one resource a conditional update or patch
// applies to: ok=false when nothing matches.
func (en *Engine) resolveConditional(ctx context.Context, tx *store.Tx, typ, query string) (id string, ok bool, err error) {
	cond, err := parseCondition(query)
	if err != nil {
		return "", false, err
	}
	q, key, err := en.condition(typ, cond)
	if err != nil {
		return "", false, err
	}
	if err := tx.Lock(ctx, key); err != nil {
		return "", false, err
	}
	found, err := tx.Search(ctx, q)
	if err != nil {
		return "", false, err
	}
	switch len(found.Matches) {
	case 0:
		return "", false, nil
	case 1:
		return found.Matches[0].ID, true, nil
	}
	return "", false, errMultipleMatches
}

// doConditionalUpdate updates the one match of typ?query, or creates.
func (en *Engine) doConditionalUpdate(ctx context.Context, tx *store.Tx, res *fhir.Resource, query string, ifMatch int64) (Result, error) {
	id, ok, err := en.resolveConditional(ctx, tx, res.Type(), query)
	if err != nil {
		return Result{}, err
	}
	if !ok && ifMatch == IfMatchAny {
		return Result{}, errNoCurrent("no resource matches the condition") // no update-as-create
	}
	if !ok {
		if res.ID() != "" {
			return en.doUpdate(ctx, tx, res, res.ID(), ifMatch)
		}
		return en.doCreate(ctx, tx, res, "", nil)
	}
	if res.ID() != "" && res.ID() != id {
		return Result{}, fhir.Invalid("the resource's id "+quote(res.ID())+" is not the id of the matching resource "+quote(id), res.Type()+".id")
	}
	if ifMatch == IfMatchAny {
		return withCurrent(ctx, tx, res.Type(), id, func(v int64) (Result, error) { return updated(tx.Update(ctx, res, id, v)) })
	}
	return updated(tx.Update(ctx, res, id, ifMatch))
}

// doDelete deletes typ/id; deleting what is absent or deleted succeeds.
func (en *Engine) doDelete(ctx context.Context, tx *store.Tx, typ, id string, ifMatch int64) (Result, error) {
	if err := refuseAuditEdit(ctx, tx, typ, id); err != nil {
		return Result{}, err
	}
	if ifMatch == IfMatchAny {
		return withCurrent(ctx, tx, typ, id, func(v int64) (Result, error) { return en.doDelete(ctx, tx, typ, id, v) })
	}
	v, deleted, err := tx.Delete(ctx, typ, id, ifMatch)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Result{Outcome: Deleted, Message: typ + "/" + id + " does not exist: nothing to delete"}, nil
	case err != nil:
		return Result{}, err
	case !deleted:
		return Result{Outcome: Deleted, Version: v, Message: typ + "/" + id + " was already deleted"}, nil
	}
	return Result{Outcome: Deleted, Version: v, Message: typ + "/" + id + " deleted"}, nil
}

// doConditionalDelete deletes every match of typ?query.
func (en *Engine) doConditionalDelete(ctx context.Context, tx *store.Tx, typ, query string) (Result, error) {
	cond, err := parseCondition(query)
	if err != nil {
		return Result{}, err
	}
	q, key, err := en.condition(typ, cond)
	if err != nil {
		return Result{}, err
	}
	q.Count = en.cfg.MaxPageSize
	if err := tx.Lock(ctx, key); err != nil {
		return Result{}, err
	}
	deleted := 0
	for {
		found, err := tx.Search(ctx, q)
		if err != nil {
			return Result{}, err
		}
		for _, m := range found.Matches {
			if _, ok, err := tx.Delete(ctx, m.Type, m.ID, 0); err != nil {
				return Result{}, err
			} else if ok {
				deleted++
			}
		}
		// Deleted resources no longer match, so the same search returns
		// the next ones.
		if found.Next == "" {
			return Result{Outcome: Deleted, Message: strconv.Itoa(deleted) + " resource(s) deleted"}, nil
		}
	}
}

// errNoCurrent is the PreconditionFailed of "If-Match: *" on a resource
// that does not exist or is deleted.
func errNoCurrent(what string) error {
	return fhir.NewError(fhir.PreconditionFailed, "conflict", "If-Match: * but "+what)
}

// withCurrent runs write with the current version of typ/id as its
// If-Match, or fails PreconditionFailed when there is none. The write locks
// the row before it compares versions, so if another writer got in between,
// the second try reads under that lock and cannot conflict again.
func withCurrent(ctx context.Context, tx *store.Tx, typ, id string, write func(version int64) (Result, error)) (Result, error) {
	for attempt := 0; ; attempt++ {
		cur, err := tx.Read(ctx, typ, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
			return Result{}, errNoCurrent(typ + "/" + id + " does not exist or is deleted")
		}
		if err != nil {
			return Result{}, err
		}
		res, err := write(cur.VersionID)
		if errors.Is(err, store.ErrVersionConflict) && attempt == 0 {
			continue
		}
		return res, err
	}
}
