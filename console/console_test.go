package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emberfhir/ember/console"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const base = "https://ember.example.org/fhir"

func handler(t *testing.T, auth string) http.Handler {
	t.Helper()
	h, err := console.Handler(console.Config{FHIRBase: base, Auth: auth, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestCSP: every answer, files and errors alike, carries exactly the
// console's policy, which allows no inline script or style and no eval.
func TestCSP(t *testing.T) {
	const want = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
		"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	if console.CSP != want {
		t.Fatalf("CSP = %q, want %q", console.CSP, want)
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(console.CSP, bad) {
			t.Errorf("the CSP allows %s", bad)
		}
	}
	h := handler(t, "smart")
	for _, target := range []string{"/console/", "/console/callback?code=x&state=y", "/console/js/app.js", "/console/config.json",
		"/console/nope.js", "/console"} {
		w := get(h, http.MethodGet, target, nil)
		if got := w.Header().Get("Content-Security-Policy"); got != want {
			t.Errorf("%s: CSP %q", target, got)
		}
		if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: framing or sniffing headers missing: %v", target, w.Header())
		}
	}
}

// TestRoutes: the app's own paths serve index.html, /console redirects
// to /console/, unknown files are 404 and writes are 405.
func TestRoutes(t *testing.T) {
	h := handler(t, "smart")
	index, err := fs.ReadFile(staticFS(t), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/console/", "/console/callback", "/console/callback?code=abc&state=def"} {
		w := get(h, http.MethodGet, target, nil)
		if w.Code != http.StatusOK || w.Body.String() != string(index) {
			t.Errorf("%s: %d, index.html served: %v", target, w.Code, w.Body.String() == string(index))
		}
	}
	if w := get(h, http.MethodGet, "/console", nil); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/console/" {
		t.Errorf("/console: %d to %q", w.Code, w.Header().Get("Location"))
	}
	for _, target := range []string{"/console/nope.js", "/console/js/../../console.go", "/console/vendor", "/console/callback/x", "/console/static/index.html"} {
		if w := get(h, http.MethodGet, target, nil); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", target, w.Code)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if w := get(h, m, "/console/", nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /console/: %d", m, w.Code)
		}
	}
}

