package dicomsamples

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/emberfhir/ember/internal/testfiles"
)

// Every well-known sample is a Part-10 file; suyashkumar's testdata is found.
func TestSamples(t *testing.T) {
	t.Setenv(EnvPydicom, "")
	for _, name := range []string{CTSmall, MRSmall, MRImplicit, MRBigEndian, MRRLE, MRJPEGLS, MRJ2K,
		JPEGBaseline, JPEGExtended, RGBUncompress, RGBRLE} {
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
	if _, err := Pydicom(t.Context(), "no-such.dcm"); err == nil {
		t.Error("a missing sample gave no error")
	}
	dir, err := SuyashkumarDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1", "2", "3", "4", "5", "6"} {
		if _, err := os.Stat(filepath.Join(dir, n+".dcm")); err != nil {
			t.Error(err)
		}
	}
}

// testdata/README.md lists exactly the committed pydicom samples, so the
// attribution stays complete when one is added or removed.
func TestCommittedSamplesListed(t *testing.T) {
	t.Setenv(EnvPydicom, "")
	readme, err := testfiles.Path("README.md")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	// The pydicom section: from its heading to the next one.
	section := regexp.MustCompile("(?s)\n## dicom/pydicom/.*?\n## ").Find(b)
	if section == nil {
		t.Fatal("testdata/README.md has no \"## dicom/pydicom/\" section")
	}
	var listed []string
	for _, m := range regexp.MustCompile("`([^`/ ]+\\.dcm)`").FindAllSubmatch(section, -1) {
		listed = append(listed, string(m[1]))
	}
	testFiles, err := PydicomDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	charsets, err := CharsetDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var committed []string
	for _, dir := range []string{testFiles, charsets} {
		found, err := filepath.Glob(filepath.Join(dir, "*.dcm"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range found {
			committed = append(committed, filepath.Base(f))
		}
	}
	slices.Sort(listed)
	listed = slices.Compact(listed)
	slices.Sort(committed)
	if len(committed) == 0 || !slices.Equal(listed, committed) {
		t.Errorf("testdata/README.md lists %v\ncommitted: %v", listed, committed)
	}
}
