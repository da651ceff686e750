package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), including the
// build events (Go 1.24+) that carry compile errors.
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // build-output, build-fail
	FailedBuild string // package fail caused by a build failure
	Elapsed     float64
}

// key names a test in a package; Test is "" for package-level output.
type key struct{ pkg, test string }

// Output kept per test is bounded so a goroutine dump after a timeout, or a
// chatty test, cannot flood the report or memory.
const (
	headLines = 200
	tailLines = 100
)

// chunks is a test's output: the first headLines chunks, the last tailLines,
// and how many were dropped between them.
type chunks struct {
	head, tail []string
	dropped    int
}

func (c *chunks) add(s string) {
	if len(c.head) < headLines {
		c.head = append(c.head, s)
		return
	}
	c.tail = append(c.tail, s)
	if len(c.tail) > tailLines {
		c.tail = c.tail[1:]
		c.dropped++
	}
}

func (c *chunks) all() []string {
	if c == nil {
		return nil
	}
	out := append([]string(nil), c.head...)
	if c.dropped > 0 {
		out = append(out, fmt.Sprintf("        ... %d lines omitted (run the package with go test -v for all) ...\n", c.dropped))
	}
	return append(out, c.tail...)
}

// framing reports whether an output chunk is one of the -v lines that only
// mark where a test starts or resumes.
func framing(s string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// skip is one skipped test and why.
type skip struct{ name, reason string }

// report turns a `go test -json` stream into human output: each failure
// with its output, one line per package, then the totals and the skips.
type report struct {
	w io.Writer

	out     map[key]*chunks     // output of tests (and packages) still running
	running map[key]bool        // tests started and not finished
	build   map[string][]string // build output by ImportPath
	failed  map[string]int      // failed tests by package
	started map[string]bool     // packages started and not finished

	passed, skipped int
	failures        []string // failed tests and packages, in order
	skips           []skip
	sawEvent        bool
}

func newReport(w io.Writer) *report {
	return &report{
		w:       w,
		out:     map[key]*chunks{},
		running: map[key]bool{},
		build:   map[string][]string{},
		failed:  map[string]int{},
		started: map[string]bool{},
	}
}

// read consumes the whole stream. Lines that are not test2json events
// (messages from the wrapper, the go command) are copied through.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil || e.Action == "" {
			fmt.Fprintf(r.w, "%s\n", line)
			continue
		}
		r.sawEvent = true
		r.handle(e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read go test -json output: %w", err)
	}
	return nil
}

func (r *report) handle(e event) {
	switch e.Action {
	case "build-output":
		r.build[e.ImportPath] = append(r.build[e.ImportPath], e.Output)
		return
	case "build-fail":
		r.printBuild(e.ImportPath)
		return
	}
	k := key{e.Package, e.Test}
	if e.Test == "" {
		r.handlePackage(e)
		return
	}
	switch e.Action {
	case "run":
		r.running[k] = true
	case "output":
		r.outputOf(k).add(e.Output)
	case "pass":
		r.passed++
		r.finish(k)
	case "skip":
		r.skipped++
		r.skips = append(r.skips, skip{e.Package + " " + e.Test, skipReason(r.out[k].all())})
		r.finish(k)
	case "fail":
		r.failTest(k, "")
	}
}

