package store

import (
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir/index"
)

// sqlArgs collects positional arguments while a statement is assembled.
type sqlArgs struct{ list []any }

func (a *sqlArgs) add(v any) string {
	a.list = append(a.list, v)
	return "$" + strconv.Itoa(len(a.list))
}

// indexTables names every index table, for deletes.
var indexTables = []string{"idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_composite"}

// distinctFrom is the length from which distinct looks for repeats: a
// resource that repeats a value in a long list (an AuditEvent's 500
// entities, each typed and roled alike) would otherwise store hundreds of
// identical index rows, while short lists, nearly all of them, pay nothing.
const distinctFrom = 32

// distinct drops repeated entries (same parameter, same value), which match
// nothing more than the first, keeping the order of the first of each.
func distinct[T comparable](list []T) []T {
	if len(list) < distinctFrom {
		return list
	}
	seen := make(map[T]struct{}, len(list))
	out := list[:0:0]
	for _, v := range list {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

// indexCTEs returns data-modifying CTEs that replace the index rows of the
// resource whose rid the CTE named "r" yields: deletes of old rows (when
// replace is set) and inserts of e's rows. Both see the statement's snapshot,
// so the deletes never touch the rows inserted beside them.
func indexCTEs(a *sqlArgs, e *index.Entries, replace bool) []string {
	var ctes []string
	n := 0
	cte := func(body string) {
		n++
		ctes = append(ctes, "i"+strconv.Itoa(n)+" AS ("+body+")")
	}
	if replace {
		for _, t := range indexTables {
			cte("DELETE FROM " + t + " WHERE rid = (SELECT rid FROM r)")
		}
	}
	if e == nil {
		return ctes
	}
	insert := func(table, cols, selects string, arrays ...any) {
		ph := make([]string, len(arrays))
		for i, arr := range arrays {
			ph[i] = a.add(arr) + arrayCast(arr)
		}
		cte("INSERT INTO " + table + " (rid, " + cols + ") SELECT r.rid, " + selects +
			" FROM r, unnest(" + strings.Join(ph, ", ") + ") AS u(" + unnestNames(len(arrays)) + ")")
	}
	if len(e.Strings) > 0 {
		p, norm, exact := make([]int32, len(e.Strings)), make([]string, len(e.Strings)), make([]string, len(e.Strings))
		for i, s := range e.Strings {
			p[i], norm[i], exact[i] = s.Param, s.Norm, s.Exact
		}
		insert("idx_string", "param, norm, exact", "u.c1, u.c2, u.c3", p, norm, exact)
	}
	if len(e.Tokens) > 0 {
		tokens := distinct(e.Tokens)
		n := len(tokens)
		p, sys, code, text, ts, tc := make([]int32, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		for i, t := range tokens {
			p[i], sys[i], code[i], text[i], ts[i], tc[i] = t.Param, t.System, t.Code, t.Text, t.TypeSystem, t.TypeCode
		}
		insert("idx_token", "param, system, code, text, type_system, type_code",
			"u.c1, NULLIF(u.c2, ''), NULLIF(u.c3, ''), NULLIF(u.c4, ''), NULLIF(u.c5, ''), NULLIF(u.c6, '')", p, sys, code, text, ts, tc)
	}
	if len(e.References) > 0 {
		refs := distinct(e.References)
		n := len(refs)
		p, typ, id, url := make([]int32, n), make([]string, n), make([]string, n), make([]string, n)
		for i, r := range refs {
			p[i], typ[i], id[i], url[i] = r.Param, r.Type, r.ID, r.URL
		}
		insert("idx_reference", "param, target_type, target_id, url",
			"u.c1, NULLIF(u.c2, ''), NULLIF(u.c3, ''), NULLIF(u.c4, '')", p, typ, id, url)
	}
	if len(e.Dates) > 0 {
		n := len(e.Dates)
		p, lo, hi := make([]int32, n), make([]time.Time, n), make([]time.Time, n)
		for i, d := range e.Dates {
			p[i], lo[i], hi[i] = d.Param, d.Lo, d.Hi
		}
		insert("idx_date", "param, lo, hi", "u.c1, u.c2, u.c3", p, lo, hi)
	}
	if len(e.Numbers) > 0 {
		n := len(e.Numbers)
		p, v := make([]int32, n), make([]string, n)
		for i, x := range e.Numbers {
			p[i], v[i] = x.Param, x.Value
		}
		insert("idx_number", "param, value", "u.c1, u.c2::numeric", p, v)
	}
	if len(e.Quantities) > 0 {
		n := len(e.Quantities)
		p, lo, hi, sys, code, unit := make([]int32, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		for i, q := range e.Quantities {
			p[i], lo[i], hi[i], sys[i], code[i], unit[i] = q.Param, q.Lo, q.Hi, q.System, q.Code, q.Unit
		}
		insert("idx_quantity", "param, lo, hi, system, code, unit",
			"u.c1, NULLIF(u.c2, '')::numeric, NULLIF(u.c3, '')::numeric, NULLIF(u.c4, ''), NULLIF(u.c5, ''), NULLIF(u.c6, '')", p, lo, hi, sys, code, unit)
	}
	if len(e.URIs) > 0 {
		n := len(e.URIs)
		p, v := make([]int32, n), make([]string, n)
		for i, x := range e.URIs {
			p[i], v[i] = x.Param, x.Value
		}
		insert("idx_uri", "param, value", "u.c1, u.c2", p, v)
	}
	if len(e.Composites) > 0 {
		n := len(e.Composites)
		p, as, ac, bs, bc, blo, bhi, bs2 := make([]int32, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		dlo, dhi := make([]*time.Time, n), make([]*time.Time, n)
		for i, c := range e.Composites {
			p[i], as[i], ac[i], bs[i], bc[i], blo[i], bhi[i], bs2[i] = c.Param, c.ASystem, c.ACode, c.BSystem, c.BCode, c.BLo, c.BHi, c.BString
			if !c.BDateLo.IsZero() {
				lo, hi := c.BDateLo, c.BDateHi
				dlo[i], dhi[i] = &lo, &hi
			}
		}
		insert("idx_composite", "param, a_system, a_code, b_system, b_code, b_lo, b_hi, b_date_lo, b_date_hi, b_string",
			"u.c1, NULLIF(u.c2, ''), u.c3, NULLIF(u.c4, ''), NULLIF(u.c5, ''), NULLIF(u.c6, '')::numeric, NULLIF(u.c7, '')::numeric, u.c8, u.c9, NULLIF(u.c10, '')",
			p, as, ac, bs, bc, blo, bhi, dlo, dhi, bs2)
	}
	return ctes
}

// arrayCast types an unnest argument: untyped parameters make unnest ambiguous.
func arrayCast(arr any) string {
	switch arr.(type) {
	case []int32:
		return "::int4[]"
	case []time.Time, []*time.Time:
		return "::timestamptz[]"
	}
	return "::text[]"
}

func unnestNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = "c" + strconv.Itoa(i+1)
	}
	return strings.Join(names, ", ")
}
