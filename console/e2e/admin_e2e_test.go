package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
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
	browser, node := browserTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	pw, axe := driverPackages(ctx, t)
	bundles := syntheaBundles(t, "Deedra_Lockman_*.json", "Liz_Conn_*.json")
	bin := buildEmber(ctx, t)
	dbURL := pgtest.NewDatabase(t)
	ember := emberCLI(ctx, t, bin, dbURL)
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

	origin := serve(ctx, t, bin, freeAddr(t), dbURL, nil, "--dimse-addr", "off")

	api := systemClient(t, ember, origin, "admin-e2e-check")
	lockman := api.onlyID("Patient?family=Lockman")
	conn := api.onlyID("Patient?family=Conn")
	patients := api.count("Patient")

	var got adminDrive
	browserRun{browser: browser, node: node, pw: pw, axe: axe, script: "admin_drive.js", start: start}.drive(ctx, t, origin,
		shotsDir(t, "console-admin-e2e"), map[string]any{
			"admin": "ada",
			"app": map[string]string{"id": appClientID, "redirect": appSrv.URL + "/index.html", "launch": appSrv.URL + "/launch.html",
				"scope": appScope},
			"service": svcClientID, "old": oldClientID, "family": "Lockman", "patient": lockman,
			"user": map[string]string{"name": "nina", "first": "first password 1", "second": "second password 2", "fhirUser": "Practitioner/nina"},
		}, &got)
	checkScreens(t, &got.driveReport, 0, "admin-apps", "admin-launch", "admin-users", "admin-exports", "admin-guides", "admin-audit", "admin-denied")
	r := got.Results
	checkApps(t, r.Apps, origin, appSrv.URL, app.tokenResponse(), lockman, conn)
	checkUsers(t, r.Users, r.NewUser, ember("user", "list"))
	checkExports(t, r.Exports, patients)
	checkGuides(t, r.Guides)
	checkAudit(t, r.Audit)
}

// adminDrive is what admin_drive.js prints.
type adminDrive struct {
	driveReport
	Results struct {
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
