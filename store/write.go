package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
)

// Tx is the one write path: every producer of resources (REST, bundles,
// DICOM, inference, import) writes through its methods, so validation
// (fhir.Resource can only come from the validating parser), history and
// (later) indexing and audit happen the same way for all of them.
type Tx struct {
	s  *Store
	tx pgx.Tx
}

// InTx runs fn in one database transaction, committed when fn returns nil.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if err := fn(&Tx{s: s, tx: tx}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	if s.replica != nil {
		s.replica.noteWrite(ctx, s.pool)
	}
	select {
	case s.committed <- struct{}{}:
	default:
	}
	return nil
}

// InBulkTx is InTx for bulk loads: its commit does not wait for the WAL to
// reach disk (synchronous_commit off), so a loader's next batch overlaps
// the flush instead of waiting for it. A crash can lose the last few such
// commits, never part of one; the loader calls WaitDurable before it
// reports its batches as stored.
func (s *Store) InBulkTx(ctx context.Context, fn func(*Tx) error) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return fmt.Errorf("store: bulk transaction: %w", err)
		}
		return fn(tx)
	})
}

// WaitDurable returns once every transaction committed before the call is
// on disk. It commits a transaction that has an id (so it writes a commit
// record) with synchronous commit: waiting for its WAL flushes all the
// WAL before it, including InBulkTx's commits.
func (s *Store) WaitDurable(ctx context.Context) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.tx.Exec(ctx, "SET LOCAL synchronous_commit = on; SELECT pg_current_xact_id()"); err != nil {
			return fmt.Errorf("store: wait durable: %w", err)
		}
		return nil
	})
}

// Savepoint runs fn inside a savepoint of t: if fn fails, what it wrote is
// undone and t stays usable, so the caller can take another way (a COPY
// that met an existing id, say). fn must use the Tx it is given.
func (t *Tx) Savepoint(ctx context.Context, fn func(*Tx) error) error {
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: savepoint: %w", err)
	}
	if err := fn(&Tx{s: t.s, tx: sp}); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return errors.Join(err, fmt.Errorf("store: rollback to savepoint: %w", rerr))
		}
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return fmt.Errorf("store: release savepoint: %w", err)
	}
	return nil
}

// Create stores r as version 1 under a new server-assigned id.
func (s *Store) Create(ctx context.Context, r *fhir.Resource) (Version, error) {
	var v Version
	err := s.InTx(ctx, func(tx *Tx) (err error) {
		v, err = tx.Create(ctx, r)
		return err
	})
	return v, err
}

// Update stores r as the new current version of r.Type()/id (creating it if
// absent). ifMatch > 0 requires that version to be current.
func (s *Store) Update(ctx context.Context, r *fhir.Resource, id string, ifMatch int64) (v Version, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) (err error) {
		v, created, err = tx.Update(ctx, r, id, ifMatch)
		return err
	})
	return v, created, err
}

// Delete writes a tombstone version for typ/id. See Tx.Delete.
func (s *Store) Delete(ctx context.Context, typ, id string, ifMatch int64) (v Version, deleted bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) (err error) {
		v, deleted, err = tx.Delete(ctx, typ, id, ifMatch)
		return err
	})
	return v, deleted, err
}

// NewID returns a fresh server-assigned logical id. UUIDv7 ids are
// time-ordered, which keeps the (type, id) B-tree's inserts local.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Create stores r as version 1 under a new server-assigned id; any id in the
// body is replaced, as the spec requires of create.
func (t *Tx) Create(ctx context.Context, r *fhir.Resource) (Version, error) {
	v := Version{Type: r.Type(), ID: NewID(), VersionID: 1, LastUpdated: t.s.clock(time.Time{}), Method: MethodCreate}
	v.Content = r.Stamp(v.ID, v.VersionID, v.LastUpdated)
	if err := t.checkWrite(ctx, OpCreate, v.Type, v.ID, v.Content); err != nil {
		return v, err
	}
	if _, err := t.insert(ctx, r, v); err != nil {
		return v, fmt.Errorf("store: create %s: %w", v.Type, err)
	}
	return v, nil
}

