// Package igdb holds the queries on the installed implementation guide
// packages (store/migrations 00012, ig_packages): install, list, and the
// reindex bookkeeping. conformance/ig calls it and holds no SQL.
package igdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/store"
)

// DB runs the package queries on a store's database. It is safe for
// concurrent use.
type DB struct {
	pool *pgxpool.Pool
}

// New returns the package queries of st.
func New(st *store.Store) *DB { return &DB{pool: st.Pool()} }

// Package is one installed package.
type Package struct {
	Name, Version  string
	Archive        []byte
	SHA256         string
	InstalledAt    time.Time
	ReindexPending bool
}

// Save installs a package's archive, or replaces the archive of the same
// name and version. It reports whether anything changed (a package
// installed again with the same bytes changes nothing). pending marks the
// package's search parameters as not yet indexed for stored resources.
func (db *DB) Save(ctx context.Context, name, version string, archive []byte, pending bool) (changed bool, err error) {
	sum := sha256.Sum256(archive)
	h := hex.EncodeToString(sum[:])
	tag, err := db.pool.Exec(ctx, `INSERT INTO ig_packages (name, version, archive, sha256, reindex_pending)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name, version) DO UPDATE SET archive = $3, sha256 = $4, installed_at = now(),
			reindex_pending = ig_packages.reindex_pending OR $5
		WHERE ig_packages.sha256 <> $4`, name, version, archive, h, pending)
	if err != nil {
		return false, fmt.Errorf("igdb: save %s#%s: %w", name, version, err)
	}
	return tag.RowsAffected() > 0, nil
}

// List returns the installed packages in installation order.
func (db *DB) List(ctx context.Context) ([]Package, error) {
	rows, err := db.pool.Query(ctx, `SELECT name, version, archive, sha256, installed_at, reindex_pending
		FROM ig_packages ORDER BY installed_at, name, version`)
	if err != nil {
		return nil, fmt.Errorf("igdb: list: %w", err)
	}
	defer rows.Close()
	var out []Package
	for rows.Next() {
		var p Package
		if err := rows.Scan(&p.Name, &p.Version, &p.Archive, &p.SHA256, &p.InstalledAt, &p.ReindexPending); err != nil {
			return nil, fmt.Errorf("igdb: list: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("igdb: list: %w", err)
	}
	return out, nil
}

// HasResources reports whether any current resource of the given types is
// stored (a package's new parameters then need a reindex).
func (db *DB) HasResources(ctx context.Context, types []string) (bool, error) {
	var found bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM resources WHERE type = ANY($1) AND NOT deleted)`, types).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("igdb: %w", err)
	}
	return found, nil
}

// MarkIndexed clears reindex_pending of the packages installed before
// since: a reindex that started after them has indexed their parameters.
func (db *DB) MarkIndexed(ctx context.Context, since time.Time) error {
	if _, err := db.pool.Exec(ctx, `UPDATE ig_packages SET reindex_pending = false WHERE installed_at < $1`, since); err != nil {
		return fmt.Errorf("igdb: mark indexed: %w", err)
	}
	return nil
}

// Now is the database's clock, which installed_at is on: a reindex takes
// it when it starts, for MarkIndexed.
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := db.pool.QueryRow(ctx, `SELECT now()`).Scan(&t); err != nil {
		return t, fmt.Errorf("igdb: %w", err)
	}
	return t, nil
}

// ReindexPending reports whether the installed package name#version waits
// for a reindex.
func (db *DB) ReindexPending(ctx context.Context, name, version string) (bool, error) {
	var p bool
	err := db.pool.QueryRow(ctx, `SELECT reindex_pending FROM ig_packages WHERE name = $1 AND version = $2`, name, version).Scan(&p)
	if err != nil {
		return false, fmt.Errorf("igdb: %w", err)
	}
	return p, nil
}

// Stamp summarises the installed packages (how many, the last install,
// how many wait for a reindex): a server compares it to notice packages
// installed, or reindexed, through another process.
func (db *DB) Stamp(ctx context.Context) (string, error) {
	var s string
	err := db.pool.QueryRow(ctx, `SELECT count(*)::text || '/' || COALESCE(max(installed_at)::text, '') || '/' ||
		count(*) FILTER (WHERE reindex_pending)::text FROM ig_packages`).Scan(&s)
	if err != nil {
		return "", fmt.Errorf("igdb: stamp: %w", err)
	}
	return s, nil
}
