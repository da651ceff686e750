package authdb

import (
	"context"
	"fmt"
	"time"
)

// Launch is a stored EHR launch context.
type Launch struct {
	ID        string // the opaque launch parameter
	ClientID  string
	Patient   string
	Encounter string
	Username  string // "" when any user may complete it
	ExpiresAt time.Time
}

// AddLaunch stores l.
func (db *DB) AddLaunch(ctx context.Context, l Launch) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO smart_launches (id, client_id, patient, encounter, username, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, l.ID, l.ClientID, l.Patient, l.Encounter, l.Username, l.ExpiresAt); err != nil {
		return fmt.Errorf("authdb: add launch: %w", err)
	}
	return nil
}

// Launch returns an unexpired launch (ExpiresAt is not read); ErrNotFound
// when none.
func (db *DB) Launch(ctx context.Context, id string) (Launch, error) {
	var l Launch
	err := db.pool.QueryRow(ctx, `SELECT id, client_id, patient, encounter, username FROM smart_launches
		WHERE id = $1 AND expires_at > now()`, id).Scan(&l.ID, &l.ClientID, &l.Patient, &l.Encounter, &l.Username)
	if err != nil {
		return Launch{}, notFound("launch", err)
	}
	return l, nil
}

// AuthRequest is an authorization request from /authorize until its code is
// used.
type AuthRequest struct {
	ID            string
	CSRF          string
	ClientID      string
	RedirectURI   string
	Scopes        []string // as requested
	State         string
	Nonce         string
	CodeChallenge string
	LaunchID      string
	Username      string     // set by login
	LoginAt       *time.Time // set by login, by the database's clock
	Patient       string
	Encounter     string
	Granted       []string // set with the code
	CodeUsed      bool
	ExpiresAt     time.Time
}

const authRequestCols = `id, csrf, client_id, redirect_uri, scopes, state, nonce, code_challenge, launch_id, username,
	login_at, patient, encounter, granted, code_used, expires_at`

func (db *DB) authRequest(ctx context.Context, op, where string, arg any) (AuthRequest, error) {
	var q AuthRequest
	err := db.pool.QueryRow(ctx, `SELECT `+authRequestCols+` FROM smart_auth_requests WHERE `+where, arg).Scan(
		&q.ID, &q.CSRF, &q.ClientID, &q.RedirectURI, &q.Scopes, &q.State, &q.Nonce, &q.CodeChallenge, &q.LaunchID,
		&q.Username, &q.LoginAt, &q.Patient, &q.Encounter, &q.Granted, &q.CodeUsed, &q.ExpiresAt)
	if err != nil {
		return AuthRequest{}, notFound(op, err)
	}
	return q, nil
}

// AddAuthRequest stores a new request: its id, CSRF token, client,
// redirect URI, scopes, state, nonce, code challenge, launch, patient,
// encounter and expiry.
func (db *DB) AddAuthRequest(ctx context.Context, q AuthRequest) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO smart_auth_requests (id, csrf, client_id, redirect_uri, scopes, state, nonce,
		code_challenge, launch_id, patient, encounter, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		q.ID, q.CSRF, q.ClientID, q.RedirectURI, q.Scopes, q.State, q.Nonce, q.CodeChallenge, q.LaunchID,
		q.Patient, q.Encounter, q.ExpiresAt)
	if err != nil {
		return fmt.Errorf("authdb: add authorization request: %w", err)
	}
	return nil
}

