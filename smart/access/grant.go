// Package access is what an authenticated FHIR request carries: the grant a
// bearer token stands for, whoever issued it (Ember's own authorization server
// or an external OpenID provider), and the interface that turns a token into
// one. The server enforces grants; the issuers produce them.
package access

import (
	"context"
	"errors"
	"time"
)

// Grant is the authority of one access token.
type Grant struct {
	// Issuer is the token's issuer (Ember's own issuer URL or an external
	// provider's).
	Issuer string
	// Subject is the end user (or, for backend services, the client id).
	Subject string
	// ClientID is the OAuth client the token was issued to.
	ClientID string
	// Scopes are the granted scopes, space-separated in the token, one per
	// element here, exactly as granted (v1, v2 and granular forms).
	Scopes []string
	// Patient and Encounter are the launch context ids ("" when none).
	Patient, Encounter string
	// FHIRUser is the user's FHIR resource, e.g. "Practitioner/123".
	FHIRUser string
	// Role is the user's role (admin, doctor, nurse, pharmacist,
	// receptionist, patient; "" for backend services and external tokens).
	Role string
	// Expiry is when the token stops being valid.
	Expiry time.Time
}

// ErrInvalidToken is returned (wrapped) by a Verifier for a token that is
// malformed, unknown, expired, revoked or from an unaccepted issuer: the
// server answers 401.
var ErrInvalidToken = errors.New("invalid access token")

// Verifier turns a bearer token into its grant.
type Verifier interface {
	Verify(ctx context.Context, token string) (*Grant, error)
}

type ctxKey struct{}

// WithGrant returns ctx carrying g.
func WithGrant(ctx context.Context, g *Grant) context.Context {
	return context.WithValue(ctx, ctxKey{}, g)
}

// FromContext returns the grant ctx carries, or nil when the request is
// unauthenticated (auth mode none, or a public endpoint).
func FromContext(ctx context.Context) *Grant {
	g, _ := ctx.Value(ctxKey{}).(*Grant)
	return g
}
