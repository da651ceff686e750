// Package server speaks HTTP: the FHIR REST API under /fhir (routing,
// content negotiation, headers, authentication), probes and metrics. The
// interactions themselves are the engine's: each handler reads the HTTP
// request into an engine request, calls the engine with the token's Caller,
// and writes the result; status.go maps the engine's error kinds and
// outcomes to HTTP statuses, in one table.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/engine/export"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/store"
)

// Config configures a Server.
type Config struct {
	// BaseURL is the public FHIR base, e.g. https://ember.example.org/fhir,
	// used in fullUrl, Location and links.
	BaseURL string
	// MaxBody bounds request bodies in bytes (413 beyond it).
	MaxBody int64
	// Version is reported in the CapabilityStatement.
	Version string
	// DefaultPageSize and MaxPageSize bound search and history pages
	// (_count); 0 means 20 and 1000.
	DefaultPageSize, MaxPageSize int
	Logger                       *slog.Logger
	// BulkExport enables $export. Its jobs run in PostgreSQL (call
	// store.MigrateJobs first) and its files are stored there too, so any
	// replica can work an export or serve its files.
	BulkExport bool
	// ExportWorkers is how many exports this process runs at once: 0 means
	// 1, negative none (it only accepts and reports exports). Start runs them.
	ExportWorkers int
	// Mounts are handlers served beside the FHIR API, each for a path and
	// everything below it (the authorization server at /auth, DICOMweb at
	// /dicomweb, SMART discovery at /fhir/.well-known). They take
	// precedence over the FHIR routes.
	Mounts []Mount
	// Verifier authenticates bearer tokens; every FHIR interaction then
	// needs one and is confined to its grant (SMART scopes). Nil serves
	// without authorisation (auth mode none).
	Verifier access.Verifier
	// OAuth are the authorization server's endpoints, advertised in the
	// CapabilityStatement's rest.security when Verifier is set.
	OAuth *OAuthEndpoints
	// ClientLimiter, when set, rate-limits FHIR requests per OAuth client
	// (its ClientKey sees the authenticated request; see ClientKey).
	ClientLimiter *guard.Limiter
	// Metrics says who may read /metrics: MetricsPrivate (the default
	// with a Verifier) needs a bearer token with a system/*. read scope,
	// MetricsPublic lets anyone, MetricsOff serves no /metrics here (see
	// MetricsHandler for a separate listener). Without a Verifier (auth
	// mode none) private means public: there is nothing to check.
	Metrics MetricsAccess
	// Audit records every FHIR interaction for the audit trail (see
	// package audit); nil records nothing (--audit off).
	Audit audit.Recorder
	// TrustedProxies is how many reverse proxies in front append to
	// X-Forwarded-For: the audit trail's client address is the entry that
	// many from the right (0: the peer address).
	TrustedProxies int
	// Registry is the Prometheus registry the server registers its
	// metrics (and the Go runtime and process collectors) on and /metrics
	// serves; nil: one of its own. Work built before the server (DICOM,
	// the authorization server, the database pool) registers on it too.
	Registry *prometheus.Registry
	// Profiles and ProfileEnforcement: the loaded implementation guides'
	// profiles, checked on writes and by $validate (engine.Config's).
	Profiles           engine.Profiles
	ProfileEnforcement engine.ProfileEnforcement
	// Guides is what the loaded implementation guides add to the
	// CapabilityStatement; nil: none loaded.
	Guides *Guides
}

// MetricsAccess is who may read /metrics on the server's handler.
type MetricsAccess string

// The MetricsAccess values; "" means MetricsPrivate.
const (
	MetricsPrivate MetricsAccess = "private"
	MetricsPublic  MetricsAccess = "public"
	MetricsOff     MetricsAccess = "off"
)

// OAuthEndpoints are the SMART authorization server's URLs.
type OAuthEndpoints struct {
	Authorize, Token, Introspect, Revoke, Register, Manage string
}

// Mount serves Handler for Prefix and every path below it.
type Mount struct {
	Prefix  string
	Handler http.Handler
}

// DefaultMaxBody is the request body limit when Config.MaxBody is 0.
const DefaultMaxBody = 16 << 20

