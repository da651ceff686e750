package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
)

const dashboardFile = "grafana/ember.json"

// TestDashboardQueriesExportedMetrics (issue 15): every metric named by a
// query of the Grafana dashboard — each panel's PromQL and each template
// variable's — is one a running `ember serve` exports. The server runs as
// the container runs it (metrics on their own listener, inference on) and
// is driven until every family it registers has samples: a labelled
// family shows in /metrics only once something was counted in it.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	queries := dashboardQueries(t, dashboardFile)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	exported := scrapeDrivenServer(t)
	for _, q := range queries {
		names, err := promqlMetrics(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s names %s, which Ember does not export (query %q)", q.where, n, q.expr)
			}
		}
	}
}

// scrapeDrivenServer starts `ember serve`, makes it count something in
// every family (REST interactions, a batch Bundle, searches, a DICOM study
// over STOW-RS whose quiet period runs the test models, a refused STOW
// part), checks `ember healthcheck` against it, and returns the sample
// names its metrics listener exports, with those of a second server that
// runs what the first has off (SMART authorisation, DIMSE).
func scrapeDrivenServer(t *testing.T) map[string]bool {
	t.Helper()
	lib := testenv.ONNXRuntime(t)
	ct, err := dicomsamples.Pydicom(context.Background(), dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildEmber(t)
	addr, metricsAddr := freeAddr(t), freeAddr(t)

	// Nothing listens yet: the container's health check fails.
	if out, err := exec.Command(bin, "healthcheck", "--addr", addr).CombinedOutput(); err == nil {
		t.Fatalf("ember healthcheck with no server passed: %s", out)
	}

	srv := startServer(t, bin, []string{"EMBER_ONNXRUNTIME_LIB=" + lib},
		"--addr", addr, "--metrics-addr", metricsAddr, "--auth", "none", "--dimse-addr", "off",
		"--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(),
		"--models-dir", "../testdata/models", "--inference-quiet", "300ms")

	// The image's HEALTHCHECK: EMBER_ADDR names the wildcard address.
	_, port, _ := net.SplitHostPort(addr)
	hc := exec.Command(bin, "healthcheck")
	hc.Env = append(os.Environ(), "EMBER_ADDR=0.0.0.0:"+port, "EMBER_TLS_CERT=")
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("ember healthcheck (EMBER_ADDR=0.0.0.0:%s): %v\n%s", port, err, out)
	}
	if out, err := exec.Command(bin, "healthcheck", "--addr", addr, "--path", "/readyz").CombinedOutput(); err != nil {
		t.Errorf("ember healthcheck --path /readyz: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "healthcheck", "--addr", addr, "--path", "/no-such-path").CombinedOutput(); err == nil {
		t.Errorf("ember healthcheck passed on a 404: %s", out)
	}

	base := "http://" + addr + "/fhir"
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/metadata", ""},
		{"PUT", "/Patient/deploy-1", `{"resourceType":"Patient","id":"deploy-1","gender":"other"}`},
		{"GET", "/Patient/deploy-1", ""},
		{"GET", "/Patient?gender=other", ""},
		{"GET", "/Patient?gender=other&birthdate=ge1900&_count=5", ""},
		{"GET", "/Patient/absent", ""},
		{"POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/deploy-1"}}]}`},
	} {
		req, _ := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
		if r.body != "" {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	stow(t, "http://"+addr+"/dicomweb/studies", ct)
	stowRefused(t, "http://"+addr+"/dicomweb/studies")

	// The study's quiet period queues its models; wait for their jobs.
	var names map[string]bool
	deadline := time.Now().Add(90 * time.Second)
	for {
		names = scrape(t, "http://"+metricsAddr+"/metrics")
		if names["ember_inference_jobs_total"] && names["ember_inference_seconds_bucket"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no inference job ended within 90 s; /metrics has %v\n%s", sortedKeys(names), srv.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for n := range scrapeAuthDIMSEServer(t, bin) {
		names[n] = true
	}
	return names
}

// scrapeAuthDIMSEServer starts `ember serve` with SMART authorisation and a
// DIMSE listener, makes it count a refused token request and a connection
// that never associates, and returns the sample names it exports.
func scrapeAuthDIMSEServer(t *testing.T, bin string) map[string]bool {
	t.Helper()
	addr, metricsAddr, dimseAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	srv := startServer(t, bin, nil,
		"--addr", addr, "--metrics-addr", metricsAddr, "--auth", "smart", "--dimse-addr", dimseAddr,
		"--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir())
	resp, err := http.PostForm("http://"+addr+"/auth/token", map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {"no-such-client"}, "client_secret": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("token request of an unknown client: %d, want 400 or 401", resp.StatusCode)
	}
	conn, err := net.Dial("tcp", dimseAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The association is counted when the server has seen the close.
	deadline := time.Now().Add(30 * time.Second)
	for {
		names := scrape(t, "http://"+metricsAddr+"/metrics")
		if names["ember_dicom_associations_total"] && names["ember_auth_token_requests_total"] {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token request or the DIMSE connection was not counted within 30 s; /metrics has %v\n%s", sortedKeys(names), srv.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape returns the sample names of a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// query is one PromQL expression of the dashboard and where it is.
type query struct{ where, expr string }

// dashboardQueries returns every panel target's expr (rows' nested panels
// included) and every query variable's metric expression.
func dashboardQueries(t *testing.T, path string) []query {
	t.Helper()
	var d struct {
		UID        string
		Panels     []panel
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query any
			}
		}
	}
	readJSON(t, path, &d)
	if d.UID == "" {
		t.Errorf("%s: no uid (provisioning needs a stable one)", path)
	}
	var qs []query
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", path, p.ID)
			}
			ids[p.ID] = true
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr})
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", path, p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		expr, ok := variableExpr(q)
		if !ok {
			t.Errorf("%s: variable %s: query %q is not label_values(…) or query_result(…)", path, v.Name, q)
			continue
		}
		qs = append(qs, query{"variable " + v.Name, expr})
	}
	return qs
}

type panel struct {
	ID      int
	Type    string
	Title   string
	Targets []struct {
		RefID string
		Expr  string
	}
	Panels []panel
}

// variableExpr is the PromQL inside a Grafana Prometheus variable query:
// label_values(EXPR, label) or query_result(EXPR).
func variableExpr(q string) (string, bool) {
	q = strings.TrimSpace(q)
	for _, fn := range []string{"label_values(", "query_result("} {
		inner, ok := strings.CutPrefix(q, fn)
		if !ok || !strings.HasSuffix(inner, ")") {
			continue
		}
		inner = inner[:len(inner)-1]
		if fn == "label_values(" {
			// The expression ends at the last top-level comma.
			depth, cut := 0, -1
			for i, r := range inner {
				switch r {
				case '(', '{', '[':
					depth++
				case ')', '}', ']':
					depth--
				case ',':
					if depth == 0 {
						cut = i
					}
				}
			}
			if cut < 0 {
				return "", false
			}
			inner = inner[:cut]
		}
		return inner, true
	}
	return "", false
}

// PromQL words that are not metric names where an identifier may stand:
// operators, and aggregations written before their by/without clause.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "start": true, "end": true, "atan2": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// Clauses followed by a parenthesised list of label names.
var promqlLabelClauses = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

var nameMatcher = regexp.MustCompile(`__name__\s*=\s*"([^"]*)"`)

