package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
)

// bulkEnv is a server with export workers running, on a private database
// and data directory.
type bulkEnv struct {
	*env
	db *pgxpool.Pool
}

// newBulkEnv is newEnv plus River's schema, a data directory and started
// workers (stopped when the test ends, before the store closes).
func newBulkEnv(t *testing.T, dbURL string, mod ...func(*server.Config)) *bulkEnv {
	t.Helper()
	ctx := context.Background()
	if dbURL == "" {
		dbURL = pgtest.NewDatabase(t)
	}
	if err := store.MigrateJobs(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	cfg := server.Config{BaseURL: ts.URL + "/fhir", Logger: testLogger(), BulkExport: true}
	for _, m := range mod {
		m(&cfg)
	}
	srv, err := server.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	h = srv.Handler()
	return &bulkEnv{env: &env{t: t, url: ts.URL + "/fhir", store: st}, db: pool}
}

// loadSynthea loads the hospital and practitioner bundles and n patients.
func (e *bulkEnv) loadSynthea(n int) {
	e.t.Helper()
	dir, err := synthea.Dir()
	if err != nil {
		e.t.Fatal(err)
	}
	files, err := synthea.Files(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	var pick []string
	for _, f := range files {
		if !synthea.IsPatientBundle(f) {
			pick = append(pick, f)
		} else if n > 0 {
			pick = append(pick, f)
			n--
		}
	}
	eng, err := engine.New(engine.Config{BaseURL: e.url}, e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := synthea.Load(context.Background(), eng, pick); err != nil {
		e.t.Fatal(err)
	}
}

// storedCounts counts current resources per type, straight from the table.
func (e *bulkEnv) storedCounts(types ...string) map[string]int {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT type, count(*) FROM resources WHERE NOT deleted GROUP BY type`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			e.t.Fatal(err)
		}
		if len(types) == 0 || slices.Contains(types, t) {
			out[t] = n
		}
	}
	return out
}

// kickoff starts an export at path (e.g. "/$export?_type=Patient") and
// returns its status URL.
func (e *bulkEnv) kickoff(path string) string {
	e.t.Helper()
	r := e.do("GET", path, nil, "Prefer: respond-async", "Accept: application/fhir+json")
	expect(e.t, r, http.StatusAccepted)
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, e.url+"/$export-status/") {
		e.t.Fatalf("Content-Location %q", loc)
	}
	return loc
}

type manifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken *bool  `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []any `json:"error"`
}

// wait polls a status URL until the export completes.
func (e *bulkEnv) wait(status string) manifest {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r := e.do("GET", status, nil, "Accept: application/json")
		switch r.status {
		case http.StatusAccepted:
			if r.header.Get("X-Progress") == "" || r.header.Get("Retry-After") == "" {
				e.t.Fatalf("202 without X-Progress or Retry-After: %v", r.header)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		case http.StatusOK:
			var m manifest
			if err := json.Unmarshal(r.body, &m); err != nil {
				e.t.Fatalf("manifest: %v: %s", err, r.body)
			}
			if m.RequiresAccessToken == nil || *m.RequiresAccessToken || m.Error == nil || m.Request == "" {
				e.t.Fatalf("manifest lacks a field: %s", r.body)
			}
			if _, err := time.Parse(time.RFC3339Nano, m.TransactionTime); err != nil {
				e.t.Fatalf("transactionTime %q: %v", m.TransactionTime, err)
			}
			return m
		default:
			e.t.Fatalf("status %d: %s", r.status, r.body)
		}
	}
	e.t.Fatal("export did not finish in time")
	return manifest{}
}

// download fetches every output file and returns the resource ids by type,
// checking the file's lines, types, content type and manifest counts.
func (e *bulkEnv) download(m manifest) map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, o := range m.Output {
		r := e.do("GET", o.URL, nil, "Accept: application/fhir+ndjson")
		expect(e.t, r, http.StatusOK)
		if ct := r.header.Get("Content-Type"); ct != "application/fhir+ndjson" {
			e.t.Fatalf("%s: Content-Type %q", o.URL, ct)
		}
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		sc.Buffer(nil, 16<<20)
		n := 0
		for sc.Scan() {
			var res struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
				e.t.Fatalf("%s line %d: %v", o.URL, n+1, err)
			}
			if res.ResourceType != o.Type || res.ID == "" {
				e.t.Fatalf("%s line %d: %s/%s in a %s file", o.URL, n+1, res.ResourceType, res.ID, o.Type)
			}
			out[o.Type] = append(out[o.Type], res.ID)
			n++
		}
		if n != o.Count {
			e.t.Fatalf("%s: %d lines, manifest says %d", o.URL, n, o.Count)
		}
	}
	for typ, ids := range out {
		if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
			e.t.Fatalf("%s: a resource exported twice", typ)
		}
	}
	return out
}

