package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
)

// sortKey is one ORDER BY key: an SQL expression over r and its direction.
type sortKey struct {
	expr string
	desc bool
	kind string // "time", "text", "numeric": how cursor values are typed
}

// sortKeys builds the _sort keys. A parameter's sort value is the least
// (ascending) or greatest (descending) of the resource's index values;
// resources without one sort last either way. rid is always the final,
// unique tie-break, which makes the order total and the cursor exact.
func (b *queryBuilder) sortKeys() []sortKey {
	var keys []sortKey
	for _, k := range b.q.Sort {
		sp := k.SP
		agg := "min"
		if k.Desc {
			agg = "max"
		}
		var expr, kind string
		switch {
		case sp.Column == "id":
			expr, kind = "r.id", "text"
		case sp.Column == "last_updated":
			expr, kind = "r.last_updated", "time"
		default:
			col, tbl := "", table(sp.Type)
			switch sp.Type {
			case spec.Date:
				col, kind = "lo", "time"
			case spec.String:
				col, kind = "norm", "text"
			case spec.Token:
				col, kind = "code", "text"
			case spec.Reference:
				col, kind = "target_id", "text"
			case spec.Number:
				col, kind = "value", "numeric"
			case spec.Quantity:
				col, kind = "lo", "numeric"
			case spec.URI:
				col, kind = "value", "text"
			}
			prm := &search.Param{SP: sp, Type: b.q.Type}
			if b.q.Type == "" {
				prm.Type = "Resource"
			}
			expr = "(SELECT " + agg + "(" + col + ") FROM " + tbl + " x WHERE x.rid = r.rid AND x.param = ANY(" + b.idsArg(prm, b.types()) + "))"
		}
		if kind == "numeric" {
			expr += "::text" // compared as numbers below, carried as exact text
		}
		keys = append(keys, sortKey{expr: expr, desc: k.Desc, kind: kind})
	}
	return keys
}

func orderBy(keys []sortKey, backward bool) string {
	var parts []string
	for i, k := range keys {
		desc := k.desc != backward
		col := "k" + strconv.Itoa(i)
		if k.kind == "numeric" {
			col += "::numeric"
		}
		if desc {
			parts = append(parts, col+" DESC NULLS "+map[bool]string{false: "LAST", true: "FIRST"}[backward])
		} else {
			parts = append(parts, col+" ASC NULLS "+map[bool]string{false: "LAST", true: "FIRST"}[backward])
		}
	}
	if backward {
		parts = append(parts, "rid DESC")
	} else {
		parts = append(parts, "rid ASC")
	}
	return strings.Join(parts, ", ")
}

// cursor is a position in a result order: the sort key values and rid of
// the row it stands after (or before, for a previous link).
type cursor struct {
	Prev bool
	Keys []*string // nil for a missing (NULL) key
	RID  int64
}

func encodeCursor(prev bool, keys []any, rid int64) string {
	c := struct {
		P bool      `json:"p,omitempty"`
		K []*string `json:"k"`
		R int64     `json:"r"`
	}{P: prev, R: rid}
	for _, k := range keys {
		c.K = append(c.K, keyString(k))
	}
	b, _ := json.Marshal(c) // strings and ints only
	return base64.RawURLEncoding.EncodeToString(b)
}

func keyString(k any) *string {
	var s string
	switch v := k.(type) {
	case nil:
		return nil
	case time.Time:
		s = v.UTC().Format(time.RFC3339Nano)
	case string:
		s = v
	default:
		s = fmt.Sprint(v)
	}
	return &s
}

