package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConformanceCommand: the command's usage errors, a run that writes
// its summary and JUnit file, and exit 1 when a check fails.
func TestConformanceCommand(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"conformance"}, &out, &errs); code != 2 {
		t.Errorf("no subcommand: exit %d", code)
	}
	if code := run(context.Background(), []string{"conformance", "run"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), "--base") {
		t.Errorf("no --base: exit %d, %s", code, errs.String())
	}
	smart := ""
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if smart == "" || r.URL.Path != "/fhir/.well-known/smart-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(smart))
	}))
	defer ts.Close()
	junit := filepath.Join(t.TempDir(), "results.xml")
	out.Reset()
	args := []string{"conformance", "run", "--base", ts.URL + "/fhir", "--suite", "smart", "--junit", junit}
	if code := run(context.Background(), args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "0 passed, 0 failed, 1 skipped") {
		t.Errorf("summary: %s", out.String())
	}
	if b, err := os.ReadFile(junit); err != nil || !bytes.Contains(b, []byte("<testsuites")) {
		t.Errorf("JUnit file: %v %s", err, b)
	}
	smart = `{"authorization_endpoint":"relative"}`
	out.Reset()
	if code := run(context.Background(), args, &out, &errs); code != 1 || !strings.Contains(out.String(), "FAIL") {
		t.Errorf("failing run: exit %d: %s", code, out.String())
	}
}
