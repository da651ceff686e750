package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
)

// ErrBadCursor: a paging link that does not belong to this search, or that
// is malformed; the caller answers 400 rather than returning wrong data.
var ErrBadCursor = errors.New("store: invalid or expired paging cursor")

// Match is one resource in a search result.
type Match struct {
	RID         int64
	Type, ID    string
	VersionID   int64
	LastUpdated time.Time
	Content     []byte
}

// SearchResult is one page of a search.
type SearchResult struct {
	Matches  []Match
	Included []Match
	// Next and Prev are cursors for the neighbouring pages ("" when none).
	Next, Prev string
	// Total is the number of matches, or -1 when not computed.
	Total int
	// IncludesCut says why Included is incomplete ("" when it is not):
	// _include and _revinclude add at most maxIncluded resources a page
	// and follow :iterate maxIterate rounds.
	IncludesCut string
}

// maxIncluded bounds the resources added by _include/_revinclude per page.
const maxIncluded = 1000

// maxIterate bounds :iterate rounds.
const maxIterate = 4

// querier is what a search needs of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Search runs q and returns one page.
func (s *Store) Search(ctx context.Context, q *search.Query) (*SearchResult, error) {
	if s.replica != nil {
		// Confined once: a retry on the primary must not narrow q again.
		if err := confine(ctx, q); err != nil {
			return nil, err
		}
		return viaReplica(ctx, s, func(db querier) (*SearchResult, error) { return s.searchConfined(ctx, db, q) })
	}
	return s.search(ctx, s.pool, q)
}

// Search runs q inside the transaction, e.g. to find what a conditional
// create or update applies to.
func (t *Tx) Search(ctx context.Context, q *search.Query) (*SearchResult, error) {
	return t.s.search(ctx, t.tx, q)
}

// Lock takes a transaction-scoped advisory lock on key, serialising
// conditional writes that test the same condition.
func (t *Tx) Lock(ctx context.Context, key string) error {
	if _, err := t.tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key); err != nil {
		return fmt.Errorf("store: lock: %w", err)
	}
	return nil
}

func (s *Store) search(ctx context.Context, db querier, q *search.Query) (*SearchResult, error) {
	if err := confine(ctx, q); err != nil {
		return nil, err
	}
	return s.searchConfined(ctx, db, q)
}

// confine applies ctx's guard to q.
func confine(ctx context.Context, q *search.Query) error {
	if g := guardOf(ctx); g != nil {
		return g.Confine(ctx, q)
	}
	return nil
}

