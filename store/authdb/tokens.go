package authdb

import (
	"context"
	"fmt"
	"time"
)

// RefreshToken is a stored refresh token, keyed by its hash.
type RefreshToken struct {
	Hash        []byte // SHA-256 of the token
	ClientID    string
	Username    string
	Role        string
	FHIRUser    string
	Scopes      []string
	Patient     string
	Encounter   string
	ExpiresAt   time.Time
	AuthRequest string // the code grant it came from; "" for none
}

// AddRefreshToken stores t.
func (db *DB) AddRefreshToken(ctx context.Context, t RefreshToken) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO smart_refresh_tokens (token_hash, client_id, username, role, fhir_user,
		scopes, patient, encounter, expires_at, auth_request) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nullif($10, ''))`,
		t.Hash, t.ClientID, t.Username, t.Role, t.FHIRUser, t.Scopes, t.Patient, t.Encounter, t.ExpiresAt, t.AuthRequest); err != nil {
		return fmt.Errorf("authdb: add refresh token: %w", err)
	}
	return nil
}

// RefreshToken returns the token hashing to hash if it is neither revoked
// nor expired (by the database's clock); ErrNotFound otherwise.
func (db *DB) RefreshToken(ctx context.Context, hash []byte) (RefreshToken, error) {
	t := RefreshToken{Hash: hash}
	err := db.pool.QueryRow(ctx, `SELECT client_id, username, role, fhir_user, scopes, patient, encounter, expires_at,
		coalesce(auth_request, '') FROM smart_refresh_tokens WHERE token_hash = $1 AND NOT revoked AND expires_at > now()`, hash).
		Scan(&t.ClientID, &t.Username, &t.Role, &t.FHIRUser, &t.Scopes, &t.Patient, &t.Encounter, &t.ExpiresAt, &t.AuthRequest)
	if err != nil {
		return RefreshToken{}, notFound("refresh token", err)
	}
	return t, nil
}

// RevokeRefreshToken revokes the token hashing to hash if clientID holds it;
// anything else is silently left alone (RFC 7009).
func (db *DB) RevokeRefreshToken(ctx context.Context, hash []byte, clientID string) error {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_refresh_tokens SET revoked = true WHERE token_hash = $1 AND client_id = $2`,
		hash, clientID); err != nil {
		return fmt.Errorf("authdb: revoke refresh token: %w", err)
	}
	return nil
}

// RevokeAccessToken adds an access token id to the revoked ones until the
// token's expiry (again is a no-op).
func (db *DB) RevokeAccessToken(ctx context.Context, jti string, exp time.Time) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO smart_revoked_jtis (jti, expires_at) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`, jti, exp); err != nil {
		return fmt.Errorf("authdb: revoke access token: %w", err)
	}
	return nil
}

// IsRevoked reports whether an access token id was revoked.
func (db *DB) IsRevoked(ctx context.Context, jti string) (bool, error) {
	var revoked bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM smart_revoked_jtis WHERE jti = $1)`, jti).Scan(&revoked); err != nil {
		return false, fmt.Errorf("authdb: revoked access token: %w", err)
	}
	return revoked, nil
}

// Revocation is a revoked access token id.
type Revocation struct {
	JTI       string
	ExpiresAt time.Time // the token's expiry
	RevokedAt time.Time // when the revocation was written (clock_timestamp)
}

// RevokedSince returns the revocations of unexpired tokens written after
// since, for verifiers that keep the revoked set in memory.
func (db *DB) RevokedSince(ctx context.Context, since time.Time) ([]Revocation, error) {
	rows, err := db.pool.Query(ctx, `SELECT jti, expires_at, revoked_at FROM smart_revoked_jtis
		WHERE revoked_at > $1 AND expires_at > now()`, since)
	if err != nil {
		return nil, fmt.Errorf("authdb: revoked access tokens: %w", err)
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		if err := rows.Scan(&r.JTI, &r.ExpiresAt, &r.RevokedAt); err != nil {
			return nil, fmt.Errorf("authdb: revoked access tokens: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authdb: revoked access tokens: %w", err)
	}
	return out, nil
}

// UseAssertionID records a client assertion's jti until expires;
// ErrExists when the client used it before (a replay). Of concurrent uses
// of one jti exactly one succeeds.
func (db *DB) UseAssertionID(ctx context.Context, clientID, jti string, expires time.Time) error {
	tag, err := db.pool.Exec(ctx, `INSERT INTO smart_used_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, clientID, jti, expires)
	if err != nil {
		return fmt.Errorf("authdb: record assertion id: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrExists
	}
	return nil
}
