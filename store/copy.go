package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/emberfhir/ember/fhir/index"
)

// CopyCreate creates resources under assigned ids like CreateMany, with the
// same stamping, guard checks and index rows, but loads the rows with COPY:
// one round trip per table instead of a statement (and its plan) per
// resource, which is what bulk import needs. An id that exists already
// fails the whole call with ErrExists (COPY has no ON CONFLICT), so callers
// send only ids they have just seen absent (Existing) and fall back to
// Update when another writer got there first.
func (t *Tx) CopyCreate(ctx context.Context, items []NewResource) ([]Version, error) {
	if len(items) == 0 {
		return nil, nil
	}
	versions := make([]Version, len(items))
	entries := make([]*index.Entries, len(items))
	for i, it := range items {
		v, err := t.firstVersion(ctx, i, it)
		if err != nil {
			return nil, err
		}
		e, err := index.Extract(v.Type, v.Content)
		if err != nil {
			return nil, &ItemError{Index: i, Err: fmt.Errorf("store: index %s/%s: %w", v.Type, v.ID, err)}
		}
		versions[i], entries[i] = v, e
	}
	rids, err := t.reserveRIDs(ctx, len(items))
	if err != nil {
		return nil, err
	}
	rows := make([][]any, len(items))
	for i, v := range versions {
		rows[i] = []any{rids[i], v.Type, v.ID, v.VersionID, v.LastUpdated, byte(v.Method), false, v.Content, verbatim(items[i].Res, v.Content)}
	}
	_, err = t.tx.CopyFrom(ctx, pgx.Identifier{"resources"},
		[]string{"rid", "type", "id", "version", "last_updated", "method", "deleted", "content", "raw"}, pgx.CopyFromRows(rows))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return nil, fmt.Errorf("store: copy resources: %w", ErrExists)
		}
		return nil, fmt.Errorf("store: copy resources: %w", err)
	}
	if err := t.copyIndexRows(ctx, rids, entries); err != nil {
		return nil, err
	}
	if _, err := t.tx.Exec(ctx, logChangesSQL, changeArgs(rids, versions)...); err != nil {
		return nil, fmt.Errorf("store: change log: %w", err)
	}
	return versions, nil
}

// logChangesSQL appends many versions to the change log in one statement
// (the bulk paths' counterpart of the ch CTE in insertStatement and replace).
const logChangesSQL = `INSERT INTO resource_changes (rid, type, id, version, method, at)
	SELECT rid, type, id, version, method::"char", at
	  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) AS u(rid, type, id, version, method, at)`

// changeArgs are logChangesSQL's arguments for versions[i] of rids[i].
func changeArgs(rids []int64, versions []Version) []any {
	types, ids := make([]string, len(versions)), make([]string, len(versions))
	vers, methods, ats := make([]int64, len(versions)), make([]string, len(versions)), make([]time.Time, len(versions))
	for i, v := range versions {
		types[i], ids[i], vers[i], methods[i], ats[i] = v.Type, v.ID, v.VersionID, string(rune(v.Method)), v.LastUpdated
	}
	return []any{rids, types, ids, vers, methods, ats}
}

// copyIndexRows loads the index rows of resources rids[i] (entries[i]),
// one COPY per table that has any.
func (t *Tx) copyIndexRows(ctx context.Context, rids []int64, entries []*index.Entries) error {
	ir, err := indexRows(rids, entries)
	if err != nil {
		return err
	}
	for _, tbl := range ir.tables() {
		if len(tbl.rows) == 0 {
			continue
		}
		if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{tbl.name}, tbl.cols, pgx.CopyFromRows(tbl.rows)); err != nil {
			return fmt.Errorf("store: copy %s: %w", tbl.name, err)
		}
	}
	return nil
}

// reserveRIDs draws n values from the resources.rid identity sequence, so
// index rows can name their resource before it is copied. COPY writes
// given values into a GENERATED ALWAYS column (it acts as OVERRIDING
// SYSTEM VALUE), and the sequence guarantees no other writer gets them.
func (t *Tx) reserveRIDs(ctx context.Context, n int) ([]int64, error) {
	rows, err := t.tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('resources', 'rid')) FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, fmt.Errorf("store: reserve ids: %w", err)
	}
	rids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("store: reserve ids: %w", err)
	}
	return rids, nil
}

// copyTable is one index table's rows for COPY, in the column order of
// cols. The values follow indexCTEs: "" becomes NULL where that statement
// has NULLIF, so both paths store identical rows.
type copyTable struct {
	name string
	cols []string
	rows [][]any
}

type indexCopy struct {
	strings, tokens, refs, dates, numbers, quantities, uris, composites copyTable
}

