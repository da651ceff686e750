package dicomsamples

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSamples(t *testing.T) {
	for _, name := range []string{CTSmall, MRRLE, MRJPEGLS, MRJ2K, JPEGBaseline} {
		p, err := Pydicom(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 132 || string(b[128:132]) != "DICM" {
			t.Errorf("%s: no DICM prefix", name)
		}
	}
	dir, err := SuyashkumarDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "1.dcm")); err != nil {
		t.Fatal(err)
	}
}
