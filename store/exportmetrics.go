package store

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ExportJobsCollector exports the Bulk Data export jobs by state (accepted,
// running, completed, failed), counted in bulk_exports at scrape time: the
// table is shared, so every replica reports the same queue. Completed and
// failed jobs count until the expiry sweep removes them.
type ExportJobsCollector struct {
	s       *Store
	timeout time.Duration
}

// NewExportJobsCollector returns the collector of s's export jobs.
func NewExportJobsCollector(s *Store) *ExportJobsCollector {
	return &ExportJobsCollector{s: s, timeout: 2 * time.Second}
}

var (
	exportJobs = prometheus.NewDesc("ember_export_jobs",
		"Bulk Data export jobs by state (accepted: queued; running; completed and failed: kept until they expire), all replicas.",
		[]string{"state"}, nil)
	exportJobsUp = prometheus.NewDesc("ember_export_jobs_scrape_success",
		"1 when the export job count query succeeded at this scrape, 0 when it failed (ember_export_jobs is then absent).",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (ExportJobsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- exportJobs
	ch <- exportJobsUp
}

// Collect implements prometheus.Collector. Every state is reported, 0
// when no job is in it, so a panel's series do not come and go.
func (c ExportJobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	counts, err := c.s.exportJobCounts(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(exportJobsUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(exportJobsUp, prometheus.GaugeValue, 1)
	for _, state := range []string{ExportAccepted, ExportRunning, ExportCompleted, ExportFailed} {
		ch <- prometheus.MustNewConstMetric(exportJobs, prometheus.GaugeValue, float64(counts[state]), state)
	}
}

// exportJobCounts counts bulk_exports rows by status.
func (s *Store) exportJobCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM bulk_exports GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return nil, err
		}
		counts[state] = n
	}
	return counts, rows.Err()
}
