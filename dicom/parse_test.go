package dicom_test

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/internal/dicomsamples"
)

// Every sample parses; every truncation and random corruption of one gives
// an error or a result, never a panic or a hang.
func TestParseRobust(t *testing.T) {
	dir, err := dicomsamples.PydicomDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	names := []string{dicomsamples.CTSmall, dicomsamples.MRImplicit, dicomsamples.MRBigEndian, dicomsamples.MRRLE,
		dicomsamples.MRJ2K, dicomsamples.JPEGBaseline, "UN_sequence.dcm", "nested_priv_SQ.dcm", "badVR.dcm"}
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := dicom.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
		if name != "badVR.dcm" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if h.Dataset.String(0x00080018) == "" && name != "UN_sequence.dcm" && name != "nested_priv_SQ.dcm" {
				t.Errorf("%s: no SOPInstanceUID parsed", name)
			}
		}
		if _, err := dicom.ReadFull(bytes.NewReader(b)); err != nil && name != "badVR.dcm" {
			t.Errorf("%s: full parse: %v", name, err)
		}
		for cut := 0; cut < len(b); cut += 1 + len(b)/200 {
			_, _, _ = dicom.ReadHeader(bufio.NewReader(bytes.NewReader(b[:cut])))
			_, _ = dicom.ReadFull(bytes.NewReader(b[:cut]))
		}
		for range 300 {
			m := bytes.Clone(b)
			for range 1 + r.IntN(8) {
				i := 128 + r.IntN(min(len(m)-128, 2000))
				m[i] = byte(r.Uint32())
			}
			_, _, _ = dicom.ReadHeader(bufio.NewReader(bytes.NewReader(m)))
			_, _ = dicom.ReadFull(bytes.NewReader(m))
		}
	}
}

// The DICOM JSON of a sample carries its values with the right types.
func TestDatasetJSON(t *testing.T) {
	p, err := dicomsamples.Pydicom(t.Context(), dicomsamples.MRBigEndian)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := dicom.ReadFull(f)
	if err != nil {
		t.Fatal(err)
	}
	js := h.Dataset.JSON(nil)
	rows := js["00280010"].(map[string]any)
	if rows["vr"] != "US" || rows["Value"].([]any)[0] != int64(64) {
		t.Errorf("Rows (big endian): %v", rows)
	}
	pn := js["00100010"].(map[string]any)["Value"].([]any)[0].(map[string]any)
	if pn["Alphabetic"] != "CompressedSamples^MR1" {
		t.Errorf("PatientName: %v", pn)
	}
	if _, ok := js["00020010"]; ok {
		t.Error("meta group in the dataset JSON")
	}
}

// Single-byte character sets decode to UTF-8.
func TestCharsets(t *testing.T) {
	dir, err := dicomsamples.CharsetDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"chrRuss.dcm":  "Люкceмбypг",
		"chrGreek.dcm": "Διονυσιος",
		"chrGerm.dcm":  "Äneas^Rüdiger",
		"chrX1.dcm":    "Wang^XiaoDong=王^小東=",
	} {
		f, err := os.Open(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		h, err := dicom.ReadFull(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if got := h.Dataset.String(0x00100010); got != want {
			t.Errorf("%s: PatientName %q, want %q", file, got, want)
		}
	}
}
