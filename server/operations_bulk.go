package server

// addBulkOperations binds $export's HTTP kick-off, when the server runs
// bulk export (Config.BulkExport); export.New registered the operation
// with the engine, so the CapabilityStatement lists it.
func (s *Server) addBulkOperations(ops map[string]opHandler) {
	if s.export == nil {
		return
	}
	ops["export"] = s.exportKickoff
}
