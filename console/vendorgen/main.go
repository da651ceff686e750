// Command vendorgen is `make console-vendor`: it fetches each package that
// console/vendor.json pins (npm pack at that version, never npm install),
// copies the listed files with their licences under console/static/vendor,
// drops any other file there, and writes each file's SHA-256 back into the
// manifest. Commit the result: the console's tests hold the committed files
// to those hashes. Run it from the repository root.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/emberfhir/ember/console"
	"github.com/emberfhir/ember/internal/npmpkg"
)

func main() {
	if err := run(context.Background(), "console"); err != nil {
		fmt.Fprintln(os.Stderr, "console-vendor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string) error {
	manifestPath := filepath.Join(dir, console.ManifestFile)
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return fmt.Errorf("read the manifest (run from the repository root): %w", err)
	}
	var m console.VendorManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", manifestPath, err)
	}
	vendor := filepath.Join(dir, filepath.FromSlash(console.VendorDir))
	keep := map[string]bool{}
	for i := range m.Packages {
		p := &m.Packages[i]
		src, err := npmpkg.Dir(ctx, p.Name, p.Version)
		if err != nil {
			return err
		}
		for j := range p.Files {
			f := &p.Files[j]
			if err := safeRel(f.To); err != nil {
				return fmt.Errorf("%s@%s: %w", p.Name, p.Version, err)
			}
			b, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(f.From)))
			if err != nil {
				return fmt.Errorf("%s@%s: %w", p.Name, p.Version, err)
			}
			dst := filepath.Join(vendor, filepath.FromSlash(f.To))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			f.SHA256 = hex.EncodeToString(sum[:])
			keep[dst] = true
			fmt.Printf("%s@%s %s → %s\n", p.Name, p.Version, f.From, dst)
		}
	}
	if err := removeOthers(vendor, keep); err != nil {
		return err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	return os.WriteFile(manifestPath, out.Bytes(), 0o644)
}

// safeRel refuses a destination that would leave the vendor directory.
func safeRel(p string) error {
	c := filepath.Clean(filepath.FromSlash(p))
	if p == "" || filepath.IsAbs(c) || c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return fmt.Errorf("destination %q is not a path below %s", p, console.VendorDir)
	}
	return nil
}

// removeOthers deletes the files under vendor that the manifest does not
// list, so the directory holds exactly what it pins.
func removeOthers(vendor string, keep map[string]bool) error {
	return filepath.WalkDir(vendor, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() || keep[p] {
			return err
		}
		fmt.Printf("removed %s\n", p)
		return os.Remove(p)
	})
}