func (r *report) handlePackage(e event) {
	k := key{e.Package, ""}
	switch e.Action {
	case "start":
		r.started[e.Package] = true
	case "output":
		r.outputOf(k).add(e.Output)
	case "pass":
		// Like go test without -v: one line for a passing package.
		line := fmt.Sprintf("ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
		for _, s := range r.out[k].all() {
			if strings.HasPrefix(s, "ok  \t") {
				line = s
			}
		}
		io.WriteString(r.w, line)
		r.finishPackage(e.Package)
	case "skip": // no test files
		r.write(r.out[k].all())
		r.finishPackage(e.Package)
	case "fail":
		r.failPackage(e)
	}
}

// failPackage reports a failed package: tests the binary never finished
// (a panic, os.Exit or -timeout kills it mid-test), the build output when
// it did not build, and the package's own output (TestMain, the FAIL line).
func (r *report) failPackage(e event) {
	var unfinished []key
	for k := range r.running {
		if k.pkg == e.Package {
			unfinished = append(unfinished, k)
		}
	}
	sort.Slice(unfinished, func(i, j int) bool { return unfinished[i].test < unfinished[j].test })
	for _, k := range unfinished {
		r.failTest(k, "did not finish: the test binary exited while it ran (panic, os.Exit or -timeout)")
	}
	if e.FailedBuild != "" {
		r.printBuild(e.FailedBuild)
	}
	r.write(r.out[key{e.Package, ""}].all())
	if r.failed[e.Package] == 0 {
		why := "failed outside any test (TestMain, init or the test binary)"
		if e.FailedBuild != "" {
			why = "build failed"
		}
		r.failures = append(r.failures, e.Package+" ("+why+")")
	}
	r.finishPackage(e.Package)
}

// failTest prints a failed test's output and records it; note, when set,
// explains a failure that test2json did not report itself.
func (r *report) failTest(k key, note string) {
	r.failed[k.pkg]++
	var shown []string
	for _, s := range r.out[k].all() {
		if !framing(s) {
			shown = append(shown, s)
		}
	}
	if note != "" {
		shown = append(shown, fmt.Sprintf("--- FAIL: %s (%s)\n", k.test, note))
	}
	r.write(shown)
	name := k.pkg + " " + k.test
	if note != "" {
		name += " (" + note + ")"
	}
	r.failures = append(r.failures, name)
	r.finish(k)
}

func (r *report) printBuild(importPath string) {
	r.write(r.build[importPath])
	delete(r.build, importPath)
}

func (r *report) outputOf(k key) *chunks {
	c := r.out[k]
	if c == nil {
		c = &chunks{}
		r.out[k] = c
	}
	return c
}

func (r *report) finish(k key) {
	delete(r.out, k)
	delete(r.running, k)
}

func (r *report) finishPackage(pkg string) {
	delete(r.started, pkg)
	for k := range r.out {
		if k.pkg == pkg {
			delete(r.out, k)
		}
	}
}

func (r *report) write(chunks []string) {
	for _, s := range chunks {
		io.WriteString(r.w, s)
	}
}

// end accounts for a stream that stopped early (the go command killed):
// tests still running failed, and so did packages that never finished.
func (r *report) end() {
	var pkgs []string
	for p := range r.started {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		r.failPackage(event{Action: "fail", Package: p})
	}
}

// summary prints the failures, the closing totals line (which CI reads),
// then every skip with its reason.
func (r *report) summary() {
	fmt.Fprintln(r.w)
	if len(r.failures) > 0 {
		fmt.Fprintln(r.w, "Failed:")
		for _, f := range r.failures {
			fmt.Fprintln(r.w, "  "+f)
		}
	}
	fmt.Fprintf(r.w, "%d passed, %d failed, %d skipped\n", r.passed, len(r.failures), r.skipped)
	if len(r.skips) > 0 {
		fmt.Fprintln(r.w, "Skipped:")
		for _, s := range r.skips {
			fmt.Fprintf(r.w, "  %s: %s\n", s.name, s.reason)
		}
	}
}

// logEntry matches the first line of a t.Log/t.Skip entry ("    x_test.go:12: ").
var logEntry = regexp.MustCompile(`^\s*[^\s:]+\.go:\d+: `)

// maxReasonEntries bounds the log entries shown for one skip.
const maxReasonEntries = 4

// skipReason picks the skip message out of a skipped test's output. Output
// order does not tell it apart (a server goroutine or a Cleanup may log
// after t.Skip), so a testenv message ("missing prerequisite") stands
// alone; otherwise the test's last few log entries are all shown, each
// with its continuation lines joined by " / ".
func skipReason(out []string) string {
	var entries [][]string
	for _, line := range strings.Split(strings.Join(out, ""), "\n") {
		switch {
		case framing(line), strings.HasPrefix(line, "--- SKIP"), strings.TrimSpace(line) == "":
		case logEntry.MatchString(line) || len(entries) == 0:
			entries = append(entries, []string{strings.TrimSpace(line)})
		default: // continuation of a multi-line message
			last := entries[len(entries)-1]
			entries[len(entries)-1] = append(last, strings.TrimSpace(line))
		}
	}
	var shown []string
	for _, e := range entries {
		shown = append(shown, strings.Join(e, " / "))
	}
	for _, e := range shown {
		if strings.Contains(e, testenvMarker) {
			return e
		}
	}
	if len(shown) == 0 {
		return "(no reason given)"
	}
	if len(shown) > maxReasonEntries {
		shown = shown[len(shown)-maxReasonEntries:]
	}
	return strings.Join(shown, "\n      ")
}

// testenvMarker is in every skip message of internal/testenv.
const testenvMarker = "missing prerequisite"

// ok reports whether the run passed; strict (CI) also counts any skip
// as a failure of the run.
func (r *report) ok(strict bool) bool {
	return r.sawEvent && len(r.failures) == 0 && (!strict || r.skipped == 0)
}
