package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir/index"
)

// reindexBatch is how many resources one reindex transaction rewrites.
const reindexBatch = 500

// Reindex recomputes every current resource's search index rows, in
// batches of committed transactions, calling progress after each. Writes may
// continue meanwhile: each batch rewrites rows from the content it read under
// row locks, so a concurrent update is never overwritten with stale values.
func (s *Store) Reindex(ctx context.Context, progress func(done int)) (int, error) {
	var last int64
	done := 0
	for {
		n, next, err := s.reindexBatch(ctx, last)
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, nil
		}
		done += n
		last = next
		if progress != nil {
			progress(done)
		}
	}
}

func (s *Store) reindexBatch(ctx context.Context, after int64) (n int, last int64, err error) {
	err = s.InTx(ctx, func(t *Tx) error {
		rows, err := t.tx.Query(ctx, `SELECT rid, type, COALESCE(raw, content::text) FROM resources
			WHERE rid > $1 AND NOT deleted ORDER BY rid LIMIT $2 FOR UPDATE`, after, reindexBatch)
		if err != nil {
			return fmt.Errorf("store: reindex: %w", err)
		}
		type doc struct {
			rid     int64
			typ     string
			content []byte
		}
		var docs []doc
		for rows.Next() {
			var d doc
			if err := rows.Scan(&d.rid, &d.typ, &d.content); err != nil {
				rows.Close()
				return fmt.Errorf("store: reindex: %w", err)
			}
			docs = append(docs, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: reindex: %w", err)
		}
		batch := &pgx.Batch{}
		for _, d := range docs {
			e, err := index.Extract(d.typ, d.content)
			if err != nil {
				return fmt.Errorf("store: reindex rid %d: %w", d.rid, err)
			}
			a := &sqlArgs{}
			sql := "WITH r AS (SELECT " + a.add(d.rid) + "::bigint AS rid)"
			for _, c := range indexCTEs(a, e, true) {
				sql += ", " + c
			}
			batch.Queue(sql+" SELECT 1", a.list...)
		}
		if err := t.tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("store: reindex: %w", err)
		}
		n = len(docs)
		if n > 0 {
			last = docs[n-1].rid
		}
		return nil
	})
	return n, last, err
}
