package authserver

import (
	"net/http"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/server/guard"
)

// auditEvent records one authorization event; the agent's address is the
// request's.
func (s *Server) auditEvent(r *http.Request, subtype string, action audit.Action, out audit.Outcome, a audit.Agent) {
	if s.cfg.Audit == nil {
		return
	}
	a.Address = guard.RemoteAddr(r, s.cfg.TrustedProxies)
	s.cfg.Audit.Record(audit.Event{Kind: audit.Auth, Subtype: subtype, Action: action, Outcome: out, Agent: a})
}

// auditToken records a token request: issued (with the grant type as the
// operation) or refused.
func (s *Server) auditToken(r *http.Request, resp map[string]any, err error) {
	if s.cfg.Audit == nil {
		return
	}
	a := audit.Agent{Client: r.PostForm.Get("client_id")}
	if a.Client == "" {
		a.Client, _, _ = r.BasicAuth()
	}
	e := audit.Event{Kind: audit.Auth, Subtype: "token", Operation: r.PostForm.Get("grant_type"), Action: audit.Execute, Agent: a}
	if err != nil {
		e.Subtype, e.Outcome = "token-refused", audit.MinorFailure
		if oe, ok := err.(*oauthErr); ok {
			e.Status = oe.status
		} else {
			e.Outcome, e.Status = audit.SeriousFail, http.StatusInternalServerError
		}
	}
	if p, ok := resp["patient"].(string); ok && p != "" {
		e.Patient = "Patient/" + p
	}
	e.Agent.Address = guard.RemoteAddr(r, s.cfg.TrustedProxies)
	s.cfg.Audit.Record(e)
}

// auditLogin records a sign-in attempt with the user name tried (the
// account's identifier, which is what a brute-force review needs).
func (s *Server) auditLogin(r *http.Request, client, username string, u *User, err error) {
	out := audit.Success
	a := audit.Agent{Client: client, Subject: username}
	if err != nil {
		out = audit.MinorFailure
	} else if u != nil {
		a.User, a.Role = u.FHIRUser, u.Role
	}
	s.auditEvent(r, "login", audit.Execute, out, a)
}

// auditLaunch records an EHR launch created (with its patient) or refused,
// by the admin user who asked.
func (s *Server) auditLaunch(r *http.Request, username, patient string, out audit.Outcome) {
	if s.cfg.Audit == nil {
		return
	}
	s.cfg.Audit.Record(audit.Event{Kind: audit.Auth, Subtype: "launch", Action: audit.Create, Outcome: out, Patient: patient,
		Agent: audit.Agent{Subject: username, Client: r.PostForm.Get("client"), Address: guard.RemoteAddr(r, s.cfg.TrustedProxies)}})
}
