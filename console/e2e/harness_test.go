package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/internal/testenv"
)

// What the three browser tests (console, admin, imaging) share: the tools
// they fetch, building and serving ember, the driver's run and report, and
// the checks every screen gets.

// The browser-side tools, fetched with npm pack (never npm install).
const (
	playwrightVersion = "1.65.1"
	axeVersion        = "4.14.1"
)

const password = "correct horse battery staple"

func TestMain(m *testing.M) { pgtest.Main(m) }

// browserTools finds chromium and node, skipping the test without them.
func browserTools(t *testing.T) (browser, node string) {
	t.Helper()
	return testenv.LookPath(t, testenv.Chromium, "chromium", "chromium-browser"), testenv.LookPath(t, testenv.NodeJS, "node")
}

// driverPackages fetches playwright-core and axe-core.
func driverPackages(ctx context.Context, t *testing.T) (pw, axe string) {
	t.Helper()
	return testenv.NPMPackage(ctx, t, "playwright-core", playwrightVersion), testenv.NPMPackage(ctx, t, "axe-core", axeVersion)
}

// syntheaBundles are the Synthea files matching patterns, one each.
func syntheaBundles(t *testing.T, patterns ...string) []string {
	t.Helper()
	dataDir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	var bundles []string
	for _, pat := range patterns {
		m, _ := filepath.Glob(filepath.Join(dataDir, pat))
		if len(m) != 1 {
			t.Fatalf("%s in %s: %d files", pat, dataDir, len(m))
		}
		bundles = append(bundles, m[0])
	}
	return bundles
}

func buildEmber(ctx context.Context, t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ember")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/emberfhir/ember/cmd/ember").CombinedOutput(); err != nil {
		t.Fatalf("build ember: %v\n%s", err, out)
	}
	return bin
}

// emberCLI runs ember's commands against dbURL, returning their trimmed
// stdout and failing the test on an error.
func emberCLI(ctx context.Context, t *testing.T, bin, dbURL string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append(args, "--database-url", dbURL)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ember %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return strings.TrimSpace(string(out))
	}
}

// serve starts `ember serve --auth smart` on addr with args added (and env
// when not nil), waits until it is ready and returns its origin; the
// server is stopped when the test ends.
func serve(ctx context.Context, t *testing.T, bin, addr, dbURL string, env []string, args ...string) string {
	t.Helper()
	srv := exec.CommandContext(ctx, bin, append([]string{"serve", "--addr", addr, "--database-url", dbURL, "--auth", "smart",
		"--log-level", "warn"}, args...)...)
	srv.Env = env
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	origin := "http://" + addr
	waitReady(t, origin+"/readyz")
	return origin
}

// systemClient registers clientID with system/*.cruds and asks the FHIR
// API at origin with its token.
func systemClient(t *testing.T, ember func(...string) string, origin, clientID string) *client {
	return &client{t: t, base: origin + "/fhir", token: ember("token", "--client", clientID, "--register",
		"--scope", "system/*.cruds", "--base-url", origin+"/fhir")}
}

