package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// metrics are the server's Prometheus instruments, registered on the
// server's own registry (no process-global state).
type metrics struct {
	// requests is the first histogram Ember had, kept as it is (name and
	// labels) for the dashboards and alerts written against it: every
	// request the router sees, by interaction and exact status code.
	requests *prometheus.HistogramVec
	// fhir is the FHIR API's requests by interaction, resource type and
	// status class (2xx…5xx): the class, not the code, keeps the
	// interaction × type product small.
	fhir *prometheus.HistogramVec
	// search is search latency by how many search parameters the query
	// carries (0, 1, 2, 3, 4+): the cost of a search grows with its
	// conditions, so a slow p95 is read against its parameter count.
	search *prometheus.HistogramVec
	// bundleEntries counts transaction and batch entries by outcome: the
	// Bundles' throughput in resources, which the request rate hides.
	bundleEntries *prometheus.CounterVec
}

// latencyBuckets span a cached read (sub-millisecond) to a large
// transaction (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_http_request_duration_seconds",
			Help:    "HTTP requests by FHIR interaction and status code.",
			Buckets: latencyBuckets,
		}, []string{"interaction", "code"}),
		fhir: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ember_fhir_request_duration_seconds",
			Help: "FHIR API requests by interaction (read, vread, search-type, create, update, patch, delete, " +
				"history-*, transaction, batch, operation, capabilities, …), resource type (empty at system level) " +
				"and status class (2xx, 3xx, 4xx, 5xx).",
			Buckets: latencyBuckets,
		}, []string{"interaction", "resource_type", "status_class"}),
		search: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ember_search_duration_seconds",
			Help: "FHIR searches (type, system, compartment) by the number of search parameter values " +
				"they carry, result parameters (_count, _sort, _include, …) not counted: 0, 1, 2, 3 or 4+.",
			Buckets: latencyBuckets,
		}, []string{"params"}),
		bundleEntries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_bundle_entries_total",
			Help: "Entries of transaction and batch Bundles processed, by Bundle type and outcome (success, failure).",
		}, []string{"type", "outcome"}),
	}
	reg.MustRegister(m.requests, m.fhir, m.search, m.bundleEntries)
	return m
}

// MetricsRegisterer is the registry /metrics serves, for the metrics of
// work that runs beside the server (inference's jobs and latencies).
func (s *Server) MetricsRegisterer() prometheus.Registerer { return s.registry }

// newRegistry is the registry /metrics serves: the caller's
// (Config.Registry, so producers built before the server register on it
// too) or a new one.
func newRegistry(cfg Config) *prometheus.Registry {
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return reg
}

// Gin context keys the handlers fill for the metrics middleware.
const (
	// searchParamsKey holds the search's parameter-count bucket (an index
	// into searchParamBuckets; a small int, so storing it allocates nothing).
	searchParamsKey = "ember.searchParams"
)

