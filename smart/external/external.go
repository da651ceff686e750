// Package external verifies bearer tokens from an organisation's own OpenID
// provider with coreos/go-oidc and maps their claims into an access.Grant,
// so the FHIR server enforces them like tokens of Ember's own server.
// Depends on smart/access only.
package external

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/emberfhir/ember/smart/access"
)

// Verifier is an access.Verifier for tokens of the configured providers.
type Verifier struct {
	issuers map[string]*issuer
	cache   *cache
	now     func() time.Time
}

var _ access.Verifier = (*Verifier)(nil)

// issuer is one provider, discovered lazily: a provider that is down at
// start (or later, before its first success) only makes its tokens fail.
type issuer struct {
	cfg      IssuerConfig
	verifier atomic.Pointer[oidc.IDTokenVerifier]

	retryMin, retryMax, timeout time.Duration
	client                      *http.Client
	now                         func() time.Time

	mu          sync.Mutex
	discovering bool
	next        time.Time // no attempt before
	backoff     time.Duration
	lastErr     error
}

// New returns a Verifier for cfg's issuers. It tries discovery of each
// provider now but does not fail when one is unreachable: that provider is
// discovered again, with backoff, when its tokens arrive (see Ready).
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("external: no issuers configured")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{issuers: map[string]*issuer{}, now: now}
	size := cfg.CacheSize
	if size <= 0 {
		size = 10000
	}
	v.cache = newCache(size, now)
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	for _, ic := range cfg.Issuers {
		if err := ic.validate(); err != nil {
			return nil, err
		}
		if _, dup := v.issuers[ic.URL]; dup {
			return nil, fmt.Errorf("oidc issuer %q configured twice", ic.URL)
		}
		is := &issuer{
			cfg:      ic.withDefaults(),
			retryMin: orDefault(cfg.RetryMin, time.Second),
			retryMax: orDefault(cfg.RetryMax, time.Minute),
			timeout:  orDefault(cfg.DiscoveryTimeout, 10*time.Second),
			client:   client,
			now:      now,
		}
		v.issuers[ic.URL] = is
	}
	// In parallel, so one unreachable provider delays start by at most
	// DiscoveryTimeout. Failure is remembered in is and retried later.
	var wg sync.WaitGroup
	for _, is := range v.issuers {
		wg.Go(func() { _, _ = is.get(ctx) })
	}
	wg.Wait()
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Accepts reports whether iss is one of the configured issuers.
func (v *Verifier) Accepts(iss string) bool {
	_, ok := v.issuers[iss]
	return ok
}

// Ready reports, per issuer URL, nil when its discovery succeeded or the
// last discovery error (for a health or startup log line).
func (v *Verifier) Ready() map[string]error {
	out := make(map[string]error, len(v.issuers))
	for u, is := range v.issuers {
		if is.verifier.Load() != nil {
			out[u] = nil
			continue
		}
		is.mu.Lock()
		err := is.lastErr
		is.mu.Unlock()
		if err == nil {
			err = errors.New("not yet discovered")
		}
		out[u] = err
	}
	return out
}

// Verify checks token's signature, issuer, audience and expiry and returns
// its grant. Every failure wraps access.ErrInvalidToken. A token verified
// before is answered from the cache until it expires. The returned grant is
// shared: callers must not modify it.
func (v *Verifier) Verify(ctx context.Context, token string) (*access.Grant, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", access.ErrInvalidToken)
	}
	if g := v.cache.get(token); g != nil {
		return g, nil
	}
	iss, ok := peekIssuer(token)
	if !ok {
		return nil, fmt.Errorf("%w: not a JWT with an iss claim", access.ErrInvalidToken)
	}
	is := v.issuers[iss]
	if is == nil {
		return nil, fmt.Errorf("%w: issuer %q not accepted", access.ErrInvalidToken, iss)
	}
	ver, err := is.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", access.ErrInvalidToken, err)
	}
	idt, err := ver.Verify(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %s: %w", access.ErrInvalidToken, iss, err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: issuer %s: claims: %w", access.ErrInvalidToken, iss, err)
	}
	g, err := is.cfg.grant(idt, claims)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %s: %w", access.ErrInvalidToken, iss, err)
	}
	v.cache.put(token, g)
	return g, nil
}

