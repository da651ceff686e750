package onnxlib_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/internal/onnxlib"
	"github.com/emberfhir/ember/internal/testenv"
)

// Install puts the library in place, leaves a correct one alone and
// replaces a wrong one.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("copies a 45 MB library")
	}
	ctx := context.Background()
	_, err := onnxlib.Tarball(ctx)
	testenv.Require(t, err, "the npm package "+onnxlib.Package+"@"+onnxlib.Version,
		"install npm ("+testenv.NodeJS+") and let it reach the npm registry once; the tarball is cached")

	dest := filepath.Join(t.TempDir(), "bin", onnxlib.FileName)
	if err := onnxlib.Install(ctx, dest); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 1<<20 || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("installed %s: %d bytes, mode %v", dest, st.Size(), st.Mode())
	}
	want, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(want, []byte("\x7fELF")) {
		t.Fatalf("%s is not an ELF file", dest)
	}

	// In place: nothing to do, the file is not rewritten.
	before := st.ModTime()
	if err := onnxlib.Install(ctx, dest); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dest); !st.ModTime().Equal(before) {
		t.Error("a second Install rewrote the library")
	}

	// A different file is replaced.
	if err := os.WriteFile(dest, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := onnxlib.Install(ctx, dest); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("a stale library was not replaced")
	}
	if entries, _ := os.ReadDir(filepath.Dir(dest)); len(entries) != 1 {
		t.Errorf("%d files beside the library (temporary files left?)", len(entries))
	}
}
