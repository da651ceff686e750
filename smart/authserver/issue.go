package authserver

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/emberfhir/ember/smart/scope"
)

// MaxIssuedTokenTTL is the longest lifetime IssueToken gives a token: what
// an administrator prints is for trying things and scripts, not a
// credential to keep.
const MaxIssuedTokenTTL = 24 * time.Hour

// TokenRequest asks for an access token outside OAuth, from whoever
// administers the server (`ember token`, which holds the database and so
// the signing key). It names a registered client, a registered user, or
// both; the token never carries more than they registered.
type TokenRequest struct {
	// ClientID is the client the token is issued to. Without Username it is
	// required and the token is a service's (system/ scopes), as
	// client_credentials would issue.
	ClientID string
	// Username is the user the token acts for: user/ and patient/ scopes
	// within the user's role ceiling (and the client's registration when
	// ClientID is set too).
	Username string
	// Patient is the patient context of patient/ scopes; a user whose role
	// is patient has their own.
	Patient string
	// Scopes are resource scopes (system/…, user/…, patient/…).
	Scopes []string
	// TTL is the token's lifetime, at most MaxIssuedTokenTTL (0:
	// Config.AccessTokenLifetime).
	TTL time.Duration
}

// IssuedToken is an access token IssueToken signed.
type IssuedToken struct {
	AccessToken string
	Scopes      []string
	ExpiresAt   time.Time
	ID          string // the jti, under which it is revoked
}

// ErrNotPermitted is returned (wrapped, with the reason) when a TokenRequest
// asks for more than its client or user may have.
var ErrNotPermitted = errors.New("not permitted")

var patientIDRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// IssueToken signs an access token for req, exactly as the token endpoint
// would for that client or user: same issuer, audience, key and claims,
// so the FHIR API accepts it, introspection describes it and revocation
// (by its client at /auth/revoke, or RevokeToken) ends it. Scopes beyond
// the client's registration or the user's role ceiling are refused, not
// narrowed: an administrator asking by hand wants to hear it.
func (s *Server) IssueToken(ctx context.Context, req TokenRequest) (*IssuedToken, error) {
	if req.ClientID == "" && req.Username == "" {
		return nil, errors.New("issue token: name a client or a user")
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = s.cfg.AccessTokenLifetime
	}
	if ttl < time.Second || ttl > MaxIssuedTokenTTL {
		return nil, fmt.Errorf("issue token: lifetime %s: from 1s to %s", req.TTL, MaxIssuedTokenTTL)
	}
	if len(req.Scopes) == 0 {
		return nil, errors.New("issue token: at least one scope is required")
	}
	var hasPatient bool
	for _, sc := range req.Scopes {
		if !scope.IsResourceScope(sc) {
			return nil, fmt.Errorf("issue token: scope %q: a printed token carries resource scopes only (system/…, user/…, patient/…)", sc)
		}
		if _, err := scope.Parse(sc); err != nil {
			return nil, fmt.Errorf("issue token: %w", err)
		}
		hasPatient = hasPatient || strings.HasPrefix(sc, "patient/")
	}
	if req.Username == "" {
		for _, sc := range req.Scopes {
			if !isSystemScope(sc) {
				return nil, fmt.Errorf("issue token: %w: scope %s needs a user; a client alone gets system/ scopes", ErrNotPermitted, sc)
			}
		}
		if req.Patient != "" {
			return nil, errors.New("issue token: a patient context goes with a user's patient/ scopes")
		}
	}
	t := &tokenInfo{clientID: req.ClientID, scopes: slices.Clone(req.Scopes), ttl: ttl}
	if req.ClientID != "" {
		c, err := getClient(ctx, s.db, req.ClientID)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("issue token: client %s is not registered", req.ClientID)
		} else if err != nil {
			return nil, fmt.Errorf("issue token: %w", err)
		}
		for _, sc := range req.Scopes {
			if !scope.Subset([]string{sc}, c.Scopes) {
				return nil, fmt.Errorf("issue token: %w: scope %s is beyond client %s's registered scopes (%s)",
					ErrNotPermitted, sc, c.ID, strings.Join(c.Scopes, " "))
			}
		}
	}
	if req.Username == "" {
		return s.signIssued(t)
	}
	u, err := getUser(ctx, s.db, req.Username)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("issue token: user %s does not exist", req.Username)
	} else if err != nil {
		return nil, fmt.Errorf("issue token: %w", err)
	}
	ceiling := scope.Ceiling(u.Role)
	for _, sc := range req.Scopes {
		if isSystemScope(sc) {
			return nil, fmt.Errorf("issue token: %w: scope %s is for services, not users", ErrNotPermitted, sc)
		}
		// Within the ceiling as asked: Narrow keeps a scope unchanged only
		// when one ceiling scope covers it, search constraint included.
		if n := scope.Narrow(ceiling, []string{sc}); len(n) != 1 || n[0] != sc {
			return nil, fmt.Errorf("issue token: %w: scope %s is beyond role %s's ceiling", ErrNotPermitted, sc, u.Role)
		}
	}
	t.username, t.role, t.fhirUser = u.Username, u.Role, u.FHIRUser
	if hasPatient || req.Patient != "" {
		p := req.Patient
		if own, ok := strings.CutPrefix(u.FHIRUser, "Patient/"); ok && u.Role == "patient" {
			if p != "" && p != own {
				return nil, fmt.Errorf("issue token: %w: user %s is patient %s and sees only that record", ErrNotPermitted, u.Username, own)
			}
			p = own
		}
		switch {
		case !hasPatient:
			return nil, errors.New("issue token: a patient context goes with patient/ scopes")
		case p == "":
			return nil, errors.New("issue token: patient/ scopes need a patient context (the patient's id)")
		case !patientIDRE.MatchString(p):
			return nil, fmt.Errorf("issue token: patient %q is not a resource id", p)
		}
		t.patient = p
	}
	return s.signIssued(t)
}

func (s *Server) signIssued(t *tokenInfo) (*IssuedToken, error) {
	at, claims, err := s.issueAccessToken(t)
	if err != nil {
		return nil, fmt.Errorf("issue token: %w", err)
	}
	return &IssuedToken{AccessToken: at, Scopes: t.scopes, ExpiresAt: time.Unix(claims.Expiry, 0), ID: claims.ID}, nil
}

// RevokeToken revokes one of this server's access tokens, whoever it was
// issued to (the administrator's counterpart of /auth/revoke, which a
// client may use only on its own tokens). Servers sharing the database
// refuse it within Config.RevocationPoll. It returns the token's id and
// expiry.
func (s *Server) RevokeToken(ctx context.Context, tok string) (jti string, exp time.Time, err error) {
	cl, err := s.parseAccessToken(strings.TrimSpace(tok))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("revoke token: %w (is it from this server, with this --base-url?)", err)
	}
	exp = time.Unix(cl.Expiry, 0)
	if err := s.db.RevokeAccessToken(ctx, cl.ID, exp); err != nil {
		return "", time.Time{}, fmt.Errorf("revoke token: %w", err)
	}
	s.verifier.markRevoked(cl.ID, exp)
	return cl.ID, exp, nil
}
