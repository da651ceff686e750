package runner_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberfhir/ember/conformance/runner"
	"github.com/emberfhir/ember/internal/importer"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/internal/testfiles"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// usCorePackage is the committed US Core 6.1.0 package, under testdata/.
const usCorePackage = "ig/hl7.fhir.us.core-6.1.0.tgz"

// startEmber serves a fresh Ember with the hospital and practitioner
// bundles, six Synthea patients and the US Core examples, behind wrap
// (nil: none), and returns its FHIR base.
func startEmber(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	srv, err := server.New(server.Config{BaseURL: ts.URL + "/fhir", Logger: slog.New(slog.DiscardHandler)}, st)
	if err != nil {
		t.Fatal(err)
	}
	h = srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	dir, err := synthea.Dir()
	testenv.Require(t, err, "the Synthea data set", "testdata/synthea.tar.zst")
	files, err := synthea.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	patients := 0
	for _, f := range files {
		if synthea.IsPatientBundle(f) {
			if patients == 6 {
				continue
			}
			patients++
		}
		paths = append(paths, f)
	}
	paths = append(paths, examples(t))
	res, err := importer.Import(ctx, srv.Engine(), paths, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed > 0 {
		t.Fatalf("import: %d failed: %v", res.Failed, res.Errors)
	}
	return ts.URL + "/fhir"
}

// examples unpacks the US Core package's examples into a directory.
func examples(t *testing.T) string {
	t.Helper()
	path, err := testfiles.Path(usCorePackage)
	testenv.Require(t, err, "the US Core 6.1.0 package", "testdata/"+usCorePackage)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		name, ok := strings.CutPrefix(h.Name, "package/example/")
		if !ok || strings.Contains(name, "/") || !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t *testing.T, base string) *runner.Report {
	t.Helper()
	report, err := runner.Run(t.Context(), runner.Options{Base: base})
	if err != nil {
		t.Fatal(err)
	}
	return report
}

func summary(t *testing.T, r *runner.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRunAgainstEmber: every applicable check passes against Ember, the
// core ones it must be able to run among them, and the JUnit XML says the
// same as the summary.
func TestRunAgainstEmber(t *testing.T) {
	base := startEmber(t, nil)
	report := run(t, base)
	text := summary(t, report)
	if report.Count(runner.Fail) > 0 {
		t.Fatalf("%d checks failed against Ember:\n%s", report.Count(runner.Fail), text)
	}
	if pass := report.Count(runner.Pass); pass < 250 {
		t.Errorf("only %d checks passed:\n%s", pass, text)
	}
	// Checks that need nothing but Ember and this data must have run.
	for _, want := range []struct{ group, name string }{
		{"Patient", "search birthdate+name"},
		{"Patient", "search birthdate+name with birthdate=gt…"},
		{"Observation", "search patient+category"},
		{"Observation", "search patient+category with category=system|code"},
		{"Observation", "POST Observation/_search equals GET (patient+category)"},
		{"Observation", "patient=Patient/id equals patient=id (patient+category)"},
		{"Observation", "search patient+category with multiple-or category"},
		{"Observation", "search patient+category+date with date=lt…"},
		{"DiagnosticReport", "search patient+code"},
		{"ServiceRequest", "search patient+category+authored"},
		{"Device", "search patient"},
		{"Patient", "_revinclude=Provenance:target"},
		{"PractitionerRole", "_include=PractitionerRole:practitioner"},
		{"Encounter", "read every resource found"},
		{"Encounter", "references resolve"},
	} {
		found := false
		for _, r := range report.Results {
			if r.Group == want.group && r.Name == want.name {
				found = true
				if r.Status != runner.Pass {
					t.Errorf("%s / %s: %s %s", want.group, want.name, r.Status, r.Message)
				}
			}
		}
		if !found {
			t.Errorf("%s / %s did not run", want.group, want.name)
		}
	}
	var b bytes.Buffer
	if err := report.WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	var x struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &x); err != nil {
		t.Fatalf("JUnit XML: %v\n%s", err, b.String())
	}
	cases := 0
	for _, s := range x.Suites {
		for _, c := range s.Cases {
			cases++
			if c.Skipped != nil && c.Skipped.Message == "" {
				t.Errorf("JUnit: %s skipped without a reason", c.Name)
			}
		}
	}
	if x.Tests != len(report.Results) || cases != x.Tests || x.Failures != 0 || x.Skipped != report.Count(runner.Skip) {
		t.Errorf("JUnit: tests %d (cases %d), failures %d, skipped %d; report %d results, %d skipped",
			x.Tests, cases, x.Failures, x.Skipped, len(report.Results), report.Count(runner.Skip))
	}
}

// breakSearch returns a middleware that rewrites the query of searches on
// typ (GET and POST _search) with f before Ember sees it.
func breakSearch(typ string, f func(url.Values)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			path := strings.TrimPrefix(r.URL.Path, "/fhir/")
			switch {
			case r.Method == http.MethodGet && path == typ:
				q := r.URL.Query()
				f(q)
				r.URL.RawQuery = q.Encode()
			case r.Method == http.MethodPost && path == typ+"/_search":
				body, _ := io.ReadAll(r.Body)
				q, _ := url.ParseQuery(string(body))
				f(q)
				enc := q.Encode()
				r.Body = io.NopCloser(strings.NewReader(enc))
				r.ContentLength = int64(len(enc))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestRunAgainstBrokenEmber: an Ember that answers one search parameter
// wrongly fails the run, and the failure names the parameter and the
// request.
func TestRunAgainstBrokenEmber(t *testing.T) {
	for _, c := range []struct {
		name, group, param string
		wrap               func(http.Handler) http.Handler
	}{
		// Observation?category is switched off: silently ignored.
		{"category ignored", "Observation", "category", breakSearch("Observation", func(q url.Values) { q.Del("category") })},
		// Patient?birthdate answers only the eq form: comparators are
		// dropped to equality.
		{"birthdate comparators", "Patient", "birthdate", breakSearch("Patient", func(q url.Values) {
			if v := q.Get("birthdate"); len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
				q.Set("birthdate", v[2:])
			}
		})},
		// Observation?category keeps the first of an OR list only.
		{"multiple-or", "Observation", "category", breakSearch("Observation", func(q url.Values) {
			if v, _, cut := strings.Cut(q.Get("category"), ","); cut {
				q.Set("category", v)
			}
		})},
	} {
		t.Run(c.name, func(t *testing.T) {
			report := run(t, startEmber(t, c.wrap))
			if report.Count(runner.Fail) == 0 {
				t.Fatalf("no check failed against the broken Ember:\n%s", summary(t, report))
			}
			named := false
			for _, r := range report.Results {
				if r.Status != runner.Fail {
					continue
				}
				if r.Group != c.group {
					t.Errorf("a check of %s failed too: %s: %s (%s)", r.Group, r.Name, r.Message, r.Request)
					continue
				}
				if strings.Contains(r.Name+" "+r.Message, c.param) && strings.Contains(r.Request, c.group) {
					named = true
				}
			}
			if !named {
				t.Errorf("no failure names %s and its request:\n%s", c.param, summary(t, report))
			}
			if testing.Verbose() {
				for _, r := range report.Results {
					if r.Status == runner.Fail {
						t.Logf("%s / %s: %s\n  request: %s", r.Group, r.Name, r.Message, r.Request)
					}
				}
			}
		})
	}
}

// TestSmartDiscovery: the SMART checks against a stub server: a good
// configuration passes, one offering PKCE "plain" fails naming it, and a
// server without SMART skips.
func TestSmartDiscovery(t *testing.T) {
	good := `{"authorization_endpoint":"https://x/auth/authorize","token_endpoint":"https://x/auth/token",
		"grant_types_supported":["authorization_code"],"code_challenge_methods_supported":["S256"],
		"capabilities":["launch-standalone","client-public"]}`
	metadata := `{"resourceType":"CapabilityStatement","rest":[{"mode":"server","security":{"extension":[{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
		"extension":[{"url":"authorize","valueUri":"https://x/auth/authorize"},{"url":"token","valueUri":"https://x/auth/token"}]}]}}]}`
	serve := func(cfg string) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/fhir/.well-known/smart-configuration":
				if cfg == "" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, cfg)
			case "/fhir/metadata":
				w.Header().Set("Content-Type", "application/fhir+json")
				io.WriteString(w, metadata)
			default:
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(ts.Close)
		return ts.URL + "/fhir"
	}
	smart := func(base string) *runner.Report {
		r, err := runner.Run(t.Context(), runner.Options{Base: base, Suites: []string{"smart"}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := smart(serve(good)); r.Count(runner.Fail) != 0 || r.Count(runner.Pass) != 7 {
		t.Errorf("good configuration:\n%s", summary(t, r))
	}
	bad := strings.Replace(good, `["S256"]`, `["S256","plain"]`, 1)
	r := smart(serve(bad))
	if r.Count(runner.Fail) != 1 || !strings.Contains(summary(t, r), "plain") {
		t.Errorf("plain PKCE offered:\n%s", summary(t, r))
	}
	if r := smart(serve("")); r.Count(runner.Skip) != 1 || len(r.Results) != 1 {
		t.Errorf("no SMART:\n%s", summary(t, r))
	}
	if _, err := runner.Run(t.Context(), runner.Options{Base: "http://x", Suites: []string{"nope"}}); err == nil {
		t.Error("an unknown suite was accepted")
	}
}
