package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/smart/external"
	"github.com/emberfhir/ember/store"
)

// httpFlags are serve's flags for authorisation, TLS and abuse limits.
type httpFlags struct {
	auth            string
	tlsCert, tlsKey string
	oidcIssuers     multiFlag
	corsOrigins     string
	rateIP          string
	rateClient      string
	trustProxy      int
	bodyTimeout     time.Duration
	bodyMinRate     int64
	dicomwebMaxBody int64
	metrics         string
	metricsAddr     string
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (h *httpFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.auth, "auth", env("EMBER_AUTH", "smart"),
		"authorisation: smart (built-in SMART on FHIR authorization server; bearer tokens required) or none (no authorisation, for local development) (env EMBER_AUTH)")
	fs.StringVar(&h.tlsCert, "tls-cert", env("EMBER_TLS_CERT", ""), "serve HTTPS (TLS 1.2+) with this PEM certificate chain (env EMBER_TLS_CERT)")
	fs.StringVar(&h.tlsKey, "tls-key", env("EMBER_TLS_KEY", ""), "PEM private key for --tls-cert (env EMBER_TLS_KEY)")
	if v := env("EMBER_OIDC_ISSUER", ""); v != "" {
		for _, s := range strings.Fields(v) {
			h.oidcIssuers = append(h.oidcIssuers, s)
		}
	}
	fs.Var(&h.oidcIssuers, "oidc-issuer",
		"accept access tokens of this external OpenID provider, as URL,aud=AUDIENCE[,scope-claim=C][,fhiruser-claim=C][,patient-claim=C] (or skip-aud instead of aud=); repeatable (env EMBER_OIDC_ISSUER, space-separated)")
	fs.StringVar(&h.corsOrigins, "cors-origins", env("EMBER_CORS_ORIGINS", "*"),
		"origins browser apps may call from: * or a comma-separated list; empty disables CORS (env EMBER_CORS_ORIGINS)")
	fs.StringVar(&h.rateIP, "rate-limit-ip", env("EMBER_RATE_LIMIT_IP", "0"),
		"requests per second per client address, as RATE[:BURST]; 0 = unlimited (env EMBER_RATE_LIMIT_IP)")
	fs.StringVar(&h.rateClient, "rate-limit-client", env("EMBER_RATE_LIMIT_CLIENT", "0"),
		"FHIR requests per second per OAuth client, as RATE[:BURST]; 0 = unlimited (env EMBER_RATE_LIMIT_CLIENT)")
	fs.IntVar(&h.trustProxy, "trust-proxy", int(envInt("EMBER_TRUST_PROXY", 0)),
		"how many reverse proxies stand in front (their X-Forwarded-For/-Proto are trusted) (env EMBER_TRUST_PROXY)")
	fs.DurationVar(&h.bodyTimeout, "body-read-timeout", envDuration("EMBER_BODY_READ_TIMEOUT", guard.DefaultBodyIdle),
		"longest pause while a request body arrives, and the grace before --body-min-rate applies; 0 = no body deadlines (env EMBER_BODY_READ_TIMEOUT)")
	fs.Int64Var(&h.bodyMinRate, "body-min-rate", envInt("EMBER_BODY_MIN_RATE", guard.DefaultBodyMinRate),
		"least average rate, in bytes per second, a request body must keep after the grace (env EMBER_BODY_MIN_RATE)")
	fs.Int64Var(&h.dicomwebMaxBody, "dicomweb-max-body", envInt("EMBER_DICOMWEB_MAX_BODY", defaultDICOMwebMaxBody),
		"largest Content-Length accepted for /dicomweb (STOW-RS uploads), in bytes; 0 = no limit (env EMBER_DICOMWEB_MAX_BODY)")
	fs.StringVar(&h.metrics, "metrics", env("EMBER_METRICS", "private"),
		"who may read /metrics on --addr: private (a token with a system/*.read or system/*.rs scope; anyone under --auth none), public, or off (env EMBER_METRICS)")
	fs.StringVar(&h.metricsAddr, "metrics-addr", env("EMBER_METRICS_ADDR", ""),
		"serve /metrics, unauthenticated, on this separate address instead of --addr (keep it private) (env EMBER_METRICS_ADDR)")
}