// CreateAs stores r as version 1 under id, which the caller assigned (a
// transaction assigns ids before it rewrites references to them). An id
// that exists already is a conflict.
func (t *Tx) CreateAs(ctx context.Context, r *fhir.Resource, id string) (Version, error) {
	v := Version{Type: r.Type(), ID: id, VersionID: 1, LastUpdated: t.s.clock(time.Time{}), Method: MethodCreate}
	v.Content = r.Stamp(v.ID, v.VersionID, v.LastUpdated)
	if err := t.checkWrite(ctx, OpCreate, v.Type, v.ID, v.Content); err != nil {
		return v, err
	}
	ok, err := t.insert(ctx, r, v)
	if err != nil {
		return v, fmt.Errorf("store: create %s/%s: %w", v.Type, id, err)
	}
	if !ok {
		return v, ErrExists
	}
	return v, nil
}

// ItemError is the failure of one item of a CreateMany.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return e.Err.Error() }
func (e *ItemError) Unwrap() error { return e.Err }

// NewResource is one resource for CreateMany, under the id the caller assigned.
type NewResource struct {
	Res *fhir.Resource
	ID  string
	// Method is the interaction version 1 records: MethodCreate (the
	// default) or MethodUpdate for an update that creates (PUT to a new
	// id), which the guard also checks as an update.
	Method Method
}

// method is its Method, MethodCreate by default, and the guard operation
// that goes with it.
func (it NewResource) method() (Method, WriteOp) {
	if it.Method == MethodUpdate {
		return MethodUpdate, OpUpdate
	}
	return MethodCreate, OpCreate
}

// firstVersion stamps items[i] as version 1 and asks the guard, for the
// batch creates.
func (t *Tx) firstVersion(ctx context.Context, i int, it NewResource) (Version, error) {
	method, op := it.method()
	v := Version{Type: it.Res.Type(), ID: it.ID, VersionID: 1, LastUpdated: t.s.clock(time.Time{}), Method: method}
	v.Content = it.Res.Stamp(v.ID, v.VersionID, v.LastUpdated)
	if err := t.checkWrite(ctx, op, v.Type, v.ID, v.Content); err != nil {
		return v, &ItemError{Index: i, Err: err}
	}
	return v, nil
}

// CreateMany creates resources under assigned ids in one pipelined round
// trip: a transaction's creates are independent statements, so nothing is
// gained by waiting for each before sending the next.
func (t *Tx) CreateMany(ctx context.Context, items []NewResource) ([]Version, error) {
	versions := make([]Version, len(items))
	batch := &pgx.Batch{}
	for i, it := range items {
		v, err := t.firstVersion(ctx, i, it)
		if err != nil {
			return nil, err
		}
		sql, args, err := insertStatement(it.Res, v)
		if err != nil {
			return nil, fmt.Errorf("store: create %s/%s: %w", v.Type, v.ID, err)
		}
		batch.Queue(sql, args...)
		versions[i] = v
	}
	br := t.tx.SendBatch(ctx, batch)
	defer br.Close()
	for i := range items {
		var n int
		if err := br.QueryRow().Scan(&n); err != nil {
			return nil, &ItemError{Index: i, Err: fmt.Errorf("store: create %s/%s: %w", versions[i].Type, versions[i].ID, err)}
		}
		if n != 1 {
			return nil, &ItemError{Index: i, Err: fmt.Errorf("store: create %s/%s: %w", versions[i].Type, versions[i].ID, ErrExists)}
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("store: create: %w", err)
	}
	return versions, nil
}

// insert adds a new resource row (version 1) and its index rows in one
// statement. It reports false when (type, id) already exists.
func (t *Tx) insert(ctx context.Context, r *fhir.Resource, v Version) (bool, error) {
	sql, args, err := insertStatement(r, v)
	if err != nil {
		return false, err
	}
	var n int
	if err := t.tx.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return false, err
	}
	return n == 1, nil
}

