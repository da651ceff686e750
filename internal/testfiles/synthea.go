package testfiles

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvSynthea names the variable that overrides the Synthea data directory.
const EnvSynthea = "EMBER_SYNTHEA_DIR"

// SyntheaArchive is the committed Synthea data set, relative to testdata/:
// a zstd-compressed tar of one directory, synthea/, holding the bundles
// (testdata/README.md says where they come from).
const SyntheaArchive = "synthea.tar.zst"

// SyntheaDir returns the directory of Synthea bundles: $EMBER_SYNTHEA_DIR
// when set, else testdata/synthea.tar.zst unpacked (once per archive
// content) into the cache directory. The data is part of the repository,
// so callers fail on the error rather than skip. internal/synthea.Dir is
// the same for packages that may import it (fhir/index's own tests may
// not: internal/synthea imports the store, which imports fhir/index).
func SyntheaDir() (string, error) {
	if d := os.Getenv(EnvSynthea); d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("testfiles: $%s=%s is not a directory", EnvSynthea, d)
		}
		return d, nil
	}
	root, err := Unpacked(SyntheaArchive)
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, "synthea")
	if _, err := os.Stat(d); err != nil {
		return "", fmt.Errorf("testfiles: testdata/%s holds no synthea/ directory: %w", SyntheaArchive, err)
	}
	return d, nil
}
