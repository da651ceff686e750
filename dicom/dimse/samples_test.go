package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/emberfhir/ember/internal/dicomsamples"
)

// Sample DICOM files are pydicom's test files committed under
// testdata/dicom (EMBER_DICOM_SAMPLES points at another copy of pydicom's
// test_files) and the suyashkumar/dicom module's testdata; see
// internal/dicomsamples.

// pydicomSamples returns the directory holding pydicom's test_files.
func pydicomSamples(t testing.TB) string {
	t.Helper()
	dir, err := dicomsamples.PydicomDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// moduleSamples returns suyashkumar/dicom's testdata directory.
func moduleSamples(t testing.TB) string {
	t.Helper()
	dir, err := dicomsamples.SuyashkumarDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// part10 is a Part-10 file split into its meta information and data set.
type part10 struct {
	sopClass, sopInstance, transferSyntax string
	dataset                               []byte
}

// readPart10 splits a Part-10 file: preamble, "DICM", the group 0002 meta
// elements (explicit VR little endian), then the data set bytes.
func readPart10(path string) (*part10, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, errors.New(path + ": not a Part-10 file")
	}
	p := &part10{}
	b = b[132:]
	for len(b) >= 8 && binary.LittleEndian.Uint16(b[0:2]) == 0x0002 {
		tag, vr, n, hdr, err := elemHeader(b, true)
		if err != nil {
			return nil, err
		}
		if uint64(hdr)+uint64(n) > uint64(len(b)) {
			return nil, errors.New(path + ": truncated meta group")
		}
		v := string(bytes.TrimRight(b[hdr:hdr+int(n)], " \x00"))
		_ = vr
		switch tag {
		case 0x00020002:
			p.sopClass = v
		case 0x00020003:
			p.sopInstance = v
		case 0x00020010:
			p.transferSyntax = v
		}
		b = b[hdr+int(n):]
	}
	p.dataset = b
	return p, nil
}
