package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
)

// The search scenarios (issue 3) run on the Synthea data set: 100 patients
// plus the hospital and practitioner bundles, about 33,000 resources PUT
// under their own ids.
//
// search33k loads it, reports storage and write-path costs, then the search
// figures. On the 2-core reference machine it takes about 2–3 minutes with
// the default -duration 10s and -warmup 2s (reading the bundles ≈ 5 s, load
// ≈ 35 s, in-process validation timing ≈ 10 s, three 12 s timed windows,
// OR200), more while a query is slow enough to stretch a window (each
// client finishes one full round of the mix).
//
// search330k loads the same bundles nine more times with every resource id
// suffixed -c1 … -c9 (about 330,000 resources in all), then repeats the
// search figures with names suffixed _330k. Expect about 7 minutes on the
// 2-core reference machine: the load ≈ 3.5 min (≈ 1,450 resources/s),
// VACUUM ANALYZE, then the searches, longer while a query runs into the
// 30 s client timeout. Skip it with -only 'seed|read|create|search33k'.

const (
	syntheaClients = 8 // concurrent PUT clients while loading
	syntheaCopies  = 9 // extra copies loaded by search330k
	or200Values    = 200
	or200Runs      = 20
	searchClients  = 16 // the concurrent mix and obs-by-patient
)

func searchScenarios() []scenario {
	return []scenario{
		{name: "search33k", run: search33k},
		{name: "search330k", requires: []string{"search33k"}, run: search330k},
	}
}

func search33k(ctx context.Context, e *env) ([]figure, error) {
	t := time.Now()
	s, err := loadSynthea()
	if err != nil {
		return nil, err
	}
	e.synthea = s
	fmt.Fprintf(os.Stderr, "# search33k: %d resources (%.0f MB of JSON) read in %v\n",
		len(s.res), float64(s.size())/1e6, time.Since(t).Round(time.Millisecond))

	o, err := s.putCopies(ctx, e, syntheaClients, 0, 1)
	figs := []figure{
		{"synthea_load_rate", rate(len(o.lat), o.elapsed), "resources/s"},
		{"synthea_loaded", float64(len(o.lat)), "resources"},
		{"synthea_load_errors", float64(o.errors), "count"},
	}
	if err := errors.Join(err, o.err("search33k load")); err != nil {
		return figs, err
	}
	more, err := storageFigures(ctx, e, "")
	figs = append(figs, more...)
	if err != nil {
		return figs, err
	}
	more, err = writeCosts(s)
	figs = append(figs, more...)
	if err != nil {
		return figs, err
	}
	more, err = searchFigures(ctx, e, s, "")
	return append(figs, more...), err
}

func search330k(ctx context.Context, e *env) ([]figure, error) {
	s := e.synthea
	if s == nil {
		return nil, errors.New("search330k: the Synthea set was not loaded (search33k failed)")
	}
	o, err := s.putCopies(ctx, e, syntheaClients, 1, syntheaCopies)
	figs := []figure{
		{"synthea_load_rate_330k", rate(len(o.lat), o.elapsed), "resources/s"},
		{"synthea_loaded_330k", float64(len(o.lat)), "resources"},
		{"synthea_load_errors_330k", float64(o.errors), "count"},
	}
	if err := errors.Join(err, o.err("search330k load")); err != nil {
		return figs, err
	}
	s.copies = syntheaCopies
	more, err := storageFigures(ctx, e, "_330k")
	figs = append(figs, more...)
	if err != nil {
		return figs, err
	}
	more, err = searchFigures(ctx, e, s, "_330k")
	return append(figs, more...), err
}

// storageFigures vacuums and analyzes (see vacuumAnalyze), then reports the
// bytes per resource of the index tables and of the resource tables.
func storageFigures(ctx context.Context, e *env, sfx string) ([]figure, error) {
	took, err := e.vacuumAnalyze(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "# VACUUM (ANALYZE) after the load took %v\n", took.Round(time.Millisecond))
	st, err := e.storage(ctx)
	if err != nil {
		return nil, err
	}
	if st.Resources == 0 {
		return nil, errors.New("no resources in the database after the load")
	}
	n := float64(st.Resources)
	return []figure{
		{"db_resources" + sfx, n, "resources"},
		{"index_bytes_per_resource" + sfx, float64(st.IndexBytes) / n, "bytes"},
		{"resource_bytes_per_resource" + sfx, float64(st.ResourceBytes) / n, "bytes"},
	}, nil
}

