// Package onnxlib fetches the ONNX Runtime shared library that inference
// loads: `npm pack onnxruntime-node@1.30.0` into Ember's cache, the tarball
// checked against its registry integrity, and only this platform's
// libonnxruntime.so.1 taken out of it. It never runs `npm install`, whose
// install script downloads from elsewhere. `make onnxruntime` and
// internal/testenv use it; Ember itself only loads the file (inference/onnx).
//
// internal/npmpkg is not reused: it unpacks a whole package (113 MB here,
// mostly other platforms' binaries) and checks no integrity.
package onnxlib

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// The npm package carrying the library, and its dist.integrity as
// `npm view onnxruntime-node@1.30.0 dist.integrity` prints it.
const (
	Package   = "onnxruntime-node"
	Version   = "1.30.0"
	Integrity = "sha512-twhs1C2C/BFkz1yc5OY0KIU2GUq6DURO7hD4bx5Q2Qy3nAMJwRXW8xU3NVczE29VA9lolLOYepoD8fjTGOfIqw=="
)

// FileName is the library's name next to bin/ember, where inference looks
// for it by default.
const FileName = "libonnxruntime.so"

// A platform's library inside the tarball and its SHA-256, so a library
// already in place is recognised without opening the tarball.
type member struct {
	path   string
	sha256 string
}

var members = map[string]member{
	"linux/amd64": {"package/bin/napi-v6/linux/x64/libonnxruntime.so.1",
		"ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23"},
	"linux/arm64": {"package/bin/napi-v6/linux/arm64/libonnxruntime.so.1",
		"1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76"},
}

// Install makes dest the ONNX Runtime library for this platform. It does
// nothing when dest already holds that exact file; otherwise it takes the
// library out of the cached npm tarball (fetching it once with `npm pack`)
// and renames it into place, so a concurrent reader never sees half a file.
func Install(ctx context.Context, dest string) error {
	m, ok := members[runtime.GOOS+"/"+runtime.GOARCH]
	if !ok {
		return fmt.Errorf("onnxlib: %s@%s ships no ONNX Runtime for %s/%s", Package, Version, runtime.GOOS, runtime.GOARCH)
	}
	if sum, err := fileSHA256(dest); err == nil && sum == m.sha256 {
		return nil
	}
	tgz, err := Tarball(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("onnxlib: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".libonnxruntime-*")
	if err != nil {
		return fmt.Errorf("onnxlib: %w", err)
	}
	defer os.Remove(tmp.Name())
	sum, err := extract(tgz, m.path, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if sum != m.sha256 {
		return fmt.Errorf("onnxlib: %s in %s has SHA-256 %s, want %s", m.path, tgz, sum, m.sha256)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return fmt.Errorf("onnxlib: %w", err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("onnxlib: %w", err)
	}
	return nil
}

// Tarball returns the path of the package's tarball in the cache
// ($EMBER_CACHE_DIR, else the user cache dir + /ember, then npm/), fetching
// it with `npm pack` when absent. The tarball is checked against Integrity
// every time: 113 MB hash in well under a second, and a corrupt cache is
// then replaced rather than trusted.
func Tarball(ctx context.Context) (string, error) {
	cache := os.Getenv("EMBER_CACHE_DIR")
	if cache == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("onnxlib: no cache directory: %w", err)
		}
		cache = filepath.Join(uc, "ember")
	}
	dir := filepath.Join(cache, "npm")
	tgz := filepath.Join(dir, Package+"-"+Version+".tgz")
	if err := checkIntegrity(tgz); err == nil {
		return tgz, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("onnxlib: npm not found: install Node.js/npm to fetch %s@%s", Package, Version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("onnxlib: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "pack-")
	if err != nil {
		return "", fmt.Errorf("onnxlib: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", "--pack-destination", tmp, Package+"@"+Version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("onnxlib: npm pack %s@%s: %w: %s", Package, Version, err, bytes.TrimSpace(out))
	}
	packed := filepath.Join(tmp, Package+"-"+Version+".tgz")
	if err := checkIntegrity(packed); err != nil {
		return "", err
	}
	if err := os.Rename(packed, tgz); err != nil {
		return "", fmt.Errorf("onnxlib: %w", err)
	}
	return tgz, nil
}

func checkIntegrity(tgz string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("onnxlib: %w", err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("onnxlib: read %s: %w", tgz, err)
	}
	if got := "sha512-" + base64.StdEncoding.EncodeToString(h.Sum(nil)); got != Integrity {
		return fmt.Errorf("onnxlib: %s has integrity %s, want %s", tgz, got, Integrity)
	}
	return nil
}

// extract copies the tarball's regular file at path to w and returns its
// SHA-256 in hex.
func extract(tgz, path string, w io.Writer) (string, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return "", fmt.Errorf("onnxlib: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("onnxlib: %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("onnxlib: %s holds no %s", tgz, path)
		}
		if err != nil {
			return "", fmt.Errorf("onnxlib: read %s: %w", tgz, err)
		}
		if h.Name != path || h.Typeflag != tar.TypeReg {
			continue
		}
		sum := sha256.New()
		if _, err := io.Copy(io.MultiWriter(w, sum), tr); err != nil {
			return "", fmt.Errorf("onnxlib: unpack %s: %w", path, err)
		}
		return hex.EncodeToString(sum.Sum(nil)), nil
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