func (c *indexCopy) tables() []*copyTable {
	return []*copyTable{&c.strings, &c.tokens, &c.refs, &c.dates, &c.numbers, &c.quantities, &c.uris, &c.composites}
}

// indexRows lays out the index rows of resources rids[i] with entries[i].
func indexRows(rids []int64, entries []*index.Entries) (*indexCopy, error) {
	c := &indexCopy{
		strings:    copyTable{name: "idx_string", cols: []string{"rid", "param", "norm", "exact"}},
		tokens:     copyTable{name: "idx_token", cols: []string{"rid", "param", "system", "code", "text", "type_system", "type_code"}},
		refs:       copyTable{name: "idx_reference", cols: []string{"rid", "param", "target_type", "target_id", "url"}},
		dates:      copyTable{name: "idx_date", cols: []string{"rid", "param", "lo", "hi"}},
		numbers:    copyTable{name: "idx_number", cols: []string{"rid", "param", "value"}},
		quantities: copyTable{name: "idx_quantity", cols: []string{"rid", "param", "lo", "hi", "system", "code", "unit"}},
		uris:       copyTable{name: "idx_uri", cols: []string{"rid", "param", "value"}},
		composites: copyTable{name: "idx_composite", cols: []string{"rid", "param", "a_system", "a_code", "b_system", "b_code", "b_lo", "b_hi", "b_date_lo", "b_date_hi", "b_string"}},
	}
	for i, e := range entries {
		rid := rids[i]
		for _, s := range e.Strings {
			c.strings.rows = append(c.strings.rows, []any{rid, s.Param, s.Norm, s.Exact})
		}
		for _, x := range distinct(e.Tokens) {
			c.tokens.rows = append(c.tokens.rows, []any{rid, x.Param, null(x.System), null(x.Code), null(x.Text), null(x.TypeSystem), null(x.TypeCode)})
		}
		for _, r := range distinct(e.References) {
			c.refs.rows = append(c.refs.rows, []any{rid, r.Param, null(r.Type), null(r.ID), null(r.URL)})
		}
		for _, d := range e.Dates {
			c.dates.rows = append(c.dates.rows, []any{rid, d.Param, d.Lo, d.Hi})
		}
		for _, n := range e.Numbers {
			v, err := numeric(n.Value)
			if err != nil || !v.Valid {
				return nil, fmt.Errorf("store: number index value %q: %w", n.Value, errOr(err))
			}
			c.numbers.rows = append(c.numbers.rows, []any{rid, n.Param, v})
		}
		for _, q := range e.Quantities {
			lo, hi, err := numericRange(q.Lo, q.Hi)
			if err != nil {
				return nil, fmt.Errorf("store: quantity index value: %w", err)
			}
			c.quantities.rows = append(c.quantities.rows, []any{rid, q.Param, lo, hi, null(q.System), null(q.Code), null(q.Unit)})
		}
		for _, u := range e.URIs {
			c.uris.rows = append(c.uris.rows, []any{rid, u.Param, u.Value})
		}
		for _, x := range e.Composites {
			lo, hi, err := numericRange(x.BLo, x.BHi)
			if err != nil {
				return nil, fmt.Errorf("store: composite index value: %w", err)
			}
			var dlo, dhi any
			if !x.BDateLo.IsZero() {
				dlo, dhi = x.BDateLo, x.BDateHi
			}
			c.composites.rows = append(c.composites.rows, []any{rid, x.Param, null(x.ASystem), x.ACode, null(x.BSystem), null(x.BCode), lo, hi, dlo, dhi, null(x.BString)})
		}
	}
	return c, nil
}

func errOr(err error) error {
	if err != nil {
		return err
	}
	return errors.New("empty")
}

// null is s, or SQL NULL for an empty s, as NULLIF does in indexCTEs.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// numericRange converts both ends of a range (see numeric).
func numericRange(lo, hi string) (pgtype.Numeric, pgtype.Numeric, error) {
	l, err := numeric(lo)
	if err != nil {
		return l, l, fmt.Errorf("%q: %w", lo, err)
	}
	h, err := numeric(hi)
	if err != nil {
		return l, h, fmt.Errorf("%q: %w", hi, err)
	}
	return l, h, nil
}