// writeCosts times, in this process and on one goroutine, the two CPU costs
// of every write: index extraction and validation.
func writeCosts(s *syntheaSet) ([]figure, error) {
	t := time.Now()
	for _, r := range s.res {
		if _, err := index.Extract(r.typ, r.json); err != nil {
			return nil, fmt.Errorf("index.Extract %s/%s: %w", r.typ, r.id, err)
		}
	}
	extract := time.Since(t)
	p, err := fhir.NewParser()
	if err != nil {
		return nil, err
	}
	t = time.Now()
	for _, r := range s.res {
		if _, err := p.Parse(r.json, ""); err != nil {
			return nil, fmt.Errorf("validate %s/%s: %w", r.typ, r.id, err)
		}
	}
	validate := time.Since(t)
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(len(s.res)) }
	return []figure{
		{"extraction_cost_per_resource", per(extract), "µs"},
		{"validation_cost_per_resource", per(validate), "µs"},
	}, nil
}

// searchQuery is one query of the mix; url builds a request (path and
// query after the FHIR base) with values drawn from r.
type searchQuery struct {
	name string
	url  func(r *rand.Rand) string
}

// mix is the search mix of issue 3. Patient-scoped queries draw the patient
// (X) at random from every loaded copy, among the Patients with
// Observations (with an active or completed MedicationRequest for
// medreq_status, so that it finds something).
func (s *syntheaSet) mix() []searchQuery {
	patient := func(r *rand.Rand) string {
		return s.patients[r.IntN(len(s.patients))] + suffix(r.IntN(s.copies+1))
	}
	family := func(r *rand.Rand) string { return s.families[r.IntN(len(s.families))] }
	return []searchQuery{
		{"patient_name", func(r *rand.Rand) string {
			f := []rune(family(r))
			return "Patient?name=" + q(string(f[:min(3, len(f))]))
		}},
		{"patient_birthdate_gender", func(r *rand.Rand) string {
			return "Patient?birthdate=ge" + s.femaleBirths[r.IntN(len(s.femaleBirths))] + "&gender=female"
		}},
		{"patient_identifier", func(r *rand.Rand) string {
			p := s.patients[r.IntN(len(s.patients))]
			sys, val, _ := strings.Cut(s.mrn[p], "|")
			if val == p { // Synthea's MRN is the patient's UUID, suffixed in copies
				val += suffix(r.IntN(s.copies + 1))
			}
			return "Patient?identifier=" + q(sys+"|"+val)
		}},
		{"obs_vitals_since", func(r *rand.Rand) string {
			k, p := r.IntN(s.copies+1), s.patients[r.IntN(len(s.patients))]
			since := s.vitalsSince[p]
			if since == "" {
				since = "2000-01-01"
			}
			return "Observation?patient=" + q(p+suffix(k)) + "&category=vital-signs&date=ge" + since
		}},
		{"obs_patient_code", func(r *rand.Rand) string {
			return "Observation?patient=" + q(patient(r)) + "&code=" + q("http://loinc.org|8302-2")
		}},
		{"dr_include_result", func(r *rand.Rand) string {
			return "DiagnosticReport?patient=" + q(patient(r)) + "&_include=DiagnosticReport:result"
		}},
		{"enc_sort_date", func(r *rand.Rand) string {
			return "Encounter?patient=" + q(patient(r)) + "&_sort=-date"
		}},
		{"patient_has_obs_code", func(*rand.Rand) string {
			return "Patient?_has:Observation:patient:code=8302-2"
		}},
		{"obs_chain_patient_name", func(r *rand.Rand) string {
			return "Observation?subject:Patient.name=" + q(family(r))
		}},
		{"medreq_status", func(r *rand.Rand) string {
			p := s.medPatients[r.IntN(len(s.medPatients))] + suffix(r.IntN(s.copies+1))
			return "MedicationRequest?patient=" + q(p) + "&status=active,completed"
		}},
	}
}

// q escapes a query value; commas stay literal (they separate OR'd values).
func q(v string) string { return strings.ReplaceAll(url.QueryEscape(v), "%2C", ",") }

