package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/store/authdb"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLife: an assertion may expire at most this far ahead
// (SMART Backend Services: 5 minutes), with a little clock skew.
const (
	maxAssertionLife = 5 * time.Minute
	clockSkew        = 30 * time.Second
)

// oauthErr is an OAuth error with its HTTP status.
type oauthErr struct {
	status     int
	code, msg  string
	retryAfter time.Duration // sent as Retry-After when set (429, 503)
}

func (e *oauthErr) Error() string { return e.code + ": " + e.msg }

func invalidClient(format string, a ...any) *oauthErr {
	return &oauthErr{status: http.StatusUnauthorized, code: "invalid_client", msg: fmt.Sprintf(format, a...)}
}

// authClient identifies the client of a token, introspection or
// revocation request: by signed assertion (private_key_jwt), a secret
// (symmetric: HTTP Basic, client_secret_basic, or client_id and
// client_secret in the form, client_secret_post) or a bare client_id
// (public clients only). It returns nil, nil when the request names no
// client at all.
func (s *Server) authClient(r *http.Request) (*Client, error) {
	ctx := r.Context()
	f := r.PostForm
	if a := f.Get("client_assertion"); a != "" || f.Get("client_assertion_type") != "" {
		if f.Get("client_assertion_type") != assertionType {
			return nil, invalidClient("client_assertion_type must be %s", assertionType)
		}
		return s.verifyAssertion(ctx, a, f.Get("client_id"))
	}
	id, secret, hasSecret := r.BasicAuth()
	if f.Has("client_secret") {
		// RFC 6749 §2.3.1: one authentication method per request.
		if hasSecret {
			return nil, badRequest("invalid_request", "use either HTTP Basic or client_secret in the body, not both")
		}
		if id = f.Get("client_id"); id == "" {
			return nil, invalidClient("client_secret needs client_id")
		}
		secret, hasSecret = f.Get("client_secret"), true
	}
	if hasSecret {
		// The secret is an argon2id hash: checked within the login limits.
		var c *Client
		ok, err := s.creds.check(r, "client:"+id, false, func() (bool, error) {
			var err error
			c, err = getClient(ctx, s.db, id)
			if errors.Is(err, ErrNotFound) {
				verifyPassword(dummyHash, secret)
				return false, nil
			} else if err != nil {
				return false, err
			}
			return c.checkSecret(secret), nil
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, invalidClient("unknown client or wrong secret")
		}
		return c, nil
	}
	if id = f.Get("client_id"); id == "" {
		return nil, nil
	}
	c, err := getClient(ctx, s.db, id)
	if errors.Is(err, ErrNotFound) {
		return nil, invalidClient("unknown client")
	} else if err != nil {
		return nil, err
	}
	if c.Type != Public {
		return nil, invalidClient("client %s must authenticate", id)
	}
	return c, nil
}

// assertionClaims are the claims of a client assertion.
type assertionClaims struct {
	Issuer   string          `json:"iss"`
	Subject  string          `json:"sub"`
	Audience json.RawMessage `json:"aud"`
	Expiry   *float64        `json:"exp"`
	ID       string          `json:"jti"`
}

func (c *assertionClaims) hasAudience(want string) bool {
	var one string
	if json.Unmarshal(c.Audience, &one) == nil {
		return one == want
	}
	var many []string
	return json.Unmarshal(c.Audience, &many) == nil && slices.Contains(many, want)
}

// verifyAssertion checks a private_key_jwt client assertion (RS384 or ES384)
// and records its jti against replay.
func (s *Server) verifyAssertion(ctx context.Context, a, clientID string) (*Client, error) {
	jws, err := jose.ParseSigned(a, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, invalidClient("client_assertion must be a JWT signed with RS384 or ES384")
	}
	var unverified assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, invalidClient("client_assertion claims: %v", err)
	}
	if clientID != "" && clientID != unverified.Issuer {
		return nil, invalidClient("client_id does not match the assertion's iss")
	}
	c, err := getClient(ctx, s.db, unverified.Issuer)
	if errors.Is(err, ErrNotFound) {
		return nil, invalidClient("unknown client")
	} else if err != nil {
		return nil, err
	}
	if c.Type != Asymmetric {
		return nil, invalidClient("client %s is not registered for private_key_jwt", c.ID)
	}
	h := jws.Signatures[0].Header
	keys, err := s.clientKeys(ctx, c, h)
	if err != nil {
		return nil, err
	}
	var payload []byte
	for _, k := range keys {
		if h.KeyID != "" && k.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, invalidClient("client_assertion signature does not verify with the client's keys")
	}
	var cl assertionClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, invalidClient("client_assertion claims: %v", err)
	}
	now := time.Now()
	switch {
	case cl.Issuer != c.ID || cl.Subject != c.ID:
		return nil, invalidClient("iss and sub must both be the client id")
	case !cl.hasAudience(s.TokenURL()):
		return nil, invalidClient("aud must be the token endpoint %s", s.TokenURL())
	case cl.Expiry == nil:
		return nil, invalidClient("exp is required")
	case time.Unix(int64(*cl.Expiry), 0).Before(now.Add(-clockSkew)):
		return nil, invalidClient("client_assertion has expired")
	case time.Unix(int64(*cl.Expiry), 0).After(now.Add(maxAssertionLife + clockSkew)):
		return nil, invalidClient("exp may be at most 5 minutes ahead")
	case cl.ID == "":
		return nil, invalidClient("jti is required")
	}
	err = s.db.UseAssertionID(ctx, c.ID, cl.ID, time.Unix(int64(*cl.Expiry), 0).Add(clockSkew))
	if errors.Is(err, authdb.ErrExists) {
		return nil, invalidClient("client_assertion jti was already used")
	}
	if err != nil {
		return nil, fmt.Errorf("record assertion jti: %w", err)
	}
	s.purge(ctx)
	return c, nil
}

