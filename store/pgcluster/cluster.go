// Package pgcluster runs a private PostgreSQL server from the binaries installed on the machine,
// initialising its data directory on first use and serving it only on a Unix socket.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoBinaries is returned (wrapped) when initdb, pg_ctl and postgres cannot be found together.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found (looked on PATH and in /usr/lib/postgresql/*/bin): " +
	"install them, e.g. `apt-get install postgresql`, or pass --database-url")

const (
	// port only names the socket file (.s.PGSQL.5432); no TCP listener exists.
	port = 5432
	// maxSocketPath keeps well inside sun_path (108 bytes on Linux, 104 on BSDs).
	maxSocketPath = 100
	// packagedRoot is where Debian and Ubuntu install versioned server binaries.
	packagedRoot = "/usr/lib/postgresql"
	// serverUser is the OS account the server runs as when we are root.
	serverUser = "postgres"
	// superuser is the database role initdb creates; trust auth makes it passwordless.
	superuser = "postgres"
)

// defaultSettings suit an embedded server on a small machine; Options.Settings overrides them.
var defaultSettings = map[string]string{
	"max_connections": "200",
	"shared_buffers":  "128MB",
}

// fixedSettings are what make the server private; letting callers change them would
// expose it or move its socket where DatabaseURL does not look.
var fixedSettings = []string{"listen_addresses", "unix_socket_directories", "port"}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Options configure Start.
type Options struct {
	DataDir  string            // PGDATA; created (and initdb'd) the first time
	Settings map[string]string // extra server settings passed as -c name=value (tests use fsync=off etc.)
	Logger   *slog.Logger      // nil = slog.Default()
}

// Cluster is a PostgreSQL server on a private Unix socket, either started by this
// process (Owned) or found already running on the same data directory.
type Cluster struct {
	dataDir string
	sockDir string
	port    int
	owned   bool
	bins    binaries
	run     runAs
	logger  *slog.Logger

	mu      sync.Mutex
	stopped bool
	// lock is the owner lock (see ownerLock), held while this process owns
	// the server; nil when attached.
	lock *os.File
}

// Start initialises the cluster if DataDir holds none, then starts it listening
// only on a private Unix socket (empty listen_addresses). If a live server already
// runs on DataDir (another Ember process, e.g. `ember serve` while an admin
// command runs), Start attaches to it instead and Stop will leave it running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if opts.DataDir == "" {
		return nil, errors.New("pgcluster: Options.DataDir is empty")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: data directory: %w", err)
	}
	sockDir := socketDir(dataDir)
	options, err := serverOptions(sockDir, opts.Settings)
	if err != nil {
		return nil, err
	}

	// The owner lock tells a server whose owner is alive from one whose
	// owner died (kill -9) and left it running: only the first is another
	// process's to stop.
	lock, lockErr := ownerLock(dataDir)
	if lockErr != nil {
		logger.Warn("pgcluster: no owner lock: a server left running by a killed owner will not be taken over", "err", lockErr)
	}
	ok := false
	defer func() {
		if !ok && lock != nil {
			lock.Close()
		}
	}()

	// Attaching needs no binaries, so a server run by another Ember process is
	// usable even where this process could not start one itself.
	if c, attached := attach(ctx, dataDir, logger); attached {
		if lock != nil {
			ok = c.adopt(lock)
		}
		return c, nil
	}
	if lock == nil && lockErr == nil {
		// A live owner holds the lock but its server does not answer: it is
		// starting it. Wait for the server, or for the lock to come free.
		var c *Cluster
		if c, lock = waitForOwner(ctx, dataDir, logger); c != nil {
			return c, nil
		}
	}

	bins, err := findBinaries(os.Getenv("PATH"), packagedRoot)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	run, err := currentRunAs()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		dataDir: dataDir,
		sockDir: sockDir,
		port:    port,
		owned:   true,
		bins:    bins,
		run:     run,
		logger:  logger,
		lock:    lock,
	}
	if err := c.prepareDataDir(); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.prepareSocketDir(); err != nil {
		return nil, err
	}
	got, err := c.startOrAttach(ctx, options)
	if err != nil {
		return nil, err
	}
	if got != c && lock != nil {
		// Someone without the lock (an older Ember, pg_ctl by hand) started
		// it while we tried: as the lock holder we own it now.
		ok = got.adopt(lock)
		return got, nil
	}
	ok = true
	return got, nil
}

