package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// read serves GET [type]/[id]: the stored bytes, never re-serialised.
func (s *Server) read(c *gin.Context, seg []string) {
	v, err := s.store.Read(c.Request.Context(), seg[0], seg[1])
	s.serveVersion(c, v, err)
}

// vread serves GET [type]/[id]/_history/[vid].
func (s *Server) vread(c *gin.Context, seg []string) {
	vid, err := strconv.ParseInt(seg[3], 10, 64)
	if err != nil || vid <= 0 {
		s.fail(c, fhir.Invalid("invalid version id "+quote(seg[3])+": must be a positive integer"))
		return
	}
	v, err := s.store.VRead(c.Request.Context(), seg[0], seg[1], vid)
	s.serveVersion(c, v, err)
}

func (s *Server) serveVersion(c *gin.Context, v store.Version, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(c, fhir.NotFound(notFoundText(v)))
		return
	case errors.Is(err, store.ErrDeleted):
		versionHeaders(c, v)
		s.fail(c, fhir.NewError(http.StatusGone, "deleted", v.Type+"/"+v.ID+" was deleted (version "+strconv.FormatInt(v.VersionID, 10)+")"))
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	versionHeaders(c, v)
	if notModified(c.Request, v) {
		c.Status(http.StatusNotModified)
		return
	}
	s.writeJSON(c, http.StatusOK, v.Content)
}

func notFoundText(v store.Version) string {
	if v.VersionID > 0 {
		return "version " + strconv.FormatInt(v.VersionID, 10) + " of " + v.Type + "/" + v.ID + " is not known"
	}
	return v.Type + "/" + v.ID + " is not known"
}
