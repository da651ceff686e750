package dimse

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count associations by how they ended.
type metrics struct {
	associations *prometheus.CounterVec // result
}

// Association results, the values of ember_dicom_associations_total's
// result label.
const (
	resultReleased  = "released"   // A-RELEASE: the normal end
	resultRejected  = "rejected"   // A-ASSOCIATE-RJ: unknown AE, no context, capacity
	resultAborted   = "aborted"    // ended by A-ABORT, a timeout or a protocol or I/O error
	resultNoRequest = "no_request" // the connection closed before a valid A-ASSOCIATE-RQ
)

// newMetrics registers the counters on reg (nil: counted, not exported).
// A second Server on one registry (tests) shares the first one's counters.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{associations: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ember_dicom_associations_total",
		Help: "DIMSE associations by result: released, rejected, aborted (A-ABORT, timeout, protocol or I/O error), no_request (closed before an A-ASSOCIATE-RQ).",
	}, []string{"result"})}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.associations); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.associations = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return m, nil
}

// ended counts one connection by its result.
func (m *metrics) ended(c *conn) {
	var re *rejectedError
	result := resultAborted
	switch {
	case c.rq == nil: // a rejection always follows a parsed request
		result = resultNoRequest
	case errors.As(c.stats.Err, &re):
		result = resultRejected
	case c.stats.Err == nil:
		result = resultReleased
	}
	m.associations.WithLabelValues(result).Inc()
}