func counts(ids map[string][]string) map[string]int {
	out := map[string]int{}
	for t, l := range ids {
		out[t] = len(l)
	}
	return out
}

func diffCounts(t *testing.T, got, want map[string]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("exported counts differ from stored:\ngot  %v\nwant %v", got, want)
	}
}

func TestExportSystem(t *testing.T) {
	e := newBulkEnv(t, "")
	e.loadSynthea(3)
	m := e.wait(e.kickoff("/$export"))
	if !strings.HasSuffix(m.Request, "/fhir/$export") {
		t.Fatalf("request %q", m.Request)
	}
	want := e.storedCounts()
	if len(want) < 10 {
		t.Fatalf("only %d types loaded", len(want))
	}
	diffCounts(t, counts(e.download(m)), want)

	t.Run("type", func(t *testing.T) {
		m := e.wait(e.kickoff("/$export?_type=Patient,Observation&_outputFormat=application/fhir%2Bndjson"))
		diffCounts(t, counts(e.download(m)), e.storedCounts("Patient", "Observation"))
	})

	t.Run("since", func(t *testing.T) {
		// The newest lastUpdated stored: every resource so far is at or
		// before it, and the write below (one process clock, strictly
		// increasing per store.clock) comes after it.
		var since time.Time
		if err := e.db.QueryRow(context.Background(), `SELECT max(last_updated) FROM resources`).Scan(&since); err != nil {
			t.Fatal(err)
		}
		r := e.do("PUT", "/Patient/bulk-since", []byte(`{"resourceType":"Patient","id":"bulk-since","gender":"other"}`))
		expect(t, r, http.StatusCreated)
		m := e.wait(e.kickoff("/$export?_since=" + url.QueryEscape(since.Format(time.RFC3339Nano))))
		got := e.download(m)
		if !reflect.DeepEqual(got, map[string][]string{"Patient": {"bulk-since"}}) {
			t.Fatalf("_since export: %v", got)
		}
		// The transaction time bounds what a follow-up _since export needs.
		m2 := e.wait(e.kickoff("/$export?_since=" + url.QueryEscape(m.TransactionTime)))
		if got := e.download(m2); len(got) != 0 {
			t.Fatalf("nothing changed since the last transactionTime, got %v", got)
		}
	})

	t.Run("typeFilter", func(t *testing.T) {
		// Two queries for one type are ORed; commas inside a query stay.
		filter := url.QueryEscape("Observation?category=vital-signs,Observation?category=laboratory,survey")
		m := e.wait(e.kickoff("/$export?_type=Observation,Patient&_typeFilter=" + filter))
		got := counts(e.download(m))
		r := e.do("GET", "/Observation?category=vital-signs,laboratory,survey&_summary=count", nil)
		expect(t, r, http.StatusOK)
		want := int(r.json(t)["total"].(float64))
		if want == 0 || got["Observation"] != want || got["Patient"] != e.storedCounts("Patient")["Patient"] {
			t.Fatalf("_typeFilter: got %v, want %d observations and every patient", got, want)
		}
	})

	t.Run("post", func(t *testing.T) {
		body := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"},{"name":"_outputFormat","valueString":"ndjson"}]}`
		r := e.do("POST", "/$export", []byte(body), "Prefer: respond-async")
		expect(t, r, http.StatusAccepted)
		m := e.wait(r.header.Get("Content-Location"))
		diffCounts(t, counts(e.download(m)), e.storedCounts("Patient"))
	})
}