// grant maps verified claims into a Grant.
func (c IssuerConfig) grant(idt *oidc.IDToken, claims map[string]any) (*access.Grant, error) {
	g := &access.Grant{
		Issuer:  idt.Issuer,
		Subject: idt.Subject,
		Expiry:  idt.Expiry,
	}
	g.ClientID, _ = claims["client_id"].(string)
	if g.ClientID == "" {
		g.ClientID, _ = claims["azp"].(string)
	}
	switch s := claims[c.ScopeClaim].(type) {
	case nil:
	case string:
		g.Scopes = strings.Fields(s)
	case []any:
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %q: array of non-strings", c.ScopeClaim)
			}
			g.Scopes = append(g.Scopes, strings.Fields(str)...)
		}
	default:
		return nil, fmt.Errorf("claim %q: want a string or an array of strings", c.ScopeClaim)
	}
	var ok bool
	if v, present := claims[c.FHIRUserClaim]; present {
		if g.FHIRUser, ok = v.(string); !ok {
			return nil, fmt.Errorf("claim %q: want a string", c.FHIRUserClaim)
		}
	}
	if v, present := claims[c.PatientClaim]; present {
		if g.Patient, ok = v.(string); !ok {
			return nil, fmt.Errorf("claim %q: want a string", c.PatientClaim)
		}
	}
	return g, nil
}

// get returns the issuer's token verifier, discovering the provider when
// that has not succeeded yet and the backoff allows. Only one request
// discovers at a time; the others fail fast rather than queue.
func (is *issuer) get(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	if v := is.verifier.Load(); v != nil {
		return v, nil
	}
	is.mu.Lock()
	if v := is.verifier.Load(); v != nil {
		is.mu.Unlock()
		return v, nil
	}
	if is.discovering || is.now().Before(is.next) {
		err := is.lastErr
		is.mu.Unlock()
		return nil, fmt.Errorf("issuer %s unavailable: %w", is.cfg.URL, err)
	}
	is.discovering = true
	is.mu.Unlock()

	// Detached from the request: its cancellation must not count as the
	// provider failing, and the key set keeps this context's HTTP client.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), is.client), is.timeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, is.cfg.URL)

	is.mu.Lock()
	defer is.mu.Unlock()
	is.discovering = false
	if err != nil {
		is.backoff = min(max(is.backoff*2, is.retryMin), is.retryMax)
		is.next = is.now().Add(is.backoff)
		is.lastErr = fmt.Errorf("discovery: %w", err)
		return nil, fmt.Errorf("issuer %s unavailable: %w", is.cfg.URL, is.lastErr)
	}
	v := p.Verifier(&oidc.Config{
		ClientID:          is.cfg.Audience,
		SkipClientIDCheck: is.cfg.SkipAudienceCheck,
		Now:               is.now,
	})
	is.verifier.Store(v)
	is.lastErr = nil
	return v, nil
}

// peekIssuer reads the unverified "iss" of a JWT, only to route it to the
// provider that then verifies it.
func peekIssuer(token string) (string, bool) {
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return "", false
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok || len(payload) > 16<<10 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil || c.Iss == "" {
		return "", false
	}
	return c.Iss, true
}

// Chain returns a Verifier that sends tokens of ext's issuers to ext and all
// others (Ember's own, including opaque tokens) to own. ext may be nil when
// no external provider is configured; ownIssuer is Ember's own issuer URL,
// which always goes to own even if also configured as external.
func Chain(own access.Verifier, ownIssuer string, ext *Verifier) access.Verifier {
	return chain{own: own, ownIssuer: ownIssuer, ext: ext}
}

type chain struct {
	own       access.Verifier
	ownIssuer string
	ext       *Verifier
}

func (c chain) Verify(ctx context.Context, token string) (*access.Grant, error) {
	if c.ext != nil {
		if g := c.ext.cache.get(token); g != nil && g.Issuer != c.ownIssuer {
			return g, nil
		}
		if iss, ok := peekIssuer(token); ok && iss != c.ownIssuer && c.ext.Accepts(iss) {
			return c.ext.Verify(ctx, token)
		}
	}
	if c.own == nil {
		return nil, fmt.Errorf("%w: no verifier for this token", access.ErrInvalidToken)
	}
	return c.own.Verify(ctx, token)
}