// insertStatement is the one statement that inserts version 1 of a resource
// and its index rows; it yields 1, or 0 when (type, id) exists.
func insertStatement(r *fhir.Resource, v Version) (string, []any, error) {
	entries, err := index.Extract(v.Type, v.Content)
	if err != nil {
		return "", nil, err
	}
	a := &sqlArgs{}
	sql := `WITH r AS (INSERT INTO resources (type, id, version, last_updated, method, deleted, content, raw)
		VALUES (` + a.add(v.Type) + `, ` + a.add(v.ID) + `, 1, ` + a.add(v.LastUpdated) + `, ` + a.add(byte(v.Method)) + `, false, ` +
		a.add(v.Content) + `, ` + a.add(verbatim(r, v.Content)) + `)
		ON CONFLICT (type, id) DO NOTHING RETURNING rid),
		ch AS (INSERT INTO resource_changes (rid, type, id, version, method, at)
		SELECT rid, ` + a.add(v.Type) + `, ` + a.add(v.ID) + `, 1, ` + a.add(byte(v.Method)) + `, ` + a.add(v.LastUpdated) + ` FROM r)`
	for _, c := range indexCTEs(a, entries, false) {
		sql += ", " + c
	}
	sql += " SELECT count(*) FROM r"
	return sql, a.list, nil
}

// current is the locked current row of a resource.
type current struct {
	rid         int64
	version     int64
	lastUpdated time.Time
	deleted     bool
}

// lock reads and row-locks the current version of typ/id; ok is false when
// the resource has never existed. The lock serialises concurrent writers of
// one resource, so no update is ever lost.
func (t *Tx) lock(ctx context.Context, typ, id string) (c current, ok bool, err error) {
	err = t.tx.QueryRow(ctx,
		`SELECT rid, version, last_updated, deleted FROM resources WHERE type = $1 AND id = $2 FOR UPDATE`,
		typ, id).Scan(&c.rid, &c.version, &c.lastUpdated, &c.deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("store: lock %s/%s: %w", typ, id, err)
	}
	return c, true, nil
}

// Update stores r as the new current version of r.Type()/id, creating the
// resource when it does not exist (or re-creating it after a delete).
// ifMatch > 0 requires that version to be the current one (ErrVersionConflict).
func (t *Tx) Update(ctx context.Context, r *fhir.Resource, id string, ifMatch int64) (Version, bool, error) {
	typ := r.Type()
	if g := guardOf(ctx); g != nil {
		// The guard sees the new content as it will be stored.
		if err := t.checkWrite(ctx, OpUpdate, typ, id, r.Stamp(id, 0, time.Time{})); err != nil {
			return Version{}, false, err
		}
	}
	for attempt := 0; ; attempt++ {
		c, ok, err := t.lock(ctx, typ, id)
		if err != nil {
			return Version{}, false, err
		}
		if ifMatch > 0 && (!ok || c.version != ifMatch) {
			return Version{}, false, ErrVersionConflict
		}
		if ok {
			v := Version{Type: typ, ID: id, VersionID: c.version + 1, LastUpdated: t.s.clock(c.lastUpdated), Method: MethodUpdate}
			v.Content = r.Stamp(id, v.VersionID, v.LastUpdated)
			if err := t.replace(ctx, c.rid, v, r); err != nil {
				return v, false, err
			}
			return v, c.deleted, nil
		}
		// Update as create. A concurrent creator of the same id makes the
		// insert a no-op; the loop then locks the row it committed.
		v := Version{Type: typ, ID: id, VersionID: 1, LastUpdated: t.s.clock(time.Time{}), Method: MethodUpdate}
		v.Content = r.Stamp(id, 1, v.LastUpdated)
		inserted, err := t.insert(ctx, r, v)
		if err != nil {
			return v, false, fmt.Errorf("store: create %s/%s: %w", typ, id, err)
		}
		if inserted {
			return v, true, nil
		}
		if attempt >= 2 {
			return v, false, fmt.Errorf("store: create %s/%s: lost the race for the id repeatedly", typ, id)
		}
	}
}