func (s *Store) searchConfined(ctx context.Context, db querier, q *search.Query) (*SearchResult, error) {
	b := &queryBuilder{args: &sqlArgs{}, q: q}
	where := b.where()
	// The count and estimate queries take the WHERE clause's arguments only;
	// sort keys and the cursor append more below.
	whereArgs := append([]any(nil), b.args.list...)
	res := &SearchResult{Total: -1}

	if q.Summary == "count" || q.Count == 0 {
		n, err := count(ctx, db, where, whereArgs)
		if err != nil {
			return nil, err
		}
		res.Total = n
		return res, nil
	}

	keys := b.sortKeys()
	cur, err := decodeCursor(q.Cursor, len(keys))
	if err != nil {
		return nil, err
	}
	backward := cur != nil && cur.Prev
	// Choose the page's rids first and fetch documents for those alone:
	// serialising every match's JSON before the LIMIT cost up to 2x.
	pb, page := b, ""
	if len(keys) == 0 {
		pb, page = b.drivingPage(cur, backward)
	}
	if page == "" {
		var p strings.Builder
		p.WriteString("SELECT rid")
		for i := range keys {
			fmt.Fprintf(&p, ", k%d", i)
		}
		p.WriteString(" FROM (SELECT r.rid")
		for i, k := range keys {
			fmt.Fprintf(&p, ", %s AS k%d", k.expr, i)
		}
		p.WriteString(" FROM resources r WHERE " + where + ") s")
		if cur != nil {
			p.WriteString(" WHERE " + b.after(keys, cur, backward))
		}
		p.WriteString(" ORDER BY " + orderBy(keys, backward))
		p.WriteString(" LIMIT " + strconv.Itoa(q.Count+1))
		page = p.String()
	}
	var sel strings.Builder
	sel.WriteString("WITH page AS (" + page + ")")
	sel.WriteString(" SELECT rid, r.type, r.id, r.version, r.last_updated, COALESCE(r.raw, r.content::text)")
	for i := range keys {
		fmt.Fprintf(&sel, ", k%d", i)
	}
	sel.WriteString(" FROM page JOIN resources r USING (rid) ORDER BY " + orderBy(keys, backward))
	rows, err := db.Query(ctx, sel.String(), pb.args.list...)
	if err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	type row struct {
		m    Match
		keys []any
	}
	var got []row
	for rows.Next() {
		var r row
		dest := []any{&r.m.RID, &r.m.Type, &r.m.ID, &r.m.VersionID, &r.m.LastUpdated, &r.m.Content}
		r.keys = make([]any, len(keys))
		for i := range keys {
			dest = append(dest, &r.keys[i])
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: search: %w", err)
		}
		got = append(got, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	more := len(got) > q.Count
	if more {
		got = got[:q.Count]
	}
	if backward {
		for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
			got[i], got[j] = got[j], got[i]
		}
	}
	for _, r := range got {
		res.Matches = append(res.Matches, r.m)
	}
	if len(got) > 0 {
		first, last := got[0], got[len(got)-1]
		// Forward: a next page exists if we over-fetched; a previous one if
		// we started from a cursor. Backward: the mirror image.
		if (!backward && more) || backward {
			res.Next = encodeCursor(false, last.keys, last.m.RID)
		}
		if (backward && more) || (!backward && cur != nil) {
			res.Prev = encodeCursor(true, first.keys, first.m.RID)
		}
	}

	switch {
	case q.Total == "accurate":
		if res.Total, err = count(ctx, db, where, whereArgs); err != nil {
			return nil, err
		}
	case q.Total == "estimate":
		if res.Total, err = estimate(ctx, db, where, whereArgs); err != nil {
			return nil, err
		}
	case q.Total == "" && cur == nil && !more:
		res.Total = len(got) // the whole result is on this page: exact for free
	}

	if len(res.Matches) > 0 && (len(q.Includes) > 0 || len(q.RevIncludes) > 0) {
		if res.Included, res.IncludesCut, err = includes(ctx, db, q, res.Matches); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func count(ctx context.Context, db querier, where string, args []any) (int, error) {
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM resources r WHERE "+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

// estimate asks the planner instead of counting: cheap on huge results.
func estimate(ctx context.Context, db querier, where string, args []any) (int, error) {
	var plan []byte
	if err := db.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT 1 FROM resources r WHERE "+where, args...).Scan(&plan); err != nil {
		return 0, fmt.Errorf("store: estimate: %w", err)
	}
	var p []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &p); err != nil || len(p) == 0 {
		return -1, nil
	}
	return int(p[0].Plan.Rows), nil
}

// queryBuilder turns a parsed query into SQL over resources r.
type queryBuilder struct {
	args  *sqlArgs
	q     *search.Query
	alias int
}

func (b *queryBuilder) arg(v any) string { return b.args.add(v) }

func (b *queryBuilder) newAlias() string {
	b.alias++
	return "t" + strconv.Itoa(b.alias)
}

// types are the resource types searched.
func (b *queryBuilder) types() []string {
	if b.q.Type != "" {
		return []string{b.q.Type}
	}
	if len(b.q.Types) > 0 {
		return b.q.Types
	}
	return spec.ResourceTypes()
}

func (b *queryBuilder) where() string {
	conds := []string{"NOT r.deleted"}
	switch {
	case b.q.Type != "":
		conds = append(conds, "r.type = "+b.arg(b.q.Type))
	case len(b.q.Types) > 0:
		conds = append(conds, "r.type = ANY("+b.arg(b.q.Types)+")")
	}
	if c := b.q.Compartment; c != nil {
		conds = append(conds, b.compartment(c))
	}
	params := make([]*search.Param, len(b.q.Params))
	for i := range b.q.Params {
		params[i] = &b.q.Params[i]
	}
	conds = append(conds, b.conds("r", params, maxJoinedConds)...)
	return strings.Join(conds, " AND ")
}

// maxJoinedConds is how many of a search's subquery conditions are left for
// the planner to turn into joins. Each one it turns into a join adds a
// relation to the join search, whose cost grows exponentially: 30 ANDed
// name terms took 1.5 s to plan and 100 took 38 s, in BIND, holding a
// backend at full CPU and gigabytes of memory. Beyond this many, index
// conditions are checked by one probe per index table (probeSet) and the rest
// are kept out of the join search (notJoined).
const maxJoinedConds = 4

// conds renders params as conditions on the resource alias a, at most
// joined of them as subqueries the planner may turn into joins.
func (b *queryBuilder) conds(a string, params []*search.Param, joined int) []string {
	var out []string
	var probes probeSet // the index conditions beyond the joined ones
	for _, prm := range params {
		if prm.Has == nil && prm.SP.Column != "" {
			out = append(out, b.cond(a, b.types(), prm)) // a plain column test, no subquery
			continue
		}
		if joined > 0 {
			joined--
			out = append(out, b.cond(a, b.types(), prm))
			continue
		}
		if probeable(prm) {
			probes.add(b.indexFilter(prm, b.types()))
			continue
		}
		out = append(out, notJoined(b.cond(a, b.types(), prm)))
	}
	return append(out, probes.conds(a)...)
}

// probeSet gathers index-table filters to check with one probe per table.
type probeSet struct {
	tables  []string            // in first-seen order, so the SQL is stable
	filters map[string][]string // index table → its filters
}

func (p *probeSet) add(tbl, filter string) {
	if p.filters == nil {
		p.filters = map[string][]string{}
	}
	if _, ok := p.filters[tbl]; !ok {
		p.tables = append(p.tables, tbl)
	}
	p.filters[tbl] = append(p.filters[tbl], filter)
}

// conds renders each table's probe on alias a: one correlated subquery that
// checks every filter against the candidate's own rows of the table (index
// on rid), planned once whatever the number of filters and run once per
// candidate. GROUP BY keeps PostgreSQL from turning it into a join.
func (p *probeSet) conds(a string) []string {
	out := make([]string, len(p.tables))
	for i, tbl := range p.tables {
		having := make([]string, len(p.filters[tbl]))
		for j, f := range p.filters[tbl] {
			having[j] = "bool_or(" + f + ")"
		}
		out[i] = "EXISTS (SELECT 1 FROM " + tbl + " o WHERE o.rid = " + a + ".rid GROUP BY o.rid HAVING " + strings.Join(having, " AND ") + ")"
	}
	return out
}

// notJoined keeps a subquery condition out of the planner's join search: a
// sublink inside an expression is not pulled up into a join, so it is
// planned on its own (an uncorrelated IN becomes a hashed subplan).
func notJoined(cond string) string {
	return "(" + cond + ") IS TRUE"
}

// probeable reports whether a parameter is a positive match on one index
// table, as probe can check it.
func probeable(prm *search.Param) bool {
	if prm.Has != nil || len(prm.Chains) > 0 || prm.SP.Column != "" {
		return false
	}
	switch prm.Modifier {
	case "missing", "not", "not-in", "identifier":
		return false
	}
	return table(prm.SP.Type) != ""
}

// paramIDs returns the ids of a parameter code across types (each type has
// its own id for the same code).
func paramIDs(code string, types []string) []int32 {
	var ids []int32
	for _, t := range types {
		if sp := spec.SearchParams(t)[code]; sp != nil {
			ids = append(ids, sp.ID)
		}
	}
	return ids
}

func (b *queryBuilder) idsArg(prm *search.Param, types []string) string {
	if prm.Type != "" && prm.Type != "Resource" {
		return b.arg([]int32{prm.SP.ID})
	}
	return b.arg(paramIDs(prm.SP.Code, types))
}

func (b *queryBuilder) compartment(c *search.Compartment) string {
	if len(c.Params) == 0 {
		return "false"
	}
	var alts []string
	var refIDs []int32
	for _, code := range c.Params {
		if code == "{def}" || code == "_id" { // the compartment's own resource
			alts = append(alts, "(r.id = "+b.arg(c.ID)+" AND r.type = "+b.arg(c.Type)+")")
			continue
		}
		refIDs = append(refIDs, paramIDs(code, b.types())...)
	}
	if len(refIDs) > 0 {
		alts = append(alts, "r.rid IN (SELECT rid FROM idx_reference WHERE param = ANY("+b.arg(refIDs)+
			") AND target_type = "+b.arg(c.Type)+" AND target_id = "+b.arg(c.ID)+")")
	}
	return "(" + strings.Join(alts, " OR ") + ")"
}

// table is the index table of each parameter type.
func table(t spec.ParamType) string {
	switch t {
	case spec.String:
		return "idx_string"
	case spec.Token:
		return "idx_token"
	case spec.Reference:
		return "idx_reference"
	case spec.Date:
		return "idx_date"
	case spec.Number:
		return "idx_number"
	case spec.Quantity:
		return "idx_quantity"
	case spec.URI:
		return "idx_uri"
	case spec.Composite:
		return "idx_composite"
	}
	return ""
}

// cond is the SQL condition for one parameter on the resource alias a.
func (b *queryBuilder) cond(a string, types []string, prm *search.Param) string {
	if prm.Has != nil {
		return b.has(a, prm)
	}
	sp := prm.SP
	if sp.Column != "" {
		return b.column(a, prm)
	}
	if prm.Modifier == "missing" {
		ids := b.idsArg(prm, types)
		tbl := table(sp.Type)
		exists := "EXISTS (SELECT 1 FROM " + tbl + " x WHERE x.rid = " + a + ".rid AND x.param = ANY(" + ids + "))"
		if prm.Values[0].Missing {
			return "NOT " + exists
		}
		return exists
	}
	if len(prm.Chains) > 0 {
		ids := b.idsArg(prm, types)
		// One alternative per target type: each has its own parameter ids.
		t := b.newAlias()
		var alts []string
		for _, ch := range prm.Chains {
			alts = append(alts, "("+t+".type = "+b.arg(ch.Type)+" AND "+b.cond(t, []string{ch.Type}, ch)+")")
		}
		return a + ".rid IN (SELECT x.rid FROM idx_reference x JOIN resources " + t + " ON " + t + ".type = x.target_type AND " +
			t + ".id = x.target_id WHERE x.param = ANY(" + ids + ") AND NOT " + t + ".deleted AND (" + strings.Join(alts, " OR ") + "))"
	}
	if sp.Type == spec.Reference && prm.Modifier == "identifier" {
		var idIDs []int32
		for _, t := range types {
			if p := spec.SearchParams(t)[sp.Code]; p != nil {
				idIDs = append(idIDs, index.IdentifierParam(t, sp.Code))
			}
		}
		if prm.Type != "" && prm.Type != "Resource" {
			idIDs = []int32{index.IdentifierParam(prm.Type, sp.Code)}
		}
		return a + ".rid IN (SELECT rid FROM idx_token WHERE param = ANY(" + b.arg(idIDs) + ") AND (" + b.tokenValues(prm.Values) + "))"
	}
	tbl, filter := b.indexFilter(prm, types)
	if prm.Modifier == "not" || prm.Modifier == "not-in" {
		return a + ".rid NOT IN (SELECT rid FROM " + tbl + " WHERE " + filter + ")"
	}
	return a + ".rid IN (SELECT rid FROM " + tbl + " WHERE " + filter + ")"
}

// indexFilter is the condition on a parameter's index table that its
// values match: "param = … AND (OR'd values)".
func (b *queryBuilder) indexFilter(prm *search.Param, types []string) (tbl, filter string) {
	sp := prm.SP
	var ids []int32
	if prm.Type != "" && prm.Type != "Resource" {
		ids = []int32{sp.ID}
	} else {
		ids = paramIDs(sp.Code, types)
	}
	var match string
	switch sp.Type {
	case spec.Token:
		match = b.token(prm)
	case spec.String:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.str(prm.Modifier, v) })
	case spec.URI:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.uri(prm.Modifier, v) })
	case spec.Reference:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.ref(prm.Modifier, v) })
	case spec.Date:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.dateRange("lo", "hi", v) })
	case spec.Number:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.number("value", "value", v) })
	case spec.Quantity:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.quantity("lo", "hi", "system", "code", "unit", v) })
	case spec.Composite:
		match = b.orValues(prm.Values, func(v search.Value) string { return b.composite(sp, v) })
	}
	return table(sp.Type), anyOf(b, "param", ids) + " AND (" + match + ")"
}

