package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Replica is a primary and a streaming standby made from it with
// pg_basebackup -R, both private to one test (read-replica tests). The
// standby's URL names the same "ember" database, read-only; Standby.Stop
// and Start take the replica away and bring it back.
type Replica struct {
	Primary *Cluster
	Standby *Cluster
}

// NewReplica starts a primary (NewCluster: wal_level replica and
// max_wal_senders are PostgreSQL's defaults, and initdb's trust
// authentication admits local replication connections) and a hot standby
// streaming from it over its Unix socket. The test's cleanup stops both.
func NewReplica(t testing.TB) *Replica {
	t.Helper()
	primary := NewCluster(t)
	dir, err := os.MkdirTemp(scratchRoot(), "ember-pgtest-standby-")
	if err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("pgtest: standby: %v", err)
	}
	standby := &Cluster{dir: dir, dataDir: filepath.Join(dir, "data")}
	t.Cleanup(func() {
		if err := standby.stop(); err != nil {
			t.Errorf("pgtest: standby stop: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: standby: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := baseBackup(ctx, primary, standby.dataDir); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	pc := standby.start(ctx, t)
	standby.url = pc.DatabaseURL("ember")
	return &Replica{Primary: primary, Standby: standby}
}

// baseBackup copies primary's running cluster into dataDir and makes it a
// standby (-R: standby.signal and primary_conninfo), as the server's OS
// user when we are root, since the server must own its data directory.
func baseBackup(ctx context.Context, primary *Cluster, dataDir string) error {
	bin, err := pgBin("pg_basebackup")
	if err != nil {
		return err
	}
	primary.mu.Lock()
	conn := primary.running.DatabaseURL("postgres")
	primary.mu.Unlock()
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-D", dataDir, "-d", conn, "-R", "-X", "stream", "-c", "fast")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dataDir, uid, gid); err != nil {
			return err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = dataDir
		cmd.Env = append(os.Environ(), "HOME="+u.HomeDir)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup: %w: %s", err, out)
	}
	// The copy holds the primary's socket directory (its lock file names the
	// primary's postmaster) and log; the standby makes its own.
	if err := os.RemoveAll(filepath.Join(dataDir, "run")); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dataDir, "postgres.log")); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// pgBin finds a PostgreSQL client program on PATH or where Debian and
// Ubuntu install the server's versioned binaries.
func pgBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin", name)
	}
	return matches[len(matches)-1], nil // the glob sorts; the last is the newest major version, mostly
}
