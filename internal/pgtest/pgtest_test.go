package pgtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tableExists(t *testing.T, conn *pgx.Conn, table string) bool {
	t.Helper()
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestDatabasesAreIsolatedAndMigrated(t *testing.T) {
	a := connect(t, NewDatabase(t))
	b := connect(t, NewDatabase(t))

	for name, conn := range map[string]*pgx.Conn{"a": a, "b": b} {
		if !tableExists(t, conn, "resources") {
			t.Errorf("database %s lacks the Ember schema (table resources)", name)
		}
	}
	if _, err := a.Exec(t.Context(), "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(t.Context(), "INSERT INTO resources (type, id, version, last_updated, method, content) VALUES ('Patient', 'p1', 1, now(), 'C', '{}')"); err != nil {
		t.Fatal(err)
	}
	if tableExists(t, b, "only_in_a") {
		t.Error("table created in database a is visible in database b")
	}
	var n int
	if err := b.QueryRow(t.Context(), "SELECT count(*) FROM resources").Scan(&n); err != nil || n != 0 {
		t.Errorf("database b has %d resources (%v), want 0", n, err)
	}
}

func TestParallelAndDroppedAtCleanup(t *testing.T) {
	names := make([]string, 8)
	t.Run("group", func(t *testing.T) {
		for i := range names {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				dbURL := NewDatabase(t)
				conn := connect(t, dbURL)
				if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&names[i]); err != nil {
					t.Fatal(err)
				}
				if !tableExists(t, conn, "resources") {
					t.Error("schema missing")
				}
			})
		}
	})
	conn := connect(t, URL())
	for _, name := range names {
		var exists bool
		if err := conn.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if name == "" || exists {
			t.Errorf("database %q still exists after its test ended", name)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for base, want := range map[string]string{
		"postgres://u:p@h:5433/postgres?sslmode=disable":  "postgres://u:p@h:5433/db1?sslmode=disable",
		"postgres://postgres@/postgres?host=%2Ftmp%2Fx+y": "postgres://postgres@/db1?host=%2Ftmp%2Fx+y",
		"host=/tmp user=postgres dbname=postgres":         "host=/tmp user=postgres dbname=postgres dbname=db1",
	} {
		got := withDatabase(base, "db1")
		if got != want {
			t.Errorf("withDatabase(%q) = %q, want %q", base, got, want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != "db1" {
			t.Errorf("pgx parses %q as database %q (%v), want db1", got, cfg.Database, err)
		}
	}
}
