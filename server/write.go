package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
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

// ifMatch reads the If-Match header: 0 when absent, ifMatchAny for "*",
// false when malformed.
func (s *Server) ifMatch(c *gin.Context) (int64, bool) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return 0, true
	}
	if strings.TrimSpace(h) == "*" {
		return engine.IfMatchAny, true
	}
	v, ok := engine.ParseETag(h)
	if !ok {
		s.fail(c, fhir.Invalid("malformed If-Match "+quote(h)+`: expected W/"<versionId>" or *`))
		return 0, false
	}
	return v, true
}

// answer writes the result of one write interaction.
func (s *Server) answer(c *gin.Context, res engine.Result, err error) {
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
	res2, err := s.eng.Create(c.Request.Context(), s.caller(c), engine.CreateRequest{Resource: res, IfNoneExist: c.GetHeader("If-None-Exist")})
	s.answer(c, res2, err)
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
	r, err := s.eng.Update(c.Request.Context(), s.caller(c), engine.UpdateRequest{Resource: res, ID: seg[1], IfMatch: ifMatch})
	s.answer(c, r, err)
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
	r, err := s.eng.Update(c.Request.Context(), s.caller(c), engine.UpdateRequest{Resource: res, Condition: c.Request.URL.RawQuery, IfMatch: ifMatch})
	s.answer(c, r, err)
}

// delete serves DELETE [type]/[id]: a tombstone version, 204 (or 200 with an
// OperationOutcome under Prefer: return=OperationOutcome). Deleting what is
// already deleted or never existed succeeds too: delete is idempotent.
func (s *Server) delete(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	r, err := s.eng.Delete(c.Request.Context(), s.caller(c), engine.DeleteRequest{Type: seg[0], ID: seg[1], IfMatch: ifMatch})
	s.answer(c, r, err)
}

// conditionalDelete serves DELETE [type]?search: every match is deleted.
func (s *Server) conditionalDelete(c *gin.Context, seg []string) {
	r, err := s.eng.Delete(c.Request.Context(), s.caller(c), engine.DeleteRequest{Type: seg[0], Condition: c.Request.URL.RawQuery})
	s.answer(c, r, err)
}

// writeResult answers a write per Prefer: return.
func (s *Server) writeResult(c *gin.Context, res engine.Result) {
	v := res.Version
	noteVersion(c, v)
	status := outcomeStatus[res.Outcome]
	if v.VersionID > 0 {
		c.Header("ETag", engine.ETag(v.VersionID))
		if !v.LastUpdated.IsZero() {
			c.Header("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
		}
	}
	if status == http.StatusCreated {
		c.Header("Location", s.base+"/"+v.Type+"/"+v.ID+"/_history/"+strconv.FormatInt(v.VersionID, 10))
	}
	switch prefer(c.Request, "return") {
	case "minimal":
		c.Status(status)
		return
	case "OperationOutcome":
		st := status
		if st == http.StatusNoContent {
			st = http.StatusOK
		}
		msg := res.Message
		if v.ID != "" && status != http.StatusNoContent {
			msg = v.Type + "/" + v.ID + " " + msg + " (version " + strconv.FormatInt(v.VersionID, 10) + ")"
		}
		s.writeJSON(c, st, fhir.Information(msg))
		return
	}
	if status == http.StatusNoContent || v.Content == nil {
		c.Status(status)
		return
	}
	s.writeJSON(c, status, v.Content)
}
