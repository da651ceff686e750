package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// callerKey is the gin context key under which authenticate records the
// request's engine.Caller.
const callerKey = "ember.caller"

// caller is on whose authority the request runs: its token's Caller, or
// engine.System when the server runs without authorisation (auth mode none).
func (s *Server) caller(c *gin.Context) *engine.Caller {
	if v, ok := c.Get(callerKey); ok {
		return v.(*engine.Caller)
	}
	return engine.System
}

// read serves GET [type]/[id]: the stored bytes, never re-serialised.
func (s *Server) read(c *gin.Context, seg []string) {
	ctx := c.Request.Context()
	if c.Request.Header.Get("If-None-Match") != "" {
		// "Has it changed?" is answered by the primary: a lagging replica
		// could say no when another client has just written.
		ctx = store.FromPrimary(ctx)
	}
	v, err := s.eng.Read(ctx, s.caller(c), seg[0], seg[1])
	s.serveVersion(c, v, err)
}

// vread serves GET [type]/[id]/_history/[vid].
func (s *Server) vread(c *gin.Context, seg []string) {
	vid, err := strconv.ParseInt(seg[3], 10, 64)
	if err != nil || vid <= 0 {
		s.fail(c, fhir.Invalid("invalid version id "+quote(seg[3])+": must be a positive integer"))
		return
	}
	v, err := s.eng.VRead(c.Request.Context(), s.caller(c), seg[0], seg[1], vid)
	s.serveVersion(c, v, err)
}

func (s *Server) serveVersion(c *gin.Context, v store.Version, err error) {
	if err != nil {
		var fe *fhir.Error
		if errors.As(err, &fe) && fe.Kind == fhir.Gone {
			versionHeaders(c, v) // the tombstone's version
		}
		s.fail(c, err)
		return
	}
	versionHeaders(c, v)
	noteVersion(c, v)
	if notModified(c.Request, v) {
		c.Status(http.StatusNotModified)
		return
	}
	s.writeJSON(c, http.StatusOK, v.Content)
}
