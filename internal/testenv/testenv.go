// Package testenv is the one policy for tests whose prerequisites (a tool
// such as dcmtk or chromium, an npm package, a program the test builds)
// may be missing: under CI (CI=true, which .ci/run sets) a missing
// prerequisite is a failure naming what to install, so CI can never pass on
// tests that did not run; elsewhere the test skips with the same message,
// and `make test` lists every skip with its reason.
package testenv

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/emberfhir/ember/internal/fhirpkg"
	"github.com/emberfhir/ember/internal/npmpkg"
)

// How to install the tools the tests use, for hint arguments.
const (
	DCMTK    = "apt-get install dcmtk"
	Chromium = "apt-get install chromium"
	NodeJS   = "apt-get install nodejs npm"
)

// CI reports whether the tests run under CI, where a missing prerequisite
// fails the test instead of skipping it.
func CI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Missing stops the test because the prerequisite described by what is
// missing; hint says how to get it. It fails the test under CI and skips
// it otherwise.
func Missing(tb testing.TB, what, hint string) {
	tb.Helper()
	msg := what
	if hint != "" {
		msg += ": " + hint
	}
	if CI() {
		tb.Fatalf("missing prerequisite (CI=true makes this a failure): %s", msg)
	}
	tb.Skipf("missing prerequisite (a failure under CI=true): %s", msg)
}

// Require applies Missing when err (from looking up the prerequisite
// described by what) is not nil, with err appended to what.
func Require(tb testing.TB, err error, what, hint string) {
	tb.Helper()
	if err != nil {
		Missing(tb, what+" ("+err.Error()+")", hint)
	}
}

// LookPath returns the path of the first of names found on PATH, applying
// Missing when none is; hint says how to install it (e.g. DCMTK).
func LookPath(tb testing.TB, hint string, names ...string) string {
	tb.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	what := "no program on PATH"
	switch len(names) {
	case 0:
	case 1:
		what = names[0] + " is not on PATH"
	default:
		what = "none of " + strconv.Quote(names[0])
		for _, n := range names[1:] {
			what += ", " + strconv.Quote(n)
		}
		what += " is on PATH"
	}
	Missing(tb, what, hint)
	return ""
}

// DCMTKTool returns the path of the dcmtk tool (e.g. "storescu").
func DCMTKTool(tb testing.TB, tool string) string {
	tb.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(tb, "dcmtk's "+tool+" is not on PATH", DCMTK)
	}
	return p
}

// DCMTKTools checks that each dcmtk tool is on PATH.
func DCMTKTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		DCMTKTool(tb, tool)
	}
}

// NPMPackage returns the directory of the npm package name@version's files,
// fetched with npm on first use (see npmpkg.Dir).
func NPMPackage(ctx context.Context, tb testing.TB, name, version string) string {
	tb.Helper()
	dir, err := npmpkg.Dir(ctx, name, version)
	Require(tb, err, "the npm package "+name+"@"+version,
		"install npm ("+NodeJS+") and let it reach the npm registry once; the files are cached")
	return dir
}

// FHIRPackage returns the directory of the official FHIR R4 definitions and
// examples (see fhirpkg.Dir).
func FHIRPackage(tb testing.TB) string {
	tb.Helper()
	dir, err := fhirpkg.Dir(context.Background())
	Require(tb, err, "the FHIR package "+fhirpkg.Name+"@"+fhirpkg.Version,
		"run `make fhir-package` (needs npm: "+NodeJS+") or set EMBER_FHIR_PACKAGE")
	return dir
}