// defaultDICOMwebMaxBody bounds a STOW-RS request: studies are large, but a
// declared length beyond this is refused before any of it is read.
const defaultDICOMwebMaxBody = 4 << 30

func (h *httpFlags) check() error {
	switch h.auth {
	case "smart", "none":
	default:
		return fmt.Errorf("serve: --auth %q: use smart or none", h.auth)
	}
	if (h.tlsCert == "") != (h.tlsKey == "") {
		return errors.New("serve: --tls-cert and --tls-key go together")
	}
	if h.auth == "none" && len(h.oidcIssuers) > 0 {
		return errors.New("serve: --oidc-issuer needs --auth smart")
	}
	switch server.MetricsAccess(h.metrics) {
	case server.MetricsPrivate, server.MetricsPublic, server.MetricsOff:
	default:
		return fmt.Errorf("serve: --metrics %q: use private, public or off", h.metrics)
	}
	if h.bodyTimeout < 0 || h.bodyMinRate < 0 || h.dicomwebMaxBody < 0 {
		return errors.New("serve: --body-read-timeout, --body-min-rate and --dicomweb-max-body cannot be negative")
	}
	return nil
}

// metricsAccess is server.Config.Metrics: off on the main listener when
// --metrics-addr serves them elsewhere.
func (h *httpFlags) metricsAccess() server.MetricsAccess {
	if h.metricsAddr != "" {
		return server.MetricsOff
	}
	return server.MetricsAccess(h.metrics)
}

// issuers parses the --oidc-issuer values.
func (h *httpFlags) issuers() ([]external.IssuerConfig, error) {
	var out []external.IssuerConfig
	for _, v := range h.oidcIssuers {
		ic, err := external.ParseIssuerFlag(v)
		if err != nil {
			return nil, fmt.Errorf("serve: --oidc-issuer %q: %w", v, err)
		}
		out = append(out, ic)
	}
	return out, nil
}

// parseRate reads RATE[:BURST]; the burst defaults to twice the rate (at
// least 1).
func parseRate(name, s string) (guard.Limit, error) {
	rate, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ":")
	r, err := strconv.ParseFloat(rate, 64)
	if err != nil || r < 0 {
		return guard.Limit{}, fmt.Errorf("serve: --%s %q: want RATE[:BURST], e.g. 50:100", name, s)
	}
	l := guard.Limit{Rate: r, Burst: max(1, int(2*r))}
	if hasBurst {
		b, err := strconv.Atoi(burst)
		if err != nil || b < 1 {
			return guard.Limit{}, fmt.Errorf("serve: --%s %q: burst must be a positive integer", name, s)
		}
		l.Burst = b
	}
	return l, nil
}

// clientLimiter is the per-OAuth-client limiter the FHIR routes apply, nil
// when off.
func (h *httpFlags) clientLimiter() (*guard.Limiter, error) {
	l, err := parseRate("rate-limit-client", h.rateClient)
	if err != nil || l.Rate == 0 {
		return nil, err
	}
	return guard.NewLimiter(guard.LimiterConfig{PerClient: l, TrustedProxies: h.trustProxy, ClientKey: server.ClientKey}), nil
}

// wrap puts the outer middleware around the whole server: security headers
// on every response, the request-framing and body-time checks, the
// per-address limit, CORS for browser apps, and the text check (which
// server.Handler applies too; it runs once).
func (h *httpFlags) wrap(next http.Handler, maxBody int64) (http.Handler, error) {
	next = guard.Input{MaxFormBody: maxBody}.Wrap(next)
	if origins := guard.ParseOrigins(h.corsOrigins); len(origins) > 0 {
		cors, err := guard.NewCORS(guard.CORSConfig{AllowedOrigins: origins, Match: guard.PathPrefixes("/fhir", "/fhir/", "/auth/token", "/auth/introspect", "/auth/revoke", "/auth/.well-known/", "/auth/jwks", "/dicomweb/")})
		if err != nil {
			return nil, fmt.Errorf("serve: --cors-origins: %w", err)
		}
		next = cors.Wrap(next)
	}
	ip, err := parseRate("rate-limit-ip", h.rateIP)
	if err != nil {
		return nil, err
	}
	if ip.Rate > 0 {
		next = guard.NewLimiter(guard.LimiterConfig{PerIP: ip, TrustedProxies: h.trustProxy}).Wrap(next)
	}
	next = guard.NewBody(h.bodyConfig(maxBody)).Wrap(next)
	next = guard.Framing(next)
	return guard.Headers{TrustForwardedProto: h.trustProxy > 0}.Wrap(next), nil
}

