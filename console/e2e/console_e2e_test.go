// Package e2e drives Ember Console in headless Chromium (Playwright) against
// a real `ember serve --auth smart` loaded with Synthea patients, as an
// admin, a receptionist, a patient, a nurse and a pharmacist, and holds what
// the browser shows to what the FHIR API answers: counts, the vital-signs
// plot's points, the validation errors beside their line, the buttons each
// role's scopes allow, refusals shown as such. Every screen is checked with
// axe-core and photographed; any browser console error fails the test.
package e2e

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
)

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

func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test builds ember and drives chromium for most of a minute")
	}
	browser, node := browserTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	pw, axe := driverPackages(ctx, t)
	bundles := syntheaBundles(t, patientFiles...)

	bin := buildEmber(ctx, t)
	dbURL := pgtest.NewDatabase(t)
	ember := emberCLI(ctx, t, bin, dbURL)
	ember(append([]string{"import"}, bundles...)...)
	t.Logf("built ember and loaded %d patients in %s", len(bundles), time.Since(start).Round(time.Millisecond))

	origin := serve(ctx, t, bin, freeAddr(t), dbURL, nil, "--dimse-addr", "off")

	// What the browser should show, asked of the FHIR API directly.
	api := systemClient(t, ember, origin, "console-e2e")
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

	var got driveOutput
	browserRun{browser: browser, node: node, pw: pw, axe: axe, script: "drive.js", start: start}.drive(ctx, t, origin,
		shotsDir(t, "console-e2e"), map[string]any{
			"users":  map[string]string{"admin": "ada", "receptionist": "rita", "patient": "clem", "nurse": "nina", "pharmacist": "phil"},
			"family": "Lockman", "clinicalTypes": clinicalTypes, "lockman": lockman, "observation": obs, "hostile": "hostile",
		}, &got)
	checkScreens(t, &got.driveReport, 21)
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
	driveReport
	Results struct {
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
