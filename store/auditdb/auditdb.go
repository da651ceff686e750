// Package auditdb holds the queries on the audit trail's own tables
// (store/migrations/00011_audit.sql): the hash chain beside each AuditEvent,
// the signed checkpoints and the anchor left by retention. The AuditEvents
// themselves are ordinary resources, written through the engine in the same
// transaction as their links.
//
// It holds SQL and nothing of hashing or signing: package audit decides.
// Depends on store (its pool and transactions) and pgx.
package auditdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/store"
)

// DB runs the audit chain's queries on a store's database.
type DB struct {
	pool *pgxpool.Pool
}

// New returns the audit chain tables of st.
func New(st *store.Store) *DB { return &DB{pool: st.Pool()} }

// Link is one event's place in the chain.
type Link struct {
	Seq      int64
	EventID  string
	Recorded time.Time
	Hash     []byte
}

// Checkpoint is a signed statement of one link's hash.
type Checkpoint struct {
	Seq       int64
	Hash      []byte
	KeyID     string
	JWS       string
	CreatedAt time.Time
}

// chainLock serialises appends across processes: every replica's writer
// extends the one chain.
const chainLock = `SELECT pg_advisory_xact_lock(hashtext('ember.audit_chain'))`

// Head locks the chain for appending (until tx ends) and returns its last
// link's seq and hash: the anchor's when the chain is empty or pruned to it.
func Head(ctx context.Context, tx *store.Tx) (seq int64, hash []byte, err error) {
	db := tx.DB()
	if _, err := db.Exec(ctx, chainLock); err != nil {
		return 0, nil, fmt.Errorf("auditdb: lock chain: %w", err)
	}
	err = db.QueryRow(ctx, `SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		err = db.QueryRow(ctx, `SELECT seq, hash FROM audit_anchor`).Scan(&seq, &hash)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("auditdb: chain head: %w", err)
	}
	return seq, hash, nil
}

// Append adds links (whose seqs continue Head's) inside tx.
func Append(ctx context.Context, tx *store.Tx, links []Link) error {
	rows := make([][]any, len(links))
	for i, l := range links {
		rows[i] = []any{l.Seq, l.EventID, l.Recorded, l.Hash}
	}
	_, err := tx.DB().CopyFrom(ctx, pgx.Identifier{"audit_chain"}, []string{"seq", "event_id", "recorded", "hash"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("auditdb: append links: %w", err)
	}
	return nil
}

// LastCheckpoint returns the newest checkpoint's seq and when it was made
// (0 and the zero time when there is none).
func LastCheckpoint(ctx context.Context, tx *store.Tx) (seq int64, at time.Time, err error) {
	err = tx.DB().QueryRow(ctx, `SELECT seq, created_at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&seq, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("auditdb: last checkpoint: %w", err)
	}
	return seq, at, nil
}

// AddCheckpoint stores a signed checkpoint inside tx.
func AddCheckpoint(ctx context.Context, tx *store.Tx, c Checkpoint) error {
	_, err := tx.DB().Exec(ctx, `INSERT INTO audit_checkpoints (seq, hash, kid, jws) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING`,
		c.Seq, c.Hash, c.KeyID, c.JWS)
	if err != nil {
		return fmt.Errorf("auditdb: add checkpoint: %w", err)
	}
	return nil
}

