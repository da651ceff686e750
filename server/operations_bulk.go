package server

import (
	"net/http"

	"github.com/emberfhir/ember/engine"
)

// addBulkOperations registers the Bulk Data $export operations, when the
// server runs them (Config.BulkExport): with the engine, so the
// CapabilityStatement lists them, and their HTTP kick-off here.
func (s *Server) addBulkOperations(ops map[string]opHandler) {
	if s.jobs == nil {
		return
	}
	s.eng.Register(engine.Operation{
		Name:    "export",
		Levels:  engine.SystemLevel | engine.TypeLevel | engine.InstanceLevel,
		Types:   []string{"Patient", "Group"},
		Methods: []string{http.MethodGet, http.MethodPost},
	})
	ops["export"] = s.exportKickoff
}
