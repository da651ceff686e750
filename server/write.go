package server

import (
	"errors"
	"net/http"
	"strconv"

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

// ifMatch reads the If-Match header: 0 when absent, false when malformed.
func (s *Server) ifMatch(c *gin.Context) (int64, bool) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return 0, true
	}
	v, ok := parseETag(h)
	if !ok {
		s.fail(c, fhir.Invalid("malformed If-Match "+quote(h)+`: expected W/"<versionId>"`))
		return 0, false
	}
	return v, true
}

// create serves POST [type].
func (s *Server) create(c *gin.Context, seg []string) {
	res, ok := s.parseResource(c, seg[0])
	if !ok {
		return
	}
	if cond := c.GetHeader("If-None-Exist"); cond != "" {
		s.conditionalCreate(c, seg, res, cond)
		return
	}
	v, err := s.store.Create(c.Request.Context(), res)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeResult(c, http.StatusCreated, v, "created")
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
	switch res.ID() {
	case "":
		s.fail(c, fhir.Invalid("the resource has no id: an update must carry the id of the URL ("+quote(seg[1])+")", seg[0]+".id"))
		return
	case seg[1]:
	default:
		s.fail(c, fhir.Invalid("the resource's id "+quote(res.ID())+" does not match the URL's id "+quote(seg[1]), seg[0]+".id"))
		return
	}
	v, created, err := s.store.Update(c.Request.Context(), res, seg[1], ifMatch)
	if err != nil {
		s.fail(c, err)
		return
	}
	if created {
		s.writeResult(c, http.StatusCreated, v, "created")
		return
	}
	s.writeResult(c, http.StatusOK, v, "updated")
}

// delete serves DELETE [type]/[id]: a tombstone version, 204 (or 200 with an
// OperationOutcome under Prefer: return=OperationOutcome). Deleting what is
// already deleted or never existed succeeds too: delete is idempotent.
func (s *Server) delete(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	v, deleted, err := s.store.Delete(c.Request.Context(), seg[0], seg[1], ifMatch)
	msg := seg[0] + "/" + seg[1] + " deleted"
	switch {
	case errors.Is(err, store.ErrNotFound):
		msg = seg[0] + "/" + seg[1] + " does not exist: nothing to delete"
	case err != nil:
		s.fail(c, err)
		return
	case !deleted:
		msg = seg[0] + "/" + seg[1] + " was already deleted"
	}
	if err == nil {
		c.Header("ETag", etag(v.VersionID))
	}
	if prefer(c.Request, "return") == "OperationOutcome" {
		s.writeJSON(c, http.StatusOK, fhir.Information(msg))
		return
	}
	c.Status(http.StatusNoContent)
}

// writeResult answers a successful create or update per Prefer: return.
func (s *Server) writeResult(c *gin.Context, status int, v store.Version, verb string) {
	versionHeaders(c, v)
	if status == http.StatusCreated {
		c.Header("Location", s.base+"/"+v.Type+"/"+v.ID+"/_history/"+strconv.FormatInt(v.VersionID, 10))
	}
	switch prefer(c.Request, "return") {
	case "minimal":
		c.Status(status)
	case "OperationOutcome":
		s.writeJSON(c, status, fhir.Information(v.Type+"/"+v.ID+" "+verb+" as version "+strconv.FormatInt(v.VersionID, 10)))
	default:
		s.writeJSON(c, status, v.Content)
	}
}
