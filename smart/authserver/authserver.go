// Package authserver is Ember's SMART App Launch 2.x and Backend Services
// authorization server: discovery, authorize (login, patient picker,
// consent), token, introspection, revocation and EHR launch, with clients,
// users and tokens in PostgreSQL (queries in store/authdb; this package
// hashes, decides and speaks HTTP), and the Verifier for the tokens it issues.
//
// It speaks the protocol itself (go-jose for JWTs) rather than through
// zitadel/oidc's op: op's token response has no room for SMART's launch
// context (patient, encounter, need_patient_banner, …), its
// client_credentials grant authenticates only by secret (SMART Backend
// Services needs private_key_jwt with RS384/ES384, jwks_uri and jku), and
// authorize needs the aud and launch checks first — every endpoint would
// have been wrapped.
//
// Tokens: access tokens are RS256 JWTs (claims iss, sub, aud = FHIR base,
// exp, iat, jti, client_id, scope, patient, encounter, fhirUser, role) that
// the Verifier checks locally; refresh tokens and codes are random and
// stored as SHA-256 hashes. offline_access refresh tokens live
// Config.OfflineLifetime; online_access ones end Config.SessionLifetime
// after the user signed in. Refresh tokens are not rotated.
package authserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/authdb"
)

// Config configures a Server.
type Config struct {
	// Issuer is the authorization server's URL, <public base>/auth; its
	// path is where Handler serves.
	Issuer string
	// FHIRBaseURL is the FHIR base URL: the aud apps must ask for and the
	// aud of every access token.
	FHIRBaseURL string
	// AllowedOrigins may call discovery, token, introspection and
	// revocation from a browser (CORS); "*" allows any.
	AllowedOrigins []string
	// AccessTokenLifetime defaults to 1 h.
	AccessTokenLifetime time.Duration
	// OfflineLifetime is how long an offline_access refresh token lasts
	// (default 90 days); SessionLifetime how long an online_access one does,
	// counted from the user's login (default 12 h).
	OfflineLifetime, SessionLifetime time.Duration
	// RevocationPoll is how often the Verifier reloads revoked token ids:
	// an access token revoked elsewhere is honoured for at most this long
	// (default 1 s).
	RevocationPoll time.Duration
	// AllowInsecure allows an http:// issuer other than localhost.
	AllowInsecure bool
	// HTTPClient fetches clients' jwks_uri (default: 5 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Audit records logins, logouts (revocations) and token requests, each
	// with its outcome; nil records nothing.
	Audit audit.Recorder
	// AdminClients are the OAuth clients whose tokens the admin API
	// (/auth/admin/…) answers, for users of role admin (default: the
	// console, ConsoleClientID). Any other app an admin signs into gets a
	// token without that power.
	AdminClients []string

	// Limits on what callers who have not authenticated can make the server
	// do. Every password and client-secret check runs argon2id (19 MiB, tens
	// of ms of CPU).
	//
	// MaxConcurrentHashes bounds the checks running at once (default
	// GOMAXPROCS, at least 2 and at most 8); HashQueue how many more may
	// wait for a slot (default 4 × MaxConcurrentHashes; negative: none),
	// for at most HashWait (default 5 s). Beyond: 503 with Retry-After.
	MaxConcurrentHashes, HashQueue int
	HashWait                       time.Duration
	// LoginAttemptsPerAddress is how many sign-ins (login page, and the
	// admin Basic credentials of /auth/launch) and failed client-secret
	// checks one client address may make per LoginWindow (default 20).
	// LoginFailuresPerAccount is how many failed checks one user or client
	// may have per LoginWindow (default 5); then it is refused for a window,
	// doubling with each refusal in a row up to LoginMaxBackoff (default
	// 15 min). Refused requests get 429 with Retry-After and are not hashed.
	// Negative: no limit. (Independently, 5 failed logins in a row lock a
	// user in the database for 15 minutes.)
	LoginAttemptsPerAddress, LoginFailuresPerAccount int
	// LoginWindow defaults to 1 minute.
	LoginWindow, LoginMaxBackoff time.Duration
	// AuthorizePerAddress is how many authorization requests one client
	// address may start per LoginWindow (default 60; negative: no limit);
	// MaxPendingAuthRequests how many unfinished ones are stored at once
	// (default 10000; beyond: the app gets temporarily_unavailable).
	AuthorizePerAddress, MaxPendingAuthRequests int
	// LimiterEntries bounds each limit's table of addresses or accounts
	// (default 10000; the least recently seen are dropped first).
	LimiterEntries int
	// TrustedProxies is how many reverse proxies in front of Ember append to
	// X-Forwarded-For: the limits' client address is the entry that many
	// from the right (0, the default: the peer address). As --trust-proxy.
	TrustedProxies int
	// Metrics, when set, is where the token endpoint's counters are
	// registered (requests by grant type and outcome).
	Metrics prometheus.Registerer
}

