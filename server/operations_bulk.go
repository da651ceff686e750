package server

// addBulkOperations registers the Bulk Data $export operations.
func (s *Server) addBulkOperations(ops map[string]operationDef) {}
