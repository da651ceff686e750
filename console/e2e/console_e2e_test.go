// Package e2e drives Ember Console in headless Chromium (Playwright) against
// a real `ember serve --auth smart` loaded with Synthea patients, as an
// admin, a receptionist and a patient, and holds what the browser shows to
// what the FHIR API answers: counts, the vital-signs plot's points, the
// validation errors beside their line, refusals shown as such. Every screen
// is checked with axe-core and photographed; any browser console error
// fails the test.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/internal/testenv"
)

// The browser-side tools, fetched with npm pack (never npm install).
const (
	playwrightVersion = "1.65.1"
	axeVersion        = "4.14.1"
)

const password = "correct horse battery staple"

// The Synthea patients loaded: Lockman's chart is drawn, Kreiger signs in
// as a patient, Conn is there to be left out.
var patientFiles = []string{"Deedra_Lockman_*.json", "Clemente_Kreiger_*.json", "Liz_Conn_*.json"}

const weightCode = "29463-7" // body weight, the chart's default

// hostile is a Patient whose name and narrative carry markup: the console
// must show the name as text and the narrative sanitised, with no CSP
// violation (style attribute, remote image) on the way.
const hostile = `{"resourceType":"Patient","id":"hostile",
 "name":[{"family":"Hostile<script>alert(1)</script>","given":["<img src=x onerror=alert(2)>"]}],
 "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p id=\"main\">Hello <a href=\"javascript:alert(3)\">js link</a> <a href=\"Patient/hostile\">self</a> <span style=\"color:red\">styled</span> <img src=\"http://example.org/x.png\" alt=\"remote\"/> <b onclick=\"alert(4)\">bold</b></p></div>"}}`

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestConsoleInBrowser(t *testing.T) {
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
	for _, pat := range patientFiles {
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
	ember(append([]string{"import"}, bundles...)...)
	t.Logf("built ember and loaded %d patients in %s", len(bundles), time.Since(start).Round(time.Millisecond))

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

	// What the browser should show, asked of the FHIR API directly.
	api := &client{t: t, base: origin + "/fhir", token: ember("token", "--client", "console-e2e", "--register",
		"--scope", "system/*.cruds", "--base-url", origin+"/fhir")}
	lockman := api.onlyID("Patient?family=Lockman")
	kreiger := api.onlyID("Patient?family=Kreiger")
	weights := api.count("Observation?patient=" + lockman + "&code=" + url.QueryEscape("http://loinc.org|"+weightCode))
	if weights < 2 {
		t.Fatalf("Lockman has %d body weights; the chart test needs several", weights)
	}
	obs := api.onlyID("Observation?patient=" + lockman + "&code=" + url.QueryEscape("http://loinc.org|"+weightCode) + "&_count=1")
	api.put("Patient/hostile", hostile)
	patients := api.count("Patient")

	ember("user", "add", "--username", "ada", "--password", password, "--role", "admin", "--fhir-user", "Practitioner/ada")
	ember("user", "add", "--username", "rita", "--password", password, "--role", "receptionist", "--fhir-user", "Practitioner/rita")
	ember("user", "add", "--username", "clem", "--password", password, "--role", "patient", "--fhir-user", "Patient/"+kreiger)

	shots := os.Getenv("EMBER_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	} else if shots, err = filepath.Abs(filepath.Join(shots, "console-e2e")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"base": origin, "password": password, "axe": filepath.Join(axe, "axe.min.js"), "shots": shots,
		"users":  map[string]string{"admin": "ada", "receptionist": "rita", "patient": "clem"},
		"family": "Lockman", "lockman": lockman, "observation": obs, "hostile": "hostile",
	})
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	browserStart := time.Now()
	cmd := exec.CommandContext(ctx, node, "testdata/drive.js", pw, browser, cfgPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("browser run failed: %v\n%s", err, out)
	}
	t.Logf("browser run: %s (whole test %s)", time.Since(browserStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	var got driveOutput
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("browser output: %v: %s", err, out)
	}
	if got.Failure != "" {
		t.Fatalf("the browser run stopped after %v:\n%s", got.Steps, got.Failure)
	}
	checkPage(t, got)
	checkAdmin(t, got.Results.Admin, api, patients, lockman, obs, weights)
	checkReceptionist(t, got.Results.Receptionist, patients)
	checkPatient(t, got.Results.Patient, kreiger)
}

// driveOutput is what drive.js prints.
type driveOutput struct {
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
		Admin        adminResults        `json:"admin"`
		Receptionist receptionistResults `json:"receptionist"`
		Patient      patientResults      `json:"patient"`
	} `json:"results"`
}

