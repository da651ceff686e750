package server

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
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