// TestContentTypes: every embedded file is served with its type (a module
// script served as anything but JavaScript would not run) and revalidates
// by ETag.
func TestContentTypes(t *testing.T) {
	h := handler(t, "none")
	want := map[string]string{
		".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", "": "text/plain; charset=utf-8",
	}
	seen := map[string]bool{}
	err := fs.WalkDir(staticFS(t), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := path.Ext(p)
		ct, ok := want[ext]
		if !ok {
			t.Errorf("%s: no expected type for %q files in this test", p, ext)
			return nil
		}
		seen[ext] = true
		w := get(h, http.MethodGet, "/console/"+p, nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ct {
			t.Errorf("%s: %d %q, want %q", p, w.Code, w.Header().Get("Content-Type"), ct)
		}
		etag := w.Header().Get("ETag")
		if etag == "" || w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q", p, etag, w.Header().Get("Cache-Control"))
		}
		if w := get(h, http.MethodGet, "/console/"+p, map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified {
			t.Errorf("%s: If-None-Match: %d", p, w.Code)
		}
		if w := get(h, http.MethodHead, "/console/"+p, nil); w.Code != http.StatusOK || w.Body.Len() != 0 {
			t.Errorf("%s: HEAD %d with %d bytes", p, w.Code, w.Body.Len())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for ext := range want {
		if !seen[ext] {
			t.Errorf("no embedded %q file was checked", ext)
		}
	}
}

// TestConfig: config.json tells the app how to sign in, or that it need
// not.
func TestConfig(t *testing.T) {
	var c map[string]string
	w := get(handler(t, "smart"), http.MethodGet, "/console/config.json", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	if c["auth"] != "smart" || c["clientId"] != console.ClientID || c["redirectUri"] != "https://ember.example.org/console/callback" ||
		c["fhirBase"] != base || c["scope"] != console.RequestScope || c["version"] != "1.2.3" {
		t.Errorf("config %v", c)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("config.json cached: %q", w.Header().Get("Cache-Control"))
	}
	c = nil
	_ = json.Unmarshal(get(handler(t, "none"), http.MethodGet, "/console/config.json", nil).Body.Bytes(), &c)
	if c["auth"] != "none" || c["clientId"] != "" || c["redirectUri"] != "" {
		t.Errorf("config under --auth none: %v", c)
	}
	if _, err := console.Handler(console.Config{FHIRBase: base, Auth: "basic"}); err == nil {
		t.Error("an unknown auth mode was accepted")
	}
	// Every scope asked for is registered, less launch/patient.
	reg := slices.DeleteFunc(slices.Clone(console.RegisteredScopes), func(s string) bool { return s == "launch/patient" })
	if !slices.Equal(reg, strings.Fields(console.RequestScope)) {
		t.Errorf("request scope %q is not the registered %v less launch/patient", console.RequestScope, console.RegisteredScopes)
	}
}

// TestNoMarkupFromStrings holds the console's own code to its rules: no
// inline script or style in the page (the CSP would refuse them), and no
// API that turns a string into markup or code; the one markup path is the
// narrative, through DOMPurify.
func TestNoMarkupFromStrings(t *testing.T) {
	sfs := staticFS(t)
	index, _ := fs.ReadFile(sfs, "index.html")
	for _, re := range []*regexp.Regexp{regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>`),
		regexp.MustCompile(`(?i)\sstyle=`), regexp.MustCompile(`(?i)<style`), regexp.MustCompile(`(?i)\son[a-z]+=`)} {
		if m := re.Find(index); m != nil {
			t.Errorf("index.html: %s", m)
		}
	}
	for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAll(index, -1) {
		if !strings.Contains(string(tag), " src=") {
			t.Errorf("index.html: a script without src: %s", tag)
		}
	}
	forbidden := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]style|setTimeout\(\s*['"]|createContextualFragment`)
	n := 0
	err := fs.WalkDir(sfs, "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, _ := fs.ReadFile(sfs, p)
		for i, line := range strings.Split(string(b), "\n") {
			if m := forbidden.FindString(line); m != "" {
				t.Errorf("%s:%d: %s", p, i+1, m)
			}
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d scripts: %v", n, err)
	}
}

// TestVendorPinned: the committed vendored files are exactly those the
// manifest lists, with its SHA-256 each, and every package brings its
// licence. A changed or extra file fails here until `make console-vendor`
// rewrites both.
func TestVendorPinned(t *testing.T) {
	m, err := console.Vendor()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(console.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	var disk console.VendorManifest
	if err := json.Unmarshal(onDisk, &disk); err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, p := range m.Packages {
		if p.Name == "" || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(p.Version) || p.License == "" {
			t.Errorf("package %+v: name, exact version and licence required", p)
		}
		licence := false
		for _, f := range p.Files {
			listed[f.To] = f.SHA256
			licence = licence || strings.HasPrefix(path.Base(f.To), "LICENSE")
		}
		if !licence {
			t.Errorf("%s@%s: no LICENSE file vendored", p.Name, p.Version)
		}
	}
	if len(listed) < 4 {
		t.Fatalf("the manifest lists %d files", len(listed))
	}
	vendor := os.DirFS(filepath.FromSlash(console.VendorDir))
	found := map[string]bool{}
	err = fs.WalkDir(vendor, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		found[p] = true
		b, err := fs.ReadFile(vendor, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		want, ok := listed[p]
		switch {
		case !ok:
			t.Errorf("%s/%s is not in %s", console.VendorDir, p, console.ManifestFile)
		case hex.EncodeToString(sum[:]) != want:
			t.Errorf("%s/%s: SHA-256 %x, the manifest pins %s (run make console-vendor)", console.VendorDir, p, sum, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range listed {
		if !found[p] {
			t.Errorf("%s lists %s, which is not committed", console.ManifestFile, p)
		}
	}
	// The served copy is the committed one.
	h := handler(t, "none")
	for p, want := range listed {
		w := get(h, http.MethodGet, "/console/vendor/"+p, nil)
		sum := sha256.Sum256(w.Body.Bytes())
		if hex.EncodeToString(sum[:]) != want {
			t.Errorf("served /console/vendor/%s differs from the pinned file", p)
		}
	}
}

// TestRegister: serve registers the console's client once, leaves it alone
// on the next start, and moves its redirect URI (keeping an operator's
// narrower scopes) when the public base changes.
func TestRegister(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	did, err := console.Register(ctx, st, "http://127.0.0.1:8080/fhir")
	if err != nil || did != "added" {
		t.Fatalf("first start: %q, %v", did, err)
	}
	c, err := authserver.GetClient(ctx, st, console.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != authserver.Public || !slices.Equal(c.RedirectURIs, []string{"http://127.0.0.1:8080/console/callback"}) ||
		!slices.Equal(c.Scopes, console.RegisteredScopes) {
		t.Errorf("registered %+v", c)
	}
	for range 2 {
		if did, err := console.Register(ctx, st, "http://127.0.0.1:8080/fhir/"); err != nil || did != "" {
			t.Errorf("restart: %q, %v (want nothing done)", did, err)
		}
	}
	// An operator narrows the console to reading.
	if err := authserver.RemoveClient(ctx, st, console.ClientID); err != nil {
		t.Fatal(err)
	}
	narrow := []string{"openid", "fhirUser", "user/*.rs"}
	if err := authserver.AddClient(ctx, st, authserver.Client{ID: console.ClientID, Type: authserver.Public,
		RedirectURIs: c.RedirectURIs, Scopes: narrow}); err != nil {
		t.Fatal(err)
	}
	did, err = console.Register(ctx, st, "https://ember.example.org/fhir")
	if err != nil || did != "updated" {
		t.Fatalf("new base: %q, %v", did, err)
	}
	c, err = authserver.GetClient(ctx, st, console.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.RedirectURIs, []string{"https://ember.example.org/console/callback"}) || !slices.Equal(c.Scopes, narrow) {
		t.Errorf("after the base changed: %+v", c)
	}
	clients, err := authserver.ListClients(ctx, st)
	if err != nil || len(clients) != 1 {
		t.Errorf("%d clients (%v), want the console's alone", len(clients), err)
	}
}

func TestRedirectURI(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/fhir":         "http://127.0.0.1:8080/console/callback",
		"https://ember.example.org/fhir/":    "https://ember.example.org/console/callback",
		"https://example.org/ember/fhir":     "https://example.org/ember/console/callback",
		"https://example.org/ember/fhir-api": "https://example.org/ember/fhir-api/console/callback",
	} {
		if got := console.RedirectURI(in); got != want {
			t.Errorf("RedirectURI(%q) = %q, want %q", in, got, want)
		}
		if got, want := console.URL(in), strings.TrimSuffix(want, "callback"); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// staticFS is the console's files as committed (the handler serves the
// embedded copy of the same directory).
func staticFS(t *testing.T) fs.FS {
	t.Helper()
	return os.DirFS("static")
}