// anyOf is "col = $n" for one value and "col = ANY($n)" for several: an
// equality keeps a B-tree's order on the following columns usable, which
// lets a page be read in rid order and stop early.
func anyOf[T any](b *queryBuilder, col string, vals []T) string {
	if len(vals) == 1 {
		return col + " = " + b.arg(vals[0])
	}
	return col + " = ANY(" + b.arg(vals) + ")"
}

// drivingPage builds the page query for a default-ordered search from its
// first drivable parameter: the page is read straight from that index in rid
// order (an index-only scan that stops after a page), the other conditions
// checked per candidate. It uses its own builder (and arguments) and returns
// "" when no parameter can drive.
func (b *queryBuilder) drivingPage(cur *cursor, backward bool) (*queryBuilder, string) {
	q := b.q
	if q.Type == "" || q.Compartment != nil {
		return b, ""
	}
	// Drive from the parameter likely to match fewest rows: the cost of a
	// driven page grows with how many rows must be read before a page fills.
	drive, best := -1, 0
	for i := range q.Params {
		if !drivable(&q.Params[i]) {
			continue
		}
		if r := selectivity(&q.Params[i]); r > best {
			drive, best = i, r
		}
	}
	if drive < 0 {
		return b, ""
	}
	d := &queryBuilder{args: &sqlArgs{}, q: q}
	tbl, filter := d.indexFilter(&q.Params[drive], d.types())
	sql := "SELECT DISTINCT d.rid FROM " + tbl + " d WHERE " + filter
	var rest []*search.Param
	var probes probeSet          // the index conditions beyond the joined ones
	joined := maxJoinedConds - 1 // the driver is one
	for i := range q.Params {
		if i == drive {
			continue
		}
		if !drivable(&q.Params[i]) {
			rest = append(rest, &q.Params[i])
			continue
		}
		// Probe each candidate's own rows (index on rid) rather than
		// build the set of every resource matching this parameter.
		t2, f2 := d.indexFilter(&q.Params[i], d.types())
		if joined > 0 {
			joined--
			sql += " AND EXISTS (SELECT 1 FROM " + t2 + " o WHERE o.rid = d.rid AND " + f2 + ")"
			continue
		}
		probes.add(t2, f2)
	}
	for _, c := range probes.conds("d") {
		sql += " AND " + c
	}
	if len(rest) > 0 {
		sql += " AND d.rid IN (SELECT r.rid FROM resources r WHERE NOT r.deleted AND " + strings.Join(d.conds("r", rest, max(joined, 1)), " AND ") + ")"
	}
	if cur != nil {
		sql += " AND d." + d.after(nil, cur, backward)
	}
	sql += " ORDER BY " + orderBy(nil, backward) + " LIMIT " + strconv.Itoa(q.Count+1)
	return d, sql
}

