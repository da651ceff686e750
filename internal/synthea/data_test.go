package synthea_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/internal/synthea"
)

// The committed archive holds the whole data set testdata/README.md
// describes: 100 patient bundles plus one hospital and one practitioner
// bundle, 33,009 resources in all.
func TestCommittedDataSet(t *testing.T) {
	t.Setenv(synthea.EnvDir, "")
	dir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := synthea.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	patients := 0
	for _, f := range files {
		if synthea.IsPatientBundle(f) {
			patients++
		}
	}
	if patients != 100 || len(files) != 102 {
		t.Errorf("%d bundles, %d of them patients; want 102 and 100", len(files), patients)
	}
	// Entries counted from the raw JSON, independently of the Loader.
	entries := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct{ Entry []json.RawMessage }
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		entries += len(bundle.Entry)
	}
	if entries != 33009 {
		t.Errorf("%d bundle entries, want 33,009", entries)
	}
}

// $EMBER_SYNTHEA_DIR overrides the archive, and a wrong one is an error.
func TestDirEnv(t *testing.T) {
	d := t.TempDir()
	t.Setenv(synthea.EnvDir, d)
	if got, err := synthea.Dir(); err != nil || got != d {
		t.Errorf("Dir() = %q, %v; want %q", got, err, d)
	}
	t.Setenv(synthea.EnvDir, filepath.Join(d, "missing"))
	if _, err := synthea.Dir(); err == nil {
		t.Error("Dir() with a missing $" + synthea.EnvDir + ": no error")
	}
}
