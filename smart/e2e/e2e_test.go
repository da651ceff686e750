// Package e2e drives Ember's SMART authorization server with the official
// SMART JavaScript client (npm fhirclient) in headless Chromium: a
// standalone launch with PKCE through the login, patient picker and consent
// pages, then a read of the patient with the token it got.
package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/store"
)

// The browser-side tools, fetched with npm pack (never npm install).
const (
	fhirclientVersion = "2.6.3"
	playwrightVersion = "1.65.1"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestFHIRClientStandaloneLaunch(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test takes most of a minute (chromium, npm, building ember)")
	}
	browser := testenv.LookPath(t, testenv.Chromium, "chromium", "chromium-browser")
	node := testenv.LookPath(t, testenv.NodeJS, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fc := testenv.NPMPackage(ctx, t, "fhirclient", fhirclientVersion)
	pw := testenv.NPMPackage(ctx, t, "playwright-core", playwrightVersion)

	bin := filepath.Join(t.TempDir(), "ember")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/emberfhir/ember/cmd/ember").CombinedOutput(); err != nil {
		t.Fatalf("build ember: %v\n%s", err, out)
	}
	dbURL := pgtest.NewDatabase(t)
	seedPatient(t, ctx, dbURL)

	// The app: two static pages and the fhirclient bundle.
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(fc, "build", "fhir-client.js"))
	})
	mux.Handle("/", http.FileServer(http.Dir("testdata")))
	app := httptest.NewServer(mux)
	defer app.Close()

	run := func(args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, append(args, "--database-url", dbURL)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ember %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("client", "add", "--id", "e2e-app", "--type", "public", "--redirect-uri", app.URL+"/index.html",
		"--scope", "openid fhirUser launch/patient patient/*.rs offline_access online_access")
	run("user", "add", "--username", "alice", "--password", "correct horse battery staple", "--role", "patient", "--fhir-user", "Patient/e2e-patient")

	addr := freeAddr(t)
	srv := exec.CommandContext(ctx, bin, "serve", "--addr", addr, "--database-url", dbURL, "--auth", "smart", "--dimse-addr", "off")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	waitReady(t, "http://"+addr+"/readyz")
	base := "http://" + addr + "/fhir"

	launch := app.URL + "/launch.html?iss=" + base + "&client=e2e-app"
	cmd := exec.CommandContext(ctx, node, "testdata/drive.js", pw, browser, launch, "alice", "correct horse battery staple")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("browser run failed: %v\n%s", err, out)
	}
	var got struct {
		Steps  []string `json:"steps"`
		Result struct {
			Patient    map[string]any `json:"patient"`
			PatientID  string         `json:"patientId"`
			Scope      string         `json:"scope"`
			HasRefresh bool           `json:"hasRefresh"`
			HasIDToken bool           `json:"hasIdToken"`
			FHIRUser   string         `json:"fhirUser"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("browser output: %v: %s", err, out)
	}
	t.Logf("steps %v, scope %q", got.Steps, got.Result.Scope)
	r := got.Result
	if r.PatientID != "e2e-patient" || r.Patient["id"] != "e2e-patient" || r.Patient["resourceType"] != "Patient" {
		t.Errorf("the app read %v (patient context %q), want Patient/e2e-patient", r.Patient, r.PatientID)
	}
	if !r.HasIDToken || r.FHIRUser != "Patient/e2e-patient" {
		t.Errorf("id_token %v, fhirUser %q", r.HasIDToken, r.FHIRUser)
	}
	if !r.HasRefresh {
		t.Errorf("offline_access granted no refresh token")
	}
	if len(got.Steps) == 0 || got.Steps[0] != "login" {
		t.Errorf("the launch did not go through the login page: %v", got.Steps)
	}
}

func seedPatient(t *testing.T, ctx context.Context, dbURL string) {
	t.Helper()
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Parse([]byte(`{"resourceType":"Patient","id":"e2e-patient","name":[{"family":"Chalmers","given":["Peter"]}]}`), "Patient")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Update(ctx, res, "e2e-patient", 0); err != nil {
		t.Fatal(err)
	}
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
