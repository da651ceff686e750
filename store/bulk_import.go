package store

import (
	"context"
	"fmt"
)

// ResourceKey names a resource.
type ResourceKey struct{ Type, ID string }

// Existing returns which of keys have a row (current or deleted), in one
// query. A bulk loader uses it to send the resources that are new through
// CreateMany, pipelined, and only the rest through Update, which needs a
// round trip to lock each row first.
func (t *Tx) Existing(ctx context.Context, keys []ResourceKey) (map[ResourceKey]bool, error) {
	types := make([]string, len(keys))
	ids := make([]string, len(keys))
	for i, k := range keys {
		types[i], ids[i] = k.Type, k.ID
	}
	rows, err := t.tx.Query(ctx, `SELECT r.type, r.id FROM resources r
		JOIN unnest($1::text[], $2::text[]) AS k(type, id) ON r.type = k.type AND r.id = k.id`, types, ids)
	if err != nil {
		return nil, fmt.Errorf("store: existing: %w", err)
	}
	defer rows.Close()
	out := map[ResourceKey]bool{}
	for rows.Next() {
		var k ResourceKey
		if err := rows.Scan(&k.Type, &k.ID); err != nil {
			return nil, fmt.Errorf("store: existing: %w", err)
		}
		out[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: existing: %w", err)
	}
	return out, nil
}
