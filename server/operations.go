package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// opHandler serves one operation over HTTP; typ and id are "" where the
// level has none. The operation itself (its levels, types and methods, and
// its core) is the engine's.
type opHandler func(c *gin.Context, typ, id string)

// RegisterOperation adds op to the engine's operations and to the
// CapabilityStatement. op must have Invoke: the server then serves it with
// no code of its own (invoke). Call it before serving: the statement is
// rebuilt, unguarded.
func (s *Server) RegisterOperation(op engine.Operation) error {
	if op.Invoke == nil {
		return fmt.Errorf("server: operation $%s has no Invoke", op.Name)
	}
	s.eng.Register(op)
	return s.rebuildCapability()
}

// operations binds each of the engine's core operations to its HTTP
// adapter; operations with Invoke need none.
func (s *Server) operations() map[string]opHandler {
	ops := map[string]opHandler{
		"validate":    s.validateOp,
		"meta":        s.metaOp,
		"meta-add":    s.metaChangeOp(s.eng.MetaAdd),
		"meta-delete": s.metaChangeOp(s.eng.MetaDelete),
		"everything":  s.everythingOp,
	}
	s.addBulkOperations(ops)
	return ops
}

// operation dispatches /$op, /Type/$op and /Type/id/$op.
func (s *Server) operation(c *gin.Context, seg []string) {
	var typ, id, name string
	level := engine.SystemLevel
	switch len(seg) {
	case 1:
		name = seg[0]
	case 2:
		typ, name, level = seg[0], seg[1], engine.TypeLevel
	case 3:
		typ, id, name, level = seg[0], seg[1], seg[2], engine.InstanceLevel
		if !fhir.ValidID(id) {
			s.fail(c, fhir.Invalid("invalid resource id "+quote(id)))
			return
		}
	}
	name = strings.TrimPrefix(name, "$")
	op, ok := s.eng.Operation(name)
	handle := s.ops[name]
	if !ok || (handle == nil && op.Invoke == nil) || op.Levels&level == 0 {
		s.fail(c, fhir.Missing("operation $"+name+" is not supported at "+c.Request.URL.Path))
		return
	}
	if typ != "" && op.Types != nil && !contains(op.Types, typ) {
		s.fail(c, fhir.Missing("operation $"+name+" is not defined for "+typ))
		return
	}
	if !contains(op.Methods, c.Request.Method) {
		c.Header("Allow", strings.Join(op.Methods, ", "))
		s.fail(c, httpError(http.StatusMethodNotAllowed, "not-supported", c.Request.Method+" is not allowed for $"+name))
		return
	}
	if handle == nil {
		s.invoke(c, op, level, typ, id)
		return
	}
	handle(c, typ, id)
}

// invoke serves an operation with Invoke: the request as an OpRequest, the
// answer's status from its outcome (202 and Content-Location for queued
// work), errors as OperationOutcomes by kind.
func (s *Server) invoke(c *gin.Context, op engine.Operation, level engine.Level, typ, id string) {
	req := engine.OpRequest{Level: level, Type: typ, ID: id, Query: c.Request.URL.Query(), RespondAsync: preferAsync(c.Request)}
	// A POST may carry its parameters in the query alone.
	if c.Request.Method != http.MethodGet && c.Request.ContentLength != 0 {
		body, err := s.readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		req.Body = body
	}
	resp, err := op.Invoke(c.Request.Context(), s.caller(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if resp.Outcome == engine.OpAccepted {
		status = http.StatusAccepted
		if resp.ContentLocation != "" {
			c.Header("Content-Location", resp.ContentLocation)
		}
	}
	if resp.Body == nil {
		c.Status(status)
		return
	}
	s.writeJSON(c, status, resp.Body)
}

// validateOp serves POST [type]/$validate and POST [type]/[id]/$validate.
func (s *Server) validateOp(c *gin.Context, typ, id string) {
	query := c.Request.URL.Query()
	req := engine.ValidateRequest{Type: typ, ID: id, Mode: query.Get("mode"), Profiles: query["profile"]}
	// mode=delete needs no resource, so a body-less request is fine then.
	if !(req.Mode == "delete" && c.Request.ContentLength == 0) {
		body, err := s.readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		req.Body = body
	}
	out, err := s.eng.Validate(c.Request.Context(), s.caller(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, out)
}

// metaOp serves $meta at system, type and instance level.
func (s *Server) metaOp(c *gin.Context, typ, id string) {
	out, err := s.eng.Meta(c.Request.Context(), s.caller(c), typ, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, out)
}

// metaChangeOp returns the handler of $meta-add or $meta-delete.
func (s *Server) metaChangeOp(change func(context.Context, *engine.Caller, string, string, []byte) (store.Version, []byte, error)) opHandler {
	return func(c *gin.Context, typ, id string) {
		body, err := s.readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		v, out, err := change(c.Request.Context(), s.caller(c), typ, id, body)
		if err != nil {
			s.fail(c, err)
			return
		}
		versionHeaders(c, v)
		s.writeJSON(c, http.StatusOK, out)
	}
}

// everythingOp serves GET Patient/[id]/$everything.
func (s *Server) everythingOp(c *gin.Context, _, id string) {
	req := engine.EverythingRequest{ID: id, Params: c.Request.URL.Query(), Strict: prefer(c.Request, "handling") == "strict"}
	out, err := s.eng.Everything(c.Request.Context(), s.caller(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, out)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
