package authdb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The queries of the authorization server's admin API: users with their
// lockout state, and the changes an admin makes to one user. A change
// that should end the user's sessions (new password, new role, removal)
// revokes their refresh tokens in the same transaction: a refresh token
// carries the role it was issued with, and would otherwise go on issuing
// access tokens for a password or role that no longer holds.

// Account is a user with the lockout state an admin sees.
type Account struct {
	User
	FailedLogins int        // failed logins in a row
	LockedUntil  *time.Time // nil when the account is not locked (any more)
}

// Accounts returns every user with their lockout state, by username. A
// lock that has lapsed reads as none.
func (db *DB) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+accountCols+` FROM smart_users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("authdb: list accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.Username, &a.Role, &a.FHIRUser, &a.FailedLogins, &a.LockedUntil); err != nil {
			return nil, fmt.Errorf("authdb: list accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authdb: list accounts: %w", err)
	}
	return out, nil
}

// accountCols are an Account's columns, for RETURNING.
const accountCols = `username, role, fhir_user, failed_logins, CASE WHEN locked_until > now() THEN locked_until END`

// SetPassword replaces a user's password hash, clears their failed logins
// and lock, and revokes their refresh tokens. It returns the account as
// changed; ErrNotFound when none.
func (db *DB) SetPassword(ctx context.Context, username, passwordHash string) (Account, error) {
	return db.changeUser(ctx, "set password", true, `UPDATE smart_users SET password_hash = $2, failed_logins = 0,
		locked_until = NULL WHERE username = $1 RETURNING `+accountCols, username, passwordHash)
}

// SetRole changes a user's role and revokes their refresh tokens. It
// returns the account as changed; ErrNotFound when none.
func (db *DB) SetRole(ctx context.Context, username, role string) (Account, error) {
	return db.changeUser(ctx, "set role", true, `UPDATE smart_users SET role = $2 WHERE username = $1 RETURNING `+accountCols,
		username, role)
}

// Unlock clears a user's failed logins and lock. It returns the account as
// changed; ErrNotFound when none.
func (db *DB) Unlock(ctx context.Context, username string) (Account, error) {
	return db.changeUser(ctx, "unlock", false, `UPDATE smart_users SET failed_logins = 0, locked_until = NULL
		WHERE username = $1 RETURNING `+accountCols, username)
}

// RemoveAccount deletes a user and revokes their refresh tokens (which
// name the user without a foreign key). It returns the account removed;
// ErrNotFound when none.
func (db *DB) RemoveAccount(ctx context.Context, username string) (Account, error) {
	return db.changeUser(ctx, "remove user", true, `DELETE FROM smart_users WHERE username = $1 RETURNING `+accountCols, username)
}

// changeUser runs q (whose $1 is the username; it returns accountCols)
// and, when revoke is set, revokes the user's refresh tokens, in one
// transaction; ErrNotFound when q touched no row.
func (db *DB) changeUser(ctx context.Context, op string, revoke bool, q, username string, args ...any) (Account, error) {
	var a Account
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, q, append([]any{username}, args...)...).
			Scan(&a.Username, &a.Role, &a.FHIRUser, &a.FailedLogins, &a.LockedUntil)
		if err != nil {
			return notFound(op, err)
		}
		if !revoke {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE smart_refresh_tokens SET revoked = true WHERE username = $1 AND NOT revoked`,
			username); err != nil {
			return fmt.Errorf("authdb: %s: revoke refresh tokens: %w", op, err)
		}
		return nil
	})
	if err != nil {
		return Account{}, err
	}
	return a, nil
}
