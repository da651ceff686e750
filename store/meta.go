package store

import (
	"context"
	"fmt"

	"github.com/emberfhir/ember/fhir/spec"
)

// MetaCoding is one distinct tag or security label: its identity (system
// and code, as $meta-add and $meta-delete match them) and the display of one
// resource that carries it.
type MetaCoding struct {
	System, Code, Display string
}

// DistinctMeta returns the distinct profiles, tags and security labels of
// the current (not deleted) resources of typ, or of every type when typ is
// "": what the $meta operation reports at type and system level.
//
// It reads the search index rather than the resources: the _profile
// (idx_uri), _tag and _security (idx_token) rows hold exactly meta.profile,
// meta.tag and meta.security, so the cost grows with the number of labelled
// resources, not with the size of the database. Each type has its own
// parameter ids, so the ids select the type too. A coding's display is not
// in the index; it is read from the JSON of one resource carrying the coding.
// Codings without a code are left out, since system+code is a label's
// identity. Results are sorted (profiles by URL, codings by system, code).
func (s *Store) DistinctMeta(ctx context.Context, typ string) (profiles []string, tags, security []MetaCoding, err error) {
	types := spec.ResourceTypes()
	if typ != "" {
		types = []string{typ}
	}
	if profiles, err = s.distinctProfiles(ctx, paramIDs("_profile", types)); err != nil {
		return nil, nil, nil, err
	}
	if tags, err = s.distinctCodings(ctx, paramIDs("_tag", types), "tag"); err != nil {
		return nil, nil, nil, err
	}
	if security, err = s.distinctCodings(ctx, paramIDs("_security", types), "security"); err != nil {
		return nil, nil, nil, err
	}
	return profiles, tags, security, nil
}

func (s *Store) distinctProfiles(ctx context.Context, params []int32) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT u.value FROM idx_uri u JOIN resources r ON r.rid = u.rid
		 WHERE u.param = ANY($1) AND NOT r.deleted
		 ORDER BY u.value`, params)
	if err != nil {
		return nil, fmt.Errorf("store: distinct profiles: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("store: distinct profiles: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: distinct profiles: %w", err)
	}
	return out, nil
}

// distinctCodings lists the distinct system|code pairs of the token
// parameter ids; key is the meta element ("tag" or "security") the display
// is read from.
func (s *Store) distinctCodings(ctx context.Context, params []int32, key string) ([]MetaCoding, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT d.system, d.code,
		       (SELECT e->>'display' FROM resources x, jsonb_array_elements(x.content->'meta'->$2) e
		         WHERE x.rid = d.rid AND e->>'code' = d.code AND (e->>'system') IS NOT DISTINCT FROM d.system
		           AND e->>'display' IS NOT NULL
		         LIMIT 1)
		  FROM (SELECT DISTINCT ON (t.system, t.code) t.system, t.code, t.rid
		          FROM idx_token t JOIN resources r ON r.rid = t.rid
		         WHERE t.param = ANY($1) AND t.code IS NOT NULL AND NOT r.deleted
		         ORDER BY t.system, t.code, t.rid) d
		 ORDER BY d.system NULLS FIRST, d.code`, params, key)
	if err != nil {
		return nil, fmt.Errorf("store: distinct %s: %w", key, err)
	}
	defer rows.Close()
	var out []MetaCoding
	for rows.Next() {
		var system, display *string
		var c MetaCoding
		if err := rows.Scan(&system, &c.Code, &display); err != nil {
			return nil, fmt.Errorf("store: distinct %s: %w", key, err)
		}
		if system != nil {
			c.System = *system
		}
		if display != nil {
			c.Display = *display
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: distinct %s: %w", key, err)
	}
	return out, nil
}