// Server is the authorization server.
type Server struct {
	cfg      Config
	issuer   string // without trailing slash
	prefix   string // the issuer's path, where Handler serves
	fhirBase string
	st       *store.Store
	db       *authdb.DB
	key      *rsa.PrivateKey
	kid      string
	jwks     jose.JSONWebKeySet
	signer   jose.Signer
	verifier *Verifier
	keys     *remoteKeys
	log      *slog.Logger
	purged   atomic.Int64 // unix nanoseconds of the last purge
	creds    *credGuard
	starts   *strikeTable // authorization requests per address
	metrics  *metrics
}

// New loads (or, on the first start, generates and stores) the signing key
// and returns the server.
func New(ctx context.Context, cfg Config, st *store.Store) (*Server, error) {
	iss, err := url.Parse(strings.TrimSuffix(cfg.Issuer, "/"))
	if err != nil || !iss.IsAbs() || iss.Host == "" {
		return nil, fmt.Errorf("authserver: issuer %q is not an absolute URL", cfg.Issuer)
	}
	if iss.Scheme != "https" && !cfg.AllowInsecure {
		h := iss.Hostname()
		if h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return nil, fmt.Errorf("authserver: issuer %s must be https (or set AllowInsecure)", cfg.Issuer)
		}
	}
	if cfg.FHIRBaseURL == "" {
		return nil, errors.New("authserver: FHIRBaseURL is required")
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = time.Hour
	}
	if cfg.OfflineLifetime <= 0 {
		cfg.OfflineLifetime = 90 * 24 * time.Hour
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 12 * time.Hour
	}
	if cfg.RevocationPoll <= 0 {
		cfg.RevocationPoll = time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	limitDefaults(&cfg)
	s := &Server{cfg: cfg, issuer: iss.String(), prefix: iss.Path, fhirBase: strings.TrimSuffix(cfg.FHIRBaseURL, "/"),
		st: st, db: authdb.New(st), log: cfg.Logger, keys: newRemoteKeys(cfg.HTTPClient), creds: newCredGuard(cfg),
		starts: newStrikeTable(cfg.AuthorizePerAddress, cfg.LoginWindow, cfg.LoginWindow, cfg.LimiterEntries)}
	if s.metrics, err = newMetrics(cfg.Metrics); err != nil {
		return nil, fmt.Errorf("authserver: metrics: %w", err)
	}
	if err := s.loadKey(ctx); err != nil {
		return nil, err
	}
	s.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("authserver: signer: %w", err)
	}
	s.jwks = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: "RS256", Use: "sig"}}}
	s.verifier = newVerifier(s)
	return s, nil
}

// loadKey reads the signing key, generating and storing it on the first
// start (authdb serialises replicas starting together, so they agree on one).
func (s *Server) loadKey(ctx context.Context) error {
	kid, key, err := SigningKey(ctx, s.db)
	if err != nil {
		return err
	}
	s.kid, s.key = kid, key
	return nil
}

// SigningKey returns the server's signing key (RS256) and its id, generating
// and storing it when the database has none yet. Besides tokens it signs
// the audit trail's checkpoints, in every auth mode.
func SigningKey(ctx context.Context, db *authdb.DB) (string, *rsa.PrivateKey, error) {
	var fresh *rsa.PrivateKey
	kid, der, err := db.SigningKey(ctx, func() (string, []byte, error) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", nil, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", nil, fmt.Errorf("encode key: %w", err)
		}
		fresh = key
		return randomToken(12), der, nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("authserver: %w", err)
	}
	if fresh != nil {
		return kid, fresh, nil
	}
	key, err := parseKey(kid, der)
	return kid, key, err
}