// clientKeys returns the keys an assertion may be signed with: the
// registered JWKS, else the jwks_uri's. A jku header is honoured only when it
// is the client's registered jwks_uri.
func (s *Server) clientKeys(ctx context.Context, c *Client, h jose.Header) ([]jose.JSONWebKey, error) {
	jku, _ := h.ExtraHeaders["jku"].(string)
	if jku != "" && jku != c.JWKSURI {
		return nil, invalidClient("jku %q is not registered for this client", jku)
	}
	if jku == "" && len(c.JWKS) > 0 {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.JWKS, &set); err != nil {
			return nil, invalidClient("registered jwks is unreadable")
		}
		return set.Keys, nil
	}
	if c.JWKSURI == "" {
		return nil, invalidClient("client has no keys")
	}
	set, err := s.keys.get(ctx, c.JWKSURI)
	if err != nil {
		s.log.Warn("fetching client jwks_uri", "client", c.ID, "err", err)
		return nil, invalidClient("cannot fetch the client's jwks_uri")
	}
	return set.Keys, nil
}

// remoteKeys caches key sets fetched from clients' jwks_uri for 5 minutes.
type remoteKeys struct {
	client *http.Client
	mu     sync.Mutex
	sets   map[string]remoteSet
}

type remoteSet struct {
	set     jose.JSONWebKeySet
	fetched time.Time
}

func newRemoteKeys(c *http.Client) *remoteKeys {
	return &remoteKeys{client: c, sets: map[string]remoteSet{}}
}

const remoteKeysTTL = 5 * time.Minute

func (k *remoteKeys) get(ctx context.Context, uri string) (*jose.JSONWebKeySet, error) {
	k.mu.Lock()
	e, ok := k.sets[uri]
	k.mu.Unlock()
	if ok && time.Since(e.fetched) < remoteKeysTTL {
		return &e.set, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", uri, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("%s: %w", uri, err)
	}
	k.mu.Lock()
	k.sets[uri] = remoteSet{set: set, fetched: time.Now()}
	k.mu.Unlock()
	return &set, nil
}
