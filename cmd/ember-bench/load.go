package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// env is what scenarios share: the server under test, the HTTP client and
// the run's settings. Scenarios record state for later ones here (seeded).
type env struct {
	bin        string // the ember binary, for scenarios that start their own server
	fhirBase   string // http://127.0.0.1:PORT/fhir
	client     *http.Client
	duration   time.Duration
	warmup     time.Duration
	debugAddr  string // pprof address; empty unless -cpuprofile
	profileDir string
	seeded     int         // Patients bench-0 … bench-(seeded-1) exist
	dataDir    string      // the server's --data-dir; its PostgreSQL is under postgres/
	synthea    *syntheaSet // loaded by search33k, extended by search330k
	token      string      // bearer token sent with every request, if set
	readRate   float64     // read_c32 throughput, for the authenticated read's ratio
}

// maxClients bounds the idle pool; it must cover the largest scenario, or
// closed-loop clients would keep opening fresh connections.
const maxClients = 128

func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second, // a hung request is an error, not a stuck run
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        maxClients,
			MaxIdleConnsPerHost: maxClients,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // measure the server's work, not gzip's
		},
	}
}

// do sends one FHIR request and checks its status against want. The body is
// always read to the end so the connection is reused.
func (e *env) do(ctx context.Context, method, url string, body []byte, want ...int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	if !slices.Contains(want, resp.StatusCode) {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("%s %s: reading body: %w", method, url, err)
	}
	return nil
}

// outcome tallies a batch of requests: latencies of the successful ones,
// the failures and the first failure's message.
type outcome struct {
	lat      []time.Duration
	elapsed  time.Duration // from starting the clients until the last one finished
	errors   int
	firstErr error
}

func (o *outcome) merge(w outcome) {
	o.lat = append(o.lat, w.lat...)
	o.errors += w.errors
	if o.firstErr == nil {
		o.firstErr = w.firstErr
	}
}

// err summarises failures for the run's exit status.
func (o outcome) err(scenario string) error {
	if o.errors == 0 {
		return nil
	}
	return fmt.Errorf("%s: %d failed requests; first: %w", scenario, o.errors, o.firstErr)
}

func (o *outcome) record(lat time.Duration, err error) {
	if err != nil {
		o.errors++
		if o.firstErr == nil {
			o.firstErr = err
		}
		return
	}
	o.lat = append(o.lat, lat)
}

// request is one client's next request; each client owns its own so it can
// keep unshared state (a random source) without locks.
type request func(ctx context.Context) error

// closedLoop runs one goroutine per request func, each issuing its next
// request as soon as the previous completes, until d has passed. Requests in
// flight at the deadline finish and count; elapsed covers them.
func closedLoop(ctx context.Context, clients []request, d time.Duration) (outcome, error) {
	start := time.Now()
	deadline := start.Add(d)
	results := make([]outcome, len(clients))
	var wg sync.WaitGroup
	for i, req := range clients {
		wg.Go(func() {
			o := &results[i]
			for time.Now().Before(deadline) {
				t := time.Now()
				err := req(ctx)
				lat := time.Since(t)
				if ctx.Err() != nil {
					return // aborted: a cut-off request is not the server's failure
				}
				o.record(lat, err)
			}
		})
	}
	wg.Wait()
	return mergeAll(results, time.Since(start)), abortCause(ctx)
}

// forEach runs do(0) … do(n-1) on the given number of concurrent clients.
func forEach(ctx context.Context, clients, n int, do func(context.Context, int) error) (outcome, error) {
	start := time.Now()
	jobs := make(chan int)
	results := make([]outcome, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for i := range jobs {
				t := time.Now()
				err := do(ctx, i)
				lat := time.Since(t)
				if ctx.Err() != nil {
					continue // aborted: drain jobs without counting cut-off requests
				}
				results[w].record(lat, err)
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return mergeAll(results, time.Since(start)), abortCause(ctx)
}

// abortCause says why ctx ended (a crashed server, Ctrl-C), or nil.
func abortCause(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("aborted: %w", context.Cause(ctx))
}

func mergeAll(results []outcome, elapsed time.Duration) outcome {
	total := outcome{elapsed: elapsed}
	for _, r := range results {
		total.merge(r)
	}
	return total
}

// startProfile fetches a server CPU profile covering most of a measured
// window, when -cpuprofile is set. wait returns the fetch's error; it is a
// no-op without profiling.
func (e *env) startProfile(ctx context.Context, scenario string) (wait func() error) {
	if e.debugAddr == "" {
		return func() error { return nil }
	}
	// One second short of the window so the profile ends before the load does.
	secs := max(1, int((e.duration - time.Second).Seconds()))
	errc := make(chan error, 1)
	go func() {
		errc <- fetchProfile(ctx, e.debugAddr, secs, filepath.Join(e.profileDir, scenario+".pprof"))
	}()
	return func() error { return <-errc }
}

func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	resp, err := http.DefaultClient.Do(req) // no timeout: it takes secs by design
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("cpu profile %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(msg))
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return nil
}
