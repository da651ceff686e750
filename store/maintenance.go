package store

import (
	"context"
	"fmt"
	"time"
)

// Maintenance statements for operators and the load benchmark: they touch
// no resource, but they are SQL, so they live here with the rest.

// Sizes is what the database holds: rows of current versions and bytes on
// disk (tables with their indexes and TOAST).
type Sizes struct {
	Resources     int64 // rows of resources (current versions, all types)
	IndexBytes    int64 // the idx_* tables
	ResourceBytes int64 // resources + resource_history
}

// Sizes measures the tables.
func (s *Store) Sizes(ctx context.Context) (Sizes, error) {
	var z Sizes
	err := s.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM resources),
		       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname LIKE 'idx\_%'), 0)::bigint,
		       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname IN ('resources', 'resource_history')), 0)::bigint
		FROM pg_class c
		WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace`).Scan(&z.Resources, &z.IndexBytes, &z.ResourceBytes)
	if err != nil {
		return Sizes{}, fmt.Errorf("store: table sizes: %w", err)
	}
	return z, nil
}

// VacuumAnalyze brings every table to the state autovacuum reaches some
// time after a bulk load (planner statistics, visibility map).
func (s *Store) VacuumAnalyze(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return fmt.Errorf("store: VACUUM (ANALYZE): %w", err)
	}
	return nil
}

// LogSlowStatements makes PostgreSQL log every statement slower than d,
// with its parameters (ALTER SYSTEM: it needs a superuser and outlives the
// connection).
func (s *Store) LogSlowStatements(ctx context.Context, d time.Duration) error {
	for _, sql := range []string{
		fmt.Sprintf("ALTER SYSTEM SET log_min_duration_statement = %d", max(d.Milliseconds(), 0)),
		"SELECT pg_reload_conf()",
	} {
		if _, err := s.pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("store: %s: %w", sql, err)
		}
	}
	return nil
}

// DatabaseSize is the database's size on disk in bytes (tables, indexes,
// TOAST), as PostgreSQL reports it.
func (s *Store) DatabaseSize(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: database size: %w", err)
	}
	return n, nil
}
