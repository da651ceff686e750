package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// result is the outcome of one write interaction inside a transaction: what
// a REST response or a transaction-response entry reports.
type result struct {
	status  int           // 200, 201 or 204
	version store.Version // the version written, or found (conditional create's 200)
	message string        // for OperationOutcome answers and deletes
}

// The interaction cores below run on a store.Tx, so REST requests (one
// transaction each) and Bundle entries (many per transaction) behave the same.

// doCreate creates res (under id when the caller assigned one), or with
// ifNoneExist returns the one existing match instead.
func (s *Server) doCreate(ctx context.Context, tx *store.Tx, res *fhir.Resource, id, ifNoneExist string) (result, error) {
	if ifNoneExist != "" {
		q, key, err := s.condition(res.Type(), ifNoneExist)
		if err != nil {
			return result{}, err
		}
		if err := tx.Lock(ctx, key); err != nil {
			return result{}, err
		}
		found, err := tx.Search(ctx, q)
		if err != nil {
			return result{}, err
		}
		switch len(found.Matches) {
		case 0:
		case 1:
			m := found.Matches[0]
			return result{status: http.StatusOK, message: "exists",
				version: store.Version{Type: m.Type, ID: m.ID, VersionID: m.VersionID, LastUpdated: m.LastUpdated, Content: m.Content}}, nil
		default:
			return result{}, errMultipleMatches
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
		return result{}, err
	}
	return result{status: http.StatusCreated, version: v, message: "created"}, nil
}

// doUpdate updates (or creates) typ/id. The If-Match: * of ifMatchAny
// (here and in the other cores) means the resource must exist: 412 if not.
func (s *Server) doUpdate(ctx context.Context, tx *store.Tx, res *fhir.Resource, id string, ifMatch int64) (result, error) {
	switch res.ID() {
	case "":
		return result{}, fhir.Invalid("the resource has no id: an update must carry the id of the URL ("+quote(id)+")", res.Type()+".id")
	case id:
	default:
		return result{}, fhir.Invalid("the resource's id "+quote(res.ID())+" does not match the URL's id "+quote(id), res.Type()+".id")
	}
	if ifMatch == ifMatchAny {
		return withCurrent(ctx, tx, res.Type(), id, func(v int64) (result, error) { return updated(tx.Update(ctx, res, id, v)) })
	}
	return updated(tx.Update(ctx, res, id, ifMatch))
}

// updated describes the outcome of tx.Update.
func updated(v store.Version, created bool, err error) (result, error) {
	if err != nil {
		return result{}, err
	}
	if created {
		return result{status: http.StatusCreated, version: v, message: "created"}, nil
	}
	return result{status: http.StatusOK, version: v, message: "updated"}, nil
}

// resolveConditional finds the one resource a conditional update or patch
// applies to: ok=false when nothing matches.
func (s *Server) resolveConditional(ctx context.Context, tx *store.Tx, typ, query string) (id string, ok bool, err error) {
	q, key, err := s.condition(typ, query)
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
func (s *Server) doConditionalUpdate(ctx context.Context, tx *store.Tx, res *fhir.Resource, query string, ifMatch int64) (result, error) {
	id, ok, err := s.resolveConditional(ctx, tx, res.Type(), query)
	if err != nil {
		return result{}, err
	}
	if !ok && ifMatch == ifMatchAny {
		return result{}, errNoCurrent("no resource matches the condition") // no update-as-create
	}
	if !ok {
		if res.ID() != "" {
			return s.doUpdate(ctx, tx, res, res.ID(), ifMatch)
		}
		return s.doCreate(ctx, tx, res, "", "")
	}
	if res.ID() != "" && res.ID() != id {
		return result{}, fhir.Invalid("the resource's id "+quote(res.ID())+" is not the id of the matching resource "+quote(id), res.Type()+".id")
	}
	if ifMatch == ifMatchAny {
		return withCurrent(ctx, tx, res.Type(), id, func(v int64) (result, error) { return updated(tx.Update(ctx, res, id, v)) })
	}
	return updated(tx.Update(ctx, res, id, ifMatch))
}

// doDelete deletes typ/id; deleting what is absent or deleted succeeds.
func (s *Server) doDelete(ctx context.Context, tx *store.Tx, typ, id string, ifMatch int64) (result, error) {
	if ifMatch == ifMatchAny {
		return withCurrent(ctx, tx, typ, id, func(v int64) (result, error) { return s.doDelete(ctx, tx, typ, id, v) })
	}
	v, deleted, err := tx.Delete(ctx, typ, id, ifMatch)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return result{status: http.StatusNoContent, message: typ + "/" + id + " does not exist: nothing to delete"}, nil
	case err != nil:
		return result{}, err
	case !deleted:
		return result{status: http.StatusNoContent, version: v, message: typ + "/" + id + " was already deleted"}, nil
	}
	return result{status: http.StatusNoContent, version: v, message: typ + "/" + id + " deleted"}, nil
}

// doConditionalDelete deletes every match of typ?query.
func (s *Server) doConditionalDelete(ctx context.Context, tx *store.Tx, typ, query string) (result, error) {
	q, key, err := s.condition(typ, query)
	if err != nil {
		return result{}, err
	}
	q.Count = s.cfg.MaxPageSize
	if err := tx.Lock(ctx, key); err != nil {
		return result{}, err
	}
	deleted := 0
	for {
		found, err := tx.Search(ctx, q)
		if err != nil {
			return result{}, err
		}
		for _, m := range found.Matches {
			if _, ok, err := tx.Delete(ctx, m.Type, m.ID, 0); err != nil {
				return result{}, err
			} else if ok {
				deleted++
			}
		}
		// Deleted resources no longer match, so the same search returns
		// the next ones.
		if found.Next == "" {
			return result{status: http.StatusNoContent, message: strconv.Itoa(deleted) + " resource(s) deleted"}, nil
		}
	}
}