// CountPendingAuthRequests counts the unexpired requests that have no code
// yet, up to limit (it stops counting there).
func (db *DB) CountPendingAuthRequests(ctx context.Context, limit int) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM smart_auth_requests
		WHERE expires_at > now() AND code_hash IS NULL LIMIT $1) p`, limit).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("authdb: count pending authorization requests: %w", err)
	}
	return n, nil
}

// PendingAuthRequest returns an unexpired request that has no code yet;
// ErrNotFound when none.
func (db *DB) PendingAuthRequest(ctx context.Context, id string) (AuthRequest, error) {
	return db.authRequest(ctx, "authorization request", `id = $1 AND expires_at > now() AND code_hash IS NULL`, id)
}

// SetLogin records who signed in to a request, now by the database's
// clock, and the patient in context ("" for none yet).
func (db *DB) SetLogin(ctx context.Context, id, username, patient string) error {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_auth_requests SET username = $2, login_at = now(), patient = $3 WHERE id = $1`,
		id, username, patient); err != nil {
		return fmt.Errorf("authdb: record login: %w", err)
	}
	return nil
}

// SetPatient records the patient chosen for a request.
func (db *DB) SetPatient(ctx context.Context, id, patient string) error {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_auth_requests SET patient = $2 WHERE id = $1`, id, patient); err != nil {
		return fmt.Errorf("authdb: record patient: %w", err)
	}
	return nil
}

// DeleteAuthRequest forgets a request (access denied).
func (db *DB) DeleteAuthRequest(ctx context.Context, id string) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM smart_auth_requests WHERE id = $1`, id); err != nil {
		return fmt.Errorf("authdb: delete authorization request: %w", err)
	}
	return nil
}

// IssueCode records the granted scopes and the code's hash on a request
// that has no code yet, and moves its expiry to expires. It reports false
// when the request already has a code: of concurrent calls one wins.
func (db *DB) IssueCode(ctx context.Context, id string, granted []string, codeHash []byte, expires time.Time) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE smart_auth_requests SET granted = $2, code_hash = $3, expires_at = $4
		WHERE id = $1 AND code_hash IS NULL`, id, nonNil(granted), codeHash, expires)
	if err != nil {
		return false, fmt.Errorf("authdb: issue code: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// AuthRequestByCode returns the unexpired request whose code hashes to
// codeHash, used or not (CodeUsed says); ErrNotFound when none.
func (db *DB) AuthRequestByCode(ctx context.Context, codeHash []byte) (AuthRequest, error) {
	return db.authRequest(ctx, "code", `code_hash = $1 AND expires_at > now()`, codeHash)
}

// UseCode marks a request's code used. It reports false when it already
// was: of concurrent exchanges of one code exactly one gets true.
func (db *DB) UseCode(ctx context.Context, id string) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE smart_auth_requests SET code_used = true WHERE id = $1 AND NOT code_used`, id)
	if err != nil {
		return false, fmt.Errorf("authdb: use code: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetCodeAccessToken records the access token a request's code bought, to
// be revoked if the code is replayed.
func (db *DB) SetCodeAccessToken(ctx context.Context, id, jti string, exp time.Time) error {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_auth_requests SET access_jti = $2, access_exp = $3 WHERE id = $1`,
		id, jti, exp); err != nil {
		return fmt.Errorf("authdb: record access token of code: %w", err)
	}
	return nil
}

// RevokeCodeGrant revokes the refresh tokens issued from request id and
// adds the access token its code bought to the revoked ids, returning that
// token's id and expiry (jti "" when the code bought none yet).
// ErrNotFound when the request is gone.
func (db *DB) RevokeCodeGrant(ctx context.Context, id string) (jti string, exp time.Time, err error) {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_refresh_tokens SET revoked = true WHERE auth_request = $1`, id); err != nil {
		return "", time.Time{}, fmt.Errorf("authdb: revoke code grant: %w", err)
	}
	var j *string
	var e *time.Time
	if err := db.pool.QueryRow(ctx, `SELECT access_jti, access_exp FROM smart_auth_requests WHERE id = $1`, id).Scan(&j, &e); err != nil {
		return "", time.Time{}, notFound("revoke code grant", err)
	}
	if j == nil || e == nil {
		return "", time.Time{}, nil
	}
	if err := db.RevokeAccessToken(ctx, *j, *e); err != nil {
		return "", time.Time{}, fmt.Errorf("authdb: revoke code grant: %w", err)
	}
	return *j, *e, nil
}
