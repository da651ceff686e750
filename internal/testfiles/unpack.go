package testfiles

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

var unpackMu sync.Mutex
var unpackedDirs = map[string]string{} // rel → directory, per process

// Unpacked returns a directory holding the contents of the zstd-compressed
// tar testdata/<rel>, unpacking it into the cache on first use. The cache
// key is the archive's hash, so a changed archive never meets a stale copy.
func Unpacked(rel string) (string, error) {
	unpackMu.Lock()
	defer unpackMu.Unlock()
	if d, ok := unpackedDirs[rel]; ok {
		return d, nil
	}
	archive, err := Path(rel)
	if err != nil {
		return "", err
	}
	d, err := unpack(archive, CacheDir())
	if err != nil {
		return "", err
	}
	unpackedDirs[rel] = d
	return d, nil
}

// unpack unpacks archive into cache/<name>-<hash>, unless that exists. The
// copy is written beside its final name and renamed, so concurrent test
// processes (go test runs packages in parallel) see nothing or all of it.
func unpack(archive, cache string) (string, error) {
	sum, err := fileHash(archive)
	if err != nil {
		return "", err
	}
	name := strings.TrimSuffix(filepath.Base(archive), ".tar.zst")
	final := filepath.Join(cache, name+"-"+sum[:16])
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("testfiles: cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, name+"-unpack-")
	if err != nil {
		return "", fmt.Errorf("testfiles: cache: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after a successful rename
	if err := untarZstd(archive, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process renamed its complete copy first: use that one.
		if _, statErr := os.Stat(final); statErr != nil {
			return "", fmt.Errorf("testfiles: cache: %w", err)
		}
	}
	return final, nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("testfiles: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("testfiles: reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// untarZstd unpacks the regular files and directories of a .tar.zst into
// dst. Modes are normalised (the cache must stay writable and removable)
// and entries that would leave dst are refused.
func untarZstd(archive, dst string) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("testfiles: %w", err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return fmt.Errorf("testfiles: %s: %w", archive, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	files := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("testfiles: %s is corrupt: %w", archive, err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !filepath.IsLocal(name) {
			return fmt.Errorf("testfiles: %s: entry %q leaves the archive", archive, hdr.Name)
		}
		p := filepath.Join(dst, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("testfiles: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("testfiles: %w", err)
			}
			if err := writeFile(p, tr); err != nil {
				return fmt.Errorf("testfiles: %s is corrupt: %s: %w", archive, hdr.Name, err)
			}
			files++
		default:
			return fmt.Errorf("testfiles: %s: entry %q is neither a file nor a directory", archive, hdr.Name)
		}
	}
	if files == 0 {
		return fmt.Errorf("testfiles: %s holds no files", archive)
	}
	return nil
}

func writeFile(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
