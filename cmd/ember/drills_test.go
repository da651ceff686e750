package main_test

// Failure drills (issue 15, item 7): what a hospital's operations team
// does to a deployment on a bad day, as tests against real `ember serve`
// processes and a real PostgreSQL. Each drill has a deadline: past it the
// drill kills its servers and fails the run, so a hang cannot stall the
// suite.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
)

// drill is one failure drill: its servers and its deadline.
type drill struct {
	t       *testing.T
	mu      sync.Mutex
	servers []*server
}

// newDrill starts a drill that must end within d: past it the drill's
// servers are killed and the test binary panics (naming the drill), as
// `go test -timeout` would, but without waiting for the whole suite's
// timeout.
func newDrill(t *testing.T, d time.Duration) *drill {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: failure drills run real servers under load")
	}
	dr := &drill{t: t}
	timer := time.AfterFunc(d, func() {
		dr.mu.Lock()
		for _, s := range dr.servers {
			_ = s.cmd.Process.Kill()
		}
		dr.mu.Unlock()
		panic(fmt.Sprintf("%s: the drill ran past its deadline of %s (a hang)", t.Name(), d))
	})
	t.Cleanup(func() { timer.Stop() })
	return dr
}

// serve is startServe, with the server killed if the drill overruns.
func (dr *drill) serve(env []string, addr string, args ...string) *server {
	dr.t.Helper()
	s := startServe(dr.t, env, addr, args...)
	dr.mu.Lock()
	dr.servers = append(dr.servers, s)
	dr.mu.Unlock()
	return s
}

// drillClient bounds every request a drill makes: an answer slower than
// this is a hang.
var drillClient = &http.Client{Timeout: 10 * time.Second}

// answer is one request's outcome.
type answer struct {
	status int
	body   string
	header http.Header
	err    error
	took   time.Duration
}

func drillDo(method, url, body string, header ...string) answer {
	began := time.Now()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := drillClient.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(began)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header, err: err, took: time.Since(began)}
}

