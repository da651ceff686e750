package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
)

// Bulk export job states, as kept in bulk_exports.status.
const (
	ExportAccepted  = "accepted"  // queued, no worker has started it
	ExportRunning   = "running"   // a worker took its snapshot; checkpoints record progress
	ExportCompleted = "completed" // every file is written
	ExportFailed    = "failed"    // given up; Error says why
)

// ErrBusy: another worker holds the export (a rescued River job whose first
// run is still alive). The caller retries later rather than writing the same
// files twice.
var ErrBusy = errors.New("store: export is being worked elsewhere")

// ExportJob is one Bulk Data export's record. Params and Checkpoint are the
// HTTP layer's JSON, kept opaque here: the store persists them, the server
// gives them meaning.
type ExportJob struct {
	ID, Status, Request string
	Params              []byte
	RiverJob            int64
	TransactionTime     time.Time // zero until a worker took its snapshot
	Checkpoint          []byte    // nil before the first checkpoint
	Exported            int64
	Error               string
	CreatedAt           time.Time
	UpdatedAt           time.Time
	FinishedAt          time.Time // zero until completed or failed
}

const exportColumns = `id, status, request, params, COALESCE(river_job, 0), transaction_time, checkpoint, exported,
	COALESCE(error, ''), created_at, updated_at, finished_at`

func scanExport(row pgx.Row) (ExportJob, error) {
	var j ExportJob
	var txTime, finished *time.Time
	err := row.Scan(&j.ID, &j.Status, &j.Request, &j.Params, &j.RiverJob, &txTime, &j.Checkpoint, &j.Exported,
		&j.Error, &j.CreatedAt, &j.UpdatedAt, &finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return j, ErrNotFound
	}
	if txTime != nil {
		j.TransactionTime = *txTime
	}
	if finished != nil {
		j.FinishedAt = *finished
	}
	return j, err
}

// ExportJob returns the export id, or ErrNotFound (never created, or
// cancelled: a cancelled export's row is deleted).
func (s *Store) ExportJob(ctx context.Context, id string) (ExportJob, error) {
	j, err := scanExport(s.pool.QueryRow(ctx, `SELECT `+exportColumns+` FROM bulk_exports WHERE id = $1`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return j, fmt.Errorf("store: export %s: %w", id, err)
	}
	return j, err
}

// insertExport adds the job's row inside tx, which also enqueues its River
// job, so an accepted export is never without a worker to run it.
func insertExport(ctx context.Context, tx pgx.Tx, j ExportJob) error {
	_, err := tx.Exec(ctx, `INSERT INTO bulk_exports (id, status, request, params) VALUES ($1, $2, $3, $4)`,
		j.ID, ExportAccepted, j.Request, j.Params)
	if err != nil {
		return fmt.Errorf("store: create export: %w", err)
	}
	return nil
}

// StartExport marks the export running and fixes its transaction time the
// first time a worker starts it; a resumed run keeps the first one. It
// returns the updated job, or ErrNotFound when the export was cancelled.
func (s *Store) StartExport(ctx context.Context, id string, txTime time.Time) (ExportJob, error) {
	j, err := scanExport(s.pool.QueryRow(ctx, `UPDATE bulk_exports
		SET status = $2, transaction_time = COALESCE(transaction_time, $3), updated_at = now()
		WHERE id = $1 AND status IN ('accepted', 'running')
		RETURNING `+exportColumns, id, ExportRunning, txTime))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return j, fmt.Errorf("store: start export %s: %w", id, err)
	}
	return j, err
}

// CheckpointExport records progress: files written up to a position the
// worker can resume from. ErrNotFound means the export was cancelled (or
// finished by another run) and the worker should stop.
func (s *Store) CheckpointExport(ctx context.Context, id string, exported int64, checkpoint []byte) error {
	return s.updateExport(ctx, "checkpoint", `UPDATE bulk_exports SET checkpoint = $2, exported = $3, updated_at = now()
		WHERE id = $1 AND status = 'running'`, id, checkpoint, exported)
}

// FinishExport marks the export completed with its final checkpoint.
func (s *Store) FinishExport(ctx context.Context, id string, exported int64, checkpoint []byte) error {
	return s.updateExport(ctx, "finish", `UPDATE bulk_exports SET status = 'completed', checkpoint = $2, exported = $3,
		updated_at = now(), finished_at = now() WHERE id = $1 AND status = 'running'`, id, checkpoint, exported)
}

