package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync/atomic"
)

// figure is one reported number: printed as "name value unit".
type figure struct {
	name  string
	value float64
	unit  string
}

// scenario is one entry of the benchmark. run returns its figures even when
// it also returns an error, so a partly failed scenario still reports.
type scenario struct {
	name     string
	requires []string // scenarios that must run first (state in env)
	run      func(context.Context, *env) ([]figure, error)
}

// seedCount Patients are PUT as bench-0 … and are what the read scenarios read.
const (
	seedCount   = 2000
	seedClients = 8
)

// scenarios is the benchmark, in run order. Add search and ingest here.
func scenarios() []scenario {
	return append([]scenario{
		{name: "seed", run: seed},
		readScenario(1),
		readScenario(32),
		{name: "read_auth_c32", requires: []string{"read_c32"}, run: authRead}, // its own server (see auth.go)
		xmlReadScenario(), // xml.go
		createScenario(8),
		{name: "ingest_tx", run: ingestTx},
		{name: "audit_on_off", run: auditOnOff},          // its own servers (see audit.go)
		{name: "subscriptions", run: subscriptionsBench}, // its own servers (see subscriptions.go)
		{name: "console", run: consolePaint},             // its own server and headless Chromium (see console.go)
		{name: "expand1k", run: expandBench},             // terminology.go
		{name: "profile_check", run: profileBench},       // profiles.go, in process
		{name: "dicom", run: dicomBench},                 // its own server (see dicom.go)
		// Its own servers, with models (see inference.go).
		{name: "inference", run: inferenceBench},
	},
		// Last, so they do not change what the figures above measure;
		// search330k takes several minutes (see search.go).
		append(searchScenarios(), bulkScenarios()...)...)
}

// selectScenarios keeps the scenarios whose name matches only, plus what
// they require, in table order.
func selectScenarios(all []scenario, only *regexp.Regexp) ([]scenario, error) {
	byName := map[string]scenario{}
	for _, s := range all {
		byName[s.name] = s
	}
	want := map[string]bool{}
	var mark func(string)
	mark = func(name string) {
		want[name] = true
		for _, r := range byName[name].requires {
			mark(r)
		}
	}
	for _, s := range all {
		if only == nil || only.MatchString(s.name) {
			mark(s.name)
		}
	}
	var out []scenario
	for _, s := range all {
		if want[s.name] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-only %q matches no scenario", only)
	}
	return out, nil
}

func seed(ctx context.Context, e *env) ([]figure, error) {
	put := func(ctx context.Context, i int) error {
		id := fmt.Sprintf("bench-%d", i)
		body, err := patientJSON(i, id)
		if err != nil {
			return err
		}
		return e.do(ctx, http.MethodPut, e.fhirBase+"/Patient/"+id, body, http.StatusOK, http.StatusCreated)
	}
	o, err := forEach(ctx, seedClients, seedCount, put)
	e.seeded = seedCount
	figs := []figure{
		{"seed_rate", rate(len(o.lat), o.elapsed), "resources/s"},
		{"seed_errors", float64(o.errors), "count"},
	}
	return figs, errors.Join(err, o.err("seed"))
}

// readScenario GETs random seeded Patients from the given number of clients.
func readScenario(clients int) scenario {
	return namedRead(fmt.Sprintf("read_c%d", clients), clients)
}

// namedRead is readScenario under another name (its figures and profile).
func namedRead(name string, clients int) scenario {
	return scenario{name: name, requires: []string{"seed"}, run: func(ctx context.Context, e *env) ([]figure, error) {
		if e.seeded == 0 {
			return nil, fmt.Errorf("%s: no seeded Patients", name)
		}
		urls := make([]string, e.seeded)
		for i := range urls {
			urls[i] = fmt.Sprintf("%s/Patient/bench-%d", e.fhirBase, i)
		}
		reqs := make([]request, clients)
		for c := range reqs {
			r := rand.New(rand.NewPCG(uint64(c), 42)) // per client: no lock, repeatable
			reqs[c] = func(ctx context.Context) error {
				return e.do(ctx, http.MethodGet, urls[r.IntN(len(urls))], nil, http.StatusOK)
			}
		}
		figs, err := timed(ctx, e, name, "req/s", reqs)
		if name == "read_c32" && len(figs) > 0 {
			e.readRate = figs[0].value
		}
		return figs, err
	}}
}

// createScenario POSTs new Patients from the given number of clients.
func createScenario(clients int) scenario {
	name := fmt.Sprintf("create_c%d", clients)
	return scenario{name: name, run: func(ctx context.Context, e *env) ([]figure, error) {
		var next atomic.Int64
		next.Store(1_000_000) // past the seed range, so names and MRNs differ from seeded ones
		post := func(ctx context.Context) error {
			body, err := patientJSON(int(next.Add(1)), "")
			if err != nil {
				return err
			}
			return e.do(ctx, http.MethodPost, e.fhirBase+"/Patient", body, http.StatusCreated)
		}
		reqs := make([]request, clients)
		for c := range reqs {
			reqs[c] = post
		}
		return timed(ctx, e, name, "resources/s", reqs)
	}}
}

// timed runs a warm-up, then the measured window (profiled if asked), and
// reports throughput, p50, p99 and errors. Warm-up requests are checked and
// their errors counted, but their latencies are not reported.
func timed(ctx context.Context, e *env, name, unit string, reqs []request) ([]figure, error) {
	warm, err := closedLoop(ctx, reqs, e.warmup)
	if err != nil {
		return nil, fmt.Errorf("%s warm-up: %w", name, err)
	}
	waitProfile := e.startProfile(ctx, name)
	o, err := closedLoop(ctx, reqs, e.duration)
	profErr := waitProfile()
	s := summarize(o.lat, o.elapsed)
	warm.lat = nil // only the errors of the warm-up count
	o.merge(warm)
	figs := []figure{
		{name + "_throughput", s.throughput, unit},
		{name + "_p50", ms(s.p50), "ms"},
		{name + "_p99", ms(s.p99), "ms"},
		{name + "_errors", float64(o.errors), "count"},
	}
	return figs, errors.Join(err, o.err(name), profErr)
}
