package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
)

// bundleEndpoint serves POST /fhir with a transaction or batch Bundle.
func (s *Server) bundleEndpoint(c *gin.Context, _ []string) {
	body, ferr := s.readBody(c)
	if ferr != nil {
		s.fail(c, ferr)
		return
	}
	// Prefer: handling=lenient (opt-in, for migrations) drops unknown
	// elements from entry resources, each a warning in its response.outcome.
	opts := engine.TransactionOptions{Lenient: strings.EqualFold(prefer(c.Request, "handling"), "lenient")}
	resp, err := s.eng.TransactionWith(c.Request.Context(), s.caller(c), body, opts)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.noteBundle(c, resp)
	s.writeJSON(c, http.StatusOK, resp.Bundle(entryStatus, prefer(c.Request, "return") == "representation"))
}