// Server serves the FHIR API over an engine.
type Server struct {
	cfg    Config
	base   string // BaseURL without a trailing slash
	eng    *engine.Engine
	store  *store.Store // readiness probes
	parser *fhir.Parser
	log    *slog.Logger
	// capability is the CapabilityStatement, rebuilt (under capMu) when
	// operations, topics or guides change.
	capability atomic.Pointer[[]byte]
	capMu      sync.Mutex
	topics     []string               // subscription topics (AdvertiseTopics)
	guides     atomic.Pointer[Guides] // the loaded guides' declarations (SetGuides)
	activity   activity               // the last hour of requests ($stats)
	ops        map[string]opHandler   // the HTTP side of the engine's operations
	metrics    *metrics
	registry   *prometheus.Registry
	export     *export.Exporter // bulk export; nil without BulkExport
}

// New builds a Server.
func New(cfg Config, st *store.Store) (*Server, error) {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("server: BaseURL is required")
	}
	switch cfg.Metrics {
	case "":
		cfg.Metrics = MetricsPrivate
	case MetricsPrivate, MetricsPublic, MetricsOff:
	default:
		return nil, fmt.Errorf("server: Metrics %q: use private, public or off", cfg.Metrics)
	}
	eng, err := engine.New(engine.Config{BaseURL: cfg.BaseURL, DefaultPageSize: cfg.DefaultPageSize, MaxPageSize: cfg.MaxPageSize, Logger: cfg.Logger,
		Profiles: cfg.Profiles, ProfileEnforcement: cfg.ProfileEnforcement}, st)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	reg := newRegistry(cfg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{
		cfg:      cfg,
		base:     strings.TrimRight(cfg.BaseURL, "/"),
		eng:      eng,
		store:    st,
		parser:   eng.Parser(),
		log:      cfg.Logger,
		metrics:  newMetrics(reg),
		registry: reg,
	}
	if err := s.initBulk(); err != nil {
		return nil, err
	}
	s.ops = s.operations()
	s.eng.Register(s.statsOperation())
	if cfg.Guides != nil {
		s.guides.Store(cfg.Guides)
	}
	if err := s.rebuildCapability(); err != nil {
		return nil, err
	}
	return s, nil
}

// Engine is the engine the server answers with, for producers in the same
// process (DICOM, inference) that must share its locks and rules.
func (s *Server) Engine() *engine.Engine { return s.eng }

// Handler returns the HTTP handler for the whole server. Text that no
// handler could store (NUL bytes, invalid UTF-8) is refused here, at the
// boundary, for every endpoint including the mounts.
func (s *Server) Handler() http.Handler {
	return requestIDs(guard.Input{MaxFormBody: s.cfg.MaxBody}.Wrap(s.routes()))
}

// MetricsHandler serves the Prometheus metrics, for a listener of its own
// (Config.Metrics then usually MetricsOff).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
}

func (s *Server) routes() http.Handler {
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = false
	r.Use(s.recoverer(), s.observe())
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	r.GET("/readyz", s.ready)
	if s.cfg.Metrics != MetricsOff {
		r.GET("/metrics", s.metricsAccess, gin.WrapH(s.MetricsHandler()))
	}
	fhirChain := []gin.HandlerFunc{s.authenticate, s.limit}
	if s.cfg.Audit != nil {
		fhirChain = append([]gin.HandlerFunc{s.auditREST}, fhirChain...)
	}
	r.Any("/fhir", append(slices.Clip(fhirChain), s.dispatch)...)
	r.Any("/fhir/*path", append(slices.Clip(fhirChain), s.bulkPaths, s.dispatch)...)
	r.NoRoute(func(c *gin.Context) {
		s.fail(c, fhir.Missing("no endpoint at "+c.Request.URL.Path+"; the FHIR API is under /fhir"))
	})
	if len(s.cfg.Mounts) == 0 {
		return r
	}
	mounts := s.cfg.Mounts
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for _, m := range mounts {
			if p := req.URL.Path; p == m.Prefix || strings.HasPrefix(p, strings.TrimSuffix(m.Prefix, "/")+"/") {
				m.Handler.ServeHTTP(w, req)
				return
			}
		}
		r.ServeHTTP(w, req)
	})
}

func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		c.String(http.StatusServiceUnavailable, "not ready: %v\n", err)
		return
	}
	c.String(http.StatusOK, "ready\n")
}

// recoverer turns a panic into a 500 OperationOutcome instead of a dropped
// connection; a panic is a bug, so it is logged with its stack.
func (s *Server) recoverer() gin.HandlerFunc {
	return gin.CustomRecovery(func(c *gin.Context, err any) {
		s.log.ErrorContext(c.Request.Context(), "panic serving request", "route", routeTemplate(c.Request.URL.Path), "panic", err)
		s.writeOutcome(c, http.StatusInternalServerError, fhir.Outcome(fhir.Issue{Severity: "fatal", Code: "exception", Diagnostics: "internal error"}))
		c.Abort()
	})
}