// or200 is Observation?code= with 200 OR'd LOINC codes: every code in the
// data, then made-up ones.
func (s *syntheaSet) or200() string {
	codes := slices.Clone(s.loincCodes[:min(len(s.loincCodes), or200Values)])
	for i := 0; len(codes) < or200Values; i++ {
		codes = append(codes, fmt.Sprintf("99%03d-%d", i, i%10)) // LOINC-shaped, not in the data
	}
	vals := make([]string, len(codes))
	for i, c := range codes {
		vals[i] = q("http://loinc.org|" + c)
	}
	return "Observation?code=" + strings.Join(vals, ",")
}

func searchFigures(ctx context.Context, e *env, s *syntheaSet, sfx string) ([]figure, error) {
	qs := s.mix()
	if sfx == "" {
		r := rand.New(rand.NewPCG(0, 0))
		for _, sq := range qs {
			fmt.Fprintf(os.Stderr, "# query %s: %s\n", sq.name, sq.url(r))
		}
	}
	var figs []figure
	var errs []error
	for _, clients := range []int{1, searchClients} {
		more, err := mixFigures(ctx, e, qs, clients, sfx)
		figs = append(figs, more...)
		errs = append(errs, err)
		if ctx.Err() != nil {
			return figs, errors.Join(errs...)
		}
	}
	more, err := obsByPatient(ctx, e, s, sfx)
	figs = append(figs, more...)
	errs = append(errs, err)
	if ctx.Err() != nil {
		return figs, errors.Join(errs...)
	}
	more, err = or200Figures(ctx, e, s, sfx)
	figs = append(figs, more...)
	errs = append(errs, err)
	return figs, errors.Join(errs...)
}

// mixFigures runs the mix round-robin (each client starting at a different
// query) for a warm-up and the measured window.
func mixFigures(ctx context.Context, e *env, qs []searchQuery, clients int, sfx string) ([]figure, error) {
	name := fmt.Sprintf("search_mix_c%d", clients)
	var warm mixResult
	if e.warmup > 0 {
		var err error
		if warm, err = runMix(ctx, e, qs, clients, e.warmup); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", name, err)
		}
	}
	waitProfile := e.startProfile(ctx, name+sfx)
	m, err := runMix(ctx, e, qs, clients, e.duration)
	profErr := waitProfile()
	all := m.all()
	slices.Sort(all.lat)
	figs := []figure{
		{name + "_throughput" + sfx, rate(len(all.lat), all.elapsed), "req/s"},
		{name + "_p50" + sfx, ms(percentile(all.lat, 50)), "ms"},
		{name + "_p95" + sfx, ms(percentile(all.lat, 95)), "ms"},
		{name + "_p99" + sfx, ms(percentile(all.lat, 99)), "ms"},
	}
	if clients == 1 {
		for i, sq := range qs {
			fig := fmt.Sprintf("search_%s_c1_p95%s", sq.name, sfx)
			lat := m.per[i].lat
			if len(lat) == 0 { // every request failed: a 0 would read as fast
				fmt.Fprintf(os.Stderr, "# note: %s not reported: all %d requests failed\n", fig, m.per[i].errors)
				continue
			}
			slices.Sort(lat)
			figs = append(figs, figure{fig, ms(percentile(lat, 95)), "ms"})
			if m.hits[i] == 0 {
				fmt.Fprintf(os.Stderr, "# note: %s returned no matches in %d requests\n", sq.name, len(lat))
			}
		}
	}
	wall := warm.all()
	all.merge(outcome{errors: wall.errors, firstErr: wall.firstErr})
	figs = append(figs, figure{name + "_errors" + sfx, float64(all.errors), "count"})
	return figs, errors.Join(err, all.err(name+sfx), profErr)
}

// mixResult is a mix run's outcome per query.
type mixResult struct {
	per     []outcome
	hits    []int // responses with at least one entry, per query
	elapsed time.Duration
}

func (m mixResult) all() outcome {
	o := outcome{elapsed: m.elapsed}
	for _, p := range m.per {
		o.merge(p)
	}
	return o
}