// promqlMetrics returns the metric names a PromQL expression (with Grafana
// variables in it) selects: identifiers outside strings, label matchers,
// ranges and label lists that are not function calls or keywords, and
// names given as {__name__="…"}.
func promqlMetrics(expr string) ([]string, error) {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n' || expr[i] == '\r') {
			i++
		}
		return i
	}
	// closing returns the index after the bracket matching expr[i],
	// skipping strings inside.
	closing := func(i int) (int, error) {
		open, close := expr[i], map[byte]byte{'{': '}', '[': ']', '(': ')'}[expr[i]]
		depth := 0
		for j := i; j < len(expr); j++ {
			switch c := expr[j]; c {
			case '"', '\'', '`':
				k := strings.IndexByte(expr[j+1:], c)
				if k < 0 {
					return 0, fmt.Errorf("unterminated string at %d", j)
				}
				j += k + 1
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c at %d", open, i)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			k := strings.IndexByte(expr[i+1:], c)
			if k < 0 {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i += k + 2
		case c == '{':
			j, err := closing(i)
			if err != nil {
				return nil, err
			}
			if m := nameMatcher.FindStringSubmatch(expr[i:j]); m != nil {
				add(m[1])
			}
			i = j
		case c == '[':
			j, err := closing(i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '#':
			k := strings.IndexByte(expr[i:], '\n')
			if k < 0 {
				k = len(expr) - i
			}
			i += k
		case c == '$': // a Grafana variable: $name or ${name}
			i++
			if i < len(expr) && expr[i] == '{' {
				k := strings.IndexByte(expr[i:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += k + 1
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case promqlLabelClauses[word]:
				if next < len(expr) && expr[next] == '(' {
					k, err := closing(next)
					if err != nil {
						return nil, err
					}
					j = k
				}
			case next < len(expr) && expr[next] == '(':
				// A function or an aggregation.
			case promqlKeywords[strings.ToLower(word)]:
			default:
				add(word)
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

// TestPromqlMetrics: the name extraction the dashboard check relies on.
func TestPromqlMetrics(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (interaction) (rate(ember_http_request_duration_seconds_count{job=~"$job", code=~"5.."}[$__rate_interval]))`:         {"ember_http_request_duration_seconds_count"},
		`histogram_quantile(0.95, sum without (instance) (rate(a_bucket{x="by (foo)"}[5m]))) / on (job) group_left (le) b offset 5m`: {"a_bucket", "b"},
		`sum(rate(x_total[1m])) by (le) > bool 0 and up_z`:                                                                           {"x_total", "up_z"},
		`{__name__="named_metric", job="j"} or ${other_var}`:                                                                         {"named_metric"},
		`max(ember_inference_queue_depth{instance=~"$instance"})`:                                                                    {"ember_inference_queue_depth"},
		`1 + 2`: nil,
	} {
		got, err := promqlMetrics(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("promqlMetrics(%q) = %v, %v; want %v", expr, got, err, want)
		}
	}
	if _, err := promqlMetrics(`rate(x{a="b"[5m])`); err == nil {
		t.Error("an unbalanced selector was accepted")
	}
	for q, want := range map[string]string{
		`label_values(m_count{job=~"$job"}, instance)`: `m_count{job=~"$job"}`,
		`query_result(sum(x) by (a))`:                  `sum(x) by (a)`,
	} {
		if got, ok := variableExpr(q); !ok || got != want {
			t.Errorf("variableExpr(%q) = %q, %v; want %q", q, got, ok, want)
		}
	}
}

// TestDashboardCheckFails: the check reports a panel that names a metric
// Ember does not export (a dashboard edited to a made-up name fails).
func TestDashboardCheckFails(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(raw, []byte("ember_inference_queue_depth"), []byte("ember_made_up_metric"), 1)
	path := t.TempDir() + "/bad.json"
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, q := range dashboardQueries(t, path) {
		names, _ := promqlMetrics(q.expr)
		found = found || slices.Contains(names, "ember_made_up_metric")
	}
	if !found {
		t.Error("a made-up metric in a panel query was not extracted, so the check could not report it")
	}
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runningServer is an `ember serve` process and its output.
type runningServer struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (s *runningServer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *runningServer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startServer runs `ember serve` with args until the test ends (SIGTERM,
// then a clean exit within 60 s) and waits for /readyz on --addr.
func startServer(t *testing.T, bin string, env []string, args ...string) *runningServer {
	t.Helper()
	addr := ""
	for i, a := range args {
		if a == "--addr" && i+1 < len(args) {
			addr = args[i+1]
		}
	}
	s := &runningServer{}
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = s, s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ember serve exit: %v\n%s", err, s.String())
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("ember serve did not stop on SIGTERM\n%s", s.String())
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("ember serve exited early: %v\n%s", err, s.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("ember serve not ready within 90 s:\n%s", s.String())
	return nil
}

// stowRefused sends STOW-RS a part that is not DICOM, which the server
// refuses (counted as a failed instance).
func stowRefused(t *testing.T, url string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("not a DICOM file"))
	mw.Close()
	req, err := http.NewRequest("POST", url, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("STOW-RS of a part that is not DICOM: 200")
	}
}

// stow stores one DICOM file over STOW-RS.
func stow(t *testing.T, url, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	mw.Close()
	req, err := http.NewRequest("POST", url, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("STOW-RS %s: %d %s", file, resp.StatusCode, body)
	}
}
