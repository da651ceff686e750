package console

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// VendorDir is where the vendored libraries live, below the console's
// static files (and so below Prefix when served).
const VendorDir = "static/vendor"

// VendorManifest pins the console's front-end libraries: each npm package
// at one version, the files copied from it (with their licences) and each
// file's SHA-256. `make console-vendor` (console/vendorgen) writes the
// files and the hashes; a test holds the committed files to them.
type VendorManifest struct {
	Packages []VendorPackage `json:"packages"`
}

// VendorPackage is one pinned npm package.
type VendorPackage struct {
	Name    string       `json:"name"`
	Version string       `json:"version"`
	License string       `json:"license"`
	Files   []VendorFile `json:"files"`
}

// VendorFile is one file copied from a package: From is its path in the
// package, To its path below VendorDir.
type VendorFile struct {
	From   string `json:"from"`
	To     string `json:"to"`
	SHA256 string `json:"sha256"`
}

// ManifestFile is the manifest's path in the repository, relative to this
// package's directory.
const ManifestFile = "vendor.json"

//go:embed vendor.json
var manifestJSON []byte

// Vendor returns the manifest of the vendored libraries.
func Vendor() (*VendorManifest, error) {
	var m VendorManifest
	if err := json.Unmarshal(manifestJSON, &m); err != nil {
		return nil, fmt.Errorf("console: %s: %w", ManifestFile, err)
	}
	return &m, nil
}
