package subscription

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/store/subdb"
)

// metrics are the service's Prometheus metrics, per channel.
type metrics struct {
	matched, delivered, failed *prometheus.CounterVec
	lag                        *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, db *subdb.DB) (*metrics, error) {
	m := &metrics{
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ember_subscription_events_matched_total",
			Help: "Changes matched to a subscription (one per subscription matched), by channel."}, []string{"channel"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ember_subscription_events_delivered_total",
			Help: "Events delivered: acknowledged by a rest-hook receiver or sent on a websocket, by channel."}, []string{"channel"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ember_subscription_delivery_failures_total",
			Help: "Failed delivery attempts (handshakes, notifications, heartbeats), by channel."}, []string{"channel"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ember_subscription_delivery_lag_seconds",
			Help:    "Time from a resource's write to its notification's delivery, by channel.",
			Buckets: []float64{.01, .025, .05, .1, .2, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ember_subscription_change_backlog",
		Help: "Changes written but not yet matched against the subscriptions."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, _, err := db.Backlog(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{m.matched, m.delivered, m.failed, m.lag, backlog} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, ch := range []string{"rest-hook", "websocket"} {
		m.matched.WithLabelValues(ch)
		m.delivered.WithLabelValues(ch)
		m.failed.WithLabelValues(ch)
		m.lag.WithLabelValues(ch)
	}
	return m, nil
}
