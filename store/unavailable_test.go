package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/emberfhir/ember/store"
)

// TestIsUnavailable: a database out of reach (no server, one shutting
// down, a lost connection) is told apart from a request's own faults, so
// the request answers 503, not 500.
func TestIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, connErr := pgx.Connect(ctx, "postgres://postgres@/ember?host="+filepath.Join(t.TempDir(), "no-server"))
	if connErr == nil {
		t.Fatal("connected to no server")
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("store: read: %w", connErr), true},
		{fmt.Errorf("store: search: %w", &pgconn.PgError{Code: "57P01"}), true}, // admin_shutdown
		{&pgconn.PgError{Code: "57P03"}, true},                                  // cannot_connect_now
		{&pgconn.PgError{Code: "08006"}, true},                                  // connection_failure
		{fmt.Errorf("store: begin: %w", pgconn.ErrConnClosed), true},
		{&pgconn.PgError{Code: "23505"}, false}, // unique_violation
		{&pgconn.PgError{Code: "57014"}, false}, // query_canceled: IsCanceled's
		{errors.New("store: something else"), false},
	} {
		if got := store.IsUnavailable(c.err); got != c.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