// Delete writes a tombstone version for typ/id. deleted is false (and no
// version is written) when the resource is already deleted. A resource that
// never existed gives ErrNotFound.
func (t *Tx) Delete(ctx context.Context, typ, id string, ifMatch int64) (Version, bool, error) {
	if err := t.checkWrite(ctx, OpDelete, typ, id, nil); err != nil {
		return Version{}, false, err
	}
	c, ok, err := t.lock(ctx, typ, id)
	if err != nil {
		return Version{}, false, err
	}
	if !ok {
		return Version{}, false, ErrNotFound
	}
	if ifMatch > 0 && c.version != ifMatch {
		return Version{}, false, ErrVersionConflict
	}
	if c.deleted {
		return Version{Type: typ, ID: id, VersionID: c.version, LastUpdated: c.lastUpdated, Method: MethodDelete, Deleted: true}, false, nil
	}
	v := Version{Type: typ, ID: id, VersionID: c.version + 1, LastUpdated: t.s.clock(c.lastUpdated), Method: MethodDelete, Deleted: true}
	return v, true, t.replace(ctx, c.rid, v, nil)
}

// replace moves the current row of rid into history, makes v current and
// rewrites its index rows, in one statement (every part sees the
// pre-statement rows). r is nil for a delete tombstone, which has no index rows.
func (t *Tx) replace(ctx context.Context, rid int64, v Version, r *fhir.Resource) error {
	var entries *index.Entries
	var raw *string
	if r != nil {
		var err error
		if entries, err = index.Extract(v.Type, v.Content); err != nil {
			return fmt.Errorf("store: index %s/%s: %w", v.Type, v.ID, err)
		}
		raw = verbatim(r, v.Content)
	}
	a := &sqlArgs{}
	ridArg := a.add(rid)
	sql := `WITH r AS (SELECT ` + ridArg + `::bigint AS rid),
		moved AS (
			INSERT INTO resource_history (rid, version, type, id, last_updated, method, deleted, content, raw)
			SELECT rid, version, type, id, last_updated, method, deleted, content, raw FROM resources WHERE rid = ` + ridArg + `
		),
		upd AS (
			UPDATE resources SET version = ` + a.add(v.VersionID) + `, last_updated = ` + a.add(v.LastUpdated) + `, method = ` +
		a.add(byte(v.Method)) + `, deleted = ` + a.add(v.Deleted) + `, content = ` + a.add(v.Content) + `, raw = ` + a.add(raw) + `
			 WHERE rid = ` + ridArg + `
		),
		ch AS (
			INSERT INTO resource_changes (rid, type, id, version, method, at) VALUES (` + ridArg + `, ` + a.add(v.Type) + `, ` +
		a.add(v.ID) + `, ` + a.add(v.VersionID) + `, ` + a.add(byte(v.Method)) + `, ` + a.add(v.LastUpdated) + `)
		)`
	for _, c := range indexCTEs(a, entries, true) {
		sql += ", " + c
	}
	sql += " SELECT 1"
	if _, err := t.tx.Exec(ctx, sql, a.list...); err != nil {
		return fmt.Errorf("store: write %s/%s version %d: %w", v.Type, v.ID, v.VersionID, err)
	}
	return nil
}

// verbatim is the text to keep beside the JSONB (see fhir.Resource.NeedsVerbatim), or nil.
func verbatim(r *fhir.Resource, stamped []byte) *string {
	if !r.NeedsVerbatim() {
		return nil
	}
	s := string(stamped)
	return &s
}

// clock returns the timestamp for a new version: now at the microsecond
// precision PostgreSQL keeps, and always after the previous version's, so a
// resource's history stays ordered even if the wall clock steps back.
func (s *Store) clock(prev time.Time) time.Time {
	now := s.now().UTC().Truncate(time.Microsecond)
	if !now.After(prev) {
		now = prev.Add(time.Microsecond)
	}
	return now
}