// runMix is closedLoop for the mix: each client issues the queries in turn
// until d has passed and it has issued each query at least once (so a very
// slow query cannot leave others without a figure); latencies are kept per
// query.
func runMix(ctx context.Context, e *env, qs []searchQuery, clients int, d time.Duration) (mixResult, error) {
	start := time.Now()
	deadline := start.Add(d)
	results := make([]mixResult, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			res := &results[c]
			res.per, res.hits = make([]outcome, len(qs)), make([]int, len(qs))
			r := rand.New(rand.NewPCG(uint64(c), 3)) // per client: no lock, repeatable
			var buf bytes.Buffer
			for i := c; i < c+len(qs) || time.Now().Before(deadline); i++ {
				k := i % len(qs)
				u := e.fhirBase + "/" + qs[k].url(r)
				t := time.Now()
				hit, err := e.searchset(ctx, u, &buf)
				lat := time.Since(t)
				if ctx.Err() != nil {
					return // aborted: a cut-off request is not the server's failure
				}
				res.per[k].record(lat, err)
				if hit {
					res.hits[k]++
				}
			}
		})
	}
	wg.Wait()
	total := mixResult{per: make([]outcome, len(qs)), hits: make([]int, len(qs)), elapsed: time.Since(start)}
	for _, r := range results {
		for k := range qs {
			total.per[k].merge(r.per[k])
			total.hits[k] += r.hits[k]
		}
	}
	return total, abortCause(ctx)
}

// searchset GETs a search and checks that the answer is 200 with a
// searchset Bundle; hit says whether the Bundle has entries. buf is the
// caller's, reused between requests.
func (e *env) searchset(ctx context.Context, u string, buf *bytes.Buffer) (hit bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := e.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", short(u), err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return false, fmt.Errorf("GET %s: reading body: %w", short(u), err)
	}
	body := buf.Bytes()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: status %d: %s", short(u), resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 512)]))
	}
	if !isSearchset(body) {
		return false, fmt.Errorf("GET %s: not a searchset Bundle: %.200s", short(u), body)
	}
	return bytes.Contains(body, []byte(`"entry":[`)), nil
}

// short keeps error messages readable for the 200-value URL.
func short(u string) string {
	if len(u) > 300 {
		return u[:300] + "…"
	}
	return u
}

// obsByPatient is Observation?patient=X (default page size) from 16 clients.
func obsByPatient(ctx context.Context, e *env, s *syntheaSet, sfx string) ([]figure, error) {
	name := fmt.Sprintf("search_obs_by_patient_c%d", searchClients)
	reqs := make([]request, searchClients)
	for c := range reqs {
		r := rand.New(rand.NewPCG(uint64(c), 4))
		var buf bytes.Buffer
		reqs[c] = func(ctx context.Context) error {
			p := s.patients[r.IntN(len(s.patients))] + suffix(r.IntN(s.copies+1))
			hit, err := e.searchset(ctx, e.fhirBase+"/Observation?patient="+q(p), &buf)
			if err == nil && !hit {
				err = fmt.Errorf("Observation?patient=%s: no matches", p)
			}
			return err
		}
	}
	warm, err := closedLoop(ctx, reqs, e.warmup)
	if err != nil {
		return nil, fmt.Errorf("%s warm-up: %w", name, err)
	}
	waitProfile := e.startProfile(ctx, name+sfx)
	o, err := closedLoop(ctx, reqs, e.duration)
	profErr := waitProfile()
	sum := summarize(o.lat, o.elapsed)
	o.merge(outcome{errors: warm.errors, firstErr: warm.firstErr})
	return []figure{
		{name + "_throughput" + sfx, sum.throughput, "req/s"},
		{name + "_p50" + sfx, ms(sum.p50), "ms"},
		{name + "_p99" + sfx, ms(sum.p99), "ms"},
		{name + "_errors" + sfx, float64(o.errors), "count"},
	}, errors.Join(err, o.err(name+sfx), profErr)
}

// or200Figures runs the 200-value OR'd token search one at a time, after one
// unmeasured run.
func or200Figures(ctx context.Context, e *env, s *syntheaSet, sfx string) ([]figure, error) {
	u := e.fhirBase + "/" + s.or200()
	var buf bytes.Buffer
	var lat []time.Duration
	for i := range or200Runs + 1 {
		t := time.Now()
		hit, err := e.searchset(ctx, u, &buf)
		d := time.Since(t)
		if err == nil && !hit {
			err = errors.New("search_or200: no matches")
		}
		if err != nil {
			return nil, err
		}
		if i > 0 {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	return []figure{
		{"search_or200_p50" + sfx, ms(percentile(lat, 50)), "ms"},
		{"search_or200_max" + sfx, ms(lat[len(lat)-1]), "ms"},
	}, nil
}