// FailExport marks the export failed with a message for the status response.
func (s *Store) FailExport(ctx context.Context, id, message string) error {
	return s.updateExport(ctx, "fail", `UPDATE bulk_exports SET status = 'failed', error = $2, updated_at = now(),
		finished_at = now() WHERE id = $1 AND status IN ('accepted', 'running')`, id, message)
}

func (s *Store) updateExport(ctx context.Context, what, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("store: %s export %v: %w", what, args[0], err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// deleteExport removes the export's row and returns it (ErrNotFound if none).
func (s *Store) deleteExport(ctx context.Context, id string) (ExportJob, error) {
	j, err := scanExport(s.pool.QueryRow(ctx, `DELETE FROM bulk_exports WHERE id = $1 RETURNING `+exportColumns, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return j, fmt.Errorf("store: delete export %s: %w", id, err)
	}
	return j, err
}

// ExportSelection says which current resources an export contains.
type ExportSelection struct {
	// Types restricts the resource types; nil means every type.
	Types []string
	// Since, when set, keeps only resources last updated after it.
	Since time.Time
	// Filters are _typeFilter queries by type: a resource of a type listed
	// here must match one of them (they are ORed). Types without an entry
	// are unfiltered.
	Filters map[string][]*search.Query
	// PatientCompartment keeps only resources in a Patient compartment:
	// those of PatientIDs when it is not nil (a Group export), else of any
	// patient (a Patient-level export). Types must then be compartment
	// types (nil means all of them).
	PatientCompartment bool
	PatientIDs         []string
}

// ExportRow is one resource of an export.
type ExportRow struct {
	RID     int64
	Type    string
	Content []byte
}

// ExportReader streams an export's resources in rid order from one
// snapshot, through a server-side cursor: memory stays bounded by one fetch,
// and the planner picks a fast-start (rid index) plan instead of sorting
// the whole table.
type ExportReader struct {
	tx     pgx.Tx
	sel    ExportSelection
	txTime time.Time
	rows   []ExportRow
}

// exportAppName marks export snapshots in pg_stat_activity, so one long
// export does not hold back the transaction time of the next.
const exportAppName = "ember-export"

// OpenExport starts reading an export of sel: it takes a snapshot and a
// transaction-scoped advisory lock on key, so two workers never run one
// export at once (ErrBusy). The lock goes with the connection if the
// process dies, which lets a restarted worker take over at once. Scan then
// chooses where to start.
//
// TransactionTime is a bound every resource updated at or before it is
// visible to the snapshot: the snapshot's start, moved back to the start of
// the oldest write transaction still open, whose resources carry earlier
// timestamps but commit later. A client that asks next time with
// _since=transactionTime may then see some resources twice, never miss one.
func (s *Store) OpenExport(ctx context.Context, key string, sel ExportSelection) (*ExportReader, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("store: export: begin: %w", err)
	}
	fail := func(err error) (*ExportReader, error) {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL application_name = '"+exportAppName+"'"); err != nil {
		return fail(fmt.Errorf("store: export: %w", err))
	}
	var locked bool
	r := &ExportReader{tx: tx, sel: sel}
	err = tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)),
		LEAST(now(), COALESCE((SELECT min(xact_start) FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'client backend' AND xact_start IS NOT NULL
			  AND pid <> pg_backend_pid() AND application_name <> $2), now()))`,
		"ember.export:"+key, exportAppName).Scan(&locked, &r.txTime)
	if err != nil {
		return fail(fmt.Errorf("store: export: snapshot: %w", err))
	}
	if !locked {
		return fail(ErrBusy)
	}
	return r, nil
}

// Scan opens the cursor over the selected resources with rids after
// `after` (0 for all), in rid order.
func (r *ExportReader) Scan(ctx context.Context, after int64) error {
	where, args, err := exportWhere(r.sel, after)
	if err != nil {
		return err
	}
	sql := `DECLARE ember_export NO SCROLL CURSOR FOR
		SELECT r.rid, r.type, COALESCE(r.raw, r.content::text) FROM resources r WHERE ` + where + ` ORDER BY r.rid`
	if _, err := r.tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("store: export: declare cursor: %w", err)
	}
	return nil
}

// TransactionTime is the export's consistency bound (see OpenExport).
func (r *ExportReader) TransactionTime() time.Time { return r.txTime }

// Next returns up to n more rows; none at the end. The slice and its
// contents are reused by the next call.
func (r *ExportReader) Next(ctx context.Context, n int) ([]ExportRow, error) {
	rows, err := r.tx.Query(ctx, fmt.Sprintf("FETCH FORWARD %d FROM ember_export", n))
	if err != nil {
		return nil, fmt.Errorf("store: export: fetch: %w", err)
	}
	defer rows.Close()
	r.rows = r.rows[:0]
	for rows.Next() {
		var row ExportRow
		if err := rows.Scan(&row.RID, &row.Type, &row.Content); err != nil {
			return nil, fmt.Errorf("store: export: fetch: %w", err)
		}
		r.rows = append(r.rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: export: fetch: %w", err)
	}
	return r.rows, nil
}

// Close ends the snapshot and releases the lock.
func (r *ExportReader) Close(ctx context.Context) {
	_ = r.tx.Rollback(context.WithoutCancel(ctx)) // read-only: nothing to commit
}

// exportWhere builds the condition over resources r for sel.
func exportWhere(sel ExportSelection, after int64) (string, []any, error) {
	a := &sqlArgs{}
	conds := []string{"NOT r.deleted", "r.rid > " + a.add(after)}
	if !sel.Since.IsZero() {
		conds = append(conds, "r.last_updated > "+a.add(sel.Since))
	}
	types := sel.Types
	if sel.PatientCompartment && types == nil {
		types = spec.CompartmentTypes("Patient")
	}
	if types != nil {
		conds = append(conds, "r.type = ANY("+a.add(types)+")")
	}
	if sel.PatientCompartment {
		c, err := patientCompartment(a, types, sel.PatientIDs)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, c)
	}
	if len(sel.Filters) > 0 {
		var filtered []string
		var alts []string
		for typ, qs := range sel.Filters {
			filtered = append(filtered, typ)
			var ors []string
			for _, q := range qs {
				if q.Type != typ {
					return "", nil, fmt.Errorf("store: export: filter on %s listed under %s", q.Type, typ)
				}
				b := &queryBuilder{args: a, q: q}
				ors = append(ors, "("+b.where()+")")
			}
			alts = append(alts, "("+strings.Join(ors, " OR ")+")")
		}
		conds = append(conds, "(r.type <> ALL("+a.add(filtered)+") OR "+strings.Join(alts, " OR ")+")")
	}
	return strings.Join(conds, " AND "), a.list, nil
}

// patientCompartment is the condition "r is in a Patient compartment" (of
// one of ids, or of any patient when ids is nil) for resources of types.
// Search parameter ids are unique per type, so one EXISTS probe of r's
// reference rows covers every type's compartment parameters.
func patientCompartment(a *sqlArgs, types []string, ids []string) (string, error) {
	var params []int32
	own := false
	for _, t := range types {
		codes := spec.CompartmentParams("Patient", t)
		if codes == nil {
			return "", fmt.Errorf("store: export: %s is not in the Patient compartment", t)
		}
		for _, code := range codes {
			if code == "_id" || code == "{def}" {
				own = true
				continue
			}
			params = append(params, paramIDs(code, []string{t})...)
		}
	}
	var alts []string
	if own {
		if ids == nil {
			alts = append(alts, "r.type = 'Patient'")
		} else {
			alts = append(alts, "(r.type = 'Patient' AND r.id = ANY("+a.add(ids)+"))")
		}
	}
	if len(params) > 0 {
		ref := "EXISTS (SELECT 1 FROM idx_reference x WHERE x.rid = r.rid AND x.param = ANY(" + a.add(params) +
			") AND x.target_type = 'Patient'"
		if ids != nil {
			ref += " AND x.target_id = ANY(" + a.add(ids) + ")"
		}
		alts = append(alts, ref+")")
	}
	if len(alts) == 0 {
		return "false", nil
	}
	return "(" + strings.Join(alts, " OR ") + ")", nil
}

// ExportsFinishedBefore lists the exports (completed or failed) that
// finished before t, for the retention sweep.
func (s *Store) ExportsFinishedBefore(ctx context.Context, t time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM bulk_exports WHERE finished_at < $1 ORDER BY finished_at`, t)
	if err != nil {
		return nil, fmt.Errorf("store: expired exports: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: expired exports: %w", err)
	}
	return ids, nil
}