// selectivity (of a drivable parameter) ranks how few rows a parameter's values are likely to match,
// from its type alone (no statistics): a reference to one resource or an
// exact identifier picks a handful, a code or a date range can pick a
// large share of a type.
func selectivity(prm *search.Param) int {
	switch {
	case prm.SP.Type == spec.Reference:
		return 6
	case prm.SP.Type == spec.Token && strings.Contains(prm.SP.Code, "identifier"):
		return 5
	case prm.SP.Type == spec.URI, prm.SP.Type == spec.String && prm.Modifier == "exact":
		return 4
	case prm.SP.Type == spec.Composite:
		return 3
	case prm.SP.Type == spec.Token, prm.SP.Type == spec.String:
		return 2
	}
	return 1
}

// drivable reports whether a parameter can drive a page by itself: a
// positive match on one index table. Its rows exist only for current,
// undeleted resources of the parameter's type (ids are per type and
// tombstones have no index rows), so they imply the type and liveness.
func drivable(prm *search.Param) bool {
	if prm.Has != nil || len(prm.Chains) > 0 || prm.SP.Column != "" || prm.Type == "" || prm.Type == "Resource" {
		return false
	}
	switch prm.Modifier {
	case "missing", "not", "not-in", "identifier":
		return false
	}
	return table(prm.SP.Type) != ""
}

