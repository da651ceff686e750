package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/internal/testenv"
)

// The SMART app the Admin screen registers and launches: a hand-written
// public client (PKCE S256) served by the test, which hands the token
// response it gets to the test.
const (
	appClientID = "admin-e2e-app"
	svcClientID = "admin-e2e-svc"
	oldClientID = "admin-e2e-old" // registered to be removed
	appScope    = "launch openid fhirUser patient/*.rs"
)

const appLaunchPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>launch</title></head>
<body><p id="result">Launching…</p>
<script>
const b64 = (a) => btoa(String.fromCharCode(...a)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
(async () => {
  const p = new URLSearchParams(location.search);
  const iss = p.get('iss');
  const launch = p.get('launch');
  if (!iss || !launch) throw new Error('an EHR launch brings iss and launch');
  const conf = await (await fetch(iss + '/.well-known/smart-configuration')).json();
  const verifier = b64(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  const state = b64(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('app', JSON.stringify({ verifier, state, token: conf.token_endpoint }));
  location.assign(conf.authorization_endpoint + '?' + new URLSearchParams({
    response_type: 'code', client_id: '` + appClientID + `', redirect_uri: new URL('index.html', location.href).href,
    scope: '` + appScope + `', state, aud: iss, launch, code_challenge: challenge, code_challenge_method: 'S256' }));
})().catch((e) => { document.getElementById('result').textContent = 'ERROR ' + e; });
</script></body></html>`

const appIndexPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>app</title></head>
<body><p id="result">Signing in…</p>
<script>
(async () => {
  const p = new URLSearchParams(location.search);
  if (p.get('error')) throw new Error(p.get('error') + ': ' + p.get('error_description'));
  const s = JSON.parse(sessionStorage.getItem('app') || '{}');
  if (!p.get('state') || p.get('state') !== s.state) throw new Error('state mismatch');
  const res = await fetch(s.token, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: p.get('code'), client_id: '` + appClientID + `',
      redirect_uri: location.origin + location.pathname, code_verifier: s.verifier }) });
  const tok = await res.json();
  if (!res.ok) throw new Error('token: ' + JSON.stringify(tok));
  const r = await fetch('result', { method: 'POST', body: JSON.stringify(tok) });
  if (!r.ok) throw new Error('result: ' + r.status);
  document.getElementById('result').textContent = 'OK patient ' + tok.patient;
})().catch((e) => { document.getElementById('result').textContent = 'ERROR ' + e; });
</script></body></html>`

// launchApp serves the app's two pages and records the token response
// its index page posts.
type launchApp struct {
	mu    sync.Mutex
	token map[string]any
}

func (a *launchApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/launch.html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, appLaunchPage)
	case "/index.html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, appIndexPage)
	case "/result":
		var tok map[string]any
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&tok) != nil {
			http.Error(w, "POST the token response as JSON", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.token = tok
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (a *launchApp) tokenResponse() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}

// TestAdminInBrowser drives the Admin screen as an admin: registers a
// SMART app and completes its EHR launch for a Synthea patient, adds a
// user, resets its password and signs in as them, runs a Bulk Data export
// to a downloaded file, lists the guides' profiles, finds its own "user
// add" in the audit log; and holds each result to what the server has.
// The new user, made a doctor, sees no Admin.
func TestAdminInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test builds ember and drives chromium for most of a minute")
	}
	browser := testenv.LookPath(t, testenv.Chromium, "chromium", "chromium-browser")
	node := testenv.LookPath(t, testenv.NodeJS, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	pw := testenv.NPMPackage(ctx, t, "playwright-core", playwrightVersion)
	axe := testenv.NPMPackage(ctx, t, "axe-core", axeVersion)
	dataDir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	var bundles []string
	for _, pat := range []string{"Deedra_Lockman_*.json", "Liz_Conn_*.json"} {
		m, _ := filepath.Glob(filepath.Join(dataDir, pat))
		if len(m) != 1 {
			t.Fatalf("%s in %s: %d files", pat, dataDir, len(m))
		}
		bundles = append(bundles, m[0])
	}
	bin := filepath.Join(t.TempDir(), "ember")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/emberfhir/ember/cmd/ember").CombinedOutput(); err != nil {
		t.Fatalf("build ember: %v\n%s", err, out)
	}
	dbURL := pgtest.NewDatabase(t)
	ember := func(args ...string) string {
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
	built := time.Now()
	ember(append([]string{"import"}, bundles...)...)
	imported := time.Now()
	ember("ig", "install", filepath.Join("..", "..", "testdata", "ig", "hl7.fhir.us.core-6.1.0.tgz"))
	ember("user", "add", "--username", "ada", "--password", password, "--role", "admin", "--fhir-user", "Practitioner/ada")
	t.Logf("built ember in %s, loaded %d patients in %s and US Core in %s", built.Sub(start).Round(time.Millisecond), len(bundles),
		imported.Sub(built).Round(time.Millisecond), time.Since(imported).Round(time.Millisecond))

	app := &launchApp{}
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()

	addr := freeAddr(t)
	srv := exec.CommandContext(ctx, bin, "serve", "--addr", addr, "--database-url", dbURL, "--auth", "smart", "--dimse-addr", "off",
		"--log-level", "warn")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	origin := "http://" + addr
	waitReady(t, origin+"/readyz")

	api := &client{t: t, base: origin + "/fhir", token: ember("token", "--client", "admin-e2e-check", "--register",
		"--scope", "system/*.cruds", "--base-url", origin+"/fhir")}
	lockman := api.onlyID("Patient?family=Lockman")
	conn := api.onlyID("Patient?family=Conn")
	patients := api.count("Patient")

	shots := os.Getenv("EMBER_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	} else if shots, err = filepath.Abs(filepath.Join(shots, "console-admin-e2e")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"base": origin, "password": password, "axe": filepath.Join(axe, "axe.min.js"), "shots": shots, "admin": "ada",
		"app": map[string]string{"id": appClientID, "redirect": appSrv.URL + "/index.html", "launch": appSrv.URL + "/launch.html",
			"scope": appScope},
		"service": svcClientID, "old": oldClientID, "family": "Lockman", "patient": lockman,
		"user": map[string]string{"name": "nina", "first": "first password 1", "second": "second password 2", "fhirUser": "Practitioner/nina"},
	})
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	browserStart := time.Now()
	cmd := exec.CommandContext(ctx, node, "testdata/admin_drive.js", pw, browser, cfgPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("browser run failed: %v\n%s", err, out)
	}
	t.Logf("browser run: %s (whole test %s)", time.Since(browserStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	var got adminDrive
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("browser output: %v: %s", err, out)
	}
	if got.Failure != "" {
		t.Fatalf("the browser run stopped after %v:\n%s", got.Steps, got.Failure)
	}
	checkAdminScreens(t, got)
	r := got.Results
	checkApps(t, r.Apps, origin, appSrv.URL, app.tokenResponse(), lockman, conn)
	checkUsers(t, r.Users, r.NewUser, ember("user", "list"))
	checkExports(t, r.Exports, patients)
	checkGuides(t, r.Guides)
	checkAudit(t, r.Audit)
}

// adminDrive is what admin_drive.js prints.
type adminDrive struct {
	Failure string   `json:"failure"`
	Steps   []string `json:"steps"`
	Screens []struct {
		Name, URL, Screenshot string
		Violations            []struct {
			ID, Impact, Help string
			Nodes            int
			Targets          []string
		}
	} `json:"screens"`
	ConsoleErrors   []map[string]string `json:"consoleErrors"`
	NetworkRefusals []map[string]string `json:"networkRefusals"`
	Dialogs         []map[string]string `json:"dialogs"`
	Results         struct {
		Apps    appsResult    `json:"apps"`
		Users   usersResult   `json:"users"`
		NewUser newUserResult `json:"newUser"`
		Exports exportsResult `json:"exports"`
		Guides  guidesResult  `json:"guides"`
		Audit   auditResult   `json:"audit"`
	} `json:"results"`
}

// fieldNote is the error shown beside a form field.
type fieldNote struct {
	Text    string
	Invalid bool // the field has aria-invalid="true"
}

type appsResult struct {
	AdminNav            bool
	Empty, Duplicate    fieldNote
	Listed              []string
	Secret, Copied      string
	LaunchURLCopy       string
	LaunchURL, AppShows string
	Removed             []string
}

type usersResult struct {
	ShortPassword, Duplicate fieldNote
	Added                    struct{ Role, FHIRUser string }
	ResetNote, RoleNote      string
	RoleAfter                string
	FailedBefore             string
	FailedAfter, UnlockNote  string
	Listed                   []string
}

type newUserResult struct {
	Who, DeniedText, DeniedClass string
	AdminNav                     bool
}

type exportsResult struct {
	Compartment     fieldNote
	State           string
	Files           []string
	Download        struct{ Name, Text string }
	AfterReload     int
	Cancelled       string
	CancelledStored string
}

type guidesResult struct {
	Claims   []string
	Packages []string
	Count    string
}

type auditResult struct {
	BadDate  fieldNote
	Rows     []struct{ Subtype, Agent string }
	JSON     string
	Expanded string
}

// checkAdminScreens: no console errors or dialogs, no serious or critical
// axe violation, a screenshot of each screen.
func checkAdminScreens(t *testing.T, got adminDrive) {
	t.Helper()
	for _, e := range got.ConsoleErrors {
		t.Errorf("browser console error (%s on %s): %s", e["who"], e["page"], e["text"])
	}
	for _, d := range got.Dialogs {
		t.Errorf("a dialog opened (%s): %s", d["who"], d["text"])
	}
	t.Logf("%d refusals the scenario provokes were logged by the browser as failed loads", len(got.NetworkRefusals))
	var names []string
	for _, s := range got.Screens {
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
		t.Logf("screenshot %-22s %s", s.Name, s.Screenshot)
	}
	for _, want := range []string{"admin-apps", "admin-launch", "admin-users", "admin-exports", "admin-guides", "admin-audit", "admin-denied"} {
		if !slices.Contains(names, want) {
			t.Errorf("no axe check and screenshot of %s (checked %v)", want, names)
		}
	}
}

// checkApps: the form's errors sat beside their field; the app and the
// service were registered; the secret shown works; the EHR launch gave the
// app a token for the launch patient, which reads that patient only.
func checkApps(t *testing.T, r appsResult, origin, appURL string, tok map[string]any, lockman, conn string) {
	t.Helper()
	if !r.AdminNav {
		t.Error("the admin sees no Admin entry in the navigation")
	}
	if !r.Empty.Invalid || !strings.Contains(r.Empty.Text, "Required") {
		t.Errorf("an empty client id: the id field showed %+v", r.Empty)
	}
	if !r.Duplicate.Invalid || !strings.Contains(r.Duplicate.Text, "already exists") || strings.HasPrefix(r.Duplicate.Text, "id:") {
		t.Errorf("a taken client id: the server's 409 showed beside the id field as %+v", r.Duplicate)
	}
	for _, id := range []string{appClientID, svcClientID, oldClientID} {
		if !slices.Contains(r.Listed, id) {
			t.Errorf("the app list %v lacks %s", r.Listed, id)
		}
	}
	if len(r.Secret) < 16 || r.Copied != r.Secret {
		t.Errorf("the symmetric client's secret: shown %q, copied %q", r.Secret, r.Copied)
	} else {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
		req, _ := http.NewRequest(http.MethodPost, origin+"/auth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(svcClientID, r.Secret)
		if status, body := send(t, req); status != http.StatusOK || !strings.Contains(body, "access_token") {
			t.Errorf("the secret the Admin screen showed does not authenticate %s: %d %s", svcClientID, status, body)
		}
	}
	if !strings.HasPrefix(r.LaunchURLCopy, appURL+"/launch.html?") || !strings.Contains(r.LaunchURLCopy, "iss="+url.QueryEscape(origin+"/fhir")) {
		t.Errorf("the app's launch URL: %q", r.LaunchURLCopy)
	}
	if !strings.HasPrefix(r.LaunchURL, appURL+"/launch.html?") || !strings.Contains(r.LaunchURL, "launch=") || !strings.HasPrefix(r.AppShows, "OK patient "+lockman) {
		t.Errorf("EHR launch: URL %q, the app shows %q", r.LaunchURL, r.AppShows)
	}
	if tok == nil {
		t.Fatal("the launched app posted no token response")
	}
	if tok["patient"] != lockman || !strings.Contains(fmt.Sprint(tok["scope"]), "patient/") {
		t.Errorf("the launched app's token: patient %v, scope %v; want patient %s", tok["patient"], tok["scope"], lockman)
	}
	at, _ := tok["access_token"].(string)
	for id, want := range map[string]int{lockman: http.StatusOK, conn: http.StatusNotFound} {
		req, _ := http.NewRequest(http.MethodGet, origin+"/fhir/Patient/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+at)
		if status, _ := send(t, req); status != want {
			t.Errorf("the launched app reads Patient/%s: %d, want %d", id, status, want)
		}
	}
	kept := slices.DeleteFunc(slices.Clone(r.Listed), func(id string) bool { return id == oldClientID })
	if len(kept) != len(r.Listed)-1 || !slices.Equal(r.Removed, kept) {
		t.Errorf("after removing %s the list holds %v (before: %v)", oldClientID, r.Removed, r.Listed)
	}
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// checkUsers: errors beside their fields; the user added, its password
// reset (the new one signed in), its role changed, a second user removed;
// the database agrees (ember user list).
func checkUsers(t *testing.T, r usersResult, n newUserResult, list string) {
	t.Helper()
	if !r.ShortPassword.Invalid || !strings.Contains(r.ShortPassword.Text, "8 characters") {
		t.Errorf("a short password: %+v", r.ShortPassword)
	}
	if !r.Duplicate.Invalid || !strings.Contains(r.Duplicate.Text, "already exists") {
		t.Errorf("a taken username: the server's 409 showed beside the username as %+v", r.Duplicate)
	}
	if r.Added.Role != "nurse" || r.Added.FHIRUser != "Practitioner/nina" {
		t.Errorf("the added user shows as %+v", r.Added)
	}
	if !strings.Contains(r.ResetNote, "new password") || !strings.Contains(r.RoleNote, "doctor") || r.RoleAfter != "doctor" {
		t.Errorf("reset %q, role change %q, role now %q", r.ResetNote, r.RoleNote, r.RoleAfter)
	}
	if r.FailedBefore != "1" || r.FailedAfter != "0" || !strings.Contains(r.UnlockNote, "Unlocked") {
		t.Errorf("unlock after a failed login: failed logins %q, then %q (%q)", r.FailedBefore, r.FailedAfter, r.UnlockNote)
	}
	if !slices.Equal(r.Listed, []string{"ada", "nina"}) {
		t.Errorf("after removing olaf the list shows %v", r.Listed)
	}
	var rows []string
	for _, line := range strings.Split(list, "\n")[1:] {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	if !slices.Equal(rows, []string{"ada admin Practitioner/ada", "nina doctor Practitioner/nina"}) {
		t.Errorf("ember user list:\n%s", list)
	}
	if !strings.Contains(n.Who, "nina") || !strings.Contains(n.Who, "doctor") {
		t.Errorf("signing in with the reset password: %q", n.Who)
	}
	if n.AdminNav || !strings.Contains(n.DeniedClass, "msg-denied") || !strings.Contains(n.DeniedText, "not permitted") {
		t.Errorf("the doctor: Admin in the navigation %v, #/admin showed %q (%s)", n.AdminNav, n.DeniedText, n.DeniedClass)
	}
}

// checkExports: the export completed and its Patient file, downloaded
// through a blob: URL, holds every patient; the list survived a reload; a
// cancelled export shows as such.
func checkExports(t *testing.T, r exportsResult, patients int) {
	t.Helper()
	if !r.Compartment.Invalid || !strings.Contains(r.Compartment.Text, "compartment") {
		t.Errorf("a Patient export of Organization: the server's refusal showed beside _type as %+v", r.Compartment)
	}
	if r.State != "complete" || len(r.Files) != 1 {
		t.Errorf("the export ended %q with files %v", r.State, r.Files)
	}
	lines := strings.Split(strings.TrimSpace(r.Download.Text), "\n")
	n := 0
	for _, l := range lines {
		var p struct{ ResourceType string }
		if json.Unmarshal([]byte(l), &p) == nil && p.ResourceType == "Patient" {
			n++
		}
	}
	if !strings.HasSuffix(r.Download.Name, ".ndjson") || n != patients || len(lines) != patients {
		t.Errorf("downloaded %q: %d lines, %d Patients; the server has %d", r.Download.Name, len(lines), n, patients)
	}
	if r.AfterReload != 2 || r.Cancelled != "cancelled" || r.CancelledStored != "cancelled" {
		t.Errorf("after a reload %d exports listed; the cancelled one shows %q (stored %q)", r.AfterReload, r.Cancelled, r.CancelledStored)
	}
}

func checkGuides(t *testing.T, r guidesResult) {
	t.Helper()
	if !slices.ContainsFunc(r.Claims, func(s string) bool { return strings.Contains(s, "us/core") }) {
		t.Errorf("the CapabilityStatement's claims shown: %v", r.Claims)
	}
	if !slices.ContainsFunc(r.Packages, func(s string) bool { return strings.HasPrefix(s, "hl7.fhir.us.core#6.1.0") }) {
		t.Errorf("profile groups %v: want hl7.fhir.us.core#6.1.0", r.Packages)
	}
	if n, _ := strconv.Atoi(strings.Fields(r.Count + " 0")[0]); n < 20 {
		t.Errorf("profile count %q", r.Count)
	}
}

// checkAudit: the admin's own "user add" found by subtype and agent, its
// JSON shown; a date the server refuses shows its diagnostics beside the
// date field.
func checkAudit(t *testing.T, r auditResult) {
	t.Helper()
	if !r.BadDate.Invalid || r.BadDate.Text == "" {
		t.Errorf("a bad date: the server's OperationOutcome showed beside the date field as %+v", r.BadDate)
	}
	if len(r.Rows) == 0 {
		t.Fatal("no audit row for the admin's user add")
	}
	for _, row := range r.Rows {
		if !strings.Contains(row.Subtype, "user add") || !strings.Contains(row.Agent, "ada") {
			t.Errorf("audit row %+v: want subtype user add by ada", row)
		}
	}
	if r.Expanded != "true" || !strings.Contains(r.JSON, `"code": "user add"`) || !strings.Contains(r.JSON, `"altId": "ada"`) {
		t.Errorf("the expanded row (aria-expanded %s) shows %.300s", r.Expanded, r.JSON)
	}
}
