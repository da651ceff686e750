// Package subdb holds the queries of the subscriptions service
// (store/migrations/00013_subscriptions.sql): reading and retiring the
// change log, the subscriptions' delivery state, their numbered events and
// websocket binding tokens. It decides nothing: package subscription does.
// Depends on store (its pool and transactions) and pgx.
package subdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/store"
)

// DB runs the subscriptions' queries on a store's database.
type DB struct {
	pool *pgxpool.Pool
}

// New returns the subscription tables of st.
func New(st *store.Store) *DB { return &DB{pool: st.Pool()} }

// dispatchLock makes one dispatcher at a time, across replicas, match the
// change log, so event numbers are assigned once and in order.
const dispatchLock = `SELECT pg_try_advisory_xact_lock(hashtext('ember.subscriptions_dispatch'))`

// Change is one row of the change log, with the contents a matcher needs
// when it asked for them.
type Change struct {
	Seq     int64
	RID     int64
	Type    string
	ID      string
	Version int64
	Method  store.Method
	At      time.Time
	// Content is the version's JSON (nil for a delete, or when not
	// fetched); Previous the version before it (nil for a create).
	Content, Previous []byte
}

// Round is one dispatch round: a transaction holding the dispatch lock.
type Round struct {
	tx pgx.Tx
}

// Dispatch runs fn in a transaction holding the dispatch lock; ran is false
// (and fn not called) when another process holds it.
func (db *DB) Dispatch(ctx context.Context, fn func(*Round) error) (ran bool, err error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("subdb: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := tx.QueryRow(ctx, dispatchLock).Scan(&ran); err != nil {
		return false, fmt.Errorf("subdb: dispatch lock: %w", err)
	}
	if !ran {
		return false, nil
	}
	if err := fn(&Round{tx: tx}); err != nil {
		return true, err
	}
	if err := tx.Commit(ctx); err != nil {
		return true, fmt.Errorf("subdb: commit dispatch: %w", err)
	}
	return true, nil
}

