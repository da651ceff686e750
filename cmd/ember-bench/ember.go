package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// emberServer is one `ember serve` subprocess on a throwaway data directory.
type emberServer struct {
	cmd       *exec.Cmd
	dir       string // temp dir: data/ and ember.log
	logPath   string
	baseURL   string // http://127.0.0.1:PORT
	debugAddr string // pprof listener; empty unless profiling
	exited    chan struct{}
	waitErr   error       // valid once exited is closed
	stopping  atomic.Bool // set before SIGTERM, so the exit is not reported as a crash
}

const (
	readyTimeout = 120 * time.Second
	stopTimeout  = 30 * time.Second // ember gives HTTP 15 s and PostgreSQL 30 s
)

// startEmber starts a fresh server and waits for /readyz. onCrash is called
// with the cause if the server exits before stop is called, so a dead server
// aborts the run instead of turning every request into an error.
func startEmber(ctx context.Context, bin string, profile bool, onCrash func(error), args ...string) (*emberServer, error) {
	dir, err := os.MkdirTemp("", "ember-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	// When run as root, ember runs PostgreSQL as the postgres user, which
	// must be able to traverse the 0700 temp dir to reach its data dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	s := &emberServer{dir: dir, logPath: filepath.Join(dir, "ember.log"), exited: make(chan struct{})}
	if err := s.launch(bin, profile, onCrash, args...); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return s, err // caller stops it and removes dir
	}
	return s, nil
}

func (s *emberServer) launch(bin string, profile bool, onCrash func(error), extra ...string) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	// Later flags win: extra may turn authorisation back on.
	args := append([]string{"serve", "--addr", addr, "--data-dir", filepath.Join(s.dir, "data"), "--auth", "none", "--dimse-addr", "off"}, extra...)
	if profile {
		if s.debugAddr, err = freeAddr(); err != nil {
			return err
		}
		args = append(args, "--debug-addr", s.debugAddr)
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = cleanEnv()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Own process group: a terminal Ctrl-C reaches only us, and we stop the
	// server after the load. Pdeathsig covers us being killed outright.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.baseURL = "http://" + addr
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.exited)
		if !s.stopping.Load() {
			onCrash(fmt.Errorf("ember exited unexpectedly: %v", s.waitErr))
		}
	}()
	return nil
}

// cleanEnv drops every EMBER_* variable so the server runs on its defaults
// (pool size, embedded database) whatever the caller's shell has set.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EMBER_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddr asks the kernel for an unused loopback port. Another process
// could take it before ember binds; startup then fails loudly, which is fine.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (s *emberServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("readyz: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("ember exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s/readyz: %w", s.baseURL, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, so ember also stops its PostgreSQL, and waits; it
// kills the server only if it hangs. It returns the exit error, if any.
func (s *emberServer) stop() error {
	s.stopping.Store(true)
	select {
	case <-s.exited:
		return s.waitErr
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM ember: %w", err)
	}
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("ember did not stop within %v and was killed", stopTimeout)
	}
}

// stopOrphanPostgres shuts down the embedded PostgreSQL if ember died
// without stopping it, so no server is left running on a deleted data dir.
// A cleanly stopped PostgreSQL has removed its postmaster.pid already.
func (s *emberServer) stopOrphanPostgres() error {
	pgdata := filepath.Join(s.dir, "data", "postgres")
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || !runsOn(pid, pgdata) {
		return nil // stale pid file, or the pid now belongs to someone else
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil { // fast shutdown
		return fmt.Errorf("stopping orphaned PostgreSQL %d: %w", pid, err)
	}
	for deadline := time.Now().Add(stopTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !runsOn(pid, pgdata) {
			return nil
		}
	}
	return fmt.Errorf("orphaned PostgreSQL %d on %s did not stop", pid, pgdata)
}

// runsOn reports whether pid is alive with pgdata on its command line.
func runsOn(pid int, pgdata string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(cmdline, []byte(pgdata))
}

// logTail returns the last n lines of the server log, for failure reports.
func (s *emberServer) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// sampleRSS polls the server's VmRSS every 250 ms until stop is called and
// stop returns the peak in KiB. It covers the ember process only: its
// PostgreSQL runs as separate processes with their own memory.
func (s *emberServer) sampleRSS() (stop func() (peakKiB int64)) {
	var peak int64 // owned by the sampling goroutine until done closes
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb, err := readRSS(s.cmd.Process.Pid); err == nil {
				peak = max(peak, kb)
			}
			select {
			case <-quit:
				return
			case <-s.exited:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-done
		return peak
	}
}

// readRSS reads VmRSS (KiB) from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
