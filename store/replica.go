package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reads on a streaming replica (Options.ReadURL).
//
// Read-your-writes is kept process-wide, the simplest choice that is
// correct for every caller of this process: after each write transaction
// commits, the store records the primary's WAL insert position (which lies
// past the commit record), and keeps the highest one seen. A read goes to
// the replica only once the replica has replayed up to that position; it
// polls the replica's replay position a few times (replicaPolls ×
// replicaPollEvery, about 100 ms), then falls back to the primary. So
// every client of this process sees every write this process made,
// whoever made it; a client that writes through one Ember process and
// reads through another may see the replica's lag (bounded by replication,
// not by Ember).
//
// A replica out of reach (stopped, restarting) is avoided for
// replicaRetryAfter after the failure: reads run on the primary meanwhile,
// and a read that failed on the replica is run again there, so callers see
// no error.
const (
	replicaPolls      = 5
	replicaPollEvery  = 20 * time.Millisecond
	replicaRetryAfter = 2 * time.Second
)

// The queries give a WAL position as a number: pg_lsn minus the origin.
const (
	writtenLSNSQL = `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`
	// On a server that is not in recovery (a read URL naming the primary
	// itself) replay_lsn is NULL and the current position is what counts.
	replayedLSNSQL = `SELECT (COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn()) - '0/0'::pg_lsn)::bigint`
)

// replica is the second pool of a Store opened with a ReadURL.
type replica struct {
	pool *pgxpool.Pool
	// written is the highest WAL position after this process's write
	// commits; replayed the highest the replica was seen to have replayed.
	written  atomic.Int64
	replayed atomic.Int64
	// avoidUntil (Unix nanoseconds) sends reads to the primary until then.
	avoidUntil atomic.Int64
}

type primaryKey struct{}

// FromPrimary returns ctx whose reads run on the primary even when the
// store has a replica: for a read whose answer must be the latest version
// committed anywhere (a conditional read with If-None-Match).
func FromPrimary(ctx context.Context) context.Context {
	return context.WithValue(ctx, primaryKey{}, true)
}

func openReplica(ctx context.Context, readURL string, opts Options) (*replica, error) {
	cfg, err := poolConfig(readURL, opts)
	if err != nil {
		return nil, fmt.Errorf("store: read replica: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: read replica: connect: %w", err)
	}
	return &replica{pool: pool}, nil
}

// noteWrite records the WAL position after a write transaction committed.
// If it cannot be read, the replica is avoided for a while instead, so the
// write is still seen.
func (r *replica) noteWrite(ctx context.Context, primary *pgxpool.Pool) {
	var lsn int64
	if err := primary.QueryRow(context.WithoutCancel(ctx), writtenLSNSQL).Scan(&lsn); err != nil {
		r.avoid()
		return
	}
	storeMax(&r.written, lsn)
}

func (r *replica) avoid() {
	r.avoidUntil.Store(time.Now().Add(replicaRetryAfter).UnixNano())
}

// pick returns where a read of ctx runs: the replica once it has replayed
// WAL position want, else the primary.
func (r *replica) pick(ctx context.Context, primary *pgxpool.Pool, want int64) *pgxpool.Pool {
	if ctx.Value(primaryKey{}) != nil || time.Now().UnixNano() < r.avoidUntil.Load() {
		return primary
	}
	if want <= r.replayed.Load() {
		return r.pool
	}
	for i := range replicaPolls {
		if i > 0 && !sleepCtx(ctx, replicaPollEvery) {
			return primary
		}
		var lsn int64
		if err := r.pool.QueryRow(ctx, replayedLSNSQL).Scan(&lsn); err != nil {
			if IsUnavailable(err) {
				r.avoid()
			}
			return primary
		}
		storeMax(&r.replayed, lsn)
		if lsn >= want {
			return r.pool
		}
	}
	return primary
}

// viaReplica runs the read fn on the replica once it has replayed this
// process's writes (else on the primary); a replica found out of reach is
// avoided and fn runs again on the primary.
func viaReplica[T any](ctx context.Context, s *Store, fn func(db querier) (T, error)) (T, error) {
	return viaReplicaAt(ctx, s, s.replica.written.Load(), fn)
}

func viaReplicaAt[T any](ctx context.Context, s *Store, want int64, fn func(db querier) (T, error)) (T, error) {
	db := s.replica.pick(ctx, s.pool, want)
	v, err := fn(db)
	if err != nil && db != s.pool && ctx.Err() == nil {
		if IsUnavailable(err) {
			s.replica.avoid()
			return fn(s.pool)
		}
		if recoveryConflict(err) {
			return fn(s.pool)
		}
	}
	return v, err
}

// recoveryConflict reports a replica's query cancelled because replay had
// to remove rows it still needed (SQLSTATE 40001 on a hot standby); the
// primary has no such conflict.
func recoveryConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40001"
}

// replicaExportFileRange is ExportFileRange on the replica. An export's
// files are written by whichever process ran its job, so the replica must
// have replayed all the primary has committed, not only this process's
// writes. Once fn has had bytes, a failure is not retried on the primary:
// fn would get them twice.
func (s *Store) replicaExportFileRange(ctx context.Context, id string, file int, offset, length int64, fn func([]byte) error) error {
	var want int64
	if err := s.pool.QueryRow(ctx, writtenLSNSQL).Scan(&want); err != nil {
		return exportFileRange(ctx, s.pool, id, file, offset, length, fn)
	}
	db := s.replica.pick(ctx, s.pool, want)
	called := false
	err := exportFileRange(ctx, db, id, file, offset, length, func(b []byte) error {
		called = true
		return fn(b)
	})
	if err != nil && !called && db != s.pool && ctx.Err() == nil && (IsUnavailable(err) || recoveryConflict(err)) {
		if IsUnavailable(err) {
			s.replica.avoid()
		}
		return exportFileRange(ctx, s.pool, id, file, offset, length, fn)
	}
	return err
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