func (b *queryBuilder) orValues(vs []search.Value, f func(search.Value) string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = "(" + f(v) + ")"
	}
	return strings.Join(parts, " OR ")
}

// column handles _id and _lastUpdated, which live on resources itself.
func (b *queryBuilder) column(a string, prm *search.Param) string {
	switch prm.SP.Column {
	case "id":
		ids := make([]string, len(prm.Values))
		for i, v := range prm.Values {
			ids[i] = v.Code
		}
		if prm.Modifier == "not" {
			return a + ".id <> ALL(" + b.arg(ids) + ")"
		}
		return a + ".id = ANY(" + b.arg(ids) + ")"
	default: // last_updated: a point in time, its range is one microsecond
		return b.orValues(prm.Values, func(v search.Value) string {
			return b.dateRange(a+".last_updated", a+".last_updated + interval '1 microsecond'", v)
		})
	}
}

// token matches codes with one index probe per value kind: plain codes and
// system|code pairs are passed as arrays, so a 200-value OR stays one
// index scan instead of 200 OR branches.
func (b *queryBuilder) token(prm *search.Param) string {
	switch prm.Modifier {
	case "text":
		return b.orValues(prm.Values, func(v search.Value) string {
			// :text is a string search on the display/text: a case- and
			// accent-insensitive prefix of the whole text.
			return "text LIKE " + b.arg(likeEscape(index.Normalize(v.Code))+"%")
		})
	case "of-type":
		return b.orValues(prm.Values, func(v search.Value) string {
			return "type_system = " + b.arg(v.QSystem) + " AND type_code = " + b.arg(v.QCode) + " AND code = " + b.arg(v.Code)
		})
	case "in", "not-in":
		var vs []search.Value
		for _, v := range prm.Values {
			codes, _ := spec.ValueSetCodes(v.Code)
			for _, c := range codes {
				vs = append(vs, search.Value{System: c.System, Code: c.Code, HasSystem: true})
			}
		}
		if len(vs) == 0 {
			return "false"
		}
		return b.tokenValues(vs)
	}
	return b.tokenValues(prm.Values)
}

