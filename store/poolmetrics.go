package store

import "github.com/prometheus/client_golang/prometheus"

// PoolCollector exports the connection pool's figures, read from pgxpool's
// Stat at scrape time: nothing is counted on the query path, and the
// numbers are the pool's own.
type PoolCollector struct{ s *Store }

// NewPoolCollector returns the collector of s's pool, for a Prometheus
// registry (cmd/ember registers it on the server's).
func NewPoolCollector(s *Store) *PoolCollector { return &PoolCollector{s} }

var (
	poolConns = prometheus.NewDesc("ember_db_pool_connections",
		"Database pool connections by state: in_use (acquired), idle, constructing.",
		[]string{"state"}, nil)
	poolTotal = prometheus.NewDesc("ember_db_pool_total_connections",
		"Database pool connections open or being opened (in use + idle + constructing).", nil, nil)
	poolMax = prometheus.NewDesc("ember_db_pool_max_connections",
		"Database pool size limit (--db-max-conns).", nil, nil)
	poolAcquires = prometheus.NewDesc("ember_db_pool_acquires_total",
		"Connections acquired from the pool.", nil, nil)
	poolAcquireSeconds = prometheus.NewDesc("ember_db_pool_acquire_seconds_total",
		"Time spent acquiring connections, waits included.", nil, nil)
	poolWaits = prometheus.NewDesc("ember_db_pool_acquire_waits_total",
		"Acquires that found no idle connection and waited for one to be released or opened.", nil, nil)
	poolWaitSeconds = prometheus.NewDesc("ember_db_pool_acquire_wait_seconds_total",
		"Time spent waiting by the acquires that found no idle connection.", nil, nil)
	poolCanceled = prometheus.NewDesc("ember_db_pool_canceled_acquires_total",
		"Acquires given up because their context ended (a request cancelled or timed out waiting).", nil, nil)
)

// Describe implements prometheus.Collector.
func (PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolConns, poolTotal, poolMax, poolAcquires, poolAcquireSeconds, poolWaits, poolWaitSeconds, poolCanceled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c PoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(poolConns, float64(st.AcquiredConns()), "in_use")
	gauge(poolConns, float64(st.IdleConns()), "idle")
	gauge(poolConns, float64(st.ConstructingConns()), "constructing")
	gauge(poolTotal, float64(st.TotalConns()))
	gauge(poolMax, float64(st.MaxConns()))
	counter(poolAcquires, float64(st.AcquireCount()))
	counter(poolAcquireSeconds, st.AcquireDuration().Seconds())
	counter(poolWaits, float64(st.EmptyAcquireCount()))
	counter(poolWaitSeconds, st.EmptyAcquireWaitTime().Seconds())
	counter(poolCanceled, float64(st.CanceledAcquireCount()))
}