// ownerLock takes the owner lock of dataDir: an exclusive flock on
// <dataDir>.owner.lock, which the kernel releases when the holder exits,
// however it exits. It returns a nil file when another process holds it.
func ownerLock(dataDir string) (*os.File, error) {
	path := dataDir + ".owner.lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("owner lock %s: %w", path, err)
	}
	// For people reading the file; the lock itself is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// waitForOwner waits up to 15 s for the lock holder's server to answer (it
// returns it, attached) or for the lock to come free (it returns the lock).
// After that it gives up and returns neither: the caller starts the server
// without the lock, as before locks existed.
func waitForOwner(ctx context.Context, dataDir string, logger *slog.Logger) (*Cluster, *os.File) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && sleepCtx(ctx, 200*time.Millisecond) {
		if c, ok := attach(ctx, dataDir, logger); ok {
			return c, nil
		}
		if lock, err := ownerLock(dataDir); lock != nil || err != nil {
			return nil, lock
		}
	}
	logger.Warn("pgcluster: the owner lock is held but no server answers; starting one", "data_dir", dataDir)
	return nil, nil
}

// adopt makes c, attached to a running server, its owner: c then holds lock
// and Stop stops the server. It reports false (and c stays attached) when
// this process could not stop the server, lacking its binaries.
func (c *Cluster) adopt(lock *os.File) bool {
	bins, err := findBinaries(os.Getenv("PATH"), packagedRoot)
	if err != nil {
		c.logger.Warn("pgcluster: cannot take over the running server", "err", err)
		return false
	}
	run, err := currentRunAs()
	if err != nil {
		c.logger.Warn("pgcluster: cannot take over the running server", "err", err)
		return false
	}
	c.bins, c.run, c.lock, c.owned = bins, run, lock, true
	c.logger.Info("pgcluster: took over a server whose owner is gone", "data_dir", c.dataDir)
	return true
}

// DatabaseURL returns a pgx-parsable URL for database dbname on this cluster's socket.
func (c *Cluster) DatabaseURL(dbname string) string {
	q := url.Values{"host": {c.sockDir}}
	if c.port != port {
		q.Set("port", strconv.Itoa(c.port))
	}
	u := url.URL{Scheme: "postgres", User: url.User(superuser), Path: "/" + dbname, RawQuery: q.Encode()}
	return u.String()
}

// Owned reports whether this process started the server (and so Stop stops it).
func (c *Cluster) Owned() bool { return c.owned }

// Stop shuts the server down with pg_ctl stop -m fast, only if this process started it.
// It is idempotent; an attached server is left running for the process that owns it.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.owned || c.stopped {
		return nil
	}
	// Whether or not the stop works, the next process may take over.
	defer c.releaseLock()
	began := time.Now()
	out, err := c.pgCtl(ctx, "stop", "-m", "fast", "-w", "-D", c.dataDir)
	if err != nil {
		// Someone else (an admin, a test) already stopped it: the goal is met.
		if _, statErr := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); errors.Is(statErr, fs.ErrNotExist) {
			c.stopped = true
			return nil
		}
		return fmt.Errorf("pgcluster: pg_ctl stop: %w: %s", err, strings.TrimSpace(out))
	}
	c.stopped = true
	c.logger.Info("pgcluster: stopped", "data_dir", c.dataDir, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

func (c *Cluster) releaseLock() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// EnsureDatabase creates database name if it does not exist.
func (c *Cluster) EnsureDatabase(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("pgcluster: ensure database: empty name")
	}
	conn, err := pgx.Connect(ctx, c.DatabaseURL("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: ensure database %q: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("pgcluster: ensure database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		// A concurrent creator got there first: 42P04 duplicate_database, or 23505
		// when both reach the pg_database unique index at once.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
			return nil
		}
		return fmt.Errorf("pgcluster: create database %q: %w", name, err)
	}
	c.logger.Info("pgcluster: created database", "name", name)
	return nil
}

