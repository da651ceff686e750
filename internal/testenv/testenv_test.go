package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how the test was stopped.
type recorder struct {
	testing.TB
	fatal, skip string
}

// stopped unwinds like runtime.Goexit does for a real test.
type stopped struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	panic(stopped{})
}

// run calls f with a recorder and reports whether f returned normally.
func run(f func(tb testing.TB)) (r *recorder, returned bool) {
	r = &recorder{}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
		}
	}()
	f(r)
	return r, true
}

func TestMissingFailsUnderCI(t *testing.T) {
	for _, c := range []struct {
		ci       string
		wantFail bool
	}{{"true", true}, {"1", true}, {"", false}, {"false", false}} {
		t.Setenv("CI", c.ci)
		r, returned := run(func(tb testing.TB) { Missing(tb, "dcmtk's storescu is not on PATH", DCMTK) })
		if returned {
			t.Fatalf("CI=%q: Missing returned", c.ci)
		}
		got := r.skip
		if c.wantFail {
			got = r.fatal
		}
		if got == "" || (r.fatal != "" && r.skip != "") {
			t.Fatalf("CI=%q: fatal %q, skip %q; want only a %s", c.ci, r.fatal, r.skip, map[bool]string{true: "failure", false: "skip"}[c.wantFail])
		}
		if !strings.Contains(got, "dcmtk's storescu is not on PATH: apt-get install dcmtk") {
			t.Errorf("CI=%q: message %q does not say what is missing and how to install it", c.ci, got)
		}
	}
}

func TestLookPath(t *testing.T) {
	goBin, err := exec.LookPath("go") // before PATH changes below
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CI", "true")
	t.Setenv("PATH", t.TempDir())
	r, _ := run(func(tb testing.TB) { LookPath(tb, Chromium, "chromium", "chromium-browser") })
	if want := `none of "chromium", "chromium-browser" is on PATH: apt-get install chromium`; !strings.Contains(r.fatal, want) {
		t.Errorf("fatal %q, want it to contain %q", r.fatal, want)
	}
	r, _ = run(func(tb testing.TB) { DCMTKTools(tb, "echoscu") })
	if want := "dcmtk's echoscu is not on PATH: apt-get install dcmtk"; !strings.Contains(r.fatal, want) {
		t.Errorf("fatal %q, want it to contain %q", r.fatal, want)
	}

	// The go tool running this test is on the real PATH.
	t.Setenv("PATH", "/nonexistent:"+filepath.Dir(goBin))
	var path string
	r, returned := run(func(tb testing.TB) { path = LookPath(tb, "", "no-such-tool-ember", "go") })
	if !returned || !strings.HasSuffix(path, "/go") {
		t.Errorf("LookPath found %q (fatal %q)", path, r.fatal)
	}
}

func TestRequire(t *testing.T) {
	t.Setenv("CI", "")
	if r, returned := run(func(tb testing.TB) { Require(tb, nil, "x", "y") }); !returned {
		t.Errorf("Require(nil) stopped the test: %q %q", r.fatal, r.skip)
	}
	r, _ := run(func(tb testing.TB) { Require(tb, fmt.Errorf("boom"), "the thing", "get it") })
	if want := "the thing (boom): get it"; !strings.Contains(r.skip, want) {
		t.Errorf("skip %q, want it to contain %q", r.skip, want)
	}
}
