package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
)

// opLevel says where an operation may be invoked.
type opLevel uint8

const (
	opSystem   opLevel = 1 << iota // /fhir/$op
	opType                         // /fhir/Type/$op
	opInstance                     // /fhir/Type/id/$op
)

// operationDef is one FHIR operation Ember implements.
type operationDef struct {
	levels  opLevel
	types   []string // resource types it applies to at type/instance level; nil = all
	methods []string // HTTP methods accepted
	// handle serves the operation; typ and id are "" where the level has none.
	handle func(c *gin.Context, typ, id string)
}

// operations lists every operation by name (without "$"). Each feature
// adds its own in its own file (operations_*.go), so the registry is the
// only shared line.
func (s *Server) operations() map[string]operationDef {
	ops := map[string]operationDef{}
	s.addCoreOperations(ops)
	s.addBulkOperations(ops)
	return ops
}

// operation dispatches /$op, /Type/$op and /Type/id/$op.
func (s *Server) operation(c *gin.Context, seg []string) {
	var typ, id, name string
	level := opSystem
	switch len(seg) {
	case 1:
		name = seg[0]
	case 2:
		typ, name, level = seg[0], seg[1], opType
	case 3:
		typ, id, name, level = seg[0], seg[1], seg[2], opInstance
		if !fhir.ValidID(id) {
			s.fail(c, fhir.Invalid("invalid resource id "+quote(id)))
			return
		}
	}
	name = strings.TrimPrefix(name, "$")
	op, ok := s.ops[name]
	if !ok || op.levels&level == 0 {
		s.fail(c, fhir.NotFound("operation $"+name+" is not supported at "+c.Request.URL.Path))
		return
	}
	if typ != "" && op.types != nil && !contains(op.types, typ) {
		s.fail(c, fhir.NotFound("operation $"+name+" is not defined for "+typ))
		return
	}
	if !contains(op.methods, c.Request.Method) {
		c.Header("Allow", strings.Join(op.methods, ", "))
		s.fail(c, fhir.NewError(http.StatusMethodNotAllowed, "not-supported", c.Request.Method+" is not allowed for $"+name))
		return
	}
	op.handle(c, typ, id)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