// bodyConfig bounds request bodies: --max-body declared at most (larger
// for DICOMweb uploads), and read at --body-min-rate with pauses of at most
// --body-read-timeout.
func (h *httpFlags) bodyConfig(maxBody int64) guard.BodyConfig {
	idle := h.bodyTimeout
	if idle == 0 {
		idle = -1 // guard.BodyConfig: negative disables
	}
	dicomweb := h.dicomwebMaxBody
	return guard.BodyConfig{
		MaxBody: maxBody,
		MaxBodyFor: func(r *http.Request) int64 {
			if p := r.URL.Path; p == "/dicomweb" || strings.HasPrefix(p, "/dicomweb/") {
				return dicomweb
			}
			return maxBody
		},
		Idle:    idle,
		Grace:   h.bodyTimeout,
		MinRate: h.bodyMinRate,
	}
}

// tlsConfig is the HTTPS configuration, nil for plain HTTP.
func (h *httpFlags) tlsConfig() (*tls.Config, error) {
	if h.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(h.tlsCert, h.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("serve: TLS: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// configureAuth sets up authorisation on cfg: with --auth smart the
// built-in authorization server (mounted at /auth, discovery at
// /fhir/.well-known/smart-configuration) and its token verifier, chained
// with any --oidc-issuer providers; with --auth none nothing, loudly.
func (h *httpFlags) configureAuth(ctx context.Context, cfg *server.Config, st *store.Store, log *slog.Logger) error {
	if h.auth == "none" {
		log.Warn("authorisation is OFF (--auth none): anyone who reaches this server can read and write everything; use it for local development only")
		return nil
	}
	as, err := authserver.New(ctx, authserver.Config{
		Issuer:      authIssuer(cfg.BaseURL), // as `ember token` signs for it
		FHIRBaseURL: cfg.BaseURL,
		Logger:      log,
		// Login limits are per client address: behind a proxy that is the
		// forwarded one, or every user would share the proxy's.
		TrustedProxies: h.trustProxy,
		Metrics:        cfg.Registry,
		Audit:          cfg.Audit,
	}, st)
	if err != nil {
		return fmt.Errorf("serve: authorization server: %w", err)
	}
	issuers, err := h.issuers()
	if err != nil {
		return err
	}
	var ext *external.Verifier
	if len(issuers) > 0 {
		if ext, err = external.New(ctx, external.Config{Issuers: issuers}); err != nil {
			return fmt.Errorf("serve: --oidc-issuer: %w", err)
		}
		for u, e := range ext.Ready() {
			if e != nil {
				log.Warn("external OpenID provider not reachable yet; its tokens get 401 until it is", "issuer", u, "err", e)
			}
		}
	}
	cfg.Verifier = external.Chain(as.Verifier(), as.Issuer(), ext)
	cfg.Mounts = append(cfg.Mounts,
		server.Mount{Prefix: "/auth", Handler: as.Handler()},
		server.Mount{Prefix: "/fhir/.well-known/smart-configuration", Handler: as.SMARTConfigurationHandler()},
	)
	cfg.OAuth = &server.OAuthEndpoints{Authorize: as.AuthorizeURL(), Token: as.TokenURL(), Introspect: as.IntrospectURL(), Revoke: as.RevokeURL()}
	if cfg.ClientLimiter, err = h.clientLimiter(); err != nil {
		return err
	}
	log.Info("SMART on FHIR authorisation on", "issuer", as.Issuer())
	return nil
}
