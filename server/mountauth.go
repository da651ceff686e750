package server

import (
	"errors"
	"net/http"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/smart/scope"
)

// RequireScopes guards a non-FHIR API that serves resource data of type typ
// (DICOMweb serves ImagingStudy data): with a Verifier configured, each
// request needs a bearer token whose scopes permit reading typ (GET, HEAD)
// or creating and updating it (other methods), unconfined — such APIs
// cannot confine their answers to one patient's compartment, so patient/
// and granular scopes do not reach them. Without a Verifier h is returned
// as is.
func RequireScopes(v access.Verifier, realm, typ string, h http.Handler) http.Handler {
	if v == nil {
		return h
	}
	fail := func(w http.ResponseWriter, status int, challenge, msg string) {
		if challenge != "" {
			w.Header().Set("WWW-Authenticate", challenge)
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		_, _ = w.Write(fhir.Outcome(fhir.Issue{Severity: "error", Code: map[int]string{401: "login", 403: "forbidden"}[status], Diagnostics: msg}))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			h.ServeHTTP(w, r)
			return
		}
		_, g, err := verifyBearer(r, v)
		switch {
		case errors.Is(err, errNoToken):
			fail(w, http.StatusUnauthorized, `Bearer realm="`+realm+`"`, "this API requires an access token: send Authorization: Bearer <token>")
			return
		case errors.Is(err, access.ErrInvalidToken):
			fail(w, http.StatusUnauthorized, `Bearer realm="`+realm+`", error="invalid_token"`, "the access token is invalid, expired or revoked")
			return
		case err != nil:
			fail(w, http.StatusServiceUnavailable, "", "token verification is unavailable")
			return
		}
		perms := []scope.Perm{scope.Read, scope.Search}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			perms = []scope.Perm{scope.Create, scope.Update}
		}
		set := scope.ParseSet(g.Scopes)
		for _, p := range perms {
			if !set.Check(typ, p).Unrestricted() {
				fail(w, http.StatusForbidden, `Bearer realm="`+realm+`", error="insufficient_scope"`,
					"this API needs user/ or system/ "+typ+" scopes ("+p.String()+")")
				return
			}
		}
		if e := audit.Note(r.Context()); e != nil {
			e.Agent.User, e.Agent.Subject, e.Agent.Client, e.Agent.Role = g.FHIRUser, g.Subject, g.ClientID, g.Role
		}
		h.ServeHTTP(w, r.WithContext(access.WithGrant(r.Context(), g)))
	})
}
