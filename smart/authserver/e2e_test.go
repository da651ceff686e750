package authserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFHIRClientInChromium drives the npm fhirclient library through a
// standalone launch with PKCE in headless Chromium: the app runs on its own
// origin (so discovery and the token request cross origins under CORS), the
// browser fills Ember's login, patient picker and consent pages, and the
// app's redirect page reports the token response. It needs node, Chromium
// and `npm ci` in smart/authserver/e2e; it is skipped without them.
func TestFHIRClientInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	browser := os.Getenv("CHROMIUM")
	if browser == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				browser = p
				break
			}
		}
	}
	dir, _ := filepath.Abs("e2e")
	if browser == "" {
		t.Skip("no Chromium found (set CHROMIUM)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "puppeteer-core")); err != nil {
		t.Skip("run `npm ci` in smart/authserver/e2e first")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/launch.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join(dir, "launch.html")) })
	mux.HandleFunc("/app.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join(dir, "app.html")) })
	mux.HandleFunc("/fhir-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "node_modules", "fhirclient", "build", "fhir-client.js"))
	})
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{app.URL} })
	if err := AddClient(context.Background(), e.db, Client{ID: "jsapp", Type: Public, RedirectURIs: []string{app.URL + "/app.html"},
		Scopes: []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"}}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "drive.js"), app.URL+"/launch.html?"+url.Values{"iss": {e.base}}.Encode())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+browser, "EMBER_USER=doc", "EMBER_PASSWORD="+password, "EMBER_PATIENT=p2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("drive.js: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var got struct {
		Patient       string         `json:"patient"`
		TokenResponse map[string]any `json:"tokenResponse"`
		Error         string         `json:"error"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &got); err != nil || got.Error != "" {
		t.Fatalf("app reported %q (%v)\n%s", stdout.String(), err, stderr.String())
	}
	tr := got.TokenResponse
	if got.Patient != "p2" || str(tr, "scope") != "launch/patient openid fhirUser patient/*.rs offline_access" ||
		str(tr, "id_token") == "" || str(tr, "refresh_token") == "" {
		t.Fatalf("token response in the app: %+v", got)
	}
	g, err := e.srv.Verifier().Verify(context.Background(), str(tr, "access_token"))
	if err != nil || g.ClientID != "jsapp" || g.Patient != "p2" || g.Subject != "doc" {
		t.Fatalf("grant %+v %v", g, err)
	}
}
