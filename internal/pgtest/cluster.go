package pgtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/pgcluster"
)

// Cluster is a PostgreSQL server private to one test, for tests that stop
// and start the database under a running Ember (failure drills); the
// shared server of NewDatabase must never go down. Its URL stays the same
// across Stop and Start (a Unix socket beside the data).
type Cluster struct {
	dir     string
	dataDir string
	url     string

	mu      sync.Mutex
	running *pgcluster.Cluster // nil while stopped
	release func()             // dismisses the running server's watchdog
}

// NewCluster starts a dedicated server (tuned for speed like the shared
// one) with a database "ember" holding the Ember schema; the test's
// cleanup stops it and removes its files.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	dir, err := os.MkdirTemp(scratchRoot(), "ember-pgtest-")
	if err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	// When tests run as root the server runs as postgres, which must reach the data dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("pgtest: cluster: %v", err)
	}
	c := &Cluster{dir: dir, dataDir: filepath.Join(dir, "data")}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: cluster stop: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc := c.start(ctx, t)
	if err := pc.EnsureDatabase(ctx, "ember"); err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	c.url = pc.DatabaseURL("ember")
	if err := store.Migrate(ctx, c.url); err != nil {
		t.Fatalf("pgtest: cluster: %v", err)
	}
	return c
}

// URL is the database's URL, the same while stopped and after a restart.
func (c *Cluster) URL() string { return c.url }

// Stop shuts the server down as an operator would (pg_ctl stop -m fast:
// sessions are terminated, in-flight transactions roll back).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatalf("pgtest: cluster stop: %v", err)
	}
}

// Start starts the stopped server again on the same data and socket.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.start(ctx, t)
}

func (c *Cluster) start(ctx context.Context, t testing.TB) *pgcluster.Cluster {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running != nil {
		return c.running
	}
	pc, err := pgcluster.Start(ctx, pgcluster.Options{
		DataDir: c.dataDir,
		Settings: map[string]string{
			"fsync":              "off",
			"synchronous_commit": "off",
			"full_page_writes":   "off",
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("pgtest: cluster start: %v", err)
	}
	c.running = pc
	// A new postmaster has a new pid: the watchdog must know it.
	c.release = startWatchdog(c.dataDir, c.dir)
	return pc
}

func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.running.Stop(ctx)
	c.running = nil
	c.release()
	return err
}
