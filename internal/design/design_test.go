package design

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/emberfhir/ember"

// pkg is what `go list -json` says of one package (non-test imports only:
// tests may reach anything they need to check the code).
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Export     string // export data, with -export
}

// listPackages runs go list over the whole module from its root.
func listPackages(t *testing.T, root string, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-e", "-json"}, args...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// short turns an import path of the module into DESIGN.md's form
// (fhir/search); others stay whole.
func short(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// section returns the lines of DESIGN.md's "## title" section.
func section(t *testing.T, doc []byte, title string) []string {
	t.Helper()
	var lines []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			in = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == title
			continue
		}
		if in {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("DESIGN.md has no section %q", title)
	}
	return lines
}

var code = regexp.MustCompile("`([^`]+)`")

// tableRows returns the cells of a Markdown table's body rows.
func tableRows(lines []string) [][]string {
	var rows [][]string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") || strings.HasPrefix(l, "|---") || strings.HasPrefix(l, "| ---") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	if len(rows) > 0 {
		rows = rows[1:] // the header
	}
	return rows
}

// codes returns the `quoted` names in a cell, trailing slashes trimmed.
func codes(cell string) []string {
	var out []string
	for _, m := range code.FindAllStringSubmatch(cell, -1) {
		out = append(out, strings.TrimSuffix(m[1], "/"))
	}
	return out
}

// TestLayoutTable: DESIGN.md's layout table has one row per package of the
// module, and its third column names exactly the Ember packages that
// package's non-test code imports. A new package, a removed one or a new
// dependency fails here until DESIGN.md says so.
func TestLayoutTable(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "DESIGN.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string][]string{}
	for _, cells := range tableRows(section(t, doc, "Layout: one job per package")) {
		if len(cells) < 3 {
			t.Errorf("layout row %q: want | package | job | imports |", strings.Join(cells, "|"))
			continue
		}
		names := codes(cells[0])
		if len(names) != 1 {
			t.Errorf("layout row %q: the first cell must name one package in backquotes", cells[0])
			continue
		}
		if _, dup := documented[names[0]]; dup {
			t.Errorf("layout: %s appears twice", names[0])
		}
		documented[names[0]] = codes(cells[2])
	}
	for _, p := range listPackages(t, root, "./...") {
		name := short(p.ImportPath)
		var want []string
		for _, imp := range p.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				want = append(want, short(imp))
			}
		}
		sort.Strings(want)
		got, ok := documented[name]
		if !ok {
			t.Errorf("DESIGN.md's layout table has no row for %s; add:\n| `%s` | <its job> | %s |", name, name, cell(want))
			continue
		}
		delete(documented, name)
		got = slices.Clone(got)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("DESIGN.md: %s imports %s, the table says %s", name, cell(want), cell(got))
		}
	}
	for name := range documented {
		t.Errorf("DESIGN.md's layout table names %s, which is not a package of the module", name)
	}
}

func cell(names []string) string {
	if len(names) == 0 {
		return "—"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "`" + n + "`"
	}
	return strings.Join(q, ", ")
}

// match reports whether an import path (or a short module path) matches a
// pattern: an exact name, or "x/..." for x and everything below it.
func match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// TestDependencyRules: each row of DESIGN.md's dependency rules holds.
// A row is | packages | must not import | why |; packages are patterns
// (`fhir/...`), or `*` followed by "except" and the patterns allowed; a
// package cell that says "linked" checks everything the binary links
// (transitive dependencies), otherwise the package's own non-test imports.
func TestDependencyRules(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "DESIGN.md"))
	if err != nil {
		t.Fatal(err)
	}
	all := listPackages(t, root, "-deps=false", "./...")
	rows := tableRows(section(t, doc, "Dependency rules"))
	if len(rows) == 0 {
		t.Fatal("DESIGN.md's dependency rules table is empty")
	}
	for _, cells := range rows {
		if len(cells) < 3 {
			t.Errorf("rule %q: want | packages | must not import | why |", strings.Join(cells, "|"))
			continue
		}
		who, forbidden := codes(cells[0]), codes(cells[1])
		var methods []string
		forbidden = slices.DeleteFunc(forbidden, func(f string) bool {
			if strings.HasPrefix(f, "(") {
				methods = append(methods, f)
				return true
			}
			return false
		})
		if len(who) == 0 || len(forbidden)+len(methods) == 0 {
			t.Errorf("rule %q names no packages or no imports", strings.Join(cells, "|"))
			continue
		}
		linked := strings.Contains(cells[0], "linked")
		applies := func(name string) bool {
			if who[0] == "*" {
				for _, ex := range who[1:] {
					if match(ex, name) {
						return false
					}
				}
				return true
			}
			for _, w := range who {
				if match(w, name) {
					return true
				}
			}
			return false
		}
		checked := 0
		for _, p := range all {
			name := short(p.ImportPath)
			if !applies(name) {
				continue
			}
			checked++
			if len(methods) > 0 {
				for _, call := range methodCalls(t, root, p) {
					if slices.Contains(methods, call.method) {
						t.Errorf("%s: %s calls %s, which DESIGN.md forbids: %s", call.pos, name, call.method, cells[2])
					}
				}
			}
			imports := p.Imports
			if linked {
				imports = p.Deps
			}
			for _, imp := range imports {
				for _, f := range forbidden {
					if match(f, short(imp)) {
						t.Errorf("%s %s %s, which DESIGN.md forbids: %s", name, verb(linked), imp, cells[2])
					}
				}
			}
		}
		if checked == 0 {
			t.Errorf("rule %q applies to no package: a stale rule", strings.Join(cells, "|"))
		}
	}
}

func verb(linked bool) string {
	if linked {
		return "links"
	}
	return "imports"
}

// TestRulesCatchViolations: the rule matcher itself, so the two tests above
// cannot pass by matching nothing.
func TestRulesCatchViolations(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"fhir/...", "fhir", true},
		{"fhir/...", "fhir/search", true},
		{"fhir/...", "fhirx", false},
		{"github.com/jackc/pgx/...", "github.com/jackc/pgx/v5/pgxpool", true},
		{"net/http", "net/http/httptest", false},
		{"net/http", "net/http", true},
	} {
		if got := match(c.pattern, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
	if got := codes("`store/...`, `internal/pgtest/`"); !slices.Equal(got, []string{"store/...", "internal/pgtest"}) {
		t.Errorf("codes = %q", got)
	}
}

// TestNamedFilesExist: every Go file DESIGN.md names (`server/route.go`)
// exists, so its map of where things live cannot go stale silently.
func TestNamedFilesExist(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "DESIGN.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range code.FindAllStringSubmatch(string(doc), -1) {
		name := m[1]
		if !strings.HasSuffix(name, ".go") || !strings.Contains(name, "/") || strings.ContainsAny(name, " *") {
			continue
		}
		n++
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(name))); err != nil {
			t.Errorf("DESIGN.md names %s, which does not exist", name)
		}
	}
	if n == 0 {
		t.Error("DESIGN.md names no Go file: the map of where things live is missing")
	}
}
