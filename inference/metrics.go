package inference

import (
	"context"
	"errors"
	"time"

	"github.com/emberfhir/ember/store"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the inference metrics: jobs by final state, the queue's
// depth, and each job's time per phase (preprocess: instance selection,
// reading and decoding, the tensor; run: the model and its findings;
// write: the findings transaction).
type metrics struct {
	jobs    *prometheus.CounterVec   // model, state: completed | failed | retried
	seconds *prometheus.HistogramVec // model, phase
}

func newMetrics(reg prometheus.Registerer, jobs *store.Jobs) (*metrics, error) {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_inference_jobs_total",
			Help: "Inference jobs that ended, by model and state (completed, failed; retried: a transient error, run again).",
		}, []string{"model", "state"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_inference_seconds",
			Help:    "Time of an inference job's phases: preprocess (select, read, decode, tensor), run (model and findings), write (the findings transaction).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1 ms … ~24 s
		}, []string{"model", "phase"}),
	}
	if reg == nil {
		return m, nil
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ember_inference_queue_depth",
		Help: "Inference jobs waiting to run or to be retried (all processes).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := jobs.InferenceQueueDepth(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{m.jobs, m.seconds, depth} {
		if err := reg.Register(c); err != nil {
			// A second Service on one registry (tests) reuses the first's
			// collectors.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			switch c {
			case m.jobs:
				m.jobs = are.ExistingCollector.(*prometheus.CounterVec)
			case m.seconds:
				m.seconds = are.ExistingCollector.(*prometheus.HistogramVec)
			}
		}
	}
	return m, nil
}

func (m *metrics) ended(model, state string) { m.jobs.WithLabelValues(model, state).Inc() }

func (m *metrics) phase(model, phase string, since time.Time) time.Time {
	now := time.Now()
	m.seconds.WithLabelValues(model, phase).Observe(now.Sub(since).Seconds())
	return now
}
