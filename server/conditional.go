package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/store"
)

// condition parses the search that selects the target of a conditional
// interaction. Unknown parameters are errors here: ignoring one would widen
// the match and create, update or delete the wrong resources.
func (s *Server) condition(typ, rawQuery string) (*search.Query, string, error) {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, "", fhir.Invalid("malformed condition " + quote(rawQuery) + ": " + err.Error())
	}
	for k := range params {
		switch k {
		case "_format", "_pretty":
			delete(params, k)
		}
	}
	if len(params) == 0 {
		return nil, "", fhir.Invalid("a conditional interaction needs search parameters")
	}
	q, err := search.Parse(typ, params, search.Options{Strict: true, Base: s.base, DefaultCount: 2, MaxCount: 2})
	if err != nil {
		return nil, "", err
	}
	// The lock key: the same condition on the same type, however ordered.
	return q, typ + "?" + params.Encode(), nil
}

// conditionalCreate serves POST [type] with If-None-Exist.
func (s *Server) conditionalCreate(c *gin.Context, seg []string, res *fhir.Resource, cond string) {
	q, key, err := s.condition(seg[0], cond)
	if err != nil {
		s.fail(c, err)
		return
	}
	var v store.Version
	var existing *store.Match
	err = s.store.InTx(c.Request.Context(), func(tx *store.Tx) error {
		if err := tx.Lock(c.Request.Context(), key); err != nil {
			return err
		}
		found, err := tx.Search(c.Request.Context(), q)
		if err != nil {
			return err
		}
		switch len(found.Matches) {
		case 0:
			v, err = tx.Create(c.Request.Context(), res)
			return err
		case 1:
			existing = &found.Matches[0]
			return nil
		}
		return errMultipleMatches
	})
	if err != nil {
		s.fail(c, conditionalError(err))
		return
	}
	if existing != nil {
		// The resource exists already: 200 with it, nothing created.
		m := existing
		s.writeResult(c, http.StatusOK, store.Version{Type: m.Type, ID: m.ID, VersionID: m.VersionID, LastUpdated: m.LastUpdated, Content: m.Content}, "exists")
		return
	}
	s.writeResult(c, http.StatusCreated, v, "created")
}

var errMultipleMatches = errors.New("multiple matches")

func conditionalError(err error) error {
	if errors.Is(err, errMultipleMatches) {
		return fhir.NewError(http.StatusPreconditionFailed, "multiple-matches", "the condition matches more than one resource")
	}
	return err
}

// conditionalUpdate serves PUT [type]?search.
func (s *Server) conditionalUpdate(c *gin.Context, seg []string) {
	q, key, err := s.condition(seg[0], c.Request.URL.RawQuery)
	if err != nil {
		s.fail(c, err)
		return
	}
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	res, ok := s.parseResource(c, seg[0])
	if !ok {
		return
	}
	var v store.Version
	var created bool
	err = s.store.InTx(c.Request.Context(), func(tx *store.Tx) error {
		if err := tx.Lock(c.Request.Context(), key); err != nil {
			return err
		}
		found, err := tx.Search(c.Request.Context(), q)
		if err != nil {
			return err
		}
		switch len(found.Matches) {
		case 0:
			if res.ID() != "" {
				v, created, err = tx.Update(c.Request.Context(), res, res.ID(), ifMatch)
				return err
			}
			v, err = tx.Create(c.Request.Context(), res)
			created = true
			return err
		case 1:
			id := found.Matches[0].ID
			if res.ID() != "" && res.ID() != id {
				return fhir.Invalid("the resource's id "+quote(res.ID())+" is not the id of the matching resource "+quote(id), seg[0]+".id")
			}
			v, created, err = tx.Update(c.Request.Context(), res, id, ifMatch)
			return err
		}
		return errMultipleMatches
	})
	if err != nil {
		s.fail(c, conditionalError(err))
		return
	}
	if created {
		s.writeResult(c, http.StatusCreated, v, "created")
		return
	}
	s.writeResult(c, http.StatusOK, v, "updated")
}

// conditionalDelete serves DELETE [type]?search: every match is deleted
// (conditionalDelete "multiple").
func (s *Server) conditionalDelete(c *gin.Context, seg []string) {
	q, key, err := s.condition(seg[0], c.Request.URL.RawQuery)
	if err != nil {
		s.fail(c, err)
		return
	}
	q.Count = s.cfg.MaxPageSize
	deleted := 0
	err = s.store.InTx(c.Request.Context(), func(tx *store.Tx) error {
		if err := tx.Lock(c.Request.Context(), key); err != nil {
			return err
		}
		for {
			found, err := tx.Search(c.Request.Context(), q)
			if err != nil {
				return err
			}
			for _, m := range found.Matches {
				if _, ok, err := tx.Delete(c.Request.Context(), m.Type, m.ID, 0); err != nil {
					return err
				} else if ok {
					deleted++
				}
			}
			if found.Next == "" {
				return nil
			}
			// Deleted resources no longer match, so the same search
			// returns the next ones.
		}
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	if prefer(c.Request, "return") == "OperationOutcome" {
		s.writeJSON(c, http.StatusOK, fhir.Information(strconv.Itoa(deleted)+" resource(s) deleted"))
		return
	}
	c.Status(http.StatusNoContent)
}
