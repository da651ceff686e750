// Package e2e drives Ember Console in headless Chromium (Playwright) against
// a real `ember serve --auth smart` loaded with Synthea patients, as an
// admin, a receptionist, a patient, a nurse and a pharmacist, and holds what
// the browser shows to what the FHIR API answers: counts, the vital-signs
// plot's points, the validation errors beside their line, the buttons each
// role's scopes allow, refusals shown as such. Every screen is checked with
// axe-core and photographed; any browser console error fails the test.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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

// clinicalTypes are the types whose counts the nurse's Resources list must
// show as the API counts them.
var clinicalTypes = []string{"Observation", "Condition", "Encounter", "Procedure"}

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
	want := expected{
		patients: api.count("Patient"), weights: weights, lockman: lockman, obs: obs,
		labs:          api.count("Observation?patient=" + lockman + "&category=laboratory"),
		medRequests:   api.count("MedicationRequest?patient=" + lockman),
		dispenses:     api.count("MedicationDispense?patient=" + lockman),
		allMedRequest: api.count("MedicationRequest"),
		clinical:      map[string]int{},
	}
	for _, typ := range clinicalTypes {
		want.clinical[typ] = api.count(typ)
	}

	ember("user", "add", "--username", "ada", "--password", password, "--role", "admin", "--fhir-user", "Practitioner/ada")
	ember("user", "add", "--username", "rita", "--password", password, "--role", "receptionist", "--fhir-user", "Practitioner/rita")
	ember("user", "add", "--username", "clem", "--password", password, "--role", "patient", "--fhir-user", "Patient/"+kreiger)
	ember("user", "add", "--username", "nina", "--password", password, "--role", "nurse", "--fhir-user", "Practitioner/nina")
	ember("user", "add", "--username", "phil", "--password", password, "--role", "pharmacist", "--fhir-user", "Practitioner/phil")

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
		"users":  map[string]string{"admin": "ada", "receptionist": "rita", "patient": "clem", "nurse": "nina", "pharmacist": "phil"},
		"family": "Lockman", "clinicalTypes": clinicalTypes, "lockman": lockman, "observation": obs, "hostile": "hostile",
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
	checkRefusals(t, got.NetworkRefusals)
	checkAdmin(t, got.Results.Admin, api, want)
	checkReceptionist(t, got.Results.Receptionist, want.patients)
	checkPatient(t, got.Results.Patient, kreiger)
	checkNurse(t, got.Results.Nurse, want)
	checkPharmacist(t, got.Results.Pharmacist, want)
}

