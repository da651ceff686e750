package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Sample DICOM files come from Debian's python3-pydicom package (fetched
// into a cache at test time, never committed) and from the suyashkumar/dicom
// module's testdata. EMBER_DICOM_SAMPLES points at a directory of pydicom
// test_files instead.

var (
	samplesOnce sync.Once
	samplesPath string
	samplesErr  error
)

// pydicomSamples returns the directory holding pydicom's test_files,
// fetching them on first use; it skips the test if they cannot be had.
func pydicomSamples(t testing.TB) string {
	t.Helper()
	samplesOnce.Do(func() { samplesPath, samplesErr = fetchPydicomSamples() })
	if samplesErr != nil {
		t.Skipf("DICOM samples unavailable (set EMBER_DICOM_SAMPLES to pydicom's data/test_files): %v", samplesErr)
	}
	return samplesPath
}

func fetchPydicomSamples() (string, error) {
	if d := os.Getenv("EMBER_DICOM_SAMPLES"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "CT_small.dcm")); err != nil {
			return "", err
		}
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	// ~/.cache/ember/dicom-samples/python3-pydicom holds the extracted
	// package (the layout other Ember tests share).
	pkg := filepath.Join(cache, "ember", "dicom-samples", "python3-pydicom")
	if d, ok := testFilesIn(pkg); ok {
		return d, nil
	}
	tmp, err := os.MkdirTemp("", "ember-pydicom-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", "python3-pydicom")
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return "", errors.New("apt-get download python3-pydicom: " + err.Error() + ": " + string(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "python3-pydicom_*.deb"))
	if len(debs) != 1 {
		return "", errors.New("apt-get download produced no python3-pydicom .deb")
	}
	if out, err := exec.Command("dpkg", "-x", debs[0], filepath.Join(tmp, "x")).CombinedOutput(); err != nil {
		return "", errors.New("dpkg -x: " + err.Error() + ": " + string(out))
	}
	if err := os.MkdirAll(filepath.Dir(pkg), 0o755); err != nil {
		return "", err
	}
	// A concurrent fetch may have won the rename; either way the files are there.
	_ = os.Rename(filepath.Join(tmp, "x"), pkg)
	if d, ok := testFilesIn(pkg); ok {
		return d, nil
	}
	return "", errors.New("no pydicom/data/test_files in " + pkg)
}

func testFilesIn(pkg string) (string, bool) {
	found, _ := filepath.Glob(filepath.Join(pkg, "usr", "lib", "python3*", "dist-packages", "pydicom", "data", "test_files", "CT_small.dcm"))
	if len(found) == 0 {
		return "", false
	}
	return filepath.Dir(found[0]), true
}

// moduleSamples returns suyashkumar/dicom's testdata directory, or skips.
func moduleSamples(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "github.com", "suyashkumar", "dicom@v1.1.0", "testdata")
	if _, err := os.Stat(filepath.Join(dir, "1.dcm")); err != nil {
		t.Skipf("suyashkumar/dicom testdata unavailable: %v", err)
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
