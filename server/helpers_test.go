package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	pgtest.Main(m)
}

// env is a running server on a private database.
type env struct {
	t     testing.TB
	url   string // FHIR base
	store *store.Store
}

func newEnv(t testing.TB, mod ...func(*server.Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// The base URL is only known once the listener exists, so the handler is
	// swapped in after httptest starts.
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	cfg := server.Config{BaseURL: ts.URL + "/fhir", Logger: testLogger()}
	for _, m := range mod {
		m(&cfg)
	}
	srv, err := server.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	h = srv.Handler()
	return &env{t: t, url: ts.URL + "/fhir", store: st}
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %v: %s", r.status, err, r.body)
	}
	return m
}

// do sends a request; headers are "Name: value" strings. It fails the test
// on a transport error, so it may only be called from the test's goroutine;
// other goroutines use send.
func (e *env) do(method, path string, body []byte, headers ...string) response {
	e.t.Helper()
	r, err := e.send(method, path, body, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// send is do that returns its error instead of failing the test: safe off
// the test goroutine (t.Fatal there would not stop the test).
func (e *env) send(method, path string, body []byte, headers ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = e.url + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// expect fails the test unless r has the given status.
func expect(t testing.TB, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// expectOutcome checks r is an error OperationOutcome with the status.
func expectOutcome(t testing.TB, r response, status int) map[string]any {
	t.Helper()
	expect(t, r, status)
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %s", r.body)
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.body)
	}
	if d, _ := issues[0].(map[string]any)["diagnostics"].(string); d == "" {
		t.Fatalf("OperationOutcome without diagnostics: %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("Content-Type %q", ct)
	}
	return m
}

// testLogger discards logs unless EMBER_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("EMBER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
