package trail

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/audit"
)

var kindNames = map[audit.Kind]string{audit.REST: "rest", audit.DICOMweb: "dicomweb", audit.DIMSE: "dimse", audit.Auth: "auth", audit.Admin: "admin"}

type metrics struct {
	recorded    *prometheus.CounterVec
	byKind      [audit.Admin + 1]prometheus.Counter // recorded's children, looked up once
	dropped     prometheus.Counter
	written     prometheus.Counter
	writeErrors prometheus.Counter
	pruned      prometheus.Counter
	flush       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, t *Trail) *metrics {
	m := &metrics{
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ember_audit_accesses_total",
			Help: "Accesses recorded for the audit trail, by kind (rest, dicomweb, dimse, auth, admin)."}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ember_audit_dropped_total",
			Help: "Accesses lost before they were written: buffer full, the database unreachable for too long, or a failed last write at shutdown."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "ember_audit_events_written_total",
			Help: "AuditEvents written (each stands for the accesses of one agent to one patient's data in one interval)."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ember_audit_write_errors_total",
			Help: "Failed audit writes (retried at the next interval)."}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "ember_audit_pruned_total",
			Help: "AuditEvents deleted by the retention sweep."}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ember_audit_write_duration_seconds",
			Help: "Time to write one batch of AuditEvents and their chain links.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	for k, name := range kindNames {
		m.byKind[k] = m.recorded.WithLabelValues(name)
	}
	if reg != nil {
		backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ember_audit_backlog",
			Help: "Accesses recorded and not yet written to the audit trail."}, t.backlog)
		reg.MustRegister(m.recorded, m.dropped, m.written, m.writeErrors, m.pruned, m.flush, backlog)
	}
	return m
}
