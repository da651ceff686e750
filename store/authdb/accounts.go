package authdb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Client is a registered OAuth client as stored.
type Client struct {
	ID           string
	Type         string // public, symmetric or asymmetric
	SecretHash   string // argon2id PHC string; "" without a secret
	RedirectURIs []string
	Scopes       []string
	JWKS         []byte // registered public key set (JSON), or nil
	JWKSURI      string
	LaunchURI    string
	Grants       []string // grant types chosen at registration; empty: the type's default
}

// AddClient stores c; ErrExists when its id is taken.
func (db *DB) AddClient(ctx context.Context, c Client) error {
	var hash *string
	if c.SecretHash != "" {
		hash = &c.SecretHash
	}
	var jwks []byte
	if len(c.JWKS) > 0 {
		jwks = c.JWKS
	}
	tag, err := db.pool.Exec(ctx, `INSERT INTO smart_clients (id, type, secret_hash, redirect_uris, scopes, jwks, jwks_uri, launch_uri,
		grant_types) VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), nullif($8, ''), $9) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.Type, hash, nonNil(c.RedirectURIs), nonNil(c.Scopes), jwks, c.JWKSURI, c.LaunchURI, nonNil(c.Grants))
	if err != nil {
		return fmt.Errorf("authdb: add client: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrExists
	}
	return nil
}

const clientCols = `id, type, coalesce(secret_hash, ''), redirect_uris, scopes, jwks, coalesce(jwks_uri, ''), coalesce(launch_uri, ''),
	grant_types`

func scanClient(row pgx.Row) (Client, error) {
	var c Client
	err := row.Scan(&c.ID, &c.Type, &c.SecretHash, &c.RedirectURIs, &c.Scopes, &c.JWKS, &c.JWKSURI, &c.LaunchURI, &c.Grants)
	return c, err
}

// Client returns the client id; ErrNotFound when none.
func (db *DB) Client(ctx context.Context, id string) (Client, error) {
	c, err := scanClient(db.pool.QueryRow(ctx, `SELECT `+clientCols+` FROM smart_clients WHERE id = $1`, id))
	if err != nil {
		return Client{}, notFound("client", err)
	}
	return c, nil
}

// Clients returns every client, by id.
func (db *DB) Clients(ctx context.Context) ([]Client, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+clientCols+` FROM smart_clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("authdb: list clients: %w", err)
	}
	defer rows.Close()
	var out []Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("authdb: list clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authdb: list clients: %w", err)
	}
	return out, nil
}

// RemoveClient deletes a client; its launches, authorization requests and
// refresh tokens go with it (ON DELETE CASCADE). ErrNotFound when none.
func (db *DB) RemoveClient(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM smart_clients WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("authdb: remove client: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// User is an end user as stored, without credentials.
type User struct {
	Username string
	Role     string
	FHIRUser string // Practitioner/ID, Patient/ID, ...
}

// Credentials is what a login checks.
type Credentials struct {
	User
	PasswordHash string     // argon2id PHC string
	LockedUntil  *time.Time // set after too many failures in a row
}

// AddUser stores u with its password hash; ErrExists when the username is
// taken.
func (db *DB) AddUser(ctx context.Context, u User, passwordHash string) error {
	tag, err := db.pool.Exec(ctx, `INSERT INTO smart_users (username, password_hash, role, fhir_user) VALUES ($1, $2, $3, $4)
		ON CONFLICT (username) DO NOTHING`, u.Username, passwordHash, u.Role, u.FHIRUser)
	if err != nil {
		return fmt.Errorf("authdb: add user: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrExists
	}
	return nil
}

// Users returns every user, by username.
func (db *DB) Users(ctx context.Context) ([]User, error) {
	rows, err := db.pool.Query(ctx, `SELECT username, role, fhir_user FROM smart_users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("authdb: list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.Username, &u.Role, &u.FHIRUser); err != nil {
			return nil, fmt.Errorf("authdb: list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authdb: list users: %w", err)
	}
	return out, nil
}

// User returns a user; ErrNotFound when none.
func (db *DB) User(ctx context.Context, username string) (User, error) {
	var u User
	err := db.pool.QueryRow(ctx, `SELECT username, role, fhir_user FROM smart_users WHERE username = $1`, username).
		Scan(&u.Username, &u.Role, &u.FHIRUser)
	if err != nil {
		return User{}, notFound("user", err)
	}
	return u, nil
}

// RemoveUser deletes a user; ErrNotFound when none.
func (db *DB) RemoveUser(ctx context.Context, username string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM smart_users WHERE username = $1`, username)
	if err != nil {
		return fmt.Errorf("authdb: remove user: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Credentials returns a user with the password hash and lock; ErrNotFound
// when none.
func (db *DB) Credentials(ctx context.Context, username string) (Credentials, error) {
	var c Credentials
	err := db.pool.QueryRow(ctx, `SELECT username, role, fhir_user, password_hash, locked_until FROM smart_users WHERE username = $1`,
		username).Scan(&c.Username, &c.Role, &c.FHIRUser, &c.PasswordHash, &c.LockedUntil)
	if err != nil {
		return Credentials{}, notFound("credentials", err)
	}
	return c, nil
}

// RecordLoginFailure counts a failed login, in one statement so that
// concurrent failures all count; the failure that makes maxFailures in a
// row locks the user until lockout after the database's clock.
func (db *DB) RecordLoginFailure(ctx context.Context, username string, maxFailures int, lockout time.Duration) error {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_users SET failed_logins = failed_logins + 1,
		locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + $3::interval ELSE locked_until END
		WHERE username = $1`, username, maxFailures, lockout.String()); err != nil {
		return fmt.Errorf("authdb: record login failure: %w", err)
	}
	return nil
}

// ResetLoginFailures clears the failure count and the lock after a
// successful login.
func (db *DB) ResetLoginFailures(ctx context.Context, username string) error {
	if _, err := db.pool.Exec(ctx, `UPDATE smart_users SET failed_logins = 0, locked_until = NULL WHERE username = $1`, username); err != nil {
		return fmt.Errorf("authdb: reset login failures: %w", err)
	}
	return nil
}