// compartmentOracle lists the resources in the given patients' compartments
// through compartment search (Patient/id/Type), an independent path.
func (e *bulkEnv) compartmentOracle(patients []string) map[string]int {
	e.t.Helper()
	stored := e.storedCounts()
	out := map[string]int{}
	seen := map[string]bool{}
	for _, pid := range patients {
		for _, typ := range spec.CompartmentTypes("Patient") {
			if stored[typ] == 0 {
				continue
			}
			path := fmt.Sprintf("/Patient/%s/%s?_count=1000&_elements=id", pid, typ)
			for path != "" {
				r := e.do("GET", path, nil)
				expect(e.t, r, http.StatusOK)
				var b struct {
					Entry []struct {
						Resource struct{ ID string } `json:"resource"`
					} `json:"entry"`
					Link []struct{ Relation, URL string } `json:"link"`
				}
				if err := json.Unmarshal(r.body, &b); err != nil {
					e.t.Fatal(err)
				}
				for _, en := range b.Entry {
					if key := typ + "/" + en.Resource.ID; !seen[key] {
						seen[key] = true
						out[typ]++
					}
				}
				path = ""
				for _, l := range b.Link {
					if l.Relation == "next" {
						path = l.URL
					}
				}
			}
		}
	}
	return out
}

func (e *bulkEnv) patientIDs() []string {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT id FROM resources WHERE type = 'Patient' AND NOT deleted ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestExportPatientAndGroup(t *testing.T) {
	e := newBulkEnv(t, "")
	e.loadSynthea(2)
	patients := e.patientIDs()
	if len(patients) != 2 {
		t.Fatalf("patients %v", patients)
	}

	t.Run("patient", func(t *testing.T) {
		got := counts(e.download(e.wait(e.kickoff("/Patient/$export"))))
		want := e.compartmentOracle(patients)
		diffCounts(t, got, want)
		for _, typ := range []string{"Organization", "Practitioner", "Location"} {
			if got[typ] != 0 {
				t.Errorf("%s is outside the Patient compartment but was exported", typ)
			}
		}
	})

	t.Run("group", func(t *testing.T) {
		g := fmt.Sprintf(`{"resourceType":"Group","id":"bulk","type":"person","actual":true,
			"member":[{"entity":{"reference":"Patient/%s"}},{"entity":{"reference":"Patient/%s"},"inactive":true}]}`, patients[0], patients[1])
		expect(t, e.do("PUT", "/Group/bulk", []byte(g)), http.StatusCreated)
		got := counts(e.download(e.wait(e.kickoff("/Group/bulk/$export"))))
		diffCounts(t, got, e.compartmentOracle(patients[:1]))

		got = counts(e.download(e.wait(e.kickoff("/Group/bulk/$export?_type=Patient,Encounter"))))
		want := e.compartmentOracle(patients[:1])
		diffCounts(t, got, map[string]int{"Patient": 1, "Encounter": want["Encounter"]})

		expectOutcome(t, e.do("GET", "/Group/nope/$export", nil, "Prefer: respond-async"), http.StatusNotFound)
	})
}

func TestExportKickoffErrors(t *testing.T) {
	e := newBulkEnv(t, "")
	async := "Prefer: respond-async"
	expectOutcome(t, e.do("GET", "/$export", nil), http.StatusBadRequest)
	for _, q := range []string{
		"_outputFormat=application/fhir%2Bjson",
		"_type=Nope",
		"_since=yesterday",
		"_typeFilter=" + url.QueryEscape("Observation?nonsense=1"),
		"_typeFilter=" + url.QueryEscape("Observation?code=x&_sort=date"),
		"_typeFilter=nope",
		"frobnicate=1",
		"patient=Patient/1",
	} {
		expectOutcome(t, e.do("GET", "/$export?"+q, nil, async), http.StatusBadRequest)
	}
	expectOutcome(t, e.do("GET", "/Patient/$export?_type=Organization", nil, async), http.StatusBadRequest)
	expectOutcome(t, e.do("GET", "/Patient/1/$export", nil, async), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/$export", nil, async, "Accept: application/xml"), http.StatusNotAcceptable)
	// Lenient handling ignores unknown parameters.
	r := e.do("GET", "/$export?frobnicate=1", nil, "Prefer: respond-async, handling=lenient")
	expect(t, r, http.StatusAccepted)

	expectOutcome(t, e.do("GET", "/$export-status/0190b7e4-0000-7000-8000-000000000000", nil), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/$export-status/../../etc", nil), http.StatusNotFound)
	expectOutcome(t, e.do("DELETE", "/$export-status/0190b7e4-0000-7000-8000-000000000000", nil), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/$export-file/0190b7e4-0000-7000-8000-000000000000/Patient-1.ndjson", nil), http.StatusNotFound)
}

func TestExportCancel(t *testing.T) {
	e := newBulkEnv(t, "")
	e.loadSynthea(1)
	status := e.kickoff("/$export")
	id := status[strings.LastIndex(status, "/")+1:]
	expect(t, e.do("DELETE", status, nil), http.StatusAccepted)
	expectOutcome(t, e.do("GET", status, nil), http.StatusNotFound)
	expectOutcome(t, e.do("DELETE", status, nil), http.StatusNotFound)
	// Its stored files went with it, and a worker still running cannot add
	// more (it stops at its next write): once River has finalised the job
	// (cancelled, or completed by a worker that found its export gone), no
	// worker runs it, and no part may remain.
	e.waitJobFinalized(id)
	var parts int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM bulk_export_parts WHERE export_id = $1`, id).Scan(&parts); err != nil || parts != 0 {
		t.Fatalf("%d parts of the cancelled export remain (%v)", parts, err)
	}

	// A finished export is deleted with its files too.
	m := e.wait(e.kickoff("/$export?_type=Patient"))
	status = e.url + "/$export-status/" + strings.Split(strings.TrimPrefix(m.Output[0].URL, e.url+"/$export-file/"), "/")[0]
	expect(t, e.do("DELETE", status, nil), http.StatusAccepted)
	expectOutcome(t, e.do("GET", m.Output[0].URL, nil), http.StatusNotFound)
}

// jobState reads the River job of export id: its state and attempts so far.
func (e *bulkEnv) jobState(id string) (state string, attempt int) {
	e.t.Helper()
	err := e.db.QueryRow(context.Background(), `SELECT state::text, attempt FROM river_job WHERE args->>'export_id' = $1`, id).Scan(&state, &attempt)
	if err != nil {
		e.t.Fatalf("River job of export %s: %v", id, err)
	}
	return state, attempt
}

// waitJobFinalized polls until River has finalised export id's job: no
// worker runs it any more.
func (e *bulkEnv) waitJobFinalized(id string) {
	e.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		switch state, _ := e.jobState(id); state {
		case "cancelled", "completed", "discarded":
			return
		}
		if time.Now().After(deadline) {
			state, attempt := e.jobState(id)
			e.t.Fatalf("the job of export %s is still %s (attempt %d) after a minute", id, state, attempt)
		}
	}
}

// TestExportQueuedSurvivesRestart: an export accepted by a process without
// workers (or that stopped) is run by the next one to start on the database.
func TestExportQueuedSurvivesRestart(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a := newBulkEnv(t, dbURL, func(c *server.Config) { c.ExportWorkers = -1 })
	a.loadSynthea(1)
	status := a.kickoff("/$export")
	// Nothing can take the job: no process has registered a worker for
	// River's bulk queue yet, and the job was never attempted.
	if state, attempt := a.jobState(status[strings.LastIndex(status, "/")+1:]); state != "available" || attempt != 0 {
		t.Fatalf("job state %s, attempt %d before any worker exists; want available, 0", state, attempt)
	}
	var producers int
	if err := a.db.QueryRow(context.Background(), `SELECT count(*) FROM river_queue WHERE name = 'bulk'`).Scan(&producers); err != nil || producers != 0 {
		t.Fatalf("%d River bulk queues registered with no worker (%v)", producers, err)
	}
	r := a.do("GET", status, nil)
	expect(t, r, http.StatusAccepted)
	if p := r.header.Get("X-Progress"); p != "queued" {
		t.Fatalf("X-Progress %q with no worker", p)
	}
	b := newBulkEnv(t, dbURL)
	b.wait(strings.Replace(status, a.url, b.url, 1))
	// The files are in the database: the process that did not run the
	// export serves them as well.
	m := a.wait(status)
	diffCounts(t, counts(a.download(m)), a.storedCounts())
}
