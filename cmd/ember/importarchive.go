package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// `ember import` of tar archives: the repository carries its Synthea sample
// as testdata/synthea.tar.zst, and bulk data travels as tarballs, so an
// archive is imported as if it had been unpacked and its directory named.

// archiveKind returns the compression of a tar archive's name ("" for
// plain tar), and false for a name that is not an archive.
func archiveKind(name string) (string, bool) {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar"):
		return "", true
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return "gzip", true
	case strings.HasSuffix(n, ".tar.zst"), strings.HasSuffix(n, ".tzst"):
		return "zstd", true
	}
	return "", false
}

// unpackArchives returns paths with every tar archive among them replaced by
// a temporary directory holding its regular files (the import then walks
// it like any directory: its FHIR files by name, in name order). local maps
// a path under such a directory back to "ARCHIVE!MEMBER" for messages;
// cleanup removes the directories.
func unpackArchives(paths []string) (out []string, local func(string) string, cleanup func(), err error) {
	dirs := map[string]string{} // temporary directory → archive
	cleanup = func() {
		for d := range dirs {
			os.RemoveAll(d)
		}
	}
	local = func(p string) string {
		for d, a := range dirs {
			if rel, ok := strings.CutPrefix(p, d+string(filepath.Separator)); ok {
				return a + "!" + filepath.ToSlash(rel)
			}
		}
		return p
	}
	for _, p := range paths {
		kind, ok := archiveKind(p)
		if fi, err := os.Stat(p); !ok || err != nil || fi.IsDir() {
			out = append(out, p) // the importer reports what is missing
			continue
		}
		d, err := os.MkdirTemp("", "ember-import-")
		if err != nil {
			cleanup()
			return nil, nil, nil, fmt.Errorf("import: %w", err)
		}
		dirs[d] = p
		if err := unpackTar(p, kind, d); err != nil {
			cleanup()
			return nil, nil, nil, fmt.Errorf("import: %s: %w", p, err)
		}
		out = append(out, d)
	}
	return out, local, cleanup, nil
}

// unpackTar writes the regular files of the archive file into dir. Other
// entries (links, devices) are skipped; a member naming a path outside dir
// is an error.
func unpackTar(file, kind, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	switch kind {
	case "gzip":
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	case "zstd":
		zr, err := zstd.NewReader(f)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("member %q is outside the archive", h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
}
