// Package pgtest gives a `go test` run one ephemeral PostgreSQL server and each
// test its own database, cloned from a template that already holds the Ember schema.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/pgcluster"
)

// envURL names the variable that points tests at an existing server instead.
const envURL = "EMBER_TEST_DATABASE_URL"

// Set once by Main before m.Run, read-only afterwards (so safe from parallel tests).
var (
	baseURL string
	admin   *pgxpool.Pool

	templateOnce sync.Once
	templateName string
	templateErr  error
	templateMade bool
)

// Main is called from a package's TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
// If EMBER_TEST_DATABASE_URL is set it uses that server (must allow CREATE DATABASE);
// otherwise it starts a pgcluster in a temp dir with fsync=off, synchronous_commit=off,
// full_page_writes=off, and stops it (and removes the dir) after m.Run(). Exits with m.Run's code.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// run holds Main's body so its defers execute before os.Exit.
func run(m *testing.M) int {
	ctx := context.Background()
	if u := os.Getenv(envURL); u != "" {
		baseURL = u
	} else {
		u, stop, err := startPrivate(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: cannot start a PostgreSQL server for the tests: %v\n"+
				"pgtest: install the PostgreSQL server binaries or set %s to a server that allows CREATE DATABASE\n", err, envURL)
			return 1
		}
		defer stop()
		baseURL = u
	}
	pool, err := pgxpool.New(ctx, baseURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %s: %v\n", redact(baseURL), err)
		return 1
	}
	admin = pool
	defer pool.Close()
	templateName = "ember_tmpl_" + randomHex()

	code := m.Run()

	if templateMade {
		if err := dropDatabase(ctx, templateName); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: drop template %s: %v\n", templateName, err)
		}
	}
	return code
}

// StartServer starts a throwaway PostgreSQL server tuned for speed over
// durability and returns its server-level URL and a stop function. The
// withdb command uses it to give a whole `go test ./...` run one server.
func StartServer(ctx context.Context) (url string, stop func(), err error) {
	return startPrivate(ctx)
}

// scratchRoot picks where throwaway clusters live: a roomy tmpfs when there
// is one, since cloning a test database creates ~1,200 files and costs
// ~15 ms there against ~200 ms on this kind of disk.
func scratchRoot() string {
	if d := os.Getenv("EMBER_TEST_TMPDIR"); d != "" {
		return d
	}
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Type == tmpfsMagic &&
		st.Bavail*uint64(st.Bsize) >= 4<<30 {
		return "/dev/shm"
	}
	return ""
}

// startPrivate starts a throwaway cluster tuned for speed over durability.
func startPrivate(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp(scratchRoot(), "ember-pgtest-")
	if err != nil {
		return "", nil, err
	}
	// When tests run as root the server runs as postgres, which must reach the data dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	dataDir := filepath.Join(dir, "data")
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		DataDir: dataDir,
		Settings: map[string]string{
			"fsync":              "off",
			"synchronous_commit": "off",
			"full_page_writes":   "off",
		},
		// Info lines about initdb and start would clutter every package's test output.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	release := startWatchdog(dataDir, dir)
	stop := func() {
		if err := cluster.Stop(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
		release()
	}
	return cluster.DatabaseURL("postgres"), stop, nil
}

// watchdogScript stops the server and removes its directory unless told "done"
// first. It reads our end of a pipe, so EOF arrives however this process ends:
// a -timeout panic, a crash or Ctrl-C would otherwise leak a running postmaster.
const watchdogScript = `read -r line
[ "$line" = done ] && exit 0
kill -INT "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
rm -rf "$2"
`

// startWatchdog returns a func that dismisses the watchdog after a clean stop.
// Without /bin/sh there is no watchdog, only the normal cleanup.
func startWatchdog(dataDir, dir string) func() {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return func() {}
	}
	pid, _, _ := strings.Cut(string(data), "\n")
	r, w, err := os.Pipe()
	if err != nil {
		return func() {}
	}
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pgtest-watchdog", strings.TrimSpace(pid), dir)
	cmd.Stdin = r
	// Its own session, so the Ctrl-C that kills the test binary does not kill it too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return func() {}
	}
	return func() {
		_, _ = w.WriteString("done\n")
		w.Close()
		_ = cmd.Wait()
	}
}

// URL returns the server-level base URL in use (the private cluster's "postgres"
// database, or EMBER_TEST_DATABASE_URL), e.g. for `ember serve` subprocesses.
func URL() string {
	if baseURL == "" {
		panic("pgtest: URL called without pgtest.Main: add func TestMain(m *testing.M) { pgtest.Main(m) }")
	}
	return baseURL
}

// NewDatabase returns the URL of a fresh database, private to this test, with the
// Ember schema applied; it is dropped when the test ends (t.Cleanup).
func NewDatabase(t testing.TB) string {
	t.Helper()
	if admin == nil {
		t.Fatal("pgtest: NewDatabase called without pgtest.Main: add func TestMain(m *testing.M) { pgtest.Main(m) }")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl, err := ensureTemplate(ctx)
	if err != nil {
		t.Fatalf("pgtest: template database: %v", err)
	}
	return newDatabase(ctx, t, tmpl)
}

// NewEmptyDatabase is NewDatabase without the Ember schema, for tests of
// migration itself.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	if admin == nil {
		t.Fatal("pgtest: NewEmptyDatabase called without pgtest.Main")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return newDatabase(ctx, t, "template0")
}

func newDatabase(ctx context.Context, t testing.TB, tmpl string) string {
	t.Helper()
	name := "ember_test_" + randomHex()
	if err := createDatabase(ctx, name, tmpl); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return withDatabase(baseURL, name)
}

// ensureTemplate migrates once per process; cloning it is far cheaper than migrating per test.
func ensureTemplate(ctx context.Context) (string, error) {
	templateOnce.Do(func() {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{templateName}.Sanitize()); err != nil {
			templateErr = fmt.Errorf("create %s: %w", templateName, err)
			return
		}
		templateMade = true
		if err := store.Migrate(ctx, withDatabase(baseURL, templateName)); err != nil {
			templateErr = err
		}
	})
	return templateName, templateErr
}

func createDatabase(ctx context.Context, name, tmpl string) error {
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{tmpl}.Sanitize()
	for {
		_, err := admin.Exec(ctx, sql)
		// 55006: the template still has a session, typically Migrate's, whose
		// backend exits just after the client closes it. Wait it out.
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			if err != nil {
				return fmt.Errorf("create database %s: %w", name, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create database %s: %w (last: %v)", name, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dropDatabase(ctx context.Context, name string) error {
	// FORCE ends sessions a test left open (pools, leaked connections).
	_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// withDatabase points base (URL or keyword/value form) at database name.
func withDatabase(base, name string) string {
	if strings.Contains(base, "://") {
		u, err := url.Parse(base)
		if err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	// Later keywords win in libpq and pgx, so appending overrides any dbname in base.
	return base + " dbname=" + name
}

// randomHex keeps names apart across test binaries sharing one server.
func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// redact hides a password before a URL reaches test output.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
