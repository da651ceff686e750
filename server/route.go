package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// interactionKey is the gin context key under which dispatch records the
// FHIR interaction name, read by the metrics middleware.
const interactionKey = "ember.interaction"

// dispatch routes every request under /fhir by its path segments. FHIR's URL
// grammar ([type]/[id]/_history/[vid], $operations, _search) mixes literals
// and parameters at the same positions, which a segment switch states more
// plainly than router patterns.
func (s *Server) dispatch(c *gin.Context) {
	if err := negotiate(c); err != nil {
		s.fail(c, err)
		return
	}
	path := strings.Trim(strings.TrimPrefix(c.Request.URL.Path, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	method := c.Request.Method
	type route struct {
		name    string
		methods string // allowed methods, for 405 messages
		handler func(*gin.Context, []string)
	}
	var rt route
	switch {
	case len(seg) == 0:
		switch method {
		case http.MethodGet, http.MethodHead:
			rt = route{"search-system", "", s.searchSystem}
		case http.MethodPost:
			rt = route{"transaction", "", s.bundleEndpoint}
		default:
			rt = route{"system", "GET, POST", nil}
		}
	case seg[0] == "metadata" && len(seg) == 1:
		rt = route{"capabilities", "GET", s.capabilities}
	case seg[0] == "_history" && len(seg) == 1:
		rt = route{"history-system", "GET", s.history}
	case strings.HasPrefix(seg[0], "$") && len(seg) == 1:
		rt = route{"operation", "", s.operation}
	case !spec.IsResourceType(seg[0]):
		c.Set(interactionKey, "unknown")
		s.fail(c, fhir.Missing("unknown resource type "+quote(seg[0])+": not an R4 resource type"))
		return
	case len(seg) == 1:
		switch method {
		case http.MethodGet, http.MethodHead:
			rt = route{"search-type", "", s.searchType}
		case http.MethodPost:
			rt = route{"create", "", s.create}
		case http.MethodPut:
			rt = route{"conditional-update", "", s.requireQuery(s.conditionalUpdate)}
		case http.MethodDelete:
			rt = route{"conditional-delete", "", s.requireQuery(s.conditionalDelete)}
		case http.MethodPatch:
			rt = route{"conditional-patch", "", s.requireQuery(s.conditionalPatch)}
		default:
			rt = route{"type", "GET, POST, PUT, DELETE, PATCH", nil}
		}
	case len(seg) == 2 && strings.HasPrefix(seg[1], "$"):
		rt = route{"operation", "", s.operation}
	case len(seg) == 3 && strings.HasPrefix(seg[2], "$"):
		rt = route{"operation", "", s.operation}
	case len(seg) == 2 && seg[1] == "_search":
		rt = route{"search-type", "POST", s.searchType}
	case len(seg) == 2 && seg[1] == "_history":
		rt = route{"history-type", "GET", s.history}
	case len(seg) == 2:
		switch method {
		case http.MethodGet, http.MethodHead:
			rt = route{"read", "", s.read}
		case http.MethodPut:
			rt = route{"update", "", s.update}
		case http.MethodDelete:
			rt = route{"delete", "", s.delete}
		case http.MethodPatch:
			rt = route{"patch", "", s.patch}
		default:
			rt = route{"instance", "GET, PUT, DELETE, PATCH", nil}
		}
	case len(seg) == 3 && seg[2] == "_history":
		rt = route{"history-instance", "GET", s.history}
	case len(seg) == 3 && spec.IsResourceType(seg[2]) && len(spec.CompartmentTypes(seg[0])) > 0:
		rt = route{"search-compartment", "GET", s.searchCompartment}
	case len(seg) == 4 && seg[2] == "_history":
		rt = route{"vread", "GET", s.vread}
	default:
		c.Set(interactionKey, "unknown")
		s.fail(c, fhir.Missing("no FHIR interaction at "+c.Request.URL.Path))
		return
	}
	c.Set(interactionKey, rt.name)
	if rt.methods == "GET" && method != http.MethodGet && method != http.MethodHead {
		rt.handler = nil
	}
	if rt.methods == "POST" && method != http.MethodPost {
		rt.handler = nil
	}
	if rt.handler == nil {
		allowed := rt.methods
		msg := method + " is not supported at " + c.Request.URL.Path
		if allowed != "" {
			c.Header("Allow", allowed)
			msg += " (allowed: " + allowed + ")"
		}
		s.fail(c, httpError(http.StatusMethodNotAllowed, "not-supported", msg))
		return
	}
	if len(seg) >= 2 && seg[1] != "_history" && seg[1] != "_search" && !strings.HasPrefix(seg[1], "$") && !fhir.ValidID(seg[1]) {
		s.fail(c, fhir.Invalid("invalid resource id "+quote(seg[1])+": must match [A-Za-z0-9-.]{1,64}"))
		return
	}
	rt.handler(c, seg)
}

// requireQuery guards the type-level PUT and DELETE, which exist only as
// conditional interactions.
func (s *Server) requireQuery(h func(*gin.Context, []string)) func(*gin.Context, []string) {
	return func(c *gin.Context, seg []string) {
		if c.Request.URL.RawQuery == "" {
			s.fail(c, httpError(http.StatusMethodNotAllowed, "not-supported",
				c.Request.Method+" "+c.Request.URL.Path+" needs search parameters (a conditional "+map[string]string{"PUT": "update", "DELETE": "delete", "PATCH": "patch"}[c.Request.Method]+")"))
			return
		}
		h(c, seg)
	}
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "\uFFFD") + `"`
}
