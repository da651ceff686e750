package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// bundleEndpoint serves POST /fhir with a transaction or batch Bundle.
func (s *Server) bundleEndpoint(c *gin.Context, _ []string) {
	body, ferr := s.readBody(c)
	if ferr != nil {
		s.fail(c, ferr)
		return
	}
	resp, err := s.eng.Transaction(c.Request.Context(), s.caller(c), body)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.noteBundle(c, resp)
	s.writeJSON(c, http.StatusOK, resp.Bundle(entryStatus, prefer(c.Request, "return") == "representation"))
}
