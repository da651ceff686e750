package onnxgen

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/internal/testfiles"
)

// TestCommitted checks that testdata/models and testdata/models-bad hold
// exactly what the generator writes: regenerating into a temporary
// directory must give the committed bytes, file for file.
func TestCommitted(t *testing.T) {
	tmp := t.TempDir()
	if err := Write(tmp); err != nil {
		t.Fatal(err)
	}
	for _, f := range Files() {
		got, err := os.ReadFile(filepath.Join(tmp, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := testfiles.Path(f.Path)
		if err != nil {
			t.Errorf("%s: %v (run `go generate ./internal/onnxgen`)", f.Path, err)
			continue
		}
		want, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("testdata/%s differs from what the generator writes: run `go generate ./internal/onnxgen`", f.Path)
		}
	}
	// Nothing else lives in the generated directories.
	for _, dir := range []string{"models", "models-bad"} {
		p, err := testfiles.Path(dir)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(tmp, dir, e.Name())); err != nil {
				t.Errorf("testdata/%s/%s is not written by the generator", dir, e.Name())
			}
		}
	}
}

// TestDeterministic checks two encodings of the same model are identical.
func TestDeterministic(t *testing.T) {
	if !bytes.Equal(ConvPool().Marshal(), ConvPool().Marshal()) {
		t.Fatal("ConvPool().Marshal() differs between calls")
	}
}
