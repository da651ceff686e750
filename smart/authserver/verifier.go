package authserver

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/smart/access"
)

// accessClaims are the claims of an Ember access token.
type accessClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf,omitempty"`
	ID        string `json:"jti"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	Patient   string `json:"patient,omitempty"`
	Encounter string `json:"encounter,omitempty"`
	FHIRUser  string `json:"fhirUser,omitempty"`
	Role      string `json:"role,omitempty"`
}

func (c *accessClaims) grant() *access.Grant {
	return &access.Grant{Issuer: c.Issuer, Subject: c.Subject, ClientID: c.ClientID, Scopes: splitScopes(c.Scope),
		Patient: c.Patient, Encounter: c.Encounter, FHIRUser: c.FHIRUser, Role: c.Role, Expiry: time.Unix(c.Expiry, 0)}
}

// parseAccessToken checks the signature, issuer, audience and nbf of an
// access token; expiry is the caller's to check.
func (s *Server) parseAccessToken(tok string) (*accessClaims, error) {
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not a signed JWT", access.ErrInvalidToken)
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != s.kid {
		return nil, fmt.Errorf("%w: unknown key %q", access.ErrInvalidToken, kid)
	}
	payload, err := jws.Verify(&s.key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: bad signature", access.ErrInvalidToken)
	}
	var c accessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", access.ErrInvalidToken, err)
	}
	if c.Issuer != s.issuer || c.Audience != s.fhirBase || c.ID == "" || c.Expiry == 0 {
		return nil, fmt.Errorf("%w: wrong issuer or audience, or no jti or exp", access.ErrInvalidToken)
	}
	// nbf with the clock skew allowed between replicas. Checked here, where
	// a token is parsed before it is cached: once valid, it stays valid.
	if c.NotBefore != 0 && time.Unix(c.NotBefore, 0).After(time.Now().Add(clockSkew)) {
		return nil, fmt.Errorf("%w: not valid before %s", access.ErrInvalidToken, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	return &c, nil
}

// maxCached bounds the Verifier's cache of verified tokens.
const maxCached = 10000

// Verifier verifies Ember's access tokens locally: signature and claims
// once per token string, then a map lookup. Revocation is checked against an
// in-memory set of revoked token ids that is reloaded from PostgreSQL at
// most every Config.RevocationPoll (1 s by default) by the request that
// finds it stale; a token revoked through another replica is therefore
// honoured for at most that long plus one query (one revoked through this
// one stops at once).
type Verifier struct {
	s *Server

	mu      sync.RWMutex
	cache   map[string]cached
	revoked map[string]time.Time // jti → token expiry

	pollMu   sync.Mutex   // held by the request reloading revoked
	lastPoll atomic.Int64 // unix nanoseconds of the last reload
	since    time.Time    // newest revoked_at seen (under pollMu)
}

type cached struct {
	grant *access.Grant
	jti   string
}

func newVerifier(s *Server) *Verifier {
	return &Verifier{s: s, cache: map[string]cached{}, revoked: map[string]time.Time{}}
}

// Verify returns the grant of an access token; errors wrap
// access.ErrInvalidToken (or are the database's, when revocations cannot be
// loaded for the first time). The grant is a copy the caller may keep.
func (v *Verifier) Verify(ctx context.Context, tok string) (*access.Grant, error) {
	if err := v.poll(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	v.mu.RLock()
	e, ok := v.cache[tok]
	_, revoked := v.revoked[e.jti]
	v.mu.RUnlock()
	if !ok {
		c, err := v.s.parseAccessToken(tok)
		if err != nil {
			return nil, err
		}
		e = cached{grant: c.grant(), jti: c.ID}
		v.mu.Lock()
		_, revoked = v.revoked[e.jti]
		if !revoked && now.Before(e.grant.Expiry) {
			v.store(tok, e, now)
		}
		v.mu.Unlock()
	}
	switch {
	case revoked:
		return nil, fmt.Errorf("%w: revoked", access.ErrInvalidToken)
	case !now.Before(e.grant.Expiry):
		return nil, fmt.Errorf("%w: expired", access.ErrInvalidToken)
	}
	g := *e.grant
	g.Scopes = slices.Clone(g.Scopes)
	return &g, nil
}

// store caches e (v.mu held), making room by dropping expired entries and,
// if that is not enough, half the cache.
func (v *Verifier) store(tok string, e cached, now time.Time) {
	if len(v.cache) >= maxCached {
		for k, c := range v.cache {
			if !now.Before(c.grant.Expiry) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < maxCached/2 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[tok] = e
}

// markRevoked records a revocation made through this server at once.
func (v *Verifier) markRevoked(jti string, exp time.Time) {
	v.mu.Lock()
	v.revoked[jti] = exp
	v.mu.Unlock()
}

// poll reloads revocations when the set is older than RevocationPoll. One
// request reloads; the others go on with the set they have. Until the
// first load succeeds every request waits for it.
func (v *Verifier) poll(ctx context.Context) error {
	last := v.lastPoll.Load()
	if time.Since(time.Unix(0, last)) < v.s.cfg.RevocationPoll {
		return nil
	}
	if last != 0 {
		if !v.pollMu.TryLock() {
			return nil
		}
	} else {
		v.pollMu.Lock()
	}
	defer v.pollMu.Unlock()
	if v.lastPoll.Load() != last { // another request reloaded meanwhile
		return nil
	}
	// Rows committed late can carry an older revoked_at: look back a little.
	got, err := v.s.db.RevokedSince(ctx, v.since.Add(-5*time.Second))
	if err != nil {
		if last == 0 {
			return fmt.Errorf("load revoked tokens: %w", err)
		}
		v.s.log.Error("reloading revoked tokens", "err", err)
		v.lastPoll.Store(time.Now().UnixNano())
		return nil
	}
	now := time.Now()
	v.mu.Lock()
	for jti, exp := range v.revoked {
		if now.After(exp) {
			delete(v.revoked, jti)
		}
	}
	for _, r := range got {
		v.revoked[r.JTI] = r.ExpiresAt
		if r.RevokedAt.After(v.since) {
			v.since = r.RevokedAt
		}
	}
	v.mu.Unlock()
	v.lastPoll.Store(now.UnixNano())
	return nil
}

// tokenInfo is what the server knows of a grant when it issues tokens.
type tokenInfo struct {
	clientID  string
	username  string // "" for backend services
	role      string
	fhirUser  string
	scopes    []string
	patient   string
	encounter string
	nonce     string
	loginAt   time.Time
	authReq   string        // the authorization request of a code grant
	ttl       time.Duration // the access token's lifetime; 0: Config.AccessTokenLifetime
}

// issueAccessToken signs an access token for t.
func (s *Server) issueAccessToken(t *tokenInfo) (string, *accessClaims, error) {
	now := time.Now()
	sub := t.username
	if sub == "" {
		sub = t.clientID
	}
	ttl := t.ttl
	if ttl <= 0 {
		ttl = s.cfg.AccessTokenLifetime
	}
	c := accessClaims{Issuer: s.issuer, Subject: sub, Audience: s.fhirBase, IssuedAt: now.Unix(),
		Expiry: now.Add(ttl).Unix(), ID: randomToken(16), ClientID: t.clientID,
		Scope: strings.Join(t.scopes, " "), Patient: t.patient, Encounter: t.encounter, FHIRUser: t.fhirUser, Role: t.role}
	tok, err := s.sign(c)
	return tok, &c, err
}

// issueIDToken signs an OpenID Connect id_token for t.
func (s *Server) issueIDToken(t *tokenInfo) (string, error) {
	now := time.Now()
	c := map[string]any{"iss": s.issuer, "sub": t.username, "aud": t.clientID, "iat": now.Unix(),
		"exp": now.Add(s.cfg.AccessTokenLifetime).Unix()}
	if t.nonce != "" {
		c["nonce"] = t.nonce
	}
	if slices.Contains(t.scopes, "fhirUser") || slices.Contains(t.scopes, "profile") {
		c["fhirUser"] = s.fhirBase + "/" + t.fhirUser
	}
	if !t.loginAt.IsZero() {
		c["auth_time"] = t.loginAt.Unix()
	}
	return s.sign(c)
}

func (s *Server) sign(claims any) (string, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	jws, err := s.signer.Sign(b)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}
