// Package authdb is the SMART authorization server's storage: clients,
// users, authorization requests and codes, launches, refresh tokens,
// revoked access tokens, used client assertions and the signing key, in the
// tables of migrations/00005_smart.sql (and the clients' grant types of
// 00010_smart_client_grants.sql).
//
// It holds the queries and nothing of OAuth: smart/authserver decides, hashes
// secrets and tokens before they come here, and maps ErrNotFound and
// ErrExists to protocol errors. It depends on store (for the pool) and pgx.
package authdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/store"
)

// ErrNotFound is returned when the row asked for does not exist (or, for
// what expires, has expired or was revoked).
var ErrNotFound = errors.New("not found")

// ErrExists is returned when an insert finds its key already taken: a
// client or user registered twice, a client assertion id replayed.
var ErrExists = errors.New("already exists")

// DB runs the authorization server's queries on the store's pool.
type DB struct {
	pool *pgxpool.Pool
}

// New returns the authorization tables of st.
func New(st *store.Store) *DB { return &DB{pool: st.Pool()} }

// notFound turns pgx's no-rows into ErrNotFound and wraps other errors.
func notFound(op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return fmt.Errorf("authdb: %s: %w", op, err)
}

// SigningKey returns the newest token signing key (its id and PKCS#8 DER).
// When there is none, it calls generate and stores what it returns. Both
// run in one transaction under an advisory lock, so replicas starting
// together agree on one key.
func (db *DB) SigningKey(ctx context.Context, generate func() (kid string, der []byte, err error)) (kid string, der []byte, err error) {
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('ember.smart_keys'))`); err != nil {
			return fmt.Errorf("authdb: signing key lock: %w", err)
		}
		err := tx.QueryRow(ctx, `SELECT kid, private_der FROM smart_keys ORDER BY created_at DESC, kid LIMIT 1`).Scan(&kid, &der)
		if errors.Is(err, pgx.ErrNoRows) {
			if kid, der, err = generate(); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO smart_keys (kid, private_der) VALUES ($1, $2)`, kid, der); err != nil {
				return fmt.Errorf("authdb: store signing key: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("authdb: load signing key: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return kid, der, nil
}

// SigningKeyByID returns signing key kid's PKCS#8 DER (ErrNotFound when
// there is none).
func (db *DB) SigningKeyByID(ctx context.Context, kid string) ([]byte, error) {
	var der []byte
	err := db.pool.QueryRow(ctx, `SELECT private_der FROM smart_keys WHERE kid = $1`, kid).Scan(&der)
	if err != nil {
		return nil, notFound("signing key", err)
	}
	return der, nil
}

// Purge deletes expired authorization requests (an hour after they
// expire), launches, refresh tokens, and revoked and used token ids (a
// minute after), stopping at the first error.
func (db *DB) Purge(ctx context.Context) error {
	for _, q := range []string{
		`DELETE FROM smart_auth_requests WHERE expires_at < now() - interval '1 hour'`,
		`DELETE FROM smart_launches WHERE expires_at < now()`,
		`DELETE FROM smart_refresh_tokens WHERE expires_at < now()`,
		`DELETE FROM smart_revoked_jtis WHERE expires_at < now() - interval '1 minute'`,
		`DELETE FROM smart_used_jtis WHERE expires_at < now() - interval '1 minute'`,
	} {
		if _, err := db.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("authdb: purge: %w", err)
		}
	}
	return nil
}

// nonNil keeps a nil slice from becoming NULL in a NOT NULL text[] column.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
