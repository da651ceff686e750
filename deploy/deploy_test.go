// Package deploy holds Ember's deployment files — the container image
// (Dockerfile), docker compose (compose.yaml, prometheus.yml, grafana/) and
// the Helm chart (helm/ember) — and the tests that check them: the chart
// rendered by helm in its main value combinations and validated against the
// Kubernetes schemas by kubeconform (both built from the Go module proxy at
// pinned versions), the Grafana dashboard's queries against the metrics a
// running `ember serve` exports, and the Dockerfile and compose file read
// for what they promise (no container runtime can run here).
package deploy

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/internal/testfiles"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The tools the tests run, pinned: built once with `go install` from the Go
// module proxy into Ember's cache, keyed by version.
const (
	helmPkg        = "helm.sh/helm/v3/cmd/helm"
	helmVersion    = "v3.21.4"
	kubeconformPkg = "github.com/yannh/kubeconform/cmd/kubeconform"
	// The newest kubeconform the proxy serves.
	kubeconformVersion = "v0.8.0"
)

var toolMu sync.Mutex

// goTool returns the path of pkg@version's binary, building it on first
// use. A toolchain that cannot fetch the module is a missing prerequisite:
// a skip locally, a failure under CI.
func goTool(t *testing.T, pkg, version string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	dir := filepath.Join(testfiles.CacheDir(), "tools", filepath.Base(pkg)+"@"+version)
	bin := filepath.Join(dir, filepath.Base(pkg))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if testing.Short() {
		t.Skipf("-short: %s@%s is not built yet (building it takes minutes)", pkg, version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("building %s@%s (once; cached in %s)", pkg, version, dir)
	cmd := exec.Command("go", "install", pkg+"@"+version)
	// Outside the module: the tool's own go.mod decides its dependencies.
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Missing(t, "go install "+pkg+"@"+version+": "+err.Error()+"\n"+string(out),
			"the Go module proxy must be reachable (GOPROXY)")
	}
	return bin
}

// localTool returns the binary of the Go module in dir (a tool of the
// tests with a go.mod and go.sum of its own, such as testdata/composecheck),
// built on first use and cached by the hash of its files.
func localTool(t *testing.T, dir string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	name := filepath.Base(dir)
	bin := filepath.Join(testfiles.CacheDir(), "tools", fmt.Sprintf("%s-%x", name, h.Sum(nil)[:8]), name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building %s (once; cached as %s)", dir, bin)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false -mod=readonly", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Missing(t, "go build "+dir+": "+err.Error()+"\n"+string(out),
			"the Go module proxy must be reachable (GOPROXY)")
	}
	return bin
}

// buildEmber builds cmd/ember into the test's temporary directory.
func buildEmber(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ember")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ember").CombinedOutput(); err != nil {
		t.Fatalf("build ember: %v\n%s", err, out)
	}
	return bin
}
