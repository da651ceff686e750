package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

// gathered returns each sample of reg as "name{label=value,…}" → value.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			v := m.GetCounter().GetValue() // the getters are nil-safe
			if g := m.GetGauge(); g != nil {
				v = g.GetValue()
			}
			out[key] = v
		}
	}
	return out
}

// TestPoolCollector: the pool's figures as pgxpool counts them, read at
// scrape time: connections in use while held, a waiting acquire and one
// given up.
func TestPoolCollector(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(store.NewPoolCollector(st))

	a, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The pool is exhausted: this acquire waits, then gives up.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if c, err := st.Pool().Acquire(short); err == nil {
		c.Release()
		t.Fatal("a third connection from a pool of two")
	}
	cancel()
	held := gathered(t, reg)
	a.Release()
	b.Release()
	released := gathered(t, reg)

	for key, want := range map[string]float64{
		"ember_db_pool_connections{state=in_use}": 2,
		"ember_db_pool_max_connections":           2,
		"ember_db_pool_total_connections":         2,
		"ember_db_pool_canceled_acquires_total":   1,
	} {
		if got := held[key]; got != want {
			t.Errorf("while held: %s = %v, want %v", key, got, want)
		}
	}
	if held["ember_db_pool_acquire_waits_total"] < 1 || held["ember_db_pool_acquires_total"] < 2 {
		t.Errorf("while held: waits %v, acquires %v", held["ember_db_pool_acquire_waits_total"], held["ember_db_pool_acquires_total"])
	}
	if released["ember_db_pool_connections{state=in_use}"] != 0 || released["ember_db_pool_connections{state=idle}"] != 2 {
		t.Errorf("after release: in use %v, idle %v", released["ember_db_pool_connections{state=in_use}"], released["ember_db_pool_connections{state=idle}"])
	}
	if released["ember_db_pool_acquire_seconds_total"] <= 0 {
		t.Errorf("acquire time %v", released["ember_db_pool_acquire_seconds_total"])
	}
}

// TestPoolExportJobsCollector: export jobs by state, every state reported.
func TestPoolExportJobsCollector(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(store.NewExportJobsCollector(st))
	if _, err := st.Pool().Exec(ctx, `INSERT INTO bulk_exports (id, status, request, params)
		VALUES ('a', 'running', 'r', '{}'), ('b', 'failed', 'r', '{}'), ('c', 'failed', 'r', '{}')`); err != nil {
		t.Fatal(err)
	}
	got := gathered(t, reg)
	for key, want := range map[string]float64{
		"ember_export_jobs{state=accepted}":  0,
		"ember_export_jobs{state=running}":   1,
		"ember_export_jobs{state=completed}": 0,
		"ember_export_jobs{state=failed}":    2,
		"ember_export_jobs_scrape_success":   1,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	st.Close()
	if got := gathered(t, reg); got["ember_export_jobs_scrape_success"] != 0 || len(got) != 1 {
		t.Errorf("with the database closed: %v, want only ember_export_jobs_scrape_success 0", got)
	}
}
