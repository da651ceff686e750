package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
)

// patch serves PATCH [type]/[id].
func (s *Server) patch(c *gin.Context, seg []string) {
	s.fail(c, fhir.NewError(http.StatusMethodNotAllowed, "not-supported", "PATCH is not supported yet"))
}

// conditionalPatch serves PATCH [type]?search.
func (s *Server) conditionalPatch(c *gin.Context, seg []string) {
	s.fail(c, fhir.NewError(http.StatusMethodNotAllowed, "not-supported", "PATCH is not supported yet"))
}