// Anchor is where the chain starts: the last link retention pruned.
func (db *DB) Anchor(ctx context.Context) (seq int64, hash []byte, err error) {
	if err := db.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_anchor`).Scan(&seq, &hash); err != nil {
		return 0, nil, fmt.Errorf("auditdb: anchor: %w", err)
	}
	return seq, hash, nil
}

// StartAt returns the first link recorded at or after since, and the
// hash of the link before it (nil when that link is gone: the walk then
// trusts the first link's place). ok is false when no link is that recent.
func (db *DB) StartAt(ctx context.Context, since time.Time) (seq int64, prev []byte, ok bool, err error) {
	err = db.pool.QueryRow(ctx, `SELECT seq FROM audit_chain WHERE recorded >= $1 ORDER BY recorded, seq LIMIT 1`, since).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("auditdb: start at %s: %w", since, err)
	}
	err = db.pool.QueryRow(ctx, `SELECT hash FROM audit_chain WHERE seq = $1`, seq-1).Scan(&prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return seq, nil, true, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("auditdb: link %d: %w", seq-1, err)
	}
	return seq, prev, true, nil
}

// ChainedEvent is a link with its AuditEvent as stored now. Present is
// false when the resource row is gone; Deleted when it is a tombstone.
type ChainedEvent struct {
	Link
	Present, Deleted bool
	Version          int64
	Content          []byte
}

// Walk calls fn for every link from seq from on, in seq order, with its
// AuditEvent's current row. It reads in pages so a long chain never sits in
// memory; fn's error stops the walk and is returned.
func (db *DB) Walk(ctx context.Context, from int64, fn func(ChainedEvent) error) error {
	const page = 2000
	for {
		rows, err := db.pool.Query(ctx, `
SELECT c.seq, c.event_id, c.recorded, c.hash, r.rid IS NOT NULL, COALESCE(r.deleted, false), COALESCE(r.version, 0), COALESCE(r.raw, r.content::text)
FROM audit_chain c LEFT JOIN resources r ON r.type = 'AuditEvent' AND r.id = c.event_id
WHERE c.seq >= $1 ORDER BY c.seq LIMIT $2`, from, page)
		if err != nil {
			return fmt.Errorf("auditdb: walk from %d: %w", from, err)
		}
		n := 0
		var walkErr error
		for rows.Next() {
			var e ChainedEvent
			var content *string
			if err := rows.Scan(&e.Seq, &e.EventID, &e.Recorded, &e.Hash, &e.Present, &e.Deleted, &e.Version, &content); err != nil {
				rows.Close()
				return fmt.Errorf("auditdb: walk: %w", err)
			}
			if content != nil {
				e.Content = []byte(*content)
			}
			n++
			from = e.Seq + 1
			if walkErr = fn(e); walkErr != nil {
				break
			}
		}
		rows.Close()
		if walkErr != nil {
			return walkErr
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("auditdb: walk: %w", err)
		}
		if n < page {
			return nil
		}
	}
}

// Checkpoints returns at most limit checkpoints at or after seq from, in seq
// order (one a minute for years is millions: callers page).
func (db *DB) Checkpoints(ctx context.Context, from int64, limit int) ([]Checkpoint, error) {
	rows, err := db.pool.Query(ctx, `SELECT seq, hash, kid, jws, created_at FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("auditdb: checkpoints: %w", err)
	}
	cps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Checkpoint, error) {
		var c Checkpoint
		err := r.Scan(&c.Seq, &c.Hash, &c.KeyID, &c.JWS, &c.CreatedAt)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("auditdb: checkpoints: %w", err)
	}
	return cps, nil
}

// Unchained returns the ids of AuditEvents that carry Ember's tag
// (system|code) yet have no link: written behind the chain's back. At most
// limit ids.
func (db *DB) Unchained(ctx context.Context, system, code string, limit int) ([]string, error) {
	rows, err := db.pool.Query(ctx, `
SELECT r.id FROM resources r
WHERE r.type = 'AuditEvent' AND NOT r.deleted
  AND r.content->'meta'->'tag' @> jsonb_build_array(jsonb_build_object('system', $1::text, 'code', $2::text))
  AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = r.id)
ORDER BY r.rid LIMIT $3`, system, code, limit)
	if err != nil {
		return nil, fmt.Errorf("auditdb: unchained events: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("auditdb: unchained events: %w", err)
	}
	return ids, nil
}

// Prune deletes, in one transaction, the oldest links recorded before
// cutoff (at most limit of them) with their AuditEvents (every version and
// index row) and checkpoints, and moves the anchor to the last pruned link.
// It returns how many it pruned; 0 when nothing is that old.
func (db *DB) Prune(ctx context.Context, st *store.Store, cutoff time.Time, limit int) (int, error) {
	var n int
	err := st.InTx(ctx, func(tx *store.Tx) error {
		conn := tx.DB()
		if _, err := conn.Exec(ctx, chainLock); err != nil {
			return fmt.Errorf("auditdb: lock chain: %w", err)
		}
		rows, err := conn.Query(ctx, `SELECT seq, event_id, hash FROM audit_chain WHERE seq <= (
  SELECT max(seq) FROM (SELECT seq FROM audit_chain WHERE recorded < $1 ORDER BY seq LIMIT $2) s)
ORDER BY seq`, cutoff, limit)
		if err != nil {
			return fmt.Errorf("auditdb: prune: %w", err)
		}
		var ids []string
		var last int64
		var lastHash []byte
		for rows.Next() {
			var id string
			if err := rows.Scan(&last, &id, &lastHash); err != nil {
				rows.Close()
				return fmt.Errorf("auditdb: prune: %w", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("auditdb: prune: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		if err := tx.Purge(ctx, "AuditEvent", ids); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM audit_chain WHERE seq <= $1`,
			`DELETE FROM audit_checkpoints WHERE seq <= $1`,
		} {
			if _, err := conn.Exec(ctx, q, last); err != nil {
				return fmt.Errorf("auditdb: prune: %w", err)
			}
		}
		if _, err := conn.Exec(ctx, `UPDATE audit_anchor SET seq = $1, hash = $2`, last, lastHash); err != nil {
			return fmt.Errorf("auditdb: move anchor: %w", err)
		}
		n = len(ids)
		return nil
	})
	return n, err
}
