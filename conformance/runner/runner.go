// Package runner is Ember's conformance self-check (`ember conformance
// run`): it points at any FHIR R4 server over HTTP and checks what
// certification tools check, modelled on Inferno's US Core 6.1 server tests
// (search combinations per profile with every result matched against the
// criteria, GET and POST _search, reference forms, token and date
// variants, _include and _revinclude, reads, reference resolution, profile
// validation, must-support coverage) and on SMART App Launch discovery.
//
// Each check ends pass, fail or skip: a skip says why (the server holds no
// data to try it on, a SHOULD capability is absent, the server cannot
// validate a profile). The runner reads the server only; it writes nothing.
// Results are computed by the runner itself, never by asking the server,
// so a server that answers a search wrongly fails.
package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Suites are the suite names Run accepts.
var Suites = []string{"core", "smart", "us-core-6.1"}

// Options configure one run.
type Options struct {
	// Base is the FHIR base URL, e.g. https://ember.example.org/fhir.
	Base string
	// Token is a bearer token sent with every request ("" none).
	Token string
	// Suites to run (names from Suites); empty runs all of them.
	Suites []string
	// Patients are the patient ids the patient-scoped searches use; empty
	// discovers them from the resources the server holds.
	Patients []string
	// Client sends the requests; nil uses one with a 60 s timeout.
	Client *http.Client
	// MaxResources bounds the resources of each type the checks draw their
	// samples from, read and resolve (default 50).
	MaxResources int
}

// Status is a check's verdict.
type Status string

// The verdicts.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one check's outcome.
type Result struct {
	Suite, Group, Name string
	Status             Status
	// Message says why it failed or was skipped ("" for most passes).
	Message string
	// Request is the request that failed (method and URL, and the body's
	// gist for a POST), "" when none did.
	Request string
	Elapsed time.Duration
}

// Report is a whole run.
type Report struct {
	Base    string
	Results []Result
	Elapsed time.Duration
}

// Count returns how many results have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, x := range r.Results {
		if x.Status == s {
			n++
		}
	}
	return n
}

// Run runs the suites against o.Base. The error is for a run that could not
// start (a bad option); failed checks are in the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Base == "" {
		return nil, fmt.Errorf("conformance: no base URL")
	}
	if _, err := url.Parse(o.Base); err != nil {
		return nil, fmt.Errorf("conformance: base URL: %w", err)
	}
	suites := o.Suites
	if len(suites) == 0 {
		suites = Suites
	}
	for _, s := range suites {
		if !contains(Suites, s) {
			return nil, fmt.Errorf("conformance: unknown suite %q (have %s)", s, strings.Join(Suites, ", "))
		}
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if o.MaxResources <= 0 {
		o.MaxResources = 50
	}
	r := &run{ctx: ctx, o: o, base: strings.TrimRight(o.Base, "/")}
	start := time.Now()
	for _, s := range Suites { // in a fixed order, whatever the flag's
		if !contains(suites, s) {
			continue
		}
		r.suite = s
		switch s {
		case "core":
			r.core()
		case "smart":
			r.smart()
		case "us-core-6.1":
			r.usCore()
		}
	}
	return &Report{Base: o.Base, Results: r.results, Elapsed: time.Since(start)}, nil
}

// run is the state of one Run.
type run struct {
	ctx     context.Context
	o       Options
	base    string
	suite   string
	results []Result
	// provenance maps "Type/id" to a Provenance targeting it (uscore.go).
	provenance map[string]string
}

// check records one check: f returns nil (pass), a *skip, or a failure.
func (r *run) check(group, name string, f func() error) {
	start := time.Now()
	err := f()
	res := Result{Suite: r.suite, Group: group, Name: name, Status: Pass, Elapsed: time.Since(start)}
	switch e := err.(type) {
	case nil:
	case *skipError:
		res.Status, res.Message = Skip, e.reason
	case *failure:
		res.Status, res.Message, res.Request = Fail, e.msg, e.request
	default:
		res.Status, res.Message = Fail, err.Error()
	}
	r.results = append(r.results, res)
}

// skipError is a check that does not apply.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

func skipf(format string, args ...any) error { return &skipError{fmt.Sprintf(format, args...)} }

// failure is a failed check with the request that showed it.
type failure struct{ msg, request string }

func (e *failure) Error() string {
	if e.request == "" {
		return e.msg
	}
	return e.msg + " (" + e.request + ")"
}

func failf(req, format string, args ...any) error {
	return &failure{msg: fmt.Sprintf(format, args...), request: req}
}

// response is a read HTTP answer.
type response struct {
	status  int
	header  http.Header
	body    []byte
	request string // "GET url" for messages
}

// json decodes the body into v, or fails naming the request.
func (resp *response) json(v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		return failf(resp.request, "the answer is not JSON: %v: %.200s", err, resp.body)
	}
	return nil
}

// get GETs base-relative path (or an absolute URL).
func (r *run) get(path string) (*response, error) {
	return r.do(http.MethodGet, path, "", nil, "")
}

// do sends one request. Transport errors are failures naming the request.
func (r *run) do(method, path, contentType string, body []byte, accept string) (*response, error) {
	target := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		target = r.base + "/" + strings.TrimPrefix(path, "/")
	}
	desc := method + " " + target
	if method == http.MethodPost && len(body) > 0 {
		desc += " with body " + abbreviate(string(body), 200)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(r.ctx, method, target, rd)
	if err != nil {
		return nil, failf(desc, "%v", err)
	}
	if accept == "" {
		accept = "application/fhir+json"
	}
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.o.Token)
	}
	resp, err := r.o.Client.Do(req)
	if err != nil {
		return nil, failf(desc, "%v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, failf(desc, "reading the answer: %v", err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b, request: desc}, nil
}

// expectStatus fails unless resp has status want.
func expectStatus(resp *response, want int) error {
	if resp.status != want {
		return failf(resp.request, "status %d, want %d: %s", resp.status, want, abbreviate(outcomeText(resp.body), 300))
	}
	return nil
}

// outcomeText is an OperationOutcome's diagnostics, else the body itself.
func outcomeText(body []byte) string {
	var oo struct {
		ResourceType string
		Issue        []struct {
			Severity, Code, Diagnostics string
			Expression                  []string
		}
	}
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return string(body)
	}
	var parts []string
	for _, i := range oo.Issue {
		s := i.Severity + " " + i.Code + ": " + i.Diagnostics
		if len(i.Expression) > 0 {
			s += " at " + strings.Join(i.Expression, ", ")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func abbreviate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
