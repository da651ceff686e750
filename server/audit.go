package server

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/store"
)

// auditVersionKey is the gin context key under which a handler leaves the
// version it read or wrote, for the audit trail's entity and patient.
const auditVersionKey = "ember.audit.version"

// noteVersion leaves v for the audit trail.
func noteVersion(c *gin.Context, v store.Version) {
	if v.ID != "" {
		c.Set(auditVersionKey, v)
	}
}

// maxAuditedBundle bounds the transaction response kept for the trail's
// entities; a larger one is audited without them.
const maxAuditedBundle = 32 << 20

// restActions maps interactions to their restful-interaction subtype and
// AuditEvent action (IHE BALP: reads R, searches and operations E).
var restActions = map[string]struct {
	subtype string
	action  audit.Action
}{
	"read": {"read", audit.Read}, "vread": {"vread", audit.Read},
	"create": {"create", audit.Create},
	"update": {"update", audit.Update}, "conditional-update": {"update", audit.Update},
	"patch": {"patch", audit.Update}, "conditional-patch": {"patch", audit.Update},
	"delete": {"delete", audit.Delete}, "conditional-delete": {"delete", audit.Delete},
	"search-type": {"search-type", audit.Execute}, "search-compartment": {"search-type", audit.Execute},
	"search-system":    {"search-system", audit.Execute},
	"history-instance": {"history-instance", audit.Read}, "history-type": {"history-type", audit.Read},
	"history-system": {"history-system", audit.Read},
	"transaction":    {"transaction", audit.Execute}, "batch": {"batch", audit.Execute},
	"operation": {"operation", audit.Execute},
	// Bulk Data: polling an export and downloading its files (the files
	// hold every exported resource: a read).
	"export-status": {"operation", audit.Read}, "export-file": {"read", audit.Read},
}

// auditREST records every request under /fhir (but the CapabilityStatement)
// once it has been answered: who (the token's user and client, the
// address), what (the interaction, the resources, the patient, the query
// with personal values redacted), the outcome. Record never blocks; the
// work of finding a read resource's patient is the trail's, off this path.
func (s *Server) auditREST(c *gin.Context) {
	var tee *teeWriter
	if c.Request.Method == http.MethodPost && strings.Trim(c.Request.URL.Path, "/") == "fhir" {
		tee = &teeWriter{ResponseWriter: c.Writer}
		c.Writer = tee
	}
	c.Next()
	interaction := c.GetString(interactionKey)
	if interaction == "capabilities" {
		return
	}
	status := c.Writer.Status()
	e := audit.Event{Kind: audit.REST, Outcome: audit.OutcomeOfStatus(status), Status: status, When: time.Now()}
	if ra, ok := restActions[interaction]; ok {
		e.Subtype, e.Action = ra.subtype, ra.action
	} else {
		e.Subtype, e.Action = "refused", audit.Execute // refused before routing: unauthenticated, unknown type or path
	}
	e.Agent.Address = guard.RemoteAddr(c.Request, s.cfg.TrustedProxies)
	if g := s.caller(c).Grant(); g != nil {
		e.Agent.User, e.Agent.Subject, e.Agent.Client, e.Agent.Role = localUser(g.FHIRUser, s.base), g.Subject, g.ClientID, g.Role
	}
	path := strings.Trim(strings.TrimPrefix(c.Request.URL.Path, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	typ := ""
	if len(seg) > 0 && spec.IsResourceType(seg[0]) {
		typ = seg[0]
		// Not $op, _history or _search; an id dispatch refused (400) may be
		// malformed, one it routed is not (no regexp on every request).
		if len(seg) >= 2 && seg[1] != "" && seg[1][0] != '$' && seg[1][0] != '_' && (status < 400 || fhir.ValidID(seg[1])) {
			e.Entities = []string{seg[0] + "/" + seg[1]}
			if seg[0] == "Patient" {
				e.Patient = "Patient/" + seg[1]
			}
		}
	}
	switch interaction {
	case "export-status":
		e.Operation = "$export-poll-status"
	case "export-file":
		e.Operation = "$export-file"
	case "operation":
		for _, sg := range seg {
			if strings.HasPrefix(sg, "$") {
				e.Operation = sg
			}
		}
	}
	if v, ok := c.Get(auditVersionKey); ok {
		v := v.(store.Version)
		ref := v.Type + "/" + v.ID
		if len(e.Entities) == 0 || e.Entities[0] != ref {
			e.Entities = append(e.Entities, ref)
		}
		if e.Patient == "" && v.Content != nil {
			e.Content, e.ContentType = v.Content, v.Type
			e.ContentKey = ref + "/_history/" + strconv.FormatInt(v.VersionID, 10)
		}
	}
	switch e.Action {
	case audit.Execute, audit.Read:
		if strings.HasPrefix(interaction, "search") || strings.HasPrefix(interaction, "history") || interaction == "operation" {
			q := c.Request.URL.Query()
			if c.Request.PostForm != nil {
				for k, vs := range c.Request.PostForm {
					q[k] = append(q[k], vs...)
				}
			}
			qt := typ
			if interaction == "search-compartment" && len(seg) >= 3 {
				qt = seg[2]
			}
			if e.Patient == "" {
				e.Patient = patientOfQuery(qt, q)
			}
			e.Query = audit.RedactQuery(qt, q)
		}
	}
	if tee != nil && !tee.over && status < 300 {
		e.Bundle = tee.buf.Bytes()
	}
	s.cfg.Audit.Record(e)
}

// localUser is a fhirUser claim as a local reference ("Practitioner/1"):
// Ember's own tokens carry it absolute, under the FHIR base.
func localUser(u, base string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, base), "/")
}

// patientOfQuery is the one patient a search names: patient= or subject=
// (a Patient reference), or Patient?_id= with a single id.
func patientOfQuery(typ string, q map[string][]string) string {
	ref := func(v string) string {
		if strings.ContainsAny(v, ",") {
			return ""
		}
		if i := strings.LastIndex(v, "Patient/"); i >= 0 {
			return v[i:]
		}
		if v != "" && !strings.Contains(v, "/") {
			return "Patient/" + v
		}
		return ""
	}
	if typ == "Patient" {
		if ids := q["_id"]; len(ids) == 1 {
			return ref(ids[0])
		}
		return ""
	}
	if vs := q["patient"]; len(vs) == 1 {
		return ref(vs[0])
	}
	if vs := q["subject"]; len(vs) == 1 && strings.Contains(vs[0], "Patient/") {
		return ref(vs[0])
	}
	return ""
}

// teeWriter keeps a copy of the response body (a transaction's response
// Bundle, whose entries the trail names), up to maxAuditedBundle.
type teeWriter struct {
	gin.ResponseWriter
	buf  bytes.Buffer
	over bool
}

func (w *teeWriter) Write(b []byte) (int, error) {
	w.keep(b)
	return w.ResponseWriter.Write(b)
}

func (w *teeWriter) WriteString(s string) (int, error) {
	w.keep([]byte(s))
	return w.ResponseWriter.WriteString(s)
}

func (w *teeWriter) keep(b []byte) {
	if w.over {
		return
	}
	if w.buf.Len()+len(b) > maxAuditedBundle {
		w.over = true
		w.buf = bytes.Buffer{}
		return
	}
	w.buf.Write(b)
}
