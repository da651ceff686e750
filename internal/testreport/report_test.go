package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The testdata/*.jsonl files are recorded `go test -json` output (Go 1.26)
// of small packages that pass, skip, fail, fail to build, panic, time out,
// and exit from TestMain.

var closing = regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed, (\d+) skipped$`)

// result is what one report run produced.
type result struct {
	out, stderr string
	code        int
}

// feed feeds the recorded files (concatenated) to run on stdin.
func feed(t *testing.T, failOnSkip bool, files ...string) result {
	t.Helper()
	var in bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		in.Write(b)
	}
	var out, stderr bytes.Buffer
	code := run(nil, failOnSkip, &in, &out, &stderr)
	return result{out.String(), stderr.String(), code}
}

// totals returns the closing line's numbers, requiring exactly one such line.
func (r result) totals(t *testing.T) string {
	t.Helper()
	m := closing.FindAllString(r.out, -1)
	if len(m) != 1 {
		t.Fatalf("%d closing lines in:\n%s", len(m), r.out)
	}
	return m[0]
}

func (r result) contains(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.out, w) {
			t.Errorf("output lacks %q:\n%s", w, r.out)
		}
	}
}

func (r result) lacks(t *testing.T, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(r.out, u) {
			t.Errorf("output has %q:\n%s", u, r.out)
		}
	}
}

func TestPassAndSkip(t *testing.T) {
	r := feed(t, false, "pass.jsonl")
	if got, want := r.totals(t), "3 passed, 0 failed, 3 skipped"; got != want {
		t.Errorf("closing line %q, want %q", got, want)
	}
	if r.code != 0 {
		t.Errorf("exit %d, want 0 (stderr %s)", r.code, r.stderr)
	}
	r.contains(t, "ok  \texample.com/rec/ok\t0.015s\n", "?   \texample.com/rec/notests\t[no test files]\n")
	// Passing tests' output and -v framing stay out of the report.
	r.lacks(t, "chatter that a passing test logs", "=== RUN", "--- PASS")

	// The skips come after the closing line, each with its own message.
	skips := r.out[strings.Index(r.out, r.totals(t)):]
	for _, want := range []string{
		"example.com/rec/ok TestB/two: ok_test.go:8: -short: not this time\n",
		"example.com/rec/skips TestTool: skips_test.go:7: missing prerequisite (a failure under CI=true): dcmtk's storescu is not on PATH: apt-get install dcmtk\n",
		"example.com/rec/skips TestMultiline: skips_test.go:9: first line / second line\n",
	} {
		if !strings.Contains(skips, want) {
			t.Errorf("skip list lacks %q:\n%s", want, skips)
		}
	}
	if strings.Contains(skips, "an earlier log line") {
		t.Errorf("skip reason includes an earlier t.Log line:\n%s", skips)
	}

	// Under CI (-fail-on-skip) the same run fails, and says why.
	r = feed(t, true, "pass.jsonl")
	if r.code == 0 || !strings.Contains(r.stderr, "3 tests skipped") {
		t.Errorf("-fail-on-skip: exit %d, stderr %q; want a failure naming the skips", r.code, r.stderr)
	}
}

func TestFailures(t *testing.T) {
	for _, c := range []struct {
		file, totals string
		want         []string
	}{
		{"fail.jsonl", "1 passed, 3 failed, 0 skipped", []string{
			"    fails_test.go:7: context before the failure\n    fails_test.go:8: got 1, want 2\n--- FAIL: TestBad (0.00s)\n",
			"fails_test.go:11: sub failed\n",
			"FAIL\texample.com/rec/fails\t0.010s\n",
			"Failed:\n  example.com/rec/fails TestBad\n  example.com/rec/fails TestParent/sub\n  example.com/rec/fails TestParent\n",
		}},
		{"build.jsonl", "0 passed, 1 failed, 0 skipped", []string{
			"broken/broken_test.go:5:28: undefined: undefined\n",
			"FAIL\texample.com/rec/broken [build failed]\n",
			"  example.com/rec/broken (build failed)\n",
		}},
		{"panic.jsonl", "1 passed, 1 failed, 0 skipped", []string{
			"panic: assignment to entry in nil map",
			"/src/panics/panics_test.go:8",
			"  example.com/rec/panics TestPanic\n",
		}},
		{"timeout.jsonl", "1 passed, 1 failed, 0 skipped", []string{
			"panic: test timed out after 2s\n",
			"--- FAIL: TestHang (did not finish",
			"  example.com/rec/timeout TestHang (did not finish",
			"FAIL\texample.com/rec/timeout\t2.012s\n",
		}},
		{"mainfail.jsonl", "0 passed, 1 failed, 0 skipped", []string{
			"pgtest: cannot start a PostgreSQL server for the tests\n",
			"  example.com/rec/mainfail (failed outside any test",
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			// Alongside a passing run, so one failure decides the exit code.
			r := feed(t, false, "pass.jsonl", c.file)
			passed := map[string]string{
				"fail.jsonl":     "4 passed, 3 failed, 3 skipped",
				"build.jsonl":    "3 passed, 1 failed, 3 skipped",
				"panic.jsonl":    "4 passed, 1 failed, 3 skipped",
				"timeout.jsonl":  "4 passed, 1 failed, 3 skipped",
				"mainfail.jsonl": "3 passed, 1 failed, 3 skipped",
			}[c.file]
			if got := r.totals(t); got != passed {
				t.Errorf("closing line %q, want %q", got, passed)
			}
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			r.contains(t, c.want...)

			r = feed(t, false, c.file)
			if got := r.totals(t); got != c.totals {
				t.Errorf("alone: closing line %q, want %q", got, c.totals)
			}
		})
	}
}

// A stream that stops mid-package (the go command killed) fails the run
// and the test that was running.
func TestTruncatedStream(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "fail.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var in strings.Builder
	for _, l := range lines {
		in.WriteString(l)
		if strings.Contains(l, `"Action":"run"`) && strings.Contains(l, `"TestBad"`) {
			break
		}
	}
	var out, stderr bytes.Buffer
	code := run(nil, false, strings.NewReader(in.String()), &out, &stderr)
	r := result{out.String(), stderr.String(), code}
	if got, want := r.totals(t), "1 passed, 1 failed, 0 skipped"; got != want || code != 1 {
		t.Errorf("closing line %q, exit %d; want %q, 1", got, code, want)
	}
	r.contains(t, "example.com/rec/fails TestBad (did not finish")
}

func TestCommand(t *testing.T) {
	pass := filepath.Join("testdata", "pass.jsonl")
	var out, stderr bytes.Buffer
	if code := run([]string{"cat", pass}, false, nil, &out, &stderr); code != 0 {
		t.Errorf("cat pass.jsonl: exit %d, stderr %s", code, &stderr)
	}
	if !strings.Contains(out.String(), "3 passed, 0 failed, 3 skipped\n") {
		t.Errorf("cat pass.jsonl: output\n%s", &out)
	}

	// All tests passed, but the command failed (withdb could not start
	// PostgreSQL, a bad package pattern): the run fails, saying so.
	out.Reset()
	stderr.Reset()
	if code := run([]string{"sh", "-c", "cat " + pass + "; echo 'withdb: no PostgreSQL'; exit 3"}, false, nil, &out, &stderr); code != 1 {
		t.Errorf("command exiting 3: exit %d, want 1", code)
	}
	if !strings.Contains(out.String(), "withdb: no PostgreSQL\n") || !strings.Contains(stderr.String(), "exit status 3") {
		t.Errorf("command exiting 3: output\n%s\nstderr\n%s", &out, &stderr)
	}

	// No test ran at all.
	out.Reset()
	stderr.Reset()
	if code := run([]string{"true"}, false, nil, &out, &stderr); code != 1 || !strings.Contains(stderr.String(), "no test ran") {
		t.Errorf("no events: exit %d, stderr %q; want 1 and a message", code, &stderr)
	}
}

func TestSkipReason(t *testing.T) {
	for _, c := range []struct {
		name string
		out  []string
		want string
	}{
		{"testenv message wins over a later log line", []string{
			"=== RUN   TestEcho\n",
			"    dimse_test.go:156: missing prerequisite (a failure under CI=true): dcmtk's echoscu is not on PATH: apt-get install dcmtk\n",
			"    dimse_test.go:94: time=… msg=\"dicom: listening\"\n",
			"--- SKIP: TestEcho (0.00s)\n",
		}, "dimse_test.go:156: missing prerequisite (a failure under CI=true): dcmtk's echoscu is not on PATH: apt-get install dcmtk"},
		{"other skips show their last entries", []string{
			"=== RUN   TestX\n", "    x_test.go:1: one\n", "    x_test.go:2: two\n", "    x_test.go:3: three\n",
			"    x_test.go:4: four\n        continued\n", "    x_test.go:5: five\n", "--- SKIP: TestX (0.00s)\n",
		}, "x_test.go:2: two\n      x_test.go:3: three\n      x_test.go:4: four / continued\n      x_test.go:5: five"},
		{"nothing logged", []string{"=== RUN   TestY\n", "--- SKIP: TestY (0.00s)\n"}, "(no reason given)"},
	} {
		if got := skipReason(c.out); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
