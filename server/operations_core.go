package server

// addCoreOperations registers $validate, $meta, $meta-add, $meta-delete and
// $everything.
func (s *Server) addCoreOperations(ops map[string]operationDef) {}
