package synthea

import "github.com/emberfhir/ember/internal/testfiles"

// EnvDir names the variable that overrides the data directory.
const EnvDir = testfiles.EnvSynthea

// Dir returns the directory of Synthea bundles: $EMBER_SYNTHEA_DIR when set,
// else the repository's testdata/synthea.tar.zst unpacked (once per archive
// content) into Ember's cache directory. The data is part of the
// repository, so callers fail on the error rather than skip.
func Dir() (string, error) { return testfiles.SyntheaDir() }
