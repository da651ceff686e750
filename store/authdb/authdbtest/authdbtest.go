// Package authdbtest lets tests look into and adjust the authorization
// server's tables where no production query does (failure counters, a
// lapsed lock, how many requests are stored), so that tests above the
// storage layer need no SQL of their own.
package authdbtest

import (
	"context"
	"fmt"
	"time"

	"github.com/emberfhir/ember/store"
)

// FailedLogins returns a user's count of failed logins in a row.
func FailedLogins(ctx context.Context, st *store.Store, username string) (int, error) {
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT failed_logins FROM smart_users WHERE username = $1`, username).Scan(&n); err != nil {
		return 0, fmt.Errorf("authdbtest: failed logins of %s: %w", username, err)
	}
	return n, nil
}

// LockedUntil returns the end of a user's lock (nil when not locked).
func LockedUntil(ctx context.Context, st *store.Store, username string) (*time.Time, error) {
	var t *time.Time
	if err := st.Pool().QueryRow(ctx, `SELECT locked_until FROM smart_users WHERE username = $1`, username).Scan(&t); err != nil {
		return nil, fmt.Errorf("authdbtest: lock of %s: %w", username, err)
	}
	return t, nil
}

// LapseLock moves a user's lock a second into the past, leaving the failure
// count: as if the lockout had run out.
func LapseLock(ctx context.Context, st *store.Store, username string) error {
	if _, err := st.Pool().Exec(ctx, `UPDATE smart_users SET locked_until = now() - interval '1 second' WHERE username = $1`,
		username); err != nil {
		return fmt.Errorf("authdbtest: lapse lock of %s: %w", username, err)
	}
	return nil
}

// AuthRequests counts the stored authorization requests, in any state.
func AuthRequests(ctx context.Context, st *store.Store) (int, error) {
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM smart_auth_requests`).Scan(&n); err != nil {
		return 0, fmt.Errorf("authdbtest: count authorization requests: %w", err)
	}
	return n, nil
}

// RefreshTokenExpiries returns the expiry of every stored refresh token,
// revoked or not, earliest first.
func RefreshTokenExpiries(ctx context.Context, st *store.Store) ([]time.Time, error) {
	rows, err := st.Pool().Query(ctx, `SELECT expires_at FROM smart_refresh_tokens ORDER BY expires_at`)
	if err != nil {
		return nil, fmt.Errorf("authdbtest: refresh token expiries: %w", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var t time.Time
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("authdbtest: refresh token expiries: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authdbtest: refresh token expiries: %w", err)
	}
	return out, nil
}