var (
	searchParamBuckets = [...]string{"0", "1", "2", "3", "4+"}
	statusClasses      = [...]string{1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
)

// resultParams are the search result parameters (FHIR R4 3.1.1.5.x) and
// the format parameters: they shape the answer, not the match, so they are
// not counted as search parameters.
var resultParams = map[string]bool{
	"_count": true, "_sort": true, "_include": true, "_revinclude": true, "_summary": true,
	"_elements": true, "_total": true, "_contained": true, "_containedType": true,
	"_format": true, "_pretty": true,
}

// noteSearchParams records the number of search parameter values of a
// search (each value of a repeated parameter is one more condition) for
// the search latency histogram.
func noteSearchParams(c *gin.Context, params url.Values) {
	n := 0
	for name, vs := range params {
		base, _, _ := strings.Cut(name, ":")
		if !resultParams[base] {
			n += len(vs)
		}
	}
	c.Set(searchParamsKey, min(n, len(searchParamBuckets)-1))
}

// noteBundle records a processed transaction or batch: its entries by
// outcome, and the interaction "batch" for a batch (the route cannot tell
// before the body is read).
func (s *Server) noteBundle(c *gin.Context, resp *engine.BundleResponse) {
	typ := "transaction"
	if resp.Type == "batch-response" {
		typ = "batch"
		c.Set(interactionKey, "batch")
	}
	ok := 0
	for _, e := range resp.Entries {
		if e.Err == nil {
			ok++
		}
	}
	if ok > 0 {
		s.metrics.bundleEntries.WithLabelValues(typ, "success").Add(float64(ok))
	}
	if failed := len(resp.Entries) - ok; failed > 0 {
		s.metrics.bundleEntries.WithLabelValues(typ, "failure").Add(float64(failed))
	}
}

// observe records every request's latency under its FHIR interaction, and
// logs it (at debug level: an access log is opt-in, see cmd/ember's
// --log-level) without its query values.
func (s *Server) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		elapsed := time.Since(start)
		status := c.Writer.Status()
		interaction := c.GetString(interactionKey)
		isFHIR := interaction != ""
		if !isFHIR {
			interaction = "other"
		}
		s.metrics.requests.WithLabelValues(interaction, strconv.Itoa(status)).Observe(elapsed.Seconds())
		s.activity.note(start, elapsed, status)
		typ := ""
		if isFHIR {
			typ = resourceTypeOf(c.Request.URL.Path, interaction)
			s.metrics.fhir.WithLabelValues(interaction, typ, statusClass(status)).Observe(elapsed.Seconds())
			if v, ok := c.Get(searchParamsKey); ok {
				s.metrics.search.WithLabelValues(searchParamBuckets[v.(int)]).Observe(elapsed.Seconds())
			}
		}
		s.accessLog(c, interaction, typ, status, elapsed)
	}
}

// statusClass is "2xx" for 200…299 and so on; anything outside 100…599
// counts as 5xx (a handler bug).
func statusClass(code int) string {
	if i := code / 100; i >= 1 && i < len(statusClasses) {
		return statusClasses[i]
	}
	return "5xx"
}

// resourceTypeOf is the resource type a FHIR request acts on: the first
// path segment when it names one (the searched type for a compartment
// search), "" at system level. Only names of R4 types come back, so the
// label's values are bounded whatever clients send.
func resourceTypeOf(path, interaction string) string {
	rest, ok := strings.CutPrefix(path, "/fhir/")
	if !ok {
		return ""
	}
	first, rest, _ := strings.Cut(rest, "/")
	if interaction == "search-compartment" {
		// [compartment type]/[id]/[type]
		_, rest, _ = strings.Cut(rest, "/")
		first, _, _ = strings.Cut(rest, "/")
	}
	if spec.IsResourceType(first) {
		return first
	}
	return ""
}

// metricsAccess guards /metrics when it is private: the figures (request
// rates per interaction, process memory) are operational detail, so they
// need a token a backend monitoring client would hold, one with a system
// read scope on every type.
func (s *Server) metricsAccess(c *gin.Context) {
	if s.cfg.Metrics == MetricsPublic || s.cfg.Verifier == nil {
		return
	}
	_, g, ok := s.bearer(c, "/metrics requires an access token with a system/*.read (or system/*.rs) scope")
	if !ok {
		return
	}
	if !systemRead(g.Scopes) {
		s.writeOutcome(c, http.StatusForbidden, fhir.Outcome(fhir.Issue{Severity: "error", Code: "forbidden",
			Diagnostics: "/metrics needs a system/*.read (or system/*.rs) scope"}))
		c.Abort()
	}
}

// systemRead reports a scope that reads every type at system level: SMART
// v1 system/*.read or system/*.*, or v2 system/*.<perms> with r.
func systemRead(scopes []string) bool {
	for _, sc := range scopes {
		perm, ok := strings.CutPrefix(sc, "system/*.")
		if !ok {
			continue
		}
		perm, _, _ = strings.Cut(perm, "?") // v2 granular scopes narrow the read
		if perm == "read" || perm == "*" || (strings.Contains(perm, "r") && strings.Trim(perm, "cruds") == "" && !strings.Contains(sc, "?")) {
			return true
		}
	}
	return false
}
