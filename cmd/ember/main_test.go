package main_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
)

var emberBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ember-bin-")
	if err != nil {
		panic(err)
	}
	emberBin = filepath.Join(dir, "ember")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=test-1.2.3", "-o", emberBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build ember: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

func ember(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(emberBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestVersionAndHelp(t *testing.T) {
	if out, code := ember(t, nil, "version"); code != 0 || strings.TrimSpace(out) != "ember test-1.2.3" {
		t.Fatalf("version: %d %q", code, out)
	}
	out, code := ember(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help exit %d", code)
	}
	for _, flag := range []string{"-addr", "-base-url", "-database-url", "-data-dir", "-max-body", "EMBER_ADDR", "EMBER_DATABASE_URL", "EMBER_DATA_DIR", "EMBER_BASE_URL"} {
		if !strings.Contains(out, flag) {
			t.Errorf("serve --help lacks %s:\n%s", flag, out)
		}
	}
	if out, code := ember(t, nil, "migrate", "--help"); code != 0 || !strings.Contains(out, "-database-url") {
		t.Fatalf("migrate --help: %d %s", code, out)
	}
	if _, code := ember(t, nil, "frobnicate"); code != 2 {
		t.Fatalf("unknown command exit %d, want 2", code)
	}
	if _, code := ember(t, nil); code != 2 {
		t.Fatalf("no command exit %d, want 2", code)
	}
}

// traversableTempDir returns a temp dir PostgreSQL can use when tests run as
// root (the cluster then runs as the postgres user, who must reach it).
func traversableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is a running `ember serve` subprocess.
type server struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	addr string // listen address
	base string // the FHIR base it announced
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs `ember serve` listening on addr and waits until /readyz
// answers there.
func startServe(t *testing.T, env []string, addr string, args ...string) *server {
	t.Helper()
	s := &server{out: &syncBuffer{}, addr: addr, done: make(chan error, 1)}
	s.cmd = exec.Command(emberBin, append([]string{"serve"}, args...)...)
	// These tests are about serving, not authorisation: auth off unless a
	// test's env says otherwise.
	// Parallel servers would fight over the DIMSE port: off unless asked.
	s.cmd.Env = append(append(os.Environ(), "EMBER_AUTH=none", "EMBER_DIMSE_ADDR=off"), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if i := strings.Index(s.out.String(), "FHIR base: "); i >= 0 {
			line := s.out.String()[i+len("FHIR base: "):]
			s.base = strings.TrimSpace(strings.SplitN(line, "\n", 2)[0])
			scheme := "http"
			for _, a := range args {
				if a == "--tls-cert" {
					scheme = "https"
				}
			}
			if resp, err := insecureClient.Get(scheme + "://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return s
				}
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("ember serve exited early: %v\n%s", err, s.out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("ember serve not ready:\n%s", s.out.String())
	return nil
}

// stop sends SIGTERM and requires a clean exit.
func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("ember serve exit: %v\n%s", err, s.out.String())
		}
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Errorf("ember serve did not stop on SIGTERM\n%s", s.out.String())
	}
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeEmbeddedDatabase: with no database URL, serve creates a cluster
// under the data dir, stops it on SIGTERM, and reuses it (data intact) on the
// next start. Flags come from the environment here, as the contract allows.
func TestServeEmbeddedDatabase(t *testing.T) {
	dataDir := filepath.Join(traversableTempDir(t), "data")
	addr := freeAddr(t)
	env := []string{"EMBER_DATA_DIR=" + dataDir, "EMBER_ADDR=" + addr, "EMBER_DATABASE_URL="}
	s := startServe(t, env, addr)
	if want := "http://" + addr + "/fhir"; s.base != want {
		t.Fatalf("base %q, want %q", s.base, want)
	}
	if code, body := httpDo(t, "GET", s.base+"/metadata", ""); code != 200 || !strings.Contains(body, `"fhirVersion":"4.0.1"`) {
		t.Fatalf("metadata: %d %s", code, body)
	}
	if code, body := httpDo(t, "PUT", s.base+"/Patient/kept", `{"resourceType":"Patient","id":"kept","gender":"other"}`); code != 201 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	pidFile := filepath.Join(dataDir, "postgres", "postmaster.pid")
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("embedded PostgreSQL not running under the data dir: %v", err)
	}
	s.stop(t)
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("PostgreSQL still running after ember stopped (postmaster.pid: %v)", err)
	}

	// Second start: reuses the cluster (no initdb) and the data is there.
	s2 := startServe(t, env, addr)
	if strings.Contains(s2.out.String(), "initialised cluster") {
		t.Fatalf("second start ran initdb again:\n%s", s2.out.String())
	}
	if code, body := httpDo(t, "GET", s2.base+"/Patient/kept", ""); code != 200 || !strings.Contains(body, `"other"`) {
		t.Fatalf("data not kept across restarts: %d %s", code, body)
	}
}

// TestServeExternalDatabase: with a URL, serve uses it and starts no cluster;
// --base-url shapes Location headers.
func TestServeExternalDatabase(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "unused")
	addr := freeAddr(t)
	s := startServe(t, nil, addr, "--database-url", pgtest.NewDatabase(t), "--data-dir", dataDir,
		"--addr", addr, "--base-url", "https://fhir.example.org/r4")
	if s.base != "https://fhir.example.org/r4" {
		t.Fatalf("base %q", s.base)
	}
	// Files (DICOM instances, exports) still live under the data dir; the
	// database must not.
	if _, err := os.Stat(filepath.Join(dataDir, "postgres")); !os.IsNotExist(err) {
		t.Fatalf("a PostgreSQL cluster was created although a database URL was given")
	}
	req, err := http.NewRequest("POST", "http://"+addr+"/fhir/Patient", strings.NewReader(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: status %d, want 201: %s", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "https://fhir.example.org/r4/Patient/") {
		t.Fatalf("Location %q does not use --base-url", loc)
	}
}

// TestMigrateConcurrently: several `ember migrate` at once on one empty
// database all succeed (goose's advisory lock serialises them).
func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.NewEmptyDatabase(t)
	var wg sync.WaitGroup
	errs := make([]string, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := exec.Command(emberBin, "migrate", "--database-url", url).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "migrations applied") {
				errs[i] = fmt.Sprintf("%v: %s", err, out)
			}
		}(i)
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("migrate %d: %s", i, e)
		}
	}
}

func TestReindexCommand(t *testing.T) {
	url := pgtest.NewDatabase(t)
	out, code := ember(t, nil, "reindex", "--database-url", url)
	if code != 0 || !strings.Contains(out, "reindexed 0 resources") {
		t.Fatalf("reindex: %d %s", code, out)
	}
}
