package server

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/smart/access"
)

// authenticate requires a valid bearer token on every FHIR request except
// the public ones (the CapabilityStatement, CORS preflights), and records
// the token's engine.Caller, which enforces its grant, for the handlers.
func (s *Server) authenticate(c *gin.Context) {
	if s.cfg.Verifier == nil || public(c.Request) {
		return
	}
	token, g, ok := s.bearer(c, "this server requires an access token: send Authorization: Bearer <token>")
	if !ok {
		return
	}
	// The grant in the request context is for the rate limiter (ClientKey)
	// and bulk export's ownership; the engine gets the Caller explicitly.
	c.Request = c.Request.WithContext(access.WithGrant(c.Request.Context(), g))
	c.Set(callerKey, s.eng.Grant(token, g))
}

// bearer verifies the request's bearer token, or answers 401 (saying
// missing when there is none) and returns ok=false.
func (s *Server) bearer(c *gin.Context, missing string) (string, *access.Grant, bool) {
	token, g, err := verifyBearer(c.Request, s.cfg.Verifier)
	switch {
	case errors.Is(err, errNoToken):
		s.unauthorized(c, "", missing)
		return "", nil, false
	case err != nil:
		if !errors.Is(err, access.ErrInvalidToken) {
			s.log.WarnContext(c.Request.Context(), "token verification failed", "err", err)
		}
		s.unauthorized(c, "invalid_token", "the access token is invalid, expired or revoked")
		return "", nil, false
	}
	return token, g, true
}

var errNoToken = errors.New("no bearer token")

// verifyBearer verifies r's bearer token: errNoToken when there is none,
// an error wrapping access.ErrInvalidToken when it is invalid or expired,
// another error when verification itself failed.
func verifyBearer(r *http.Request, v access.Verifier) (string, *access.Grant, error) {
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return "", nil, errNoToken
	}
	g, err := v.Verify(r.Context(), token)
	if err != nil {
		return token, nil, err
	}
	if !g.Expiry.IsZero() && time.Now().After(g.Expiry) {
		return token, nil, access.ErrInvalidToken
	}
	return token, g, nil
}

// public reports requests anyone may make: the CapabilityStatement (which
// tells clients where to authorise) and CORS preflights.
func public(r *http.Request) bool {
	if r.Method == http.MethodOptions {
		return true
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && p == "/fhir/metadata"
}

func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// unauthorized answers 401 with the RFC 6750 challenge and an
// OperationOutcome.
func (s *Server) unauthorized(c *gin.Context, code, msg string) {
	challenge := `Bearer realm="` + s.base + `"`
	if code != "" {
		challenge += `, error="` + code + `", error_description="` + msg + `"`
	}
	c.Header("WWW-Authenticate", challenge)
	s.writeOutcome(c, http.StatusUnauthorized, fhir.Outcome(fhir.Issue{Severity: "error", Code: "login", Diagnostics: msg}))
	c.Abort()
}

// limit applies the per-client rate limit once the client is known.
func (s *Server) limit(c *gin.Context) {
	if s.cfg.ClientLimiter == nil {
		return
	}
	if ok, wait := s.cfg.ClientLimiter.Allow(c.Request); !ok {
		guard.WriteTooManyRequests(c.Writer, wait)
		c.Abort()
	}
}

// ClientKey is the key for per-client rate limits: the OAuth client of the
// request's grant ("" when unauthenticated, which limits by address).
func ClientKey(r *http.Request) string {
	if g := access.FromContext(r.Context()); g != nil {
		return g.ClientID
	}
	return ""
}
