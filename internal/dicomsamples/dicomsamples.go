// Package dicomsamples locates real DICOM files for tests: Debian's
// python3-pydicom test files (fetched with `apt-get download` on first use
// and cached) and the suyashkumar/dicom module's testdata.
package dicomsamples

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// pydicomPkg is the Debian package holding the files.
const pydicomPkg = "python3-pydicom"

var (
	pydOnce sync.Once
	pydDir  string
	pydErr  error
)

// PydicomDir returns the directory holding pydicom's test_files. It uses
// $EMBER_DICOM_SAMPLES when set; otherwise the cache ($EMBER_CACHE_DIR or the
// user cache dir + /ember/dicom-samples), downloading and unpacking the .deb
// (never installing it) on first use.
func PydicomDir(ctx context.Context) (string, error) {
	if d := os.Getenv("EMBER_DICOM_SAMPLES"); d != "" {
		return d, nil
	}
	pydOnce.Do(func() { pydDir, pydErr = pydicom(ctx) })
	return pydDir, pydErr
}

// Pydicom returns the path of one pydicom test file (e.g. CTSmall).
func Pydicom(ctx context.Context, name string) (string, error) {
	dir, err := PydicomDir(ctx)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("dicomsamples: %w", err)
	}
	return p, nil
}

func cacheDir() (string, error) {
	cache := os.Getenv("EMBER_CACHE_DIR")
	if cache == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("dicomsamples: no cache directory: %w", err)
		}
		cache = filepath.Join(uc, "ember")
	}
	return filepath.Join(cache, "dicom-samples"), nil
}

const testFilesRel = "usr/lib/python3/dist-packages/pydicom/data/test_files"

func pydicom(ctx context.Context) (string, error) {
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(cache, pydicomPkg)
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		return filepath.Join(final, testFilesRel), nil
	}
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("dicomsamples: %s not found: set EMBER_DICOM_SAMPLES to pydicom's data/test_files", tool)
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("dicomsamples: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, "fetch-")
	if err != nil {
		return "", fmt.Errorf("dicomsamples: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := aptDownload(ctx, tmp); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pydicomPkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("dicomsamples: apt-get download left %d .deb files", len(debs))
	}
	unpacked := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], unpacked).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dicomsamples: dpkg-deb -x: %w: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(unpacked, ".complete"), nil, 0o644); err != nil {
		return "", fmt.Errorf("dicomsamples: %w", err)
	}
	// Another test binary may have won the race; either copy is complete.
	if err := os.Rename(unpacked, final); err != nil {
		if _, statErr := os.Stat(filepath.Join(final, ".complete")); statErr != nil {
			return "", fmt.Errorf("dicomsamples: %w", err)
		}
	}
	return filepath.Join(final, testFilesRel), nil
}

// aptDownload fetches the .deb into dir, refreshing the package lists once
// when apt does not know the package yet (a fresh machine).
func aptDownload(ctx context.Context, dir string) error {
	download := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "download", pydicomPkg)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	out, err := download()
	if err == nil {
		return nil
	}
	if os.Geteuid() == 0 {
		if upd, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return fmt.Errorf("dicomsamples: apt-get update: %w: %s", uerr, upd)
		}
		if out, err = download(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("dicomsamples: apt-get download %s: %w: %s", pydicomPkg, err, out)
}

// SuyashkumarDir returns the suyashkumar/dicom module's testdata directory
// (1.dcm … 6.dcm) in the module cache, downloading the module if needed.
func SuyashkumarDir(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/suyashkumar/dicom")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("dicomsamples: go mod download: %w: %s", err, stderr.String())
	}
	// Parse the "Dir" field without a JSON struct dance: one line `"Dir": "…",`.
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, `"Dir": "`); ok {
			dir := filepath.Join(strings.TrimSuffix(strings.TrimSuffix(rest, ","), `"`), "testdata")
			if _, err := os.Stat(dir); err != nil {
				return "", fmt.Errorf("dicomsamples: %w", err)
			}
			return dir, nil
		}
	}
	return "", errors.New("dicomsamples: go mod download gave no Dir")
}