// expected is what the FHIR API answers, for the browser to match.
type expected struct {
	patients, weights, labs int
	medRequests, dispenses  int
	allMedRequest           int
	lockman, obs            string
	clinical                map[string]int // clinicalTypes' totals
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
		Nurse        nurseResults        `json:"nurse"`
		Pharmacist   pharmacistResults   `json:"pharmacist"`
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
	Chart                                  chartResults
	Versions                               int
	Diff                                   struct {
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

// chartResults is what drive.js's chartShown reads off a drawn chart.
type chartResults struct {
	Hash, Title, Code, ChosenGroup string
	Points, TableRows, Timeline    int
	Canvas, ChosenFirst            bool
	Groups                         []string
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

type nurseResults struct {
	Chart       chartResults
	Observation struct {
		EditHref *string
		Del      bool
		Versions int
	}
	Resources map[string]struct {
		Count     string
		CanCreate bool
	}
}

type pharmacistResults struct {
	Overview map[string]string
	Chart    struct {
		Title   string
		Kinds   map[string]int
		Notes   []string
		Vitals  *struct{ Text, Cls string }
		Plotted bool
	}
	Observation struct {
		Text, Cls  string
		JSON, Edit bool
	}
	Search struct {
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
	if len(got.Screens) < 21 {
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

func checkAdmin(t *testing.T, r adminResults, api *client, w expected) {
	t.Helper()
	patients, lockman, obs := w.patients, w.lockman, w.obs
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
	checkChart(t, "admin", r.Chart, w)
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

// checkChart: Lockman's chart drawn in full, its default the body weight
// (the first vital sign, laboratory results grouped after the vital signs)
// with one point and one table row per body weight Observation.
func checkChart(t *testing.T, who string, c chartResults, w expected) {
	t.Helper()
	if c.Hash != "#/patient/"+w.lockman || c.Title != "Deedra Lockman" || c.Code != weightCode || !c.Canvas || c.Timeline == 0 {
		t.Errorf("%s's chart: %+v", who, c)
	}
	if c.Points != w.weights || c.TableRows != w.weights {
		t.Errorf("%s: the body weight plot has %d points and its table %d rows; the API has %d Observations", who, c.Points, c.TableRows, w.weights)
	}
	groups := []string{"Vital signs"}
	if w.labs > 0 {
		groups = append(groups, "Laboratory")
	}
	if !slices.Equal(c.Groups, groups) || c.ChosenGroup != "Vital signs" || !c.ChosenFirst {
		t.Errorf("%s: measurement groups %q (want %q, %d lab results), default in %q, first %v", who, c.Groups, groups, w.labs, c.ChosenGroup, c.ChosenFirst)
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

// checkNurse: the nurse, who reads everything and may create and update
// Observations but delete nothing, gets the full chart, Edit without
// Delete, and the clinical types counted.
func checkNurse(t *testing.T, r nurseResults, w expected) {
	t.Helper()
	checkChart(t, "nurse", r.Chart, w)
	o := r.Observation
	if o.EditHref == nil || *o.EditHref != "#/resource/Observation/"+w.obs+"/edit" || o.Del || o.Versions < 2 {
		t.Errorf("the nurse's Observation page: Edit %v, Delete %v, %d versions; want Edit, no Delete, the admin's edit in the history",
			o.EditHref, o.Del, o.Versions)
	}
	for _, typ := range clinicalTypes {
		got := r.Resources[typ]
		if n, err := strconv.Atoi(strings.ReplaceAll(got.Count, ",", "")); err != nil || n != w.clinical[typ] || !got.CanCreate {
			t.Errorf("the nurse's Resources list: %s count %q, New %v; the API counts %d and the nurse may create it", typ, got.Count, got.CanCreate, w.clinical[typ])
		}
	}
	for _, typ := range []string{"MedicationRequest", "Patient"} {
		if got := r.Resources[typ]; got.CanCreate || got.Count == "not permitted" {
			t.Errorf("the nurse's Resources list: %s %+v; want it counted and no New (read only)", typ, got)
		}
	}
}

// checkPharmacist: the pharmacist, who reads patients, medication orders
// and allergies and handles dispenses, sees Lockman's medications and is
// refused the rest of the chart and any Observation.
func checkPharmacist(t *testing.T, r pharmacistResults, w expected) {
	t.Helper()
	if r.Overview["Observation"] != "not permitted" || r.Overview["MedicationRequest"] != formatCount(w.allMedRequest) {
		t.Errorf("the pharmacist's overview: %v; want Observation not permitted, %d MedicationRequests", r.Overview, w.allMedRequest)
	}
	c := r.Chart
	if c.Title != "Deedra Lockman" || c.Kinds["MedicationRequest"] != w.medRequests || c.Kinds["MedicationDispense"] != w.dispenses ||
		c.Kinds["Encounter"] != 0 || c.Kinds["Condition"] != 0 {
		t.Errorf("the pharmacist's chart %q lists %v; the API has %d MedicationRequests and %d MedicationDispenses, and no Encounter or Condition may be shown",
			c.Title, c.Kinds, w.medRequests, w.dispenses)
	}
	for _, want := range []string{"Encounters: not permitted", "Conditions: not permitted", "Medications: " + strconv.Itoa(w.medRequests)} {
		if !slices.ContainsFunc(c.Notes, func(n string) bool { return strings.HasPrefix(n, want) }) {
			t.Errorf("the pharmacist's timeline notes %q lack %q", c.Notes, want)
		}
	}
	if c.Vitals == nil || !strings.Contains(c.Vitals.Cls, "msg-denied") || !strings.Contains(c.Vitals.Text, "not permitted") || c.Plotted {
		t.Errorf("the pharmacist's vital signs: %+v, plotted %v; want not permitted", c.Vitals, c.Plotted)
	}
	o := r.Observation
	if !strings.Contains(o.Cls, "msg-denied") || !strings.Contains(o.Text, "not permitted") || o.JSON || o.Edit {
		t.Errorf("the pharmacist's Observation page: %+v; want not permitted and nothing of it shown", o)
	}
	if !slices.Equal(r.Search.Rows, []string{w.lockman}) || r.Search.Count != "1 found" {
		t.Errorf("the pharmacist's Patient search family=Lockman: %+v", r.Search)
	}
}

// checkRefusals holds the new roles' failed loads to what their scopes
// explain. The nurse reads everything, so adds none. The pharmacist adds a
// 403 for each of the chart's searches outside its ceiling (Encounter,
// Condition, Observation for the vital signs, ImagingStudy) and one for the
// Observation it opens. The other roles' refusals (receptionist: Observation
// search and the chart's clinical sections; patient: another's chart; admin:
// the invalid save) are only logged: their screens' messages are asserted.
func checkRefusals(t *testing.T, refusals []map[string]string) {
	t.Helper()
	var nurse []map[string]string
	refused := map[string]int{}
	for _, e := range refusals {
		switch e["who"] {
		case "nurse":
			nurse = append(nurse, e)
		case "pharmacist":
			if !strings.Contains(e["text"], "status of 403") {
				t.Errorf("pharmacist: %s (%s), want 403", e["text"], e["url"])
			}
			refused[refusedType(e["url"])]++
		}
	}
	if len(nurse) != 0 {
		t.Errorf("the nurse, who may read everything, was refused %v", nurse)
	}
	want := map[string]int{"Encounter": 1, "Condition": 1, "Observation": 2, "ImagingStudy": 1}
	if !maps.Equal(refused, want) {
		t.Errorf("the pharmacist was refused %v, want %v", refused, want)
	}
}

// refusedType is the resource type a FHIR request URL names.
func refusedType(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	_, rest, _ := strings.Cut(p.Path, "/fhir/")
	typ, _, _ := strings.Cut(rest, "/")
	return typ
}

// formatCount is n as the console shows a count (en grouping).
func formatCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