// serverOptions renders the pg_ctl -o string. pg_ctl hands it to /bin/sh, so every
// value is shell-quoted and names are restricted to what PostgreSQL accepts.
func serverOptions(sockDir string, settings map[string]string) (string, error) {
	merged := make(map[string]string, len(defaultSettings)+len(settings))
	for k, v := range defaultSettings {
		merged[k] = v
	}
	for k, v := range settings {
		if !settingName.MatchString(k) {
			return "", fmt.Errorf("pgcluster: invalid setting name %q", k)
		}
		if slices.Contains(fixedSettings, strings.ToLower(k)) {
			return "", fmt.Errorf("pgcluster: setting %q is managed by pgcluster and cannot be overridden", k)
		}
		merged[k] = v
	}
	names := make([]string, 0, len(merged))
	for k := range merged {
		names = append(names, k)
	}
	slices.Sort(names)
	// unix_socket_directories is a list; double quotes keep a path with spaces or commas whole.
	parts := []string{
		"-c " + shellQuote("listen_addresses="),
		"-c " + shellQuote(`unix_socket_directories="`+strings.ReplaceAll(sockDir, `"`, `""`)+`"`),
		"-c " + shellQuote("port="+strconv.Itoa(port)),
	}
	for _, k := range names {
		parts = append(parts, "-c "+shellQuote(k+"="+merged[k]))
	}
	return strings.Join(parts, " "), nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// socketDir keeps the socket beside the data when the path fits in sun_path, else
// in a short directory under the temp dir named by a hash, so it stays stable per DataDir.
func socketDir(dataDir string) string {
	dir := filepath.Join(dataDir, "run")
	if len(dir)+len(socketFile()) <= maxSocketPath {
		return dir
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join(os.TempDir(), "ember-pg-"+hex.EncodeToString(sum[:4]))
}

func socketFile() string { return "/.s.PGSQL." + strconv.Itoa(port) }

func (c *Cluster) prepareDataDir() error {
	parent := filepath.Dir(c.dataDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("pgcluster: create %s: %w", parent, err)
	}
	if err := os.Mkdir(c.dataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pgcluster: create data directory: %w", err)
	}
	if c.run.cred == nil {
		return nil
	}
	if err := c.run.checkTraversable(parent); err != nil {
		return fmt.Errorf("pgcluster: data directory %s: %w", c.dataDir, err)
	}
	// A cluster that already exists is left as it is: PostgreSQL itself reports
	// wrong ownership, and re-owning someone else's cluster would be worse.
	if !hasCluster(c.dataDir) {
		if err := chownTree(c.dataDir, int(c.run.cred.Uid), int(c.run.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: give data directory to %s: %w", serverUser, err)
		}
	}
	return nil
}

func hasCluster(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	return err == nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	if hasCluster(c.dataDir) {
		return nil
	}
	began := time.Now()
	cmd := c.run.command(ctx, c.dataDir, c.bins.initdb,
		"--auth=trust", "--username="+superuser, "--encoding=UTF8", "--locale=C",
		"--pgdata="+c.dataDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: initdb: %w: %s", err, tail(out, 20))
	}
	c.logger.Info("pgcluster: initialised cluster", "data_dir", c.dataDir, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

func (c *Cluster) prepareSocketDir() error {
	uid := os.Geteuid()
	if c.run.cred != nil {
		uid = int(c.run.cred.Uid)
		if err := c.run.checkTraversable(filepath.Dir(c.sockDir)); err != nil {
			return fmt.Errorf("pgcluster: socket directory %s: %w", c.sockDir, err)
		}
	}
	if err := os.Mkdir(c.sockDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pgcluster: create socket directory: %w", err)
	}
	fi, err := os.Lstat(c.sockDir)
	if err != nil {
		return fmt.Errorf("pgcluster: socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("pgcluster: socket directory %s is not a directory", c.sockDir)
	}
	// Under a shared temp dir someone else could have made the directory first;
	// refuse it rather than put our socket where they control access.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("pgcluster: socket directory %s is owned by uid %d, not %d: remove it", c.sockDir, st.Uid, uid)
	}
	if c.run.cred != nil {
		if err := os.Lchown(c.sockDir, uid, int(c.run.cred.Gid)); err != nil {
			return fmt.Errorf("pgcluster: socket directory: %w", err)
		}
	}
	if err := os.Chmod(c.sockDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: socket directory: %w", err)
	}
	return nil
}

func (c *Cluster) start(ctx context.Context, options string) error {
	began := time.Now()
	logFile := filepath.Join(c.dataDir, "postgres.log")
	// The log is appended to across runs; quote only what this attempt wrote.
	var logStart int64
	if fi, err := os.Stat(logFile); err == nil {
		logStart = fi.Size()
	}
	out, err := c.pgCtl(ctx, "start", "-w", "-t", "60", "-D", c.dataDir, "-l", logFile, "-o", options)
	if err != nil {
		logTail, _ := readTail(logFile, logStart, 30)
		return fmt.Errorf("pgcluster: pg_ctl start: %w: %s\n--- tail of %s ---\n%s",
			err, strings.TrimSpace(out), logFile, logTail)
	}
	c.logger.Info("pgcluster: started", "data_dir", c.dataDir, "socket_dir", c.sockDir,
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}

func (c *Cluster) pgCtl(ctx context.Context, args ...string) (string, error) {
	cmd := c.run.command(ctx, c.dataDir, c.bins.pgCtl, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// attach returns a non-owned Cluster when a live server answers on dataDir.
func attach(ctx context.Context, dataDir string, logger *slog.Logger) (*Cluster, bool) {
	pid, sockDir, p, ok := readPostmasterPID(dataDir)
	if !ok || !processAlive(pid) {
		// No pid file, or a stale one (kill -9, power loss): pg_ctl start copes with it.
		return nil, false
	}
	c := &Cluster{dataDir: dataDir, sockDir: sockDir, port: p, logger: logger}
	if c.sockDir == "" {
		c.sockDir = socketDir(dataDir)
	}
	if c.port == 0 {
		c.port = port
	}
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(pingCtx, c.DatabaseURL("postgres"))
	if err != nil {
		return nil, false
	}
	conn.Close(pingCtx)
	logger.Info("pgcluster: attached to running server", "data_dir", dataDir, "pid", pid)
	return c, true
}

// startOrAttach runs pg_ctl start. It fails while another postmaster holds the
// directory: one a racing Ember process is starting (attach to it once it
// answers), or one just killed whose PID or shared memory has not yet gone
// (start again once it has). Anything else is reported at once.
func (c *Cluster) startOrAttach(ctx context.Context, options string) (*Cluster, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		heldBefore := postmasterAlive(c.dataDir)
		err := c.start(ctx, options)
		if err == nil {
			return c, nil
		}
		if !heldBefore && !postmasterAlive(c.dataDir) && !strings.Contains(err.Error(), "shared memory block is still in use") {
			return nil, err
		}
		for postmasterAlive(c.dataDir) {
			if other, ok := attach(ctx, c.dataDir, c.logger); ok {
				return other, nil
			}
			if time.Now().After(deadline) {
				return nil, err
			}
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return nil, err
			}
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 200*time.Millisecond) {
			return nil, err
		}
		c.logger.Info("pgcluster: previous server gone, starting again", "data_dir", c.dataDir)
	}
}

func postmasterAlive(dataDir string) bool {
	pid, _, _, ok := readPostmasterPID(dataDir)
	return ok && processAlive(pid)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// readPostmasterPID parses the lock file: line 1 PID, line 4 port, line 5 first socket dir.
func readPostmasterPID(dataDir string) (pid int, sockDir string, port int, ok bool) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, "", 0, false
	}
	lines := strings.Split(string(data), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, "", 0, false
	}
	if len(lines) > 3 {
		port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	if len(lines) > 4 {
		sockDir = strings.TrimSpace(lines[4])
	}
	return pid, sockDir, port, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// binaries are initdb, pg_ctl and postgres from one directory, so versions match.
type binaries struct {
	dir, initdb, pgCtl, postgres string
}

// findBinaries looks on pathEnv first (resolving symlinks to the real directory),
// then in the highest-numbered globRoot/*/bin.
func findBinaries(pathEnv, globRoot string) (binaries, error) {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue
		}
		initdb := filepath.Join(dir, "initdb")
		if !isExecutable(initdb) {
			continue
		}
		real, err := filepath.EvalSymlinks(initdb)
		if err != nil {
			continue
		}
		if b, ok := binariesIn(filepath.Dir(real)); ok {
			return b, nil
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(globRoot, "*", "bin"))
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if b, ok := binariesIn(dir); ok {
			return b, nil
		}
	}
	return binaries{}, ErrNoBinaries
}

func binariesIn(dir string) (binaries, bool) {
	b := binaries{
		dir:      dir,
		initdb:   filepath.Join(dir, "initdb"),
		pgCtl:    filepath.Join(dir, "pg_ctl"),
		postgres: filepath.Join(dir, "postgres"),
	}
	ok := isExecutable(b.initdb) && isExecutable(b.pgCtl) && isExecutable(b.postgres)
	return b, ok
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// compareVersions orders "9.6" < "15" < "16.1"; non-numeric names sort lowest.
func compareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
	return slices.Compare(pa, pb)
}

func versionParts(s string) []int {
	var parts []int
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return []int{-1}
		}
		parts = append(parts, n)
	}
	return parts
}

// runAs is the identity the server tools run under: ourselves, or the postgres
// account when we are root, because PostgreSQL refuses to run as root.
type runAs struct {
	cred *syscall.Credential
	home string
	gids []uint32
}

func currentRunAs() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{}, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return runAs{}, fmt.Errorf("pgcluster: running as root, PostgreSQL must run as the %q user: %w", serverUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return runAs{}, fmt.Errorf("pgcluster: user %q has non-numeric uid/gid %s/%s", serverUser, u.Uid, u.Gid)
	}
	r := runAs{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		home: u.HomeDir,
		gids: []uint32{uint32(gid)},
	}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(n) != uint32(gid) {
				r.gids = append(r.gids, uint32(n))
			}
		}
	}
	return r, nil
}

