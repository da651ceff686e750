// Package fhirpkg locates the official FHIR R4 definitions and examples
// (npm hl7.fhir.r4.examples@4.0.1), fetching them with `npm pack` on first use.
package fhirpkg

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Name and Version identify the package every generator and test reads.
const (
	Name    = "hl7.fhir.r4.examples"
	Version = "4.0.1"
)

// Dir returns the directory holding the unpacked package's files. It uses
// $EMBER_FHIR_PACKAGE when set, else a cache directory ($EMBER_CACHE_DIR or
// the user cache dir + /ember), unpacking the npm tarball there when absent.
// `npm pack` only downloads the tarball; it never runs package scripts.
func Dir(ctx context.Context) (string, error) {
	if d := os.Getenv("EMBER_FHIR_PACKAGE"); d != "" {
		return d, nil
	}
	cache := os.Getenv("EMBER_CACHE_DIR")
	if cache == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("fhirpkg: no cache directory: %w", err)
		}
		cache = filepath.Join(uc, "ember")
	}
	dir := filepath.Join(cache, Name+"-"+Version)
	pkgDir := filepath.Join(dir, "package")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return pkgDir, nil
	}
	if err := fetch(ctx, dir); err != nil {
		return "", err
	}
	return pkgDir, nil
}

func fetch(ctx context.Context, dir string) error {
	if _, err := exec.LookPath("npm"); err != nil {
		return errors.New("fhirpkg: npm not found: install Node.js/npm or set EMBER_FHIR_PACKAGE to an unpacked " + Name + "@" + Version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fhirpkg: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return fmt.Errorf("fhirpkg: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", "--pack-destination", tmp, Name+"@"+Version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fhirpkg: npm pack %s@%s: %w: %s", Name, Version, err, out)
	}
	tgz := filepath.Join(tmp, Name+"-"+Version+".tgz")
	if err := untar(tgz, tmp); err != nil {
		return err
	}
	final := filepath.Join(dir, "package")
	_ = os.RemoveAll(final)
	if err := os.Rename(filepath.Join(tmp, "package"), final); err != nil {
		return fmt.Errorf("fhirpkg: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644)
}

func untar(tgz, dest string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("fhirpkg: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("fhirpkg: %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("fhirpkg: read %s: %w", tgz, err)
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			continue
		}
		p := filepath.Join(dest, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("fhirpkg: %w", err)
		}
		out, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("fhirpkg: %w", err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("fhirpkg: unpack %s: %w", name, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("fhirpkg: %w", err)
		}
	}
}