type note struct {
	Line, ExpectedLine int
	Text               string
	Listed             []string
}

type adminResults struct {
	PatientCount, ObservationCount, Health string
	AuditRows                              int
	SearchRows                             []string
	Paging                                 struct{ First, Second, Back []string }
	Chart                                  struct {
		Hash, Title, Code           string
		Points, TableRows, Timeline int
		Canvas                      bool
	}
	Versions int
	Diff     struct {
		Summary        string
		Added, Removed []string
	}
	ValidateNote, SaveNote note
	SaveStatus             string
	Hostile                struct {
		Summary, Text          string
		Hrefs, IDs, ImgSrcs    []*string
		Styled, Scripts, Mains int
	}
	HostileChartTitle  string
	FirstTab           string
	AfterSkip          struct{ ID, Hash string }
	Stored             *string
	AfterSignOutStatus int
}

type receptionistResults struct {
	PatientCount, ObservationCount string
	ObservationSearch              struct{ Text, Cls string }
	ChartVitals, ChartTitle        string
}

type patientResults struct {
	Landing struct{ Hash, Title string }
	Other   struct{ Text, Cls string }
	Search  struct {
		Count string
		Rows  []string
	}
}

// checkPage: no console errors or dialogs, no serious or critical axe
// violation on any screen, and a screenshot of each.
func checkPage(t *testing.T, got driveOutput) {
	t.Helper()
	for _, e := range got.ConsoleErrors {
		t.Errorf("browser console error (%s on %s): %s", e["who"], e["page"], e["text"])
	}
	for _, d := range got.Dialogs {
		t.Errorf("a dialog opened (%s): %s", d["who"], d["text"])
	}
	t.Logf("%d refusals the scenario provokes were logged by the browser as failed loads (403, 404, 422)", len(got.NetworkRefusals))
	if len(got.Screens) < 12 {
		t.Errorf("checked %d screens, expected every one of the scenario", len(got.Screens))
	}
	for _, s := range got.Screens {
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
}

func checkAdmin(t *testing.T, r adminResults, api *client, patients int, lockman, obs string, weights int) {
	t.Helper()
	if r.PatientCount != strconv.Itoa(patients) || r.Health != "Ready" || r.AuditRows == 0 {
		t.Errorf("admin overview: %d patients shown as %q, health %q, %d audit rows", patients, r.PatientCount, r.Health, r.AuditRows)
	}
	if !slices.Equal(r.SearchRows, []string{lockman}) {
		t.Errorf("family=Lockman found %v, want [%s]", r.SearchRows, lockman)
	}
	p := r.Paging
	if len(p.First) != 5 || len(p.Second) != 5 || slices.ContainsFunc(p.Second, func(id string) bool { return slices.Contains(p.First, id) }) ||
		!slices.Equal(p.Back, p.First) {
		t.Errorf("paging by 5 through Lockman's Observations: next and previous gave %+v", p)
	}
	c := r.Chart
	if c.Hash != "#/patient/"+lockman || c.Title != "Deedra Lockman" || c.Code != weightCode || !c.Canvas || c.Timeline == 0 {
		t.Errorf("chart: %+v", c)
	}
	if c.Points != weights || c.TableRows != weights {
		t.Errorf("the body weight plot has %d points and its table %d rows; the API has %d Observations", c.Points, c.TableRows, weights)
	}
	if r.Versions != 2 || !slices.ContainsFunc(r.Diff.Added, func(s string) bool { return strings.Contains(s, `"status": "amended"`) }) ||
		!slices.ContainsFunc(r.Diff.Removed, func(s string) bool { return strings.Contains(s, `"status": "final"`) }) {
		t.Errorf("after one edit: %d versions, diff %+v", r.Versions, r.Diff)
	}
	for name, n := range map[string]note{"$validate": r.ValidateNote, "save": r.SaveNote} {
		if n.ExpectedLine < 2 || n.Line != n.ExpectedLine || !strings.Contains(n.Text, "bogus") || len(n.Listed) != 1 {
			t.Errorf("%s: the status error is on line %d, the status is on line %d: %+v", name, n.Line, n.ExpectedLine, n)
		}
	}
	if !strings.HasPrefix(r.SaveStatus, "Not saved") {
		t.Errorf("save status %q", r.SaveStatus)
	}
	var o struct{ Status string }
	api.get("Observation/"+obs, &o)
	if o.Status != "amended" {
		t.Errorf("the Observation's status is %q: the valid edit was not stored or the invalid one was", o.Status)
	}
	h := r.Hostile
	if !strings.Contains(h.Summary, "Hostile<script>alert(1)</script>") || !strings.Contains(r.HostileChartTitle, "<img src=x onerror=alert(2)>") {
		t.Errorf("markup in the name was not shown as text: %q, %q", h.Summary, r.HostileChartTitle)
	}
	if h.Scripts != 0 || h.Styled != 0 || h.Mains != 1 || !strings.Contains(h.Text, "Hello") {
		t.Errorf("narrative not sanitised: %+v", h)
	}
	var hrefs []string
	for _, p := range h.Hrefs {
		if p != nil {
			hrefs = append(hrefs, *p)
		}
	}
	if !slices.Equal(hrefs, []string{"#/resource/Patient/hostile"}) {
		t.Errorf("narrative links %v: want the javascript: link gone and the resource link made a console link", hrefs)
	}
	for _, id := range h.IDs {
		if id == nil || !strings.HasPrefix(*id, "user-content-") {
			t.Errorf("narrative id %v can clobber the page's", id)
		}
	}
	for _, src := range h.ImgSrcs {
		if src != nil {
			t.Errorf("narrative image src %q survived", *src)
		}
	}
	if r.FirstTab != "skip" || r.AfterSkip.ID != "main" {
		t.Errorf("keyboard: first Tab reached %q, the skip link moved focus to %q", r.FirstTab, r.AfterSkip.ID)
	}
	if r.AfterSignOutStatus != http.StatusUnauthorized || r.Stored != nil {
		t.Errorf("after sign-out the token answers %d and the session holds %v", r.AfterSignOutStatus, r.Stored)
	}
}

func checkReceptionist(t *testing.T, r receptionistResults, patients int) {
	t.Helper()
	if r.PatientCount != strconv.Itoa(patients) || r.ObservationCount != "not permitted" {
		t.Errorf("receptionist overview: Patient %q, Observation %q", r.PatientCount, r.ObservationCount)
	}
	if !strings.Contains(r.ObservationSearch.Cls, "msg-denied") || !strings.Contains(r.ObservationSearch.Text, "not permitted") {
		t.Errorf("receptionist's Observation search: %+v", r.ObservationSearch)
	}
	if r.ChartTitle != "Deedra Lockman" || !strings.Contains(r.ChartVitals, "not permitted") {
		t.Errorf("receptionist's chart: %q, vital signs %q", r.ChartTitle, r.ChartVitals)
	}
}

func checkPatient(t *testing.T, r patientResults, self string) {
	t.Helper()
	if r.Landing.Hash != "#/patient/"+self || !strings.Contains(r.Landing.Title, "Kreiger") {
		t.Errorf("the patient landed on %+v, want their own chart", r.Landing)
	}
	if !strings.Contains(r.Other.Cls, "msg-missing") || !strings.Contains(r.Other.Text, "not found") {
		t.Errorf("another patient's chart showed %+v", r.Other)
	}
	if !slices.Equal(r.Search.Rows, []string{self}) || r.Search.Count != "1 found" {
		t.Errorf("the patient's Patient search: %+v", r.Search)
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
