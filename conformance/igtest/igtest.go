// Package igtest gives tests the committed US Core 6.1.0 package
// (testdata/ig), read once per test binary.
package igtest

import (
	"sync"
	"testing"

	"github.com/emberfhir/ember/conformance/igpkg"
	"github.com/emberfhir/ember/internal/testfiles"
)

// USCoreFile is the package's path under testdata/.
const USCoreFile = "ig/hl7.fhir.us.core-6.1.0.tgz"

var uscore struct {
	once sync.Once
	pkg  *igpkg.Package
	raw  []byte
	err  error
}

// USCore returns the US Core 6.1.0 package and its archive's bytes.
func USCore(tb testing.TB) (*igpkg.Package, []byte) {
	tb.Helper()
	uscore.once.Do(func() {
		path, err := testfiles.Path(USCoreFile)
		if err != nil {
			uscore.err = err
			return
		}
		uscore.pkg, uscore.raw, uscore.err = igpkg.ReadFile(path)
	})
	if uscore.err != nil {
		tb.Fatal(uscore.err)
	}
	return uscore.pkg, uscore.raw
}

// USCorePath is the package file's path.
func USCorePath(tb testing.TB) string {
	tb.Helper()
	path, err := testfiles.Path(USCoreFile)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}
