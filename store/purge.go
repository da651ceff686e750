package store

import (
	"context"
	"fmt"
	"slices"
)

// Purge removes resources of typ by id for good: every version, the
// current row and their index rows. It is not a FHIR delete (which keeps
// history): it serves retention, which must forget (the audit trail's events
// past --audit-retention).
func (t *Tx) Purge(ctx context.Context, typ string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var rids []int64
	rows, err := t.tx.Query(ctx, `SELECT rid FROM resources WHERE type = $1 AND id = ANY($2)`, typ, ids)
	if err != nil {
		return fmt.Errorf("store: purge %s: %w", typ, err)
	}
	for rows.Next() {
		var rid int64
		if err := rows.Scan(&rid); err != nil {
			rows.Close()
			return fmt.Errorf("store: purge %s: %w", typ, err)
		}
		rids = append(rids, rid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: purge %s: %w", typ, err)
	}
	if len(rids) == 0 {
		return nil
	}
	for _, tbl := range slices.Concat(indexTables, []string{"resource_history", "resources"}) {
		if _, err := t.tx.Exec(ctx, `DELETE FROM `+tbl+` WHERE rid = ANY($1)`, rids); err != nil {
			return fmt.Errorf("store: purge %s from %s: %w", typ, tbl, err)
		}
	}
	return nil
}
