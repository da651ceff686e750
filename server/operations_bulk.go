package server

import "net/http"

// addBulkOperations registers the Bulk Data $export operations, when the
// server runs them (Config.BulkExport).
func (s *Server) addBulkOperations(ops map[string]operationDef) {
	if s.jobs == nil {
		return
	}
	ops["export"] = operationDef{
		levels:  opSystem | opType | opInstance,
		types:   []string{"Patient", "Group"},
		methods: []string{http.MethodGet, http.MethodPost},
		handle:  s.exportKickoff,
	}
}
