package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

// TestStatementTimeoutIsA503: a statement that runs past the statement
// timeout is stopped by PostgreSQL (no backend outlives it) and answered
// as a 503 OperationOutcome, not a 500.
func TestStatementTimeoutIsA503(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 2, StatementTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.Pool().Exec(ctx, "SELECT pg_sleep(5)")
	if !store.IsCanceled(err) {
		t.Fatalf("pg_sleep(5) under a 100 ms timeout: %v", err)
	}
	if status, fe, ok := asHTTPError(err); !ok || status != http.StatusServiceUnavailable {
		t.Fatalf("maps to %d %+v", status, fe)
	}
	// A cancelled request cancels its statement on the server too.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	st2, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := st2.Pool().Exec(cctx, "SELECT pg_sleep(30)"); err == nil {
		t.Fatal("pg_sleep(30) under a cancelled context succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := st2.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backend still runs the cancelled statement")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