// PublicKey returns the public half of signing key kid, for checking what
// it signed.
func PublicKey(ctx context.Context, db *authdb.DB, kid string) (*rsa.PublicKey, error) {
	der, err := db.SigningKeyByID(ctx, kid)
	if err != nil {
		return nil, fmt.Errorf("authserver: key %s: %w", kid, err)
	}
	key, err := parseKey(kid, der)
	if err != nil {
		return nil, err
	}
	return &key.PublicKey, nil
}

func parseKey(kid string, der []byte) (*rsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("authserver: parse key %s: %w", kid, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("authserver: key %s is not RSA", kid)
	}
	return rk, nil
}

// Verifier returns the verifier for this server's access tokens.
func (s *Server) Verifier() *Verifier { return s.verifier }

// Issuer returns the issuer URL.
func (s *Server) Issuer() string { return s.issuer }

// Endpoint URLs, as advertised.
func (s *Server) AuthorizeURL() string  { return s.issuer + "/authorize" }
func (s *Server) TokenURL() string      { return s.issuer + "/token" }
func (s *Server) IntrospectURL() string { return s.issuer + "/introspect" }
func (s *Server) RevokeURL() string     { return s.issuer + "/revoke" }
func (s *Server) JWKSURL() string       { return s.issuer + "/jwks" }

// Handler serves everything under the issuer's path (/auth).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	p := s.prefix
	mux.Handle("GET "+p+"/.well-known/openid-configuration", s.cors(http.HandlerFunc(s.openIDConfiguration)))
	mux.Handle("GET "+p+"/.well-known/smart-configuration", s.cors(http.HandlerFunc(s.smartConfiguration)))
	mux.Handle("GET "+p+"/jwks", s.cors(http.HandlerFunc(s.serveJWKS)))
	mux.HandleFunc("GET "+p+"/authorize", s.authorize)
	mux.HandleFunc("POST "+p+"/authorize", s.authorize)
	mux.HandleFunc("GET "+p+"/login", s.loginPage)
	mux.HandleFunc("POST "+p+"/login", s.loginSubmit)
	mux.HandleFunc("GET "+p+"/patient", s.pickerPage)
	mux.HandleFunc("POST "+p+"/patient", s.pickerSubmit)
	mux.HandleFunc("GET "+p+"/consent", s.consentPage)
	mux.HandleFunc("POST "+p+"/consent", s.consentSubmit)
	mux.Handle(p+"/token", s.cors(postOnly(s.token)))
	mux.Handle(p+"/introspect", s.cors(postOnly(s.introspect)))
	mux.Handle(p+"/revoke", s.cors(postOnly(s.revoke)))
	mux.HandleFunc("POST "+p+"/launch", s.launch)
	mux.HandleFunc("GET "+p+"/smart-style.json", s.style)
	mux.Handle(p+"/admin/", s.adminHandler())
	return mux
}

// SMARTConfigurationHandler serves the SMART discovery document, for
// /fhir/.well-known/smart-configuration.
func (s *Server) SMARTConfigurationHandler() http.Handler {
	return s.cors(http.HandlerFunc(s.smartConfiguration))
}

func postOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
			return
		}
		h(w, r)
	})
}

// cors lets the configured browser origins call h, answering preflights.
func (s *Server) cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if origin != "" && s.originAllowed(origin) {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			w.Header().Set("Access-Control-Max-Age", "600")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenHash is how opaque tokens and codes are stored.
func tokenHash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// purge deletes expired requests, launches, refresh tokens and revocations,
// at most once a minute, from whichever request comes by.
func (s *Server) purge(ctx context.Context) {
	last := s.purged.Load()
	if time.Since(time.Unix(0, last)) < time.Minute || !s.purged.CompareAndSwap(last, time.Now().UnixNano()) {
		return
	}
	if err := s.db.Purge(ctx); err != nil {
		s.log.Warn("purging expired authorization data", "err", err)
	}
}
