package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/fhir"
)

// metrics are the server's Prometheus instruments, registered on the
// server's own registry (no process-global state).
type metrics struct {
	requests *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_http_request_duration_seconds",
			Help:    "HTTP requests by FHIR interaction and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"interaction", "code"}),
	}
	reg.MustRegister(m.requests)
	return m
}

// MetricsRegisterer is the registry /metrics serves, for the metrics of
// work that runs beside the server (inference's jobs and latencies).
func (s *Server) MetricsRegisterer() prometheus.Registerer { return s.registry }

// observe records every request's latency under its FHIR interaction.
func (s *Server) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		interaction := c.GetString(interactionKey)
		if interaction == "" {
			interaction = "other"
		}
		s.metrics.requests.WithLabelValues(interaction, strconv.Itoa(c.Writer.Status())).Observe(time.Since(start).Seconds())
	}
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
