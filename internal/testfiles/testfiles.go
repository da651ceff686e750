// Package testfiles finds the repository's top-level testdata/ directory,
// where the data tests and benchmarks use is committed (see
// testdata/README.md), and the cache directory derived data is unpacked to.
package testfiles

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// modulePath identifies Ember's go.mod when looking for the module root.
const modulePath = "github.com/emberfhir/ember"

// Path returns the absolute path of rel (slash-separated) under the module
// root's testdata/, and an error when it does not exist.
func Path(rel string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "testdata", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testfiles: %w (testdata/ is part of the repository: is the checkout complete?)", err)
	}
	return p, nil
}

// ModuleRoot returns the directory of Ember's go.mod, walking up from the
// working directory (go test runs in the package directory; ember-bench in
// the module root) and then from this source file's directory (a binary run
// from elsewhere, built in this checkout).
func ModuleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, start := range starts {
		if root, ok := moduleRoot(start); ok {
			return root, nil
		}
	}
	return "", errors.New("testfiles: not inside the Ember module (no go.mod declaring " + modulePath + ")")
}

func moduleRoot(dir string) (string, bool) {
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == modulePath {
					return dir, true
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// CacheDir returns Ember's cache directory, for data unpacked from
// testdata/: $EMBER_CACHE_DIR when set, else the user cache directory +
// /ember, else (no home directory, as in some CI sandboxes) the system
// temporary directory + /ember-cache.
func CacheDir() string {
	if d := os.Getenv("EMBER_CACHE_DIR"); d != "" {
		return d
	}
	if uc, err := os.UserCacheDir(); err == nil {
		return filepath.Join(uc, "ember")
	}
	return filepath.Join(os.TempDir(), "ember-cache")
}
