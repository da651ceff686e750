// Package npmpkg fetches npm packages as files — `npm pack` and untar, never
// `npm install`, so no package script ever runs — into Ember's cache
// directory, once.
package npmpkg

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

// Dir returns the directory holding the unpacked files of name@version
// (the tarball's package/ folder), fetching it into the cache directory
// ($EMBER_CACHE_DIR, else the user cache dir + /ember) when absent.
func Dir(ctx context.Context, name, version string) (string, error) {
	cache := os.Getenv("EMBER_CACHE_DIR")
	if cache == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("npmpkg: no cache directory: %w", err)
		}
		cache = filepath.Join(uc, "ember")
	}
	dir := filepath.Join(cache, strings.ReplaceAll(name, "/", "_")+"-"+version)
	pkgDir := filepath.Join(dir, "package")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return pkgDir, nil
	}
	if err := fetch(ctx, name, version, dir); err != nil {
		return "", err
	}
	return pkgDir, nil
}

func fetch(ctx context.Context, name, version, dir string) error {
	if _, err := exec.LookPath("npm"); err != nil {
		return errors.New("npmpkg: npm not found: install Node.js/npm to fetch " + name + "@" + version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("npmpkg: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return fmt.Errorf("npmpkg: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", "--pack-destination", tmp, name+"@"+version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npmpkg: npm pack %s@%s: %w: %s", name, version, err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
	if len(matches) != 1 {
		return fmt.Errorf("npmpkg: npm pack %s@%s left %d tarballs", name, version, len(matches))
	}
	tgz := matches[0]
	if err := untar(tgz, tmp); err != nil {
		return err
	}
	final := filepath.Join(dir, "package")
	_ = os.RemoveAll(final)
	if err := os.Rename(filepath.Join(tmp, "package"), final); err != nil {
		return fmt.Errorf("npmpkg: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644)
}

func untar(tgz, dest string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("npmpkg: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("npmpkg: %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("npmpkg: read %s: %w", tgz, err)
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			continue
		}
		p := filepath.Join(dest, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("npmpkg: %w", err)
		}
		out, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("npmpkg: %w", err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("npmpkg: unpack %s: %w", name, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("npmpkg: %w", err)
		}
	}
}