// shotsDir is where screenshots go: $EMBER_ARTIFACTS/name when set, kept
// after the run, else a temporary directory.
func shotsDir(t *testing.T, name string) string {
	t.Helper()
	shots := os.Getenv("EMBER_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	} else {
		var err error
		if shots, err = filepath.Abs(filepath.Join(shots, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return shots
}

// screenReport is one screen a driver checked.
type screenReport struct {
	Name, URL, Screenshot string
	Violations            []struct {
		ID, Impact, Help string
		Nodes            int
		Targets          []string
	}
}

// driveReport is what every driver prints besides its results (lib.js's
// out).
type driveReport struct {
	Failure         string              `json:"failure"`
	Steps           []string            `json:"steps"`
	Screens         []screenReport      `json:"screens"`
	ConsoleErrors   []map[string]string `json:"consoleErrors"`
	NetworkRefusals []map[string]string `json:"networkRefusals"`
	Dialogs         []map[string]string `json:"dialogs"`
}

func (r *driveReport) report() *driveReport { return r }

// browserRun is one run of a driver script.
type browserRun struct {
	browser, node, pw, axe string
	script                 string    // under testdata
	start                  time.Time // of the whole test, for the log
}

// drive writes cfg (with base, password, axe and shots added) for the
// script, runs it and decodes what it prints into got, failing the test
// when the run stopped early.
func (b browserRun) drive(ctx context.Context, t *testing.T, origin, shots string, cfg map[string]any, got interface{ report() *driveReport }) {
	t.Helper()
	cfg["base"], cfg["password"], cfg["axe"], cfg["shots"] = origin, password, filepath.Join(b.axe, "axe.min.js"), shots
	data, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	browserStart := time.Now()
	cmd := exec.CommandContext(ctx, b.node, filepath.Join("testdata", b.script), b.pw, b.browser, cfgPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("browser run failed: %v\n%s", err, out)
	}
	t.Logf("browser run: %s (whole test %s)", time.Since(browserStart).Round(time.Millisecond), time.Since(b.start).Round(time.Millisecond))
	if err := json.Unmarshal(out, got); err != nil {
		t.Fatalf("browser output: %v: %s", err, out)
	}
	if r := got.report(); r.Failure != "" {
		t.Fatalf("the browser run stopped after %v:\n%s", r.Steps, r.Failure)
	}
}

// checkScreens: no console errors or dialogs, no serious or critical axe
// violation, a screenshot of each of at least min screens, among them
// each of named.
func checkScreens(t *testing.T, r *driveReport, min int, named ...string) {
	t.Helper()
	for _, e := range r.ConsoleErrors {
		t.Errorf("browser console error (%s on %s): %s", e["who"], e["page"], e["text"])
	}
	for _, d := range r.Dialogs {
		t.Errorf("a dialog opened (%s): %s", d["who"], d["text"])
	}
	t.Logf("%d refusals the scenario provokes were logged by the browser as failed loads", len(r.NetworkRefusals))
	if len(r.Screens) < min {
		t.Errorf("checked %d screens, want at least %d (every one of the scenario)", len(r.Screens), min)
	}
	var names []string
	for _, s := range r.Screens {
		names = append(names, s.Name)
		for _, v := range s.Violations {
			msg := fmt.Sprintf("axe on %s: %s (%s) on %d nodes %v: %s", s.Name, v.ID, v.Impact, v.Nodes, v.Targets, v.Help)
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Error(msg)
			} else {
				t.Log(msg)
			}
		}
		b, err := os.ReadFile(s.Screenshot)
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("screenshot of %s: %v", s.Name, err)
			continue
		}
		t.Logf("screenshot %-26s %s", s.Name, s.Screenshot)
	}
	for _, want := range named {
		if !slices.Contains(names, want) {
			t.Errorf("no axe check and screenshot of %s (checked %v)", want, names)
		}
	}
}

// client asks the FHIR API with a system token.
type client struct {
	t           *testing.T
	base, token string
}

func (c *client) do(method, path, body string, into any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+"/"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/fhir+json")
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		c.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func (c *client) get(path string, into any) { c.do(http.MethodGet, path, "", into) }
func (c *client) put(path, body string)     { c.do(http.MethodPut, path, body, nil) }

func (c *client) count(search string) int {
	c.t.Helper()
	sep := "?"
	if strings.Contains(search, "?") {
		sep = "&"
	}
	var b struct{ Total *int }
	c.get(search+sep+"_summary=count", &b)
	if b.Total == nil {
		c.t.Fatalf("%s: no total", search)
	}
	return *b.Total
}

// onlyID is the id of the first match of search, failing when none.
func (c *client) onlyID(search string) string {
	c.t.Helper()
	var b struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	c.get(search, &b)
	if len(b.Entry) == 0 {
		c.t.Fatalf("%s: no match", search)
	}
	return b.Entry[0].Resource.ID
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server at %s not ready", url)
}