func (r runAs) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	// cwd must be accessible to the server user; root's cwd often is not.
	cmd.Dir = dir
	cmd.Env = r.env()
	// pg_ctl's server detaches from our pipes, but if something still holds them,
	// do not hang forever after pg_ctl itself has exited.
	cmd.WaitDelay = 5 * time.Second
	if r.cred != nil {
		cred := *r.cred
		cred.Groups = r.gids[1:]
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &cred}
	}
	return cmd
}

// env drops PG* variables so the caller's PGPORT, PGDATA etc. cannot redirect the
// tools, and points HOME and USER at the account they run as.
func (r runAs) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		if r.cred != nil && (strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "USER=") || strings.HasPrefix(kv, "LOGNAME=")) {
			continue
		}
		env = append(env, kv)
	}
	if r.cred != nil {
		env = append(env, "HOME="+r.home, "USER="+serverUser, "LOGNAME="+serverUser)
	}
	return env
}

// checkTraversable verifies the server user can reach paths under dir, so a
// root-owned 0700 parent (t.TempDir, /root) fails here with a clear message
// instead of deep inside initdb.
func (r runAs) checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := fi.Mode().Perm()
		var allowed bool
		switch {
		case st.Uid == r.cred.Uid:
			allowed = mode&0o100 != 0
		case slices.Contains(r.gids, st.Gid):
			allowed = mode&0o010 != 0
		default:
			allowed = mode&0o001 != 0
		}
		if !allowed {
			return fmt.Errorf("the %q user cannot traverse %s (mode %v, owner uid %d): "+
				"make it searchable (chmod o+x %s) or choose a data directory elsewhere", serverUser, d, mode, st.Uid, d)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// readTail returns the last n lines written to a file after offset, reading at most 16 KiB.
func readTail(path string, offset int64, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const window = 16 << 10
	if fi, err := f.Stat(); err == nil {
		offset = max(offset, fi.Size()-window)
	}
	if _, err := f.Seek(max(offset, 0), io.SeekStart); err != nil {
		return "", err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	return tail(data, n), nil
}

func tail(data []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