// numeric converts a FHIR decimal's text (exponent allowed, as in
// "1.5e-3") to a numeric value; "" is NULL. pgtype's own string parsing
// takes no exponent.
func numeric(s string) (pgtype.Numeric, error) {
	if s == "" {
		return pgtype.Numeric{}, nil
	}
	mant, exp10 := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		var ok bool
		if exp10, ok = parseExp(s[i+1:]); !ok {
			return pgtype.Numeric{}, fmt.Errorf("not a decimal")
		}
	}
	digits := mant
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		digits = mant[:i] + mant[i+1:]
		exp10 -= int64(len(mant) - i - 1)
	}
	if digits == "" || digits == "-" || digits == "+" {
		return pgtype.Numeric{}, fmt.Errorf("not a decimal")
	}
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok || exp10 < -16383 || exp10 > 131072 {
		return pgtype.Numeric{}, fmt.Errorf("not a decimal")
	}
	return pgtype.Numeric{Int: n, Exp: int32(exp10), Valid: true}, nil
}

func parseExp(s string) (int64, bool) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	if s == "" || len(s) > 6 {
		return 0, false
	}
	var v int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// UpdateMany stores new current versions of resources that exist (as
// Existing reported), like Update with no If-Match for each, in a fixed
// number of round trips: lock and read the current rows, move them to
// history, rewrite them, and replace their index rows (COPY). Keys must be
// distinct and stored (a deleted resource's tombstone counts: it is
// re-created, as Update does); a key with no row fails the call with
// ErrNotFound. created[i] reports a resource re-created after a delete,
// as Update's second result does.
func (t *Tx) UpdateMany(ctx context.Context, items []NewResource) (versions []Version, created []bool, err error) {
	if len(items) == 0 {
		return nil, nil, nil
	}
	if guardOf(ctx) != nil {
		for i, it := range items {
			// As Update: the guard sees the new content as it will be stored.
			if err := t.checkWrite(ctx, OpUpdate, it.Res.Type(), it.ID, it.Res.Stamp(it.ID, 0, time.Time{})); err != nil {
				return nil, nil, &ItemError{Index: i, Err: err}
			}
		}
	}
	types, ids := make([]string, len(items)), make([]string, len(items))
	for i, it := range items {
		types[i], ids[i] = it.Res.Type(), it.ID
	}
	rows, err := t.tx.Query(ctx, `SELECT k.i, r.rid, r.version, r.last_updated, r.deleted FROM resources r
		JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(type, id, i) ON r.type = k.type AND r.id = k.id
		ORDER BY r.rid FOR UPDATE OF r`, types, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("store: lock for update: %w", err)
	}
	cur := make([]current, len(items))
	found := 0
	for rows.Next() {
		var i int64
		var c current
		if err := rows.Scan(&i, &c.rid, &c.version, &c.lastUpdated, &c.deleted); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("store: lock for update: %w", err)
		}
		cur[i-1] = c
		found++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: lock for update: %w", err)
	}
	if found != len(items) {
		return nil, nil, fmt.Errorf("store: update many: %w", ErrNotFound)
	}
	versions = make([]Version, len(items))
	created = make([]bool, len(items))
	entries := make([]*index.Entries, len(items))
	rids := make([]int64, len(items))
	vers := make([]int64, len(items))
	stamps := make([]time.Time, len(items))
	contents := make([]string, len(items))
	raws := make([]*string, len(items))
	for i, it := range items {
		c := cur[i]
		v := Version{Type: types[i], ID: ids[i], VersionID: c.version + 1, LastUpdated: t.s.clock(c.lastUpdated), Method: MethodUpdate}
		v.Content = it.Res.Stamp(v.ID, v.VersionID, v.LastUpdated)
		e, err := index.Extract(v.Type, v.Content)
		if err != nil {
			return nil, nil, &ItemError{Index: i, Err: fmt.Errorf("store: index %s/%s: %w", v.Type, v.ID, err)}
		}
		versions[i], entries[i], created[i] = v, e, c.deleted
		rids[i], vers[i], stamps[i], contents[i], raws[i] = c.rid, v.VersionID, v.LastUpdated, string(v.Content), verbatim(it.Res, v.Content)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO resource_history (rid, version, type, id, last_updated, method, deleted, content, raw)
		SELECT rid, version, type, id, last_updated, method, deleted, content, raw FROM resources WHERE rid = ANY($1)`, rids)
	b.Queue(`UPDATE resources r SET version = u.version, last_updated = u.last_updated, method = $6, deleted = false,
			content = u.content::jsonb, raw = u.raw
		FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[]) AS u(rid, version, last_updated, content, raw)
		WHERE r.rid = u.rid`, rids, vers, stamps, contents, raws, byte(MethodUpdate))
	for _, tbl := range indexTables {
		b.Queue(`DELETE FROM `+tbl+` WHERE rid = ANY($1)`, rids)
	}
	b.Queue(logChangesSQL, changeArgs(rids, versions)...)
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("store: update many: %w", err)
	}
	if err := t.copyIndexRows(ctx, rids, entries); err != nil {
		return nil, nil, err
	}
	return versions, created, nil
}
