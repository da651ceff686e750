// Package console is Ember Console, the web UI `ember serve` offers at
// /console: a single-page app in plain ES modules (console/static, no build
// step, no Node at run time) embedded in the binary, with its vendored
// libraries (uPlot, DOMPurify) pinned in vendor.json.
//
// The Go side only serves files and the console's configuration, under a
// strict Content-Security-Policy (CSP), and registers the console as a
// public SMART client (Register). Every call the console makes is an
// ordinary FHIR, DICOMweb or authorization-server request with the signed-in
// user's bearer token: it has no session of its own and sees what the
// user's grant allows.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/emberfhir/ember/smart/authserver"
)

// Prefix is where the console is served.
const Prefix = "/console"

// ClientID is the console's OAuth client id: the one whose admin users'
// tokens the authorization server's admin API answers.
const ClientID = authserver.ConsoleClientID

// CSP is the Content-Security-Policy of every console response: only the
// console's own files, no inline script or style, no eval, no framing, and
// connections back to this server alone (the FHIR API, /auth, /readyz).
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

//go:embed static
var files embed.FS

// Config is what the console is told about the server it runs on.
type Config struct {
	// FHIRBase is the public FHIR base URL: the aud the console asks for.
	FHIRBase string
	// Auth is "smart" (sign in through /auth) or "none" (no sign-in).
	Auth string
	// Version is the server's version, shown beside the metadata's.
	Version string
}

// clientConfig is config.json, read by the console at start.
type clientConfig struct {
	Auth        string `json:"auth"`
	FHIRBase    string `json:"fhirBase"`
	ClientID    string `json:"clientId,omitempty"`
	RedirectURI string `json:"redirectUri,omitempty"`
	Scope       string `json:"scope,omitempty"`
	Version     string `json:"version"`
}

// asset is one embedded file with what its answer needs.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the console.
type handler struct {
	assets map[string]asset // by path below Prefix, "/index.html"
	config []byte
}

// Handler serves the console under Prefix: the app's files, config.json,
// and index.html for the app's own paths (/console/ and the OAuth callback).
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Auth != "smart" && cfg.Auth != "none" {
		return nil, fmt.Errorf("console: auth %q: want smart or none", cfg.Auth)
	}
	h := &handler{assets: map[string]asset{}}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		h.assets[strings.TrimPrefix(p, "static")] = newAsset(b, contentType(p))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: embedded files: %w", err)
	}
	if _, ok := h.assets["/index.html"]; !ok {
		return nil, fmt.Errorf("console: embedded files lack index.html")
	}
	cc := clientConfig{Auth: cfg.Auth, FHIRBase: strings.TrimSuffix(cfg.FHIRBase, "/"), Version: cfg.Version}
	if cfg.Auth == "smart" {
		cc.ClientID, cc.RedirectURI, cc.Scope = ClientID, RedirectURI(cfg.FHIRBase), RequestScope
	}
	if h.config, err = json.Marshal(cc); err != nil {
		return nil, fmt.Errorf("console: config: %w", err)
	}
	return h, nil
}

func newAsset(b []byte, ct string) asset {
	sum := sha256.Sum256(b)
	return asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// contentTypes are the types of the console's files, fixed here rather
// than read from the machine's MIME database, which varies: a module
// script served as anything but JavaScript does not run.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".json": "application/json",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// contentType is p's type; licence files and the like are plain text.
func contentType(p string) string {
	if ct, ok := contentTypes[path.Ext(p)]; ok {
		return ct
	}
	return "text/plain; charset=utf-8"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "the console's files are read with GET", http.StatusMethodNotAllowed)
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, Prefix)
	switch rel {
	case "":
		// Relative links in index.html resolve against /console/.
		http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
		return
	case "/", "/callback":
		rel = "/index.html"
	case "/config.json":
		hd.Set("Content-Type", "application/json")
		hd.Set("Cache-Control", "no-store")
		_, _ = w.Write(h.config)
		return
	}
	a, ok := h.assets[rel]
	if !ok {
		http.Error(w, "no console file at "+r.URL.Path, http.StatusNotFound)
		return
	}
	hd.Set("Content-Type", a.contentType)
	// Revalidated on every load: a new binary's files replace the old at once.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		hd.Set("Content-Length", fmt.Sprint(len(a.body)))
		return
	}
	_, _ = w.Write(a.body)
}
