package dicom

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count what ingest stored and refused, by source: "dimse" for a
// C-STORE (IngestOptions.SourceAE set), "dicomweb" for STOW-RS.
type metrics struct {
	instances *prometheus.CounterVec // source
	bytes     *prometheus.CounterVec // source
	failures  *prometheus.CounterVec // source
}

// newMetrics registers the counters on reg (nil: counted, not exported).
// A second Service on one registry (tests) shares the first one's.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		instances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_dicom_instances_stored_total",
			Help: "DICOM instances stored (new or replacing), by source: dimse (C-STORE) or dicomweb (STOW-RS).",
		}, []string{"source"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_dicom_stored_bytes_total",
			Help: "Bytes of the DICOM instances stored (Part-10 files as written to the blob store), by source.",
		}, []string{"source"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_dicom_instances_failed_total",
			Help: "DICOM instances refused or not stored (bad data, storage full, a refused overwrite), by source.",
		}, []string{"source"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.instances, &m.bytes, &m.failures} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			*c = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return m, nil
}

// ingested counts one Ingest's outcome.
func (m *metrics) ingested(opts IngestOptions, in *Instance, err error) {
	source := "dicomweb"
	if opts.SourceAE != "" {
		source = "dimse"
	}
	if err != nil || in == nil {
		m.failures.WithLabelValues(source).Inc()
		return
	}
	m.instances.WithLabelValues(source).Inc()
	m.bytes.WithLabelValues(source).Add(float64(in.Size))
}