// dbCount runs a count query on the database at url.
func dbCount(t *testing.T, url, query string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestDrillTwoServers: two `ember serve` processes on one database, 20
// writers on each. Read-modify-write updates with If-Match lose nothing
// (a counter each successful update increments ends at the number of
// successes), conditional creates make one resource per condition, and
// every export and inference job, with workers on both processes, runs
// exactly once.
func TestDrillTwoServers(t *testing.T) {
	dr := newDrill(t, 8*time.Minute)
	lib := testenv.ONNXRuntime(t)
	ct, err := dicomsamples.Pydicom(context.Background(), dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	db, dataDir := pgtest.NewDatabase(t), t.TempDir()
	var servers [2]*server
	for i := range servers {
		addr := freeAddr(t)
		servers[i] = dr.serve([]string{"EMBER_ONNXRUNTIME_LIB=" + lib}, addr, "--addr", addr, "--database-url", db,
			"--data-dir", dataDir, "--models-dir", modelsDir, "--inference-quiet", "300ms",
			"--export-workers", "2", "--inference-workers", "2")
	}

	// Read-modify-write with If-Match on a few shared resources.
	const (
		shared     = 5
		perServer  = 20
		attempts   = 12
		conditions = 3
	)
	counter := func(n int) string {
		return fmt.Sprintf(`"extension":[{"url":"urn:drill:counter","valueInteger":%d}]`, n)
	}
	for r := 0; r < shared; r++ {
		if a := drillDo("PUT", fmt.Sprintf("%s/Patient/drill-%d", servers[0].base, r),
			fmt.Sprintf(`{"resourceType":"Patient","id":"drill-%d",%s}`, r, counter(0))); a.status != http.StatusCreated {
			t.Fatalf("seed Patient/drill-%d: %d %v %s", r, a.status, a.err, a.body)
		}
	}
	var updated [shared]atomic.Int64
	var conflicts, creates atomic.Int64
	var failMu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < 2*perServer; w++ {
		s := servers[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := 0; a < attempts; a++ {
				if a%4 == 3 {
					// A conditional create on a condition every writer uses.
					c := (w + a) % conditions
					ans := drillDo("POST", s.base+"/Patient",
						fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:drill","value":"c%d"}]}`, c),
						"If-None-Exist", fmt.Sprintf("identifier=urn:drill|c%d", c))
					switch ans.status {
					case http.StatusCreated:
						creates.Add(1)
					case http.StatusOK:
					default:
						fail("conditional create c%d: %d %v %s", c, ans.status, ans.err, ans.body)
					}
					continue
				}
				r := (w + a) % shared
				url := fmt.Sprintf("%s/Patient/drill-%d", s.base, r)
				got := drillDo("GET", url, "")
				if got.status != http.StatusOK {
					fail("read %s: %d %v %s", url, got.status, got.err, got.body)
					continue
				}
				var p struct {
					Extension []struct{ ValueInteger int }
				}
				if err := json.Unmarshal([]byte(got.body), &p); err != nil || len(p.Extension) != 1 {
					fail("read %s: %v %s", url, err, got.body)
					continue
				}
				put := drillDo("PUT", url, fmt.Sprintf(`{"resourceType":"Patient","id":"drill-%d",%s}`, r, counter(p.Extension[0].ValueInteger+1)),
					"If-Match", got.header.Get("ETag"))
				switch put.status {
				case http.StatusOK:
					updated[r].Add(1)
				case http.StatusPreconditionFailed:
					conflicts.Add(1)
				default:
					fail("update %s: %d %v %s", url, put.status, put.err, put.body)
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	total := int64(0)
	for r := 0; r < shared; r++ {
		var p struct {
			Meta      struct{ VersionID string }
			Extension []struct{ ValueInteger int64 }
		}
		getJSON(t, fmt.Sprintf("%s/Patient/drill-%d", servers[1].base, r), &p)
		n := updated[r].Load()
		total += n
		if len(p.Extension) != 1 || p.Extension[0].ValueInteger != n || p.Meta.VersionID != strconv.FormatInt(n+1, 10) {
			t.Errorf("Patient/drill-%d: counter %+v, version %s after %d successful updates: an update was lost", r, p.Extension, p.Meta.VersionID, n)
		}
	}
	for c := 0; c < conditions; c++ {
		if n := count(t, fmt.Sprintf("%s/Patient?identifier=urn:drill|c%d", servers[0].base, c)); n != 1 {
			t.Errorf("conditional create c%d: %d Patients, want 1", c, n)
		}
	}
	if creates.Load() != conditions {
		t.Errorf("%d conditional creates answered 201, want %d", creates.Load(), conditions)
	}
	t.Logf("%d updates succeeded, %d answered 412 (If-Match conflicts)", total, conflicts.Load())
	if total == 0 || conflicts.Load() == 0 {
		t.Errorf("%d updates, %d conflicts: the writers did not race", total, conflicts.Load())
	}

	// Exports: kicked off on one process, run by the workers of both.
	patients := shared + conditions
	const exports = 4
	var statusURLs []string
	for i := 0; i < exports; i++ {
		a := drillDo("GET", servers[0].base+"/$export?_type=Patient", "", "Prefer", "respond-async")
		if a.status != http.StatusAccepted || a.header.Get("Content-Location") == "" {
			t.Fatalf("export kick-off: %d %v %s", a.status, a.err, a.body)
		}
		statusURLs = append(statusURLs, a.header.Get("Content-Location"))
	}
	for _, status := range statusURLs {
		var m struct {
			Output []struct {
				Type, URL string
				Count     int
			}
		}
		for deadline := time.Now().Add(2 * time.Minute); ; sleep() {
			a := drillDo("GET", status, "")
			if a.status == http.StatusOK {
				if err := json.Unmarshal([]byte(a.body), &m); err != nil {
					t.Fatalf("%s: %v %s", status, err, a.body)
				}
				break
			}
			if a.status != http.StatusAccepted || time.Now().After(deadline) {
				t.Fatalf("export %s: %d %v %s", status, a.status, a.err, a.body)
			}
		}
		seen, counted := map[string]bool{}, 0
		for _, o := range m.Output {
			counted += o.Count
			a := drillDo("GET", o.URL, "")
			if a.status != http.StatusOK {
				t.Fatalf("%s: %d %v", o.URL, a.status, a.err)
			}
			lines := strings.Split(strings.TrimSpace(a.body), "\n")
			if len(lines) != o.Count {
				t.Errorf("%s: %d lines, manifest says %d", o.URL, len(lines), o.Count)
			}
			for _, l := range lines {
				var r struct{ ID string }
				if err := json.Unmarshal([]byte(l), &r); err != nil || seen[r.ID] {
					t.Errorf("%s: line %q is a duplicate or not JSON (%v)", o.URL, l, err)
				}
				seen[r.ID] = true
			}
		}
		if counted != patients || len(seen) != patients {
			t.Errorf("export %s: manifest counts %d, files hold %d Patients; want %d", status, counted, len(seen), patients)
		}
	}
	if n := settledJobs(t, db, "ember_bulk_export"); n != exports {
		t.Errorf("%d export jobs completed at their first attempt, want %d:\n%s", n, exports, jobLog(t, db, "ember_bulk_export"))
	}
	if n := dbCount(t, db, `SELECT count(*) FROM bulk_exports WHERE status = 'completed'`); n != exports {
		t.Errorf("%d exports completed, want %d", n, exports)
	}

	// Inference: the study's own Tasks, then $infer (forced, every model)
	// on both processes; every Task completes once, with one report.
	stow(t, "http://"+servers[0].addr+"/dicomweb/studies", ct)
	study := waitStudy(t, servers[0], "CT")
	waitTask(t, servers[0], study.ID, "", time.Minute) // the quiet period's Tasks, before counting
	const rounds = 4
	for i := 0; i < rounds; i++ {
		for _, s := range servers {
			if code, body, _ := postInfer(t, s.base+"/ImagingStudy/"+study.ID+"/$infer?force=true", ""); code != http.StatusAccepted {
				t.Fatalf("$infer: %d %s", code, body)
			}
		}
	}
	tasks := count(t, servers[0].base+"/Task")
	if tasks < 2*rounds*3 {
		t.Fatalf("%d Tasks after %d forced $infer of 3 models", tasks, 2*rounds)
	}
	for deadline := time.Now().Add(3 * time.Minute); count(t, servers[1].base+"/Task?status=completed") < tasks; sleep() {
		if n := count(t, servers[1].base+"/Task?status=failed"); n > 0 {
			t.Fatalf("%d Tasks failed", n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Tasks completed in 3 minutes", count(t, servers[1].base+"/Task?status=completed"), tasks)
		}
	}
	var done bundle
	getJSON(t, servers[1].base+"/Task?status=completed&_count=1000", &done)
	reports := map[string]bool{}
	for _, e := range done.Entry {
		for _, o := range e.Resource.Output {
			if ref := o.ValueReference.Reference; strings.HasPrefix(ref, "DiagnosticReport/") {
				if reports[ref] {
					t.Errorf("%s is the output of two Tasks", ref)
				}
				reports[ref] = true
			}
		}
	}
	if n := count(t, servers[0].base+"/DiagnosticReport"); len(reports) != tasks || n != tasks {
		t.Errorf("%d Tasks, %d report outputs, %d DiagnosticReports: want one report per Task", tasks, len(reports), n)
	}
	if n := count(t, servers[0].base+"/Provenance"); n != tasks {
		t.Errorf("%d Provenances for %d Tasks", n, tasks)
	}
	// Both processes' workers took jobs: the drill raced them.
	if n := dbCount(t, db, `SELECT count(DISTINCT attempted_by[1]) FROM river_job WHERE kind = 'ember_inference'`); n != 2 {
		t.Errorf("inference jobs ran on %d processes, want both", n)
	}
	t.Logf("export jobs ran on %d processes", dbCount(t, db, `SELECT count(DISTINCT attempted_by[1]) FROM river_job WHERE kind = 'ember_bulk_export'`))
	if n := settledJobs(t, db, "ember_inference"); n != tasks {
		t.Errorf("%d inference jobs completed at their first attempt, want %d:\n%s", n, tasks, jobLog(t, db, "ember_inference"))
	}
}

// TestDrillDatabaseRestart: PostgreSQL stopped under load (pg_ctl stop -m
// fast) and started again. While it is down /readyz answers 503 within
// seconds and every FHIR request answers within a bound with 503 and an
// OperationOutcome; once it is back, /readyz answers 200 and requests
// succeed, with the same Ember process.
func TestDrillDatabaseRestart(t *testing.T) {
	dr := newDrill(t, 4*time.Minute)
	pg := pgtest.NewCluster(t)
	addr := freeAddr(t)
	s := dr.serve(nil, addr, "--addr", addr, "--database-url", pg.URL(), "--data-dir", t.TempDir())
	if a := drillDo("PUT", s.base+"/Patient/seed", `{"resourceType":"Patient","id":"seed"}`); a.status != http.StatusCreated {
		t.Fatalf("seed: %d %v %s", a.status, a.err, a.body)
	}

	const (
		up   = iota // before the stop
		down        // from the stop until the start returned
		back        // after the start
	)
	var phase atomic.Int32
	type result struct {
		phase int32
		what  string
		a     answer
	}
	var mu sync.Mutex
	var results []result
	var ok [3]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := phase.Load()
				var what string
				var a answer
				switch (c + i) % 3 {
				case 0:
					what, a = "read", drillDo("GET", s.base+"/Patient/seed", "")
				case 1:
					what, a = "search", drillDo("GET", s.base+"/Patient?_count=5", "")
				default:
					what, a = "create", drillDo("POST", s.base+"/Patient", `{"resourceType":"Patient","gender":"other"}`)
				}
				if a.status/100 == 2 {
					ok[p].Add(1)
				}
				mu.Lock()
				results = append(results, result{p, what, a})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	defer stopLoad()
	waitFor := func(what string, within time.Duration, cond func() bool) time.Duration {
		t.Helper()
		began := time.Now()
		for !cond() {
			if time.Since(began) > within {
				t.Fatalf("%s: not within %s", what, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(began)
	}
	readyz := func() int { return drillDo("GET", "http://"+addr+"/readyz", "").status }
	waitFor("requests succeed before the stop", 30*time.Second, func() bool { return ok[up].Load() >= 20 })

	phase.Store(down)
	pg.Stop(t)
	took := waitFor("/readyz answers 503 after PostgreSQL stopped", 5*time.Second, func() bool { return readyz() == http.StatusServiceUnavailable })
	t.Logf("/readyz answered 503 %s after the stop", took.Round(time.Millisecond))
	time.Sleep(3 * time.Second) // load against the stopped database
	pg.Start(t)
	phase.Store(back)
	took = waitFor("/readyz answers 200 after PostgreSQL started", 10*time.Second, func() bool { return readyz() == http.StatusOK })
	t.Logf("/readyz answered 200 %s after the start", took.Round(time.Millisecond))
	waitFor("requests succeed after the restart", 15*time.Second, func() bool { return ok[back].Load() >= 20 })
	stopLoad()

	var failed, unavailable [3]int
	bad := 0
	for _, r := range results {
		a := r.a
		switch {
		case a.status/100 == 2:
			continue
		case a.err == nil && a.status == http.StatusServiceUnavailable && isOutcome(a.body):
			unavailable[r.phase]++
			continue
		}
		failed[r.phase]++
		if bad++; bad <= 10 {
			t.Errorf("phase %d, %s: %d %v after %s: %.300s (want 2xx, or 503 with an OperationOutcome)", r.phase, r.what, a.status, a.err, a.took.Round(time.Millisecond), a.body)
		}
	}
	if bad > 0 {
		t.Logf("the server's log of internal errors:\n%s", distinctErrors(s.out.String(), 10))
	}
	if unavailable[down] == 0 {
		t.Errorf("no request answered 503 while PostgreSQL was down: the drill proves nothing")
	}
	t.Logf("%d requests: up %d ok; down %d unavailable, %d failed; back %d ok, %d unavailable, %d failed",
		len(results), ok[up].Load(), unavailable[down], failed[down], ok[back].Load(), unavailable[back], failed[back])
	// Once Ember has answered 200 after the restart, no request may fail
	// for the database's sake any more.
	code := drillDo("GET", s.base+"/Patient/seed", "").status
	if code != http.StatusOK {
		t.Errorf("read after the restart: %d", code)
	}
}

// TestDrillSIGTERM: SIGTERM while slow transaction Bundles are in flight.
// Each gets its whole answer, new connections are refused once shutdown
// has begun, and the process exits within its --shutdown-grace.
func TestDrillSIGTERM(t *testing.T) {
	dr := newDrill(t, 3*time.Minute)
	db := pgtest.NewDatabase(t)
	addr := freeAddr(t)
	const grace = 12 * time.Second
	s := dr.serve(nil, addr, "--addr", addr, "--database-url", db, "--data-dir", t.TempDir(), "--shutdown-grace", grace.String())
	const perBundle, clients = 400, 4
	bundle := func(k int) string {
		var entries []string
		for i := 0; i < perBundle; i++ {
			entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%08d-0000-4000-8000-%012d","resource":{"resourceType":"Observation","meta":{"tag":[{"system":"urn:drill","code":"b%d"}]},"status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:%08d-0000-4000-8000-%012d"}},"request":{"method":"POST","url":"Observation"}}`, k, i+1, k, k, 0))
		}
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%08d-0000-4000-8000-%012d","resource":{"resourceType":"Patient","meta":{"tag":[{"system":"urn:drill","code":"b%d"}]}},"request":{"method":"POST","url":"Patient"}}`, k, 0, k))
		return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
	}
	// Time one, so the drill knows the Bundles are slow enough to be in
	// flight when the signal lands.
	began := time.Now()
	if a := drillDo("POST", s.base, bundle(0)); a.status != http.StatusOK {
		t.Fatalf("transaction: %d %v %.300s", a.status, a.err, a.body)
	}
	t.Logf("one transaction of %d entries alone: %s", perBundle+1, time.Since(began).Round(time.Millisecond))

	// In flight means the server has taken the request: each Bundle asks
	// "Expect: 100-continue" and sends its body only once Ember's handler
	// reads it. (A request written into a connection the server has not
	// accepted yet, or onto an idle keep-alive connection as shutdown closes
	// it, is lost in a race HTTP/1.1 cannot close: the client must retry.)
	client := &http.Client{Timeout: 2 * grace, Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: grace}}
	var sent sync.WaitGroup
	answers := make(chan answer, clients)
	var answered, continued atomic.Int32
	for k := 1; k <= clients; k++ {
		sent.Add(1)
		go func() {
			var once sync.Once
			trace := &httptrace.ClientTrace{
				Got100Continue: func() { continued.Add(1) },
				WroteRequest:   func(httptrace.WroteRequestInfo) { once.Do(sent.Done) },
			}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", s.base, strings.NewReader(bundle(k)))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Expect", "100-continue")
			began := time.Now()
			resp, err := client.Do(req)
			once.Do(sent.Done)
			a := answer{err: err}
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				a = answer{status: resp.StatusCode, body: string(b), err: rerr}
			}
			a.took = time.Since(began)
			answered.Add(1)
			answers <- a
		}()
	}
	sent.Wait()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	// New connections: refused once the listener is closed, which
	// Shutdown does first.
	refused := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if errors.Is(err, syscall.ECONNRESET) {
			continue // the listener closed during the handshake
		}
		if err != nil {
			refused = errors.Is(err, syscall.ECONNREFUSED)
			if continued.Load() != clients {
				t.Errorf("%d of %d Bundles got 100 Continue before SIGTERM", continued.Load(), clients)
			}
			if !refused {
				t.Errorf("a new connection after SIGTERM: %v, want connection refused", err)
			}
			break
		}
		c.Close()
	}
	inFlight := int(clients - answered.Load())
	if continued.Load() != clients {
		t.Errorf("%d of %d Bundles got 100 Continue before SIGTERM", continued.Load(), clients)
	}
	if !refused {
		t.Errorf("new connections were still accepted 2 s after SIGTERM")
	}
	t.Logf("new connections refused %s after SIGTERM, with %d of %d transactions still in flight",
		time.Since(signalled).Round(time.Millisecond), inFlight, clients)
	if inFlight == 0 {
		t.Error("every transaction had been answered before the listener closed: the drill proves nothing (make the Bundles larger)")
	}
	for i := 0; i < clients; i++ {
		a := <-answers
		var b struct{ ResourceType, Type string }
		if a.err != nil || a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &b) != nil || b.Type != "transaction-response" {
			t.Errorf("an in-flight transaction after SIGTERM: %d %v after %s: %.300s", a.status, a.err, a.took.Round(time.Millisecond), a.body)
		}
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("ember serve exit after SIGTERM: %v\n%s", err, s.out.String())
		}
		t.Logf("exited %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))
	case <-time.After(grace - time.Since(signalled)):
		t.Fatalf("ember serve still running %s after SIGTERM\n%s", grace, s.out.String())
	}
	if n := dbCount(t, db, `SELECT count(*) FROM resources WHERE type IN ('Observation', 'Patient')`); n != (clients+1)*(perBundle+1) {
		t.Errorf("%d resources stored, want %d (every answered transaction whole)", n, (clients+1)*(perBundle+1))
	}
}

// TestDrillDICOMDiskFull: the DICOM blob store on a file system that
// fills up. A C-STORE that does not fit answers "out of resources"
// (0xA7xx) and leaves nothing behind: no blob, no instance row, no
// ImagingStudy; once space is freed the same store succeeds.
func TestDrillDICOMDiskFull(t *testing.T) {
	dr := newDrill(t, 3*time.Minute)
	testenv.DCMTKTools(t, "storescu")
	ct, err := dicomsamples.Pydicom(context.Background(), dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	mr, err := dicomsamples.Pydicom(context.Background(), "MR_small.dcm")
	if err != nil {
		t.Fatal(err)
	}
	ctInfo, err := os.Stat(ct)
	if err != nil {
		t.Fatal(err)
	}
	blobDir := filepath.Join(t.TempDir(), "blobs")
	if err := os.Mkdir(blobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", blobDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs for the blob store (needs root): %v %s", err, out)
	}
	// Registered before the server starts, so it runs after the server stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", blobDir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", blobDir, err, out)
		}
	})
	db := pgtest.NewDatabase(t)
	addr, dimseAddr := freeAddr(t), freeAddr(t)
	s := dr.serve([]string{"EMBER_DIMSE_ADDR=" + dimseAddr}, addr, "--addr", addr, "--database-url", db,
		"--data-dir", t.TempDir(), "--dicom-blob-url", "file://"+blobDir, "--ae-title", "EMBERTEST")
	host, port, _ := net.SplitHostPort(dimseAddr)
	storescu := func(file string) string {
		out, _ := exec.Command("storescu", "-v", "-aec", "EMBERTEST", host, port, file).CombinedOutput()
		return string(out)
	}
	if out := storescu(mr); !strings.Contains(out, "Success") {
		t.Fatalf("storescu MR_small: %s", out)
	}
	// Fill the file system until less than CT_small fits.
	var st syscall.Statfs_t
	if err := syscall.Statfs(blobDir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(blobDir, "filler")
	if err := os.WriteFile(filler, make([]byte, max(0, free-ctInfo.Size()/2)), 0o644); err != nil {
		t.Fatal(err)
	}
	blobsBefore := blobFiles(t, blobDir)
	out := storescu(ct)
	// storescu names the status class ("Refused: OutOfResources"), with -v
	// not its code.
	if !strings.Contains(out, "Refused: OutOfResources") && !strings.Contains(strings.ToLower(out), "0xa7") {
		t.Errorf("storescu CT_small on a full disk: %s\nwant an out-of-resources status (0xA7xx)", out)
	}
	if got := blobFiles(t, blobDir); strings.Join(got, ",") != strings.Join(blobsBefore, ",") {
		t.Errorf("blob files after the failed store: %v, before: %v (a partial blob was left)", got, blobsBefore)
	}
	if n := dbCount(t, db, `SELECT count(*) FROM dicom_instances`); n != 1 {
		t.Errorf("%d instance rows after the failed store, want 1 (MR_small's)", n)
	}
	time.Sleep(time.Second) // the ImagingStudy sync runs shortly after an association
	if n := count(t, s.base+"/ImagingStudy"); n != 1 {
		t.Errorf("%d ImagingStudies after the failed store, want 1 (MR_small's)", n)
	}
	if n := count(t, s.base+"/ImagingStudy?modality=CT"); n != 0 {
		t.Errorf("a CT ImagingStudy exists after its only instance failed to store")
	}
	// Space freed: the same store now succeeds.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if out := storescu(ct); !strings.Contains(out, "Success") {
		t.Fatalf("storescu CT_small after freeing space: %s", out)
	}
	waitStudy(t, s, "CT")
}

// blobFiles lists the regular files under dir (relative names, sorted).
func blobFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// distinctErrors returns up to n distinct error lines of a server's log.
func distinctErrors(log string, n int) string {
	seen := map[string]bool{}
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		i := strings.Index(l, "err=") // text log
		if i < 0 {
			i = strings.Index(l, `"err":`) // JSON log
		}
		if i < 0 || seen[l[i:]] {
			continue
		}
		seen[l[i:]] = true
		if lines = append(lines, l); len(lines) == n {
			break
		}
	}
	return strings.Join(lines, "\n")
}

// jobLog lists a kind's River jobs (state, attempt, errors) for a failure message.
func jobLog(t *testing.T, url, kind string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id, state::text, attempt, array_to_string(attempted_by, ','), errors::text FROM river_job WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id int64
		var state, by string
		var attempt int
		var errs *string
		if err := rows.Scan(&id, &state, &attempt, &by, &errs); err != nil {
			t.Fatal(err)
		}
		e := ""
		if errs != nil {
			e = *errs
		}
		fmt.Fprintf(&b, "job %d: %s, attempt %d by %s %.500s\n", id, state, attempt, by, e)
	}
	return b.String()
}

// settledJobs waits (30 s at most) until no job of kind is left running or
// waiting, River marking a finished job completed in batches, and returns
// how many completed at their first attempt.
func settledJobs(t *testing.T, url, kind string) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); sleep() {
		if dbCount(t, url, `SELECT count(*) FROM river_job WHERE kind = $1 AND state NOT IN ('completed', 'discarded', 'cancelled')`, kind) == 0 {
			break
		}
	}
	return dbCount(t, url, `SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'completed' AND attempt = 1`, kind)
}