func (b *queryBuilder) tokenValues(vs []search.Value) string {
	var codes, systems []string
	bySystem := map[string][]string{} // system|code pairs, grouped by system
	var order []string
	for _, v := range vs {
		switch {
		case !v.HasSystem:
			codes = append(codes, v.Code)
		case v.Code == "":
			systems = append(systems, v.System)
		default:
			if _, seen := bySystem[v.System]; !seen {
				order = append(order, v.System)
			}
			bySystem[v.System] = append(bySystem[v.System], v.Code)
		}
	}
	// Plain column predicates keep the planner's estimates right (an
	// expression such as system||'|'||code hides them and once made
	// patient+code searches start from every coded row).
	var alts []string
	if len(codes) > 0 {
		alts = append(alts, anyOf(b, "code", codes))
	}
	for _, sys := range order {
		if sys == "" { // |code: a code without a system
			alts = append(alts, "(system IS NULL AND "+anyOf(b, "code", bySystem[sys])+")")
			continue
		}
		alts = append(alts, "(system = "+b.arg(sys)+" AND "+anyOf(b, "code", bySystem[sys])+")")
	}
	if len(systems) > 0 {
		alts = append(alts, anyOf(b, "system", systems))
	}
	return strings.Join(alts, " OR ")
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func (b *queryBuilder) str(modifier string, v search.Value) string {
	switch modifier {
	case "exact":
		return "exact = " + b.arg(v.Code)
	case "contains":
		return "norm LIKE " + b.arg("%"+likeEscape(index.Normalize(v.Code))+"%")
	}
	return "norm LIKE " + b.arg(likeEscape(index.Normalize(v.Code))+"%")
}

func (b *queryBuilder) uri(modifier string, v search.Value) string {
	switch modifier {
	case "below":
		return "value LIKE " + b.arg(likeEscape(v.Code)+"%")
	case "above":
		return b.arg(v.Code) + " LIKE replace(replace(value, '%', '\\%'), '_', '\\_') || '%'"
	}
	return "value = " + b.arg(v.Code)
}

func (b *queryBuilder) ref(modifier string, v search.Value) string {
	switch {
	case v.RefURL != "":
		return "url = " + b.arg(v.RefURL)
	case v.RefType != "":
		return "target_id = " + b.arg(v.RefID) + " AND target_type = " + b.arg(v.RefType)
	case spec.IsResourceType(modifier):
		return "target_id = " + b.arg(v.RefID) + " AND target_type = " + b.arg(modifier)
	}
	return "target_id = " + b.arg(v.RefID)
}

// dateRange compares a stored range [lo, hi) with the search value's range
// [vlo, vhi) per the prefix, following the R4 search rules.
func (b *queryBuilder) dateRange(lo, hi string, v search.Value) string {
	// Bound lazily: a placeholder that does not appear in the SQL has no type.
	vlo := func() string { return b.arg(v.Lo) }
	vhi := func() string { return b.arg(v.Hi) }
	contained := func() string { return lo + " >= " + vlo() + " AND " + hi + " <= " + vhi() }
	switch v.Prefix {
	case "ne":
		return "NOT (" + contained() + ")"
	case "gt":
		return hi + " > " + vhi()
	case "lt":
		return lo + " < " + vlo()
	case "ge":
		return "(" + hi + " > " + vhi() + " OR (" + contained() + "))"
	case "le":
		return "(" + lo + " < " + vlo() + " OR (" + contained() + "))"
	case "sa":
		return lo + " >= " + vhi()
	case "eb":
		return hi + " <= " + vlo()
	case "ap":
		// Approximately: the ranges overlap once the search range is widened
		// by 10% of its distance from now (at least a day).
		gap := time.Since(v.Lo)
		if gap < 0 {
			gap = -gap
		}
		widen := max(gap/10, 24*time.Hour)
		return lo + " < " + b.arg(v.Hi.Add(widen)) + " AND " + hi + " > " + b.arg(v.Lo.Add(-widen))
	}
	return contained()
}

// number compares stored [lo, hi] numerics (lo = hi for a single value) with
// a search number, whose precision gives the eq range.
func (b *queryBuilder) number(lo, hi string, v search.Value) string {
	// Every placeholder must appear in the SQL (an unused one has no type),
	// so the search number is bound only on the branches that use it.
	n := func() string { return b.arg(v.Number) + "::numeric" }
	switch v.Prefix {
	case "ne":
		return "NOT (" + lo + " >= " + b.arg(v.NumLo) + "::numeric AND " + hi + " < " + b.arg(v.NumHi) + "::numeric)"
	case "gt", "sa":
		return hi + " > " + n()
	case "lt", "eb":
		return lo + " < " + n()
	case "ge":
		return hi + " >= " + n()
	case "le":
		return lo + " <= " + n()
	case "ap":
		r, _ := new(big.Rat).SetString(v.Number)
		d := new(big.Rat).Abs(new(big.Rat).Mul(r, big.NewRat(1, 10)))
		return lo + " <= " + b.arg(new(big.Rat).Add(r, d).FloatString(12)) + "::numeric AND " + hi + " >= " +
			b.arg(new(big.Rat).Sub(r, d).FloatString(12)) + "::numeric"
	}
	return lo + " >= " + b.arg(v.NumLo) + "::numeric AND " + hi + " < " + b.arg(v.NumHi) + "::numeric"
}

func (b *queryBuilder) quantity(lo, hi, system, code, unit string, v search.Value) string {
	c := b.number(lo, hi, v)
	if v.QCode != "" {
		if v.QSystem != "" {
			c += " AND " + system + " = " + b.arg(v.QSystem) + " AND " + code + " = " + b.arg(v.QCode)
		} else {
			qc := b.arg(v.QCode)
			c += " AND (" + code + " = " + qc + " OR " + unit + " = " + qc + ")"
		}
	} else if v.QSystem != "" {
		c += " AND " + system + " = " + b.arg(v.QSystem)
	}
	return c
}

func (b *queryBuilder) composite(sp *spec.SearchParam, v search.Value) string {
	a := v.Parts[0]
	c := "a_code = " + b.arg(a.Code)
	if a.HasSystem && a.System != "" {
		c += " AND a_system = " + b.arg(a.System)
	}
	bv := v.Parts[1]
	switch sp.Components[1].Type {
	case spec.Token:
		c += " AND b_code = " + b.arg(bv.Code)
		if bv.HasSystem && bv.System != "" {
			c += " AND b_system = " + b.arg(bv.System)
		}
	case spec.Quantity:
		c += " AND " + b.quantity("b_lo", "b_hi", "b_system", "b_code", "b_code", bv)
	case spec.Date:
		c += " AND " + b.dateRange("b_date_lo", "b_date_hi", bv)
	case spec.String:
		c += " AND b_string LIKE " + b.arg(likeEscape(index.Normalize(bv.Code))+"%")
	case spec.Reference:
		c += " AND b_code = " + b.arg(bv.RefID)
	}
	return c
}

// has is a reverse chain: some resource of the _has type refers to a. The
// referred type is bound as a literal (not a.type): a subquery that depends
// on the outer row is re-run for every candidate instead of being hashed
// once (12.9 s against 13 ms on 33k resources).
func (b *queryBuilder) has(a string, prm *search.Param) string {
	head := a + ".id IN (SELECT x.target_id FROM idx_reference x"
	where := " WHERE x.param = " + b.arg(prm.HasRef.ID) + " AND x.target_type = " + b.arg(prm.Type)
	if drivable(prm.Has) {
		// Index rows exist only for current, undeleted resources of the
		// parameter's type, so the referring resources' rows need no join.
		tbl, filter := b.indexFilter(prm.Has, []string{prm.Has.Type})
		return head + where + " AND x.rid IN (SELECT rid FROM " + tbl + " WHERE " + filter + "))"
	}
	s := b.newAlias()
	inner := b.cond(s, []string{prm.Has.Type}, prm.Has)
	return head + " JOIN resources " + s + " ON " + s + ".rid = x.rid" + where + " AND NOT " + s + ".deleted AND " + inner + ")"
}
