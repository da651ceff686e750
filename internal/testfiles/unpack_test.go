package testfiles

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// writeArchive writes a .tar.zst of files (name → content) and returns its path.
func writeArchive(t *testing.T, files map[string]string) string {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw, err := zstd.NewWriter(&zb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "data.tar.zst")
	if err := os.WriteFile(p, zb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Concurrent unpackers agree on one complete copy and leave nothing else in
// the cache; a second call reuses it.
func TestUnpack(t *testing.T) {
	archive := writeArchive(t, map[string]string{"d/a.json": "{}", "d/sub/b.json": "[1]"})
	cache := t.TempDir()
	const n = 4
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dirs[i], errs[i] = unpack(archive, cache) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("unpacker %d: %v", i, errs[i])
		}
		if dirs[i] != dirs[0] {
			t.Fatalf("unpackers disagree: %s and %s", dirs[i], dirs[0])
		}
	}
	for name, want := range map[string]string{"d/a.json": "{}", "d/sub/b.json": "[1]"} {
		got, err := os.ReadFile(filepath.Join(dirs[0], name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	ents, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cache holds %v; want only the unpacked copy", names)
	}
	again, err := unpack(archive, cache)
	if err != nil || again != dirs[0] {
		t.Errorf("second call: %q, %v; want %q", again, err, dirs[0])
	}
}

// A corrupt, truncated or hostile archive is an error naming the archive,
// and leaves nothing in the cache.
func TestUnpackBad(t *testing.T) {
	good, err := os.ReadFile(writeArchive(t, map[string]string{"d/a.json": strings.Repeat("x", 1<<16)}))
	if err != nil {
		t.Fatal(err)
	}
	escape, err := os.ReadFile(writeArchive(t, map[string]string{"../evil.json": "{}"}))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"not zstd":  []byte("{}"),
		"empty":     nil,
		"escaping":  escape,
	} {
		bad := filepath.Join(t.TempDir(), "bad.tar.zst")
		if err := os.WriteFile(bad, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cache := t.TempDir()
		dir, err := unpack(bad, cache)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: dir %q, error %v; want an error naming %s", name, dir, err, bad)
		}
		// An escaping entry would land in cache itself (cache/tmp/../).
		if ents, _ := os.ReadDir(cache); len(ents) != 0 {
			t.Errorf("%s: cache left with %d entries", name, len(ents))
		}
	}
}

// A file missing from testdata/ is an error, not an empty answer.
func TestPathMissing(t *testing.T) {
	if p, err := Path("no-such-file"); err == nil {
		t.Errorf("Path(no-such-file) = %q, no error", p)
	}
	if _, err := Path("README.md"); err != nil {
		t.Error(err)
	}
}
