package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir"
)

// HistoryQuery selects versions for an instance (Type and ID), a type (Type)
// or the whole system (neither), newest first.
type HistoryQuery struct {
	Type, ID string
	// Since keeps versions written at or after it (zero: no bound).
	Since time.Time
	// AtStart/AtEnd keep versions that were current at some moment in
	// [AtStart, AtEnd) (the _at parameter at its precision; zero: no bound).
	AtStart, AtEnd time.Time
	Count          int
	// After continues a previous page: only versions strictly older than it.
	After *Cursor
}

// Cursor is a position in a history listing (keyset paging): it stays
// correct while others write, since new versions sort before it.
type Cursor struct {
	LastUpdated time.Time
	RID         int64
	Version     int64
}

// String encodes the cursor for a paging link.
func (c Cursor) String() string {
	return strconv.FormatInt(c.LastUpdated.UnixMicro(), 10) + "-" + strconv.FormatInt(c.RID, 10) + "-" + strconv.FormatInt(c.Version, 10)
}

// ParseCursor decodes Cursor.String's output.
func ParseCursor(s string) (Cursor, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return Cursor{}, fmt.Errorf("malformed paging cursor %q", s)
	}
	var n [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return Cursor{}, fmt.Errorf("malformed paging cursor %q", s)
		}
		n[i] = v
	}
	return Cursor{LastUpdated: time.UnixMicro(n[0]).UTC(), RID: n[1], Version: n[2]}, nil
}

// HistoryPage is one page of versions, and the cursor for the next page
// (nil when this is the last).
type HistoryPage struct {
	Versions []Version
	Next     *Cursor
}

// History lists versions matching q, newest first. An instance that never
// existed gives ErrNotFound.
func (s *Store) History(ctx context.Context, q HistoryQuery) (HistoryPage, error) {
	if s.replica != nil {
		return viaReplica(ctx, s, func(db querier) (HistoryPage, error) { return history(ctx, db, q) })
	}
	return history(ctx, s.pool, q)
}

func history(ctx context.Context, db querier, q HistoryQuery) (HistoryPage, error) {
	var page HistoryPage
	if q.Count <= 0 {
		q.Count = 20
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch {
	case q.ID != "":
		// Instance history: both tables are reached through rid's primary keys.
		where = append(where, fmt.Sprintf("rid = (SELECT rid FROM resources WHERE type = %s AND id = %s)", arg(q.Type), arg(q.ID)))
	case q.Type != "":
		where = append(where, "type = "+arg(q.Type))
	}
	if !q.Since.IsZero() {
		where = append(where, "last_updated >= "+arg(q.Since))
	}
	if q.After != nil {
		where = append(where, fmt.Sprintf("(last_updated, rid, version) < (%s, %s, %s)",
			arg(q.After.LastUpdated), arg(q.After.RID), arg(q.After.Version)))
	}
	if !q.AtEnd.IsZero() {
		where = append(where, "last_updated < "+arg(q.AtEnd))
	}
	cond := "true"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	limit := arg(q.Count + 1)
	// Each table contributes at most limit rows in index order; the outer
	// sort merges them.
	sql := `
		SELECT rid, type, id, version, last_updated, method, deleted, COALESCE(raw, content::text) FROM (
			(SELECT rid, type, id, version, last_updated, method, deleted, content, raw FROM resources
			  WHERE ` + cond + ` ORDER BY last_updated DESC, rid DESC, version DESC LIMIT ` + limit + `)
			UNION ALL
			(SELECT rid, type, id, version, last_updated, method, deleted, content, raw FROM resource_history
			  WHERE ` + cond + ` ORDER BY last_updated DESC, rid DESC, version DESC LIMIT ` + limit + `)
		) h`
	if !q.AtStart.IsZero() {
		// The version must still have been current at AtStart: no later
		// version of the same resource was written at or before it.
		start := arg(q.AtStart)
		sql += ` WHERE NOT EXISTS (
			SELECT 1 FROM resources n WHERE n.rid = h.rid AND n.version > h.version AND n.last_updated <= ` + start + `
			UNION ALL
			SELECT 1 FROM resource_history n WHERE n.rid = h.rid AND n.version > h.version AND n.last_updated <= ` + start + `)`
	}
	sql += ` ORDER BY last_updated DESC, rid DESC, version DESC LIMIT ` + limit
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return page, fmt.Errorf("store: history: %w", err)
	}
	defer rows.Close()
	var last Cursor
	seen := 0 // rows consumed, hidden ones included
	for rows.Next() {
		var v Version
		var rid int64
		if err := rows.Scan(&rid, &v.Type, &v.ID, &v.VersionID, &v.LastUpdated, &v.Method, &v.Deleted, &v.Content); err != nil {
			return page, fmt.Errorf("store: history: %w", err)
		}
		if seen == q.Count {
			page.Next = &last
			break
		}
		seen++
		last = Cursor{LastUpdated: v.LastUpdated, RID: rid, Version: v.VersionID}
		if g := guardOf(ctx); g != nil {
			var content []byte
			if !v.Deleted {
				content = v.Content
			}
			ok, err := g.Visible(ctx, v.Type, v.ID, content)
			var refused *fhir.Error
			if err != nil && !errors.As(err, &refused) {
				return page, err
			}
			if !ok {
				// A hidden version still counts toward the page (the
				// cursor moves past it), so pages may come back short.
				continue
			}
		}
		page.Versions = append(page.Versions, v)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("store: history: %w", err)
	}
	if q.ID != "" && len(page.Versions) == 0 && q.After == nil {
		var exists bool
		err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM resources WHERE type = $1 AND id = $2)`, q.Type, q.ID).Scan(&exists)
		if err != nil {
			return page, fmt.Errorf("store: history: %w", err)
		}
		if !exists {
			return page, ErrNotFound
		}
	}
	return page, nil
}
