package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
)

// history serves _history at system, type and instance level.
func (s *Server) history(c *gin.Context, seg []string) {
	req := engine.HistoryRequest{Params: c.Request.URL.Query()}
	switch len(seg) {
	case 2:
		req.Type = seg[0]
	case 3:
		req.Type, req.ID = seg[0], seg[1]
	}
	body, err := s.eng.History(c.Request.Context(), s.caller(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, body)
}
