package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// parseResource reads and validates the request body as a resource of typ.
func (s *Server) parseResource(c *gin.Context, typ string) (*fhir.Resource, bool) {
	body, ferr := s.readBody(c)
	if ferr != nil {
		s.fail(c, ferr)
		return nil, false
	}
	res, err := s.parser.Parse(body, typ)
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	return res, true
}

// ifMatchAny is what ifMatch returns for "If-Match: *": the write goes on
// only if the resource exists (RFC 9110 §13.1.1), whatever its version.
const ifMatchAny int64 = -1

// ifMatch reads the If-Match header: 0 when absent, ifMatchAny for "*",
// false when malformed.
func (s *Server) ifMatch(c *gin.Context) (int64, bool) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return 0, true
	}
	if strings.TrimSpace(h) == "*" {
		return ifMatchAny, true
	}
	v, ok := parseETag(h)
	if !ok {
		s.fail(c, fhir.Invalid("malformed If-Match "+quote(h)+`: expected W/"<versionId>" or *`))
		return 0, false
	}
	return v, true
}

// errNoCurrent is the 412 of "If-Match: *" on a resource that does not
// exist or is deleted.
func errNoCurrent(what string) error {
	return fhir.NewError(http.StatusPreconditionFailed, "conflict", "If-Match: * but "+what)
}

// withCurrent runs write with the current version of typ/id as its
// If-Match, or fails 412 when there is none. The write locks the row before
// it compares versions, so if another writer got in between, the second try
// reads under that lock and cannot conflict again.
func withCurrent(ctx context.Context, tx *store.Tx, typ, id string, write func(version int64) (result, error)) (result, error) {
	for attempt := 0; ; attempt++ {
		cur, err := tx.Read(ctx, typ, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
			return result{}, errNoCurrent(typ + "/" + id + " does not exist or is deleted")
		}
		if err != nil {
			return result{}, err
		}
		res, err := write(cur.VersionID)
		if errors.Is(err, store.ErrVersionConflict) && attempt == 0 {
			continue
		}
		return res, err
	}
}

// inTx runs one interaction core in its own transaction and answers.
func (s *Server) inTx(c *gin.Context, do func(ctx context.Context, tx *store.Tx) (result, error)) {
	var res result
	err := s.store.InTx(c.Request.Context(), func(tx *store.Tx) (err error) {
		res, err = do(c.Request.Context(), tx)
		return err
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeResult(c, res)
}

// create serves POST [type] (conditional with If-None-Exist).
func (s *Server) create(c *gin.Context, seg []string) {
	res, ok := s.parseResource(c, seg[0])
	if !ok {
		return
	}
	cond := c.GetHeader("If-None-Exist")
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doCreate(ctx, tx, res, "", cond)
	})
}

// update serves PUT [type]/[id], creating the resource if it is absent.
func (s *Server) update(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	res, ok := s.parseResource(c, seg[0])
	if !ok {
		return
	}
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doUpdate(ctx, tx, res, seg[1], ifMatch)
	})
}

// conditionalUpdate serves PUT [type]?search.
func (s *Server) conditionalUpdate(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	res, ok := s.parseResource(c, seg[0])
	if !ok {
		return
	}
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doConditionalUpdate(ctx, tx, res, c.Request.URL.RawQuery, ifMatch)
	})
}

// delete serves DELETE [type]/[id]: a tombstone version, 204 (or 200 with an
// OperationOutcome under Prefer: return=OperationOutcome). Deleting what is
// already deleted or never existed succeeds too: delete is idempotent.
func (s *Server) delete(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doDelete(ctx, tx, seg[0], seg[1], ifMatch)
	})
}

// conditionalDelete serves DELETE [type]?search: every match is deleted.
func (s *Server) conditionalDelete(c *gin.Context, seg []string) {
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doConditionalDelete(ctx, tx, seg[0], c.Request.URL.RawQuery)
	})
}

// writeResult answers a write per Prefer: return.
func (s *Server) writeResult(c *gin.Context, res result) {
	v := res.version
	if v.VersionID > 0 {
		c.Header("ETag", etag(v.VersionID))
		if !v.LastUpdated.IsZero() {
			c.Header("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
		}
	}
	if res.status == http.StatusCreated {
		c.Header("Location", s.base+"/"+v.Type+"/"+v.ID+"/_history/"+strconv.FormatInt(v.VersionID, 10))
	}
	switch prefer(c.Request, "return") {
	case "minimal":
		c.Status(res.status)
		return
	case "OperationOutcome":
		status := res.status
		if status == http.StatusNoContent {
			status = http.StatusOK
		}
		msg := res.message
		if v.ID != "" && res.status != http.StatusNoContent {
			msg = v.Type + "/" + v.ID + " " + msg + " (version " + strconv.FormatInt(v.VersionID, 10) + ")"
		}
		s.writeJSON(c, status, fhir.Information(msg))
		return
	}
	if res.status == http.StatusNoContent || v.Content == nil {
		c.Status(res.status)
		return
	}
	s.writeJSON(c, res.status, v.Content)
}
