package main_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testfiles"
)

// quickStart returns the commands of README.md's quick start: the first sh
// block of the "## Quick start" section, one command a line (comments
// kept: the shell drops them).
func quickStart(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no ## Quick start section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatal("README's quick start has no sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// makeRun returns the command `make run` runs after building, from the
// Makefile's run recipe (./$(BIN) serve …), with $(BIN) as bin/ember.
func makeRun(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	bin := regexp.MustCompile(`(?m)^BIN\s*:?=\s*(\S+)`).FindStringSubmatch(string(b))
	recipe := regexp.MustCompile(`(?m)^run:.*\n((?:\t.*\n)+)`).FindStringSubmatch(string(b))
	if bin == nil || recipe == nil {
		t.Fatal("Makefile: no BIN or no run target")
	}
	for _, l := range strings.Split(recipe[1], "\n") {
		if l = strings.TrimSpace(l); strings.Contains(l, "$(BIN)") {
			return strings.ReplaceAll(l, "$(BIN)", bin[1])
		}
	}
	t.Fatalf("Makefile's run recipe runs no $(BIN):\n%s", recipe[1])
	return ""
}

// TestQuickStart drives README.md's quick start, as written there, on a
// fresh server: SMART authorisation on, the embedded database (no database
// URL) under the default ./.ember of an empty working directory holding the
// checkout's bin/ember and testdata/. It must end in a searchset Bundle of
// Synthea patients (Ember answers searchset Bundles only with 200).
//
// Substitutions, none in the commands themselves: `make run` is its
// recipe's serve command (the Makefile's, `./bin/ember serve`) run on the
// test's binary, since the build is the test's; the address is a free one
// instead of 127.0.0.1:8080 (EMBER_ADDR for serve, EMBER_BASE_URL for the
// admin commands, and the literal in the commands), and DIMSE is off
// (EMBER_DIMSE_ADDR), so that parallel tests do not collide.
func TestQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("imports the whole Synthea sample (about 30 s)")
	}
	root, err := testfiles.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmds := quickStart(t, root)
	if len(cmds) != 4 || !strings.HasPrefix(cmds[0], "make run") || !strings.HasPrefix(cmds[3], "curl ") {
		t.Fatalf("README's quick start is not make run, two commands and a curl: %q", cmds)
	}
	serveCmd := makeRun(t, root)

	dir := traversableTempDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(emberBin, filepath.Join(dir, "bin", "ember")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "testdata"), filepath.Join(dir, "testdata")); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	env := append(os.Environ(), "EMBER_DATABASE_URL=", "EMBER_DATA_DIR=", "EMBER_AUTH=", "EMBER_ADDR="+addr,
		"EMBER_BASE_URL=http://"+addr+"/fhir", "EMBER_DIMSE_ADDR=off")
	local := func(s string) string { return strings.ReplaceAll(s, "127.0.0.1:8080", addr) }

	// make run, in the background (README: "leave it running").
	serve := exec.Command("bash", "-c", "exec "+serveCmd)
	serve.Dir, serve.Env = dir, env
	out := &syncBuffer{}
	serve.Stdout, serve.Stderr = out, out
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	s := &server{cmd: serve, out: out, addr: addr, done: done}
	t.Cleanup(func() { s.stop(t) })
	for deadline := time.Now().Add(90 * time.Second); !strings.Contains(out.String(), "FHIR base: "); {
		select {
		case err := <-done:
			t.Fatalf("%s exited: %v\n%s", serveCmd, err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready:\n%s", serveCmd, out.String())
		}
	}
	time.Sleep(200 * time.Millisecond) // the lines after "FHIR base:"
	// It prints README's other commands (for this address).
	banner := strings.ReplaceAll(out.String(), " --base-url http://"+addr+"/fhir", "")
	for _, c := range cmds[1:] {
		c, _, _ = strings.Cut(c, "  #")
		if !strings.Contains(banner, local(strings.TrimSpace(c))) {
			t.Errorf("serve does not print %q:\n%s", c, out.String())
		}
	}

	// The other commands, in one shell (TOKEN carries over), as written.
	script := "set -e\n"
	for _, c := range cmds[1:] {
		script += local(c) + "\n"
	}
	sh := exec.Command("bash", "-c", script)
	sh.Dir, sh.Env = dir, env
	var stdout, stderr bytes.Buffer
	sh.Stdout, sh.Stderr = &stdout, &stderr
	if err := sh.Run(); err != nil {
		t.Fatalf("quick start: %v\n%s\nstdout: %s\nstderr: %s\nserver:\n%s", err, script, stdout.String(), stderr.String(), out.String())
	}
	// The curl's answer is the last line of output.
	var last string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	var bundle struct {
		ResourceType, Type string
		Entry              []struct {
			Resource struct {
				ResourceType string
				Meta         struct {
					Tag []struct{ System, Code string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(last), &bundle); err != nil || bundle.ResourceType != "Bundle" || bundle.Type != "searchset" ||
		len(bundle.Entry) == 0 {
		t.Fatalf("the curl did not answer a searchset Bundle (%v):\n%.2000s\nstderr: %s", err, last, stderr.String())
	}
	for i, e := range bundle.Entry {
		r := e.Resource
		if r.ResourceType != "Patient" || len(r.Meta.Tag) == 0 || r.Meta.Tag[0].Code != "synthea-5-2019" {
			t.Errorf("entry %d is not a Synthea Patient: %+v", i, r)
		}
	}
}

// TestQuickStartImportArchive: `ember import` reads tar archives (plain,
// gzip, zstd) as the directory they hold, names members in its messages,
// and refuses members that would land outside the directory.
func TestQuickStartImportArchive(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, members map[string]string, order []string) string {
		t.Helper()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, m := range order {
			if err := tw.WriteHeader(&tar.Header{Name: m, Mode: 0o644, Size: int64(len(members[m])), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(members[m]))
		}
		tw.WriteHeader(&tar.Header{Name: "link.ndjson", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink})
		tw.Close()
		p := filepath.Join(dir, name)
		data := buf.Bytes()
		if strings.HasSuffix(name, ".zst") {
			enc, _ := zstd.NewWriter(nil)
			data = enc.EncodeAll(data, nil)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	members := map[string]string{
		"set/a.ndjson":  `{"resourceType":"Patient","id":"a1"}` + "\n" + `{"resourceType":"Patient","id":"bad","gender":"x"}` + "\n",
		"set/b.json":    `{"resourceType":"Organization","id":"o1","name":"O"}`,
		"set/notes.txt": "not FHIR",
	}
	order := []string{"set/a.ndjson", "set/b.json", "set/notes.txt"}
	zst := write("data.tar.zst", members, order)
	plain := write("data.tar", members, order)
	url := pgtest.NewDatabase(t)
	out, code := ember(t, nil, "import", "--database-url", url, zst)
	if code != 1 || !strings.Contains(out, "imported 2 resources from 2 files") || !strings.Contains(out, zst+"!set/a.ndjson:2: ") {
		t.Fatalf("import %s: exit %d\n%s", zst, code, out)
	}
	if out, code := ember(t, nil, "import", "--database-url", url, plain); code != 1 || !strings.Contains(out, "imported 2 resources") {
		t.Fatalf("import %s: exit %d\n%s", plain, code, out)
	}
	evil := write("evil.tar.zst", map[string]string{"../escape.ndjson": `{"resourceType":"Patient"}`}, []string{"../escape.ndjson"})
	if out, code := ember(t, nil, "import", "--database-url", url, evil); code != 1 || !strings.Contains(out, "outside the archive") {
		t.Fatalf("import %s: exit %d\n%s", evil, code, out)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "escape.ndjson")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a member escaped the archive's directory: %v", err)
	}
}