// Changes returns up to limit committed changes, oldest first.
func (r *Round) Changes(ctx context.Context, limit int) ([]Change, error) {
	rows, err := r.tx.Query(ctx, `SELECT seq, rid, type, id, version, method, at FROM resource_changes ORDER BY seq LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("subdb: read change log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Change, error) {
		var c Change
		var m byte
		err := row.Scan(&c.Seq, &c.RID, &c.Type, &c.ID, &c.Version, &m, &c.At)
		c.Method = store.Method(m)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("subdb: read change log: %w", err)
	}
	return out, nil
}

// Contents fills in the Content and Previous of cs[i] for each i in which.
func (r *Round) Contents(ctx context.Context, cs []Change, which []int) error {
	if len(which) == 0 {
		return nil
	}
	rids, vers := make([]int64, 0, 2*len(which)), make([]int64, 0, 2*len(which))
	for _, i := range which {
		rids = append(rids, cs[i].RID)
		vers = append(vers, cs[i].Version)
		if cs[i].Version > 1 {
			rids = append(rids, cs[i].RID)
			vers = append(vers, cs[i].Version-1)
		}
	}
	rows, err := r.tx.Query(ctx, `SELECT u.rid, u.version, COALESCE(c.content, h.content)::text
		FROM unnest($1::bigint[], $2::bigint[]) AS u(rid, version)
		LEFT JOIN resources c ON c.rid = u.rid AND c.version = u.version
		LEFT JOIN resource_history h ON h.rid = u.rid AND h.version = u.version`, rids, vers)
	if err != nil {
		return fmt.Errorf("subdb: read changed versions: %w", err)
	}
	defer rows.Close()
	type key struct{ rid, version int64 }
	got := make(map[key][]byte, len(rids))
	for rows.Next() {
		var k key
		var content *string
		if err := rows.Scan(&k.rid, &k.version, &content); err != nil {
			return fmt.Errorf("subdb: read changed versions: %w", err)
		}
		if content != nil {
			got[k] = []byte(*content)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("subdb: read changed versions: %w", err)
	}
	for _, i := range which {
		c := &cs[i]
		c.Content = got[key{c.RID, c.Version}]
		if c.Version > 1 {
			c.Previous = got[key{c.RID, c.Version - 1}]
		}
	}
	return nil
}

// DropUnmatchable deletes up to limit changes no subscription can match
// because none is active: all but Subscriptions and Basics (topics),
// which the dispatcher reads whatever is active. It is the dispatcher's
// fast path while nobody subscribes, which spares reading every change
// into the process only to delete it.
func (r *Round) DropUnmatchable(ctx context.Context, limit int) (int, error) {
	// Nothing after a pending Subscription change: it may make a
	// subscriber of what follows.
	tag, err := r.tx.Exec(ctx, `DELETE FROM resource_changes WHERE seq IN (
		SELECT seq FROM resource_changes WHERE type NOT IN ('Subscription', 'Basic')
		   AND seq < COALESCE((SELECT min(seq) FROM resource_changes WHERE type = 'Subscription'), 9223372036854775807)
		 ORDER BY seq LIMIT $1)`, limit)
	if err != nil {
		return 0, fmt.Errorf("subdb: drop changes: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Retire deletes the changes with these sequence numbers: they have been
// matched. (Not "seq <= the last": a transaction that committed after the
// read may hold smaller numbers, still unmatched.)
func (r *Round) Retire(ctx context.Context, seqs []int64) error {
	if _, err := r.tx.Exec(ctx, `DELETE FROM resource_changes WHERE seq = ANY($1)`, seqs); err != nil {
		return fmt.Errorf("subdb: retire changes: %w", err)
	}
	return nil
}

// Event is one matched change numbered for one subscription.
type Event struct {
	Subscription string
	Number       int64
	Type, ID     string
	Version      int64
	Method       store.Method
	At           time.Time
}

// AddEvents numbers and stores events: each subscription's events get the
// next numbers after its last, in the order given. It fills in Number.
func (r *Round) AddEvents(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	counts := map[string]int64{}
	var subs []string
	for _, e := range evs {
		if counts[e.Subscription] == 0 {
			subs = append(subs, e.Subscription)
		}
		counts[e.Subscription]++
	}
	ns := make([]int64, len(subs))
	for i, s := range subs {
		ns[i] = counts[s]
	}
	rows, err := r.tx.Query(ctx, `UPDATE subscriptions s SET events = s.events + u.n
		FROM unnest($1::text[], $2::bigint[]) AS u(id, n) WHERE s.id = u.id RETURNING s.id, s.events - u.n`, subs, ns)
	if err != nil {
		return fmt.Errorf("subdb: number events: %w", err)
	}
	next := map[string]int64{}
	for rows.Next() {
		var id string
		var last int64
		if err := rows.Scan(&id, &last); err != nil {
			rows.Close()
			return fmt.Errorf("subdb: number events: %w", err)
		}
		next[id] = last
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("subdb: number events: %w", err)
	}
	var (
		sub, typ, id, method []string
		num, ver             []int64
		at                   []time.Time
	)
	for i := range evs {
		e := &evs[i]
		last, ok := next[e.Subscription]
		if !ok {
			continue // deleted since it was loaded: nothing to number
		}
		last++
		next[e.Subscription] = last
		e.Number = last
		sub, typ, id, method = append(sub, e.Subscription), append(typ, e.Type), append(id, e.ID), append(method, string(rune(e.Method)))
		num, ver, at = append(num, last), append(ver, e.Version), append(at, e.At)
	}
	_, err = r.tx.Exec(ctx, `INSERT INTO subscription_events (subscription, number, type, id, version, method, at)
		SELECT s, n, t, i, v, m::"char", a FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::timestamptz[])
		AS u(s, n, t, i, v, m, a)`, sub, num, typ, id, ver, method, at)
	if err != nil {
		return fmt.Errorf("subdb: store events: %w", err)
	}
	return nil
}

// Sub is a subscription's row.
type Sub struct {
	ID        string
	Version   int64
	Status    string
	Channel   string
	Config    []byte // the service's JSON
	Events    int64
	Delivered int64
	Failures  int
	Error     string
	LastSent  *time.Time
	Updated   time.Time
}

const subColumns = `id, version, status, channel, config, events, delivered, failures, COALESCE(error, ''), last_sent, updated_at`

func scanSub(row pgx.Row) (Sub, error) {
	var s Sub
	err := row.Scan(&s.ID, &s.Version, &s.Status, &s.Channel, &s.Config, &s.Events, &s.Delivered, &s.Failures, &s.Error, &s.LastSent, &s.Updated)
	return s, err
}

// Subs returns every subscription row.
func (r *Round) Subs(ctx context.Context) ([]Sub, error) {
	rows, err := r.tx.Query(ctx, `SELECT `+subColumns+` FROM subscriptions ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("subdb: subscriptions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Sub, error) { return scanSub(row) })
	if err != nil {
		return nil, fmt.Errorf("subdb: subscriptions: %w", err)
	}
	return out, nil
}

// Stamp is a cheap summary of the subscriptions table: when it changes, a
// dispatcher reloads its subscriptions (another replica may have changed
// them).
func (r *Round) Stamp(ctx context.Context) (string, error) {
	var s string
	err := r.tx.QueryRow(ctx, `SELECT count(*)::text || '/' || COALESCE(max(updated_at)::text, '') FROM subscriptions`).Scan(&s)
	if err != nil {
		return "", fmt.Errorf("subdb: subscriptions stamp: %w", err)
	}
	return s, nil
}

// Put upserts a subscription's row from a new version of its resource. A
// status the resource's writer set to requested (or back to active from
// error or off) restarts delivery: failures and the error are cleared.
func (r *Round) Put(ctx context.Context, s Sub) error {
	_, err := r.tx.Exec(ctx, `INSERT INTO subscriptions (id, version, status, channel, config)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status, channel = EXCLUDED.channel,
			config = EXCLUDED.config, updated_at = now(),
			failures = CASE WHEN subscriptions.status <> EXCLUDED.status THEN 0 ELSE subscriptions.failures END,
			error = CASE WHEN subscriptions.status <> EXCLUDED.status THEN NULL ELSE subscriptions.error END,
			next_attempt = CASE WHEN subscriptions.status <> EXCLUDED.status THEN now() ELSE subscriptions.next_attempt END
		WHERE subscriptions.version < EXCLUDED.version`, s.ID, s.Version, s.Status, s.Channel, s.Config)
	if err != nil {
		return fmt.Errorf("subdb: put subscription %s: %w", s.ID, err)
	}
	return nil
}

// Remove deletes a subscription's row and its events.
func (r *Round) Remove(ctx context.Context, id string) error {
	if _, err := r.tx.Exec(ctx, `DELETE FROM subscriptions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("subdb: remove subscription %s: %w", id, err)
	}
	return nil
}

// Get returns one subscription's row; ok is false when there is none.
func (db *DB) Get(ctx context.Context, id string) (s Sub, ok bool, err error) {
	s, err = scanSub(db.pool.QueryRow(ctx, `SELECT `+subColumns+` FROM subscriptions WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("subdb: subscription %s: %w", id, err)
	}
	return s, true, nil
}

// Lease is a delivery worker's claim on one subscription: no other worker,
// in any process, delivers it until the lease is released or expires.
type Lease struct {
	Sub
	Owner string
}

// Claim leases the subscription most overdue for work to owner for d: one
// past its end (any channel), or a rest-hook subscription awaiting its
// handshake, with undelivered events, or due a heartbeat (the config's
// "heartbeat" and "end" are read here), whose next attempt is due. ok is
// false when none is.
func (db *DB) Claim(ctx context.Context, owner string, d time.Duration) (l Lease, ok bool, err error) {
	row := db.pool.QueryRow(ctx, `UPDATE subscriptions s SET lease_owner = $1, lease_until = now() + $2::interval
		WHERE s.id = (SELECT id FROM subscriptions
			WHERE status IN ('requested', 'active') AND next_attempt <= now()
			  AND (lease_until IS NULL OR lease_until < now())
			  AND ((config->>'end') IS NOT NULL AND (config->>'end')::timestamptz <= now()
			       OR channel = 'rest-hook' AND (status = 'requested' OR delivered < events
			          OR (config->>'heartbeat')::bigint > 0 AND COALESCE(last_sent, updated_at) + ((config->>'heartbeat') || ' seconds')::interval <= now()))
			ORDER BY next_attempt LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING s.id, s.version, s.status, s.channel, s.config, s.events, s.delivered, s.failures, COALESCE(s.error, ''), s.last_sent, s.updated_at`,
		owner, d.String())
	l.Sub, err = scanSub(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("subdb: claim: %w", err)
	}
	l.Owner = owner
	return l, true, nil
}

// Events returns a subscription's stored events numbered from..to
// (inclusive), at most limit, in order.
func (db *DB) Events(ctx context.Context, sub string, from, to int64, limit int) ([]Event, error) {
	rows, err := db.pool.Query(ctx, `SELECT subscription, number, type, id, version, method, at FROM subscription_events
		WHERE subscription = $1 AND number BETWEEN $2 AND $3 ORDER BY number LIMIT $4`, sub, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("subdb: events of %s: %w", sub, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		var m byte
		err := row.Scan(&e.Subscription, &e.Number, &e.Type, &e.ID, &e.Version, &m, &e.At)
		e.Method = store.Method(m)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("subdb: events of %s: %w", sub, err)
	}
	return out, nil
}

// Delivered records that a leased subscription's events up to number were
// acknowledged (or a handshake or heartbeat, number unchanged, was):
// failures reset and the lease is released.
func (db *DB) Delivered(ctx context.Context, l Lease, number int64) error {
	_, err := db.pool.Exec(ctx, `UPDATE subscriptions SET delivered = GREATEST(delivered, $3), failures = 0, error = NULL,
		last_sent = now(), next_attempt = now(), lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2`, l.ID, l.Owner, number)
	if err != nil {
		return fmt.Errorf("subdb: delivered %s: %w", l.ID, err)
	}
	return nil
}

// Failed records a failed attempt on a leased subscription: the next one
// is not before retry; the lease is released.
func (db *DB) Failed(ctx context.Context, l Lease, reason string, retry time.Duration) error {
	_, err := db.pool.Exec(ctx, `UPDATE subscriptions SET failures = failures + 1, error = $3,
		next_attempt = now() + $4::interval, lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2`, l.ID, l.Owner, reason, retry.String())
	if err != nil {
		return fmt.Errorf("subdb: failed %s: %w", l.ID, err)
	}
	return nil
}

// SetStatus records a status the service moved a subscription to (active
// after its handshake, error past its retries, off at its end), with the
// reason for error, and releases any lease.
func (db *DB) SetStatus(ctx context.Context, id, status, reason string) error {
	_, err := db.pool.Exec(ctx, `UPDATE subscriptions SET status = $2, error = NULLIF($3, ''), lease_owner = NULL, lease_until = NULL,
		next_attempt = now(), updated_at = now(), failures = CASE WHEN $2 = 'active' THEN 0 ELSE failures END WHERE id = $1`, id, status, reason)
	if err != nil {
		return fmt.Errorf("subdb: status of %s: %w", id, err)
	}
	return nil
}

// Release gives up every lease owner holds (a process stopping), so
// another process delivers at once instead of after the lease expires.
func (db *DB) Release(ctx context.Context, owner string) error {
	_, err := db.pool.Exec(ctx, `UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, owner)
	if err != nil {
		return fmt.Errorf("subdb: release leases: %w", err)
	}
	return nil
}

// MarkSent records a websocket delivery: events up to number were sent.
func (db *DB) MarkSent(ctx context.Context, id string, number int64) error {
	_, err := db.pool.Exec(ctx, `UPDATE subscriptions SET delivered = GREATEST(delivered, $2), last_sent = now() WHERE id = $1`, id, number)
	if err != nil {
		return fmt.Errorf("subdb: sent %s: %w", id, err)
	}
	return nil
}

// PruneEvents deletes events matched before cutoff that no delivery
// waits for: delivered ones, and all of a websocket subscription's (a
// client that never comes back must not keep them for ever) or of one in
// error or off.
func (db *DB) PruneEvents(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM subscription_events e USING subscriptions s
		WHERE e.subscription = s.id AND e.matched_at < $1
		  AND (e.number <= s.delivered OR s.channel = 'websocket' OR s.status IN ('error', 'off'))`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("subdb: prune events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Backlog is how many changes wait to be matched, and since when.
func (db *DB) Backlog(ctx context.Context) (n int64, oldest *time.Time, err error) {
	err = db.pool.QueryRow(ctx, `SELECT count(*), min(at) FROM resource_changes`).Scan(&n, &oldest)
	if err != nil {
		return 0, nil, fmt.Errorf("subdb: backlog: %w", err)
	}
	return n, oldest, nil
}

// AddToken stores a websocket binding token's hash for subscriptions,
// valid until expires.
func (db *DB) AddToken(ctx context.Context, hash []byte, subs []string, expires time.Time) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO subscription_ws_tokens (hash, subscriptions, expires) VALUES ($1, $2, $3)`, hash, subs, expires)
	if err != nil {
		return fmt.Errorf("subdb: add binding token: %w", err)
	}
	_, err = db.pool.Exec(ctx, `DELETE FROM subscription_ws_tokens WHERE expires < now()`)
	if err != nil {
		return fmt.Errorf("subdb: expire binding tokens: %w", err)
	}
	return nil
}

// Token returns the subscriptions a binding token's hash is valid for, or
// ok false when it is unknown or expired.
func (db *DB) Token(ctx context.Context, hash []byte) (subs []string, ok bool, err error) {
	err = db.pool.QueryRow(ctx, `SELECT subscriptions FROM subscription_ws_tokens WHERE hash = $1 AND expires > now()`, hash).Scan(&subs)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("subdb: binding token: %w", err)
	}
	return subs, true, nil
}

// Versions reads the stored versions events name, by their index in evs:
// content (nil for a deletion or a purged version) and lastUpdated. It
// applies no grant: the caller decides visibility with the owner's.
func (db *DB) Versions(ctx context.Context, evs []Event) ([]store.Version, error) {
	types, ids, vers := make([]string, len(evs)), make([]string, len(evs)), make([]int64, len(evs))
	for i, e := range evs {
		types[i], ids[i], vers[i] = e.Type, e.ID, e.Version
	}
	rows, err := db.pool.Query(ctx, `SELECT u.i, COALESCE(c.last_updated, h.last_updated),
			COALESCE(c.raw, c.content::text, h.raw, h.content::text)
		FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u(type, id, version, i)
		JOIN resources r ON r.type = u.type AND r.id = u.id
		LEFT JOIN resources c ON c.rid = r.rid AND c.version = u.version
		LEFT JOIN resource_history h ON h.rid = r.rid AND h.version = u.version`, types, ids, vers)
	if err != nil {
		return nil, fmt.Errorf("subdb: read event versions: %w", err)
	}
	defer rows.Close()
	out := make([]store.Version, len(evs))
	for rows.Next() {
		var i int64
		var at *time.Time
		var content *string
		if err := rows.Scan(&i, &at, &content); err != nil {
			return nil, fmt.Errorf("subdb: read event versions: %w", err)
		}
		v := &out[i-1]
		v.Type, v.ID, v.VersionID = evs[i-1].Type, evs[i-1].ID, evs[i-1].Version
		if at != nil {
			v.LastUpdated = *at
		}
		if content != nil {
			v.Content = []byte(*content)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("subdb: read event versions: %w", err)
	}
	return out, nil
}

// DropUnwatched empties the change log when no subscription is requested
// or active, under the dispatch lock; it is what a process serving no
// subscriptions (--subscriptions off) runs, so the log does not grow
// without a reader. With subscriptions active it deletes nothing: a
// process that serves them matches the log.
func (db *DB) DropUnwatched(ctx context.Context) (int64, error) {
	var n int64
	_, err := db.Dispatch(ctx, func(r *Round) error {
		tag, err := r.tx.Exec(ctx, `DELETE FROM resource_changes
			WHERE NOT EXISTS (SELECT 1 FROM subscriptions WHERE status IN ('requested', 'active'))`)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("subdb: drop unwatched changes: %w", err)
	}
	return n, nil
}