func decodeCursor(s string, nkeys int) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, ErrBadCursor
	}
	var c struct {
		P bool      `json:"p"`
		K []*string `json:"k"`
		R int64     `json:"r"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || len(c.K) != nkeys || c.R <= 0 {
		return nil, ErrBadCursor
	}
	return &cursor{Prev: c.P, Keys: c.K, RID: c.R}, nil
}

// after is the keyset condition for rows strictly after (or, backward,
// before) the cursor in the order keys define, with NULL keys last.
func (b *queryBuilder) after(keys []sortKey, c *cursor, backward bool) string {
	var rec func(i int) string
	rec = func(i int) string {
		if i == len(keys) {
			if backward {
				return "rid < " + b.arg(c.RID)
			}
			return "rid > " + b.arg(c.RID)
		}
		k, col := keys[i], "k"+strconv.Itoa(i)
		v := c.Keys[i]
		if v == nil {
			if backward {
				// Before a NULL: any non-NULL key, or NULL and earlier.
				return "(" + col + " IS NOT NULL OR (" + col + " IS NULL AND " + rec(i+1) + "))"
			}
			return "(" + col + " IS NULL AND " + rec(i+1) + ")"
		}
		val := b.typedArg(k.kind, *v)
		cmpCol := col
		if k.kind == "numeric" {
			cmpCol += "::numeric"
		}
		op := ">"
		if k.desc != backward {
			op = "<"
		}
		nulls := " OR " + col + " IS NULL"
		if backward {
			nulls = ""
		}
		return "(" + cmpCol + " " + op + " " + val + nulls + " OR (" + cmpCol + " = " + val + " AND " + rec(i+1) + "))"
	}
	return rec(0)
}

func (b *queryBuilder) typedArg(kind, v string) string {
	switch kind {
	case "time":
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return "NULL"
		}
		return b.arg(t)
	case "numeric":
		if _, ok := new(big.Rat).SetString(v); !ok {
			return "NULL"
		}
		return b.arg(v) + "::numeric"
	}
	return b.arg(v)
}

// includes resolves _include and _revinclude for a page of matches.
func includes(ctx context.Context, db querier, q *search.Query, matches []Match) ([]Match, string, error) {
	seen := map[int64]bool{}
	for _, m := range matches {
		seen[m.RID] = true
	}
	var out []Match
	cut := ""
	frontier := matches
	round := 0
	for ; round < maxIterate+1 && len(frontier) > 0 && len(out) < maxIncluded; round++ {
		var next []Match
		for _, inc := range q.Includes {
			if round > 0 && !inc.Iterate {
				continue
			}
			got, full, err := include(ctx, db, inc, frontier, false)
			if err != nil {
				return nil, "", err
			}
			if full {
				cut = fmt.Sprintf("_include=%s matched more than %d resources; the first %d by storage order are included", inc.Raw, maxIncluded, maxIncluded)
			}
			next = append(next, got...)
		}
		for _, inc := range q.RevIncludes {
			if round > 0 && !inc.Iterate {
				continue
			}
			got, full, err := include(ctx, db, inc, frontier, true)
			if err != nil {
				return nil, "", err
			}
			if full {
				cut = fmt.Sprintf("_revinclude=%s matched more than %d resources; the first %d by storage order are included", inc.Raw, maxIncluded, maxIncluded)
			}
			next = append(next, got...)
		}
		frontier = nil
		for _, m := range next {
			if seen[m.RID] {
				continue
			}
			if g := guardOf(ctx); g != nil {
				// What the grant hides is neither returned nor followed.
				ok, err := g.Visible(ctx, m.Type, m.ID, m.Content)
				var refused *fhir.Error
				if err != nil && !errors.As(err, &refused) {
					return nil, "", err
				}
				if !ok {
					seen[m.RID] = true
					continue
				}
			}
			if len(out) >= maxIncluded {
				cut = fmt.Sprintf("more than %d resources are included; the first %d are returned", maxIncluded, maxIncluded)
				break
			}
			seen[m.RID] = true
			out = append(out, m)
			frontier = append(frontier, m)
		}
	}
	if cut == "" && round == maxIterate+1 && len(frontier) > 0 && iterates(q) {
		cut = fmt.Sprintf(":iterate stopped after %d rounds; resources further along the references are not included", maxIterate)
	}
	return out, cut, nil
}

func iterates(q *search.Query) bool {
	for _, inc := range append(append([]search.Include(nil), q.Includes...), q.RevIncludes...) {
		if inc.Iterate {
			return true
		}
	}
	return false
}

// include fetches what one _include (forward) or _revinclude (rev) adds for
// the given resources.
// full is true when the query hit maxIncluded (more may exist); rows come in
// rid order, so the same request includes the same resources.
func include(ctx context.Context, db querier, inc search.Include, from []Match, rev bool) (out []Match, full bool, err error) {
	var rids []int64
	var types, ids []string
	for _, m := range from {
		if m.Type == inc.Type || rev {
			rids = append(rids, m.RID)
			types = append(types, m.Type)
			ids = append(ids, m.ID)
		}
	}
	if len(rids) == 0 {
		return nil, false, nil
	}
	var params []int32
	if inc.SP != nil {
		params = []int32{inc.SP.ID}
	} else {
		for _, sp := range spec.SearchParams(inc.Type) {
			if sp.Type == spec.Reference {
				params = append(params, sp.ID)
			}
		}
	}
	a := &sqlArgs{}
	var sql string
	if !rev {
		sql = `SELECT DISTINCT t.rid, t.type, t.id, t.version, t.last_updated, COALESCE(t.raw, t.content::text)
			FROM idx_reference x JOIN resources t ON t.type = x.target_type AND t.id = x.target_id
			WHERE x.rid = ANY(` + a.add(rids) + `) AND x.param = ANY(` + a.add(params) + `) AND NOT t.deleted`
		if inc.Target != "" {
			sql += " AND t.type = " + a.add(inc.Target)
		}
	} else {
		sql = `SELECT DISTINCT t.rid, t.type, t.id, t.version, t.last_updated, COALESCE(t.raw, t.content::text)
			FROM unnest(` + a.add(types) + `::text[], ` + a.add(ids) + `::text[]) AS f(type, id)
			JOIN idx_reference x ON x.target_type = f.type AND x.target_id = f.id
			JOIN resources t ON t.rid = x.rid
			WHERE x.param = ANY(` + a.add(params) + `) AND t.type = ` + a.add(inc.Type) + ` AND NOT t.deleted`
	}
	sql += " ORDER BY t.rid LIMIT " + strconv.Itoa(maxIncluded+1)
	rows, err := db.Query(ctx, sql, a.list...)
	if err != nil {
		return nil, false, fmt.Errorf("store: include %s: %w", inc.Raw, err)
	}
	defer rows.Close()
	for rows.Next() {
		var m Match
		if err := rows.Scan(&m.RID, &m.Type, &m.ID, &m.VersionID, &m.LastUpdated, &m.Content); err != nil {
			return nil, false, fmt.Errorf("store: include %s: %w", inc.Raw, err)
		}
		out = append(out, m)
	}
	if len(out) > maxIncluded {
		out, full = out[:maxIncluded], true
	}
	return out, full, rows.Err()
}
