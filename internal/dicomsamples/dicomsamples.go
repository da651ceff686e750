// Package dicomsamples locates real DICOM files for tests: pydicom's test
// files committed under testdata/dicom/pydicom (see testdata/README.md) and
// the suyashkumar/dicom module's testdata, read from the Go module cache
// (the module is a pinned, checksummed dependency, so building the tests
// has already downloaded it).
package dicomsamples

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/emberfhir/ember/internal/testfiles"
)

// Well-known pydicom sample files by encoding, for tests that want one of each.
const (
	CTSmall       = "CT_small.dcm"                  // explicit VR little endian, 16-bit CT 128×128
	MRSmall       = "MR_small.dcm"                  // explicit VR little endian, 16-bit MR 64×64
	MRImplicit    = "MR_small_implicit.dcm"         // implicit VR little endian
	MRBigEndian   = "MR_small_bigendian.dcm"        // explicit VR big endian
	MRRLE         = "MR_small_RLE.dcm"              // RLE lossless
	MRJPEGLS      = "MR_small_jpeg_ls_lossless.dcm" // JPEG-LS lossless
	MRJ2K         = "MR_small_jp2klossless.dcm"     // JPEG 2000 lossless
	JPEGBaseline  = "SC_rgb_jpeg_dcmtk.dcm"         // JPEG baseline (process 1), RGB
	JPEGExtended  = "JPGExtended.dcm"               // JPEG extended (process 2/4)
	RGBUncompress = "SC_rgb_small_odd.dcm"          // native RGB
	RGBRLE        = "SC_rgb_rle.dcm"                // RLE, RGB
)

// EnvPydicom names the variable that overrides the pydicom directory: a
// directory laid out as pydicom's data/test_files (e.g. a full pydicom
// install's), with data/charset_files beside it.
const EnvPydicom = "EMBER_DICOM_SAMPLES"

// PydicomDir returns the directory holding pydicom's test files:
// $EMBER_DICOM_SAMPLES when set, else testdata/dicom/pydicom/test_files.
// Character-set samples are in CharsetDir. Only the files the tests use
// are committed (testdata/README.md lists them).
func PydicomDir(_ context.Context) (string, error) {
	if d := os.Getenv(EnvPydicom); d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("dicomsamples: $%s=%s is not a directory", EnvPydicom, d)
		}
		return d, nil
	}
	d, err := testfiles.Path("dicom/pydicom/test_files")
	if err != nil {
		return "", fmt.Errorf("dicomsamples: %w", err)
	}
	return d, nil
}

// CharsetDir returns the directory of pydicom's character-set samples
// (chr*.dcm): charset_files beside PydicomDir, as pydicom lays them out.
func CharsetDir(ctx context.Context) (string, error) {
	dir, err := PydicomDir(ctx)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(dir), "charset_files"), nil
}

// Pydicom returns the path of one pydicom test file (e.g. CTSmall).
func Pydicom(ctx context.Context, name string) (string, error) {
	dir, err := PydicomDir(ctx)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("dicomsamples: %w (commit it to testdata/dicom/pydicom/test_files with a line in testdata/README.md)", err)
	}
	return p, nil
}

// SuyashkumarDir returns the suyashkumar/dicom module's testdata directory
// (1.dcm … 6.dcm, 8.8 MB: too large to commit) in the module cache. go.mod
// pins the version and go.sum its hash; `go mod download` answers from the
// cache without the network once the tests have been built.
func SuyashkumarDir(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/suyashkumar/dicom")
	if root, err := testfiles.ModuleRoot(); err == nil {
		cmd.Dir = root
	}
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || mod.Error != "" {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		return "", fmt.Errorf("dicomsamples: go mod download github.com/suyashkumar/dicom: %v %s %s", err, mod.Error, stderr)
	}
	dir := filepath.Join(mod.Dir, "testdata")
	if _, err := os.Stat(filepath.Join(dir, "1.dcm")); err != nil {
		return "", fmt.Errorf("dicomsamples: %w", err)
	}
	return dir, nil
}
