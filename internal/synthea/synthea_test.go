package synthea_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/bundleoracle"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func dataFiles(t *testing.T) []string {
	t.Helper()
	dir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := synthea.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// subset is the hospital and practitioner bundles plus the first n patients.
func subset(t *testing.T, files []string, n int) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		if !synthea.IsPatientBundle(f) {
			out = append(out, f)
		} else if n > 0 {
			out = append(out, f)
			n--
		}
	}
	return out
}

func TestFilesOrder(t *testing.T) {
	files := dataFiles(t)
	if len(files) < 3 {
		t.Fatalf("only %d files", len(files))
	}
	if !strings.HasPrefix(filepath.Base(files[0]), "hospitalInformation") ||
		!strings.HasPrefix(filepath.Base(files[1]), "practitionerInformation") {
		t.Fatalf("hospital and practitioner bundles must come first: %v", files[:2])
	}
	for i := 3; i < len(files); i++ {
		if files[i-1] > files[i] {
			t.Fatalf("patient bundles not sorted: %s before %s", files[i-1], files[i])
		}
	}
}

// walkRefs calls fn with every "reference" string in v.
func walkRefs(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "reference" {
				fn(s)
				continue
			}
			walkRefs(c, fn)
		}
	case []any:
		for _, c := range x {
			walkRefs(c, fn)
		}
	}
}

func TestLoaderRewritesReferences(t *testing.T) {
	files := subset(t, dataFiles(t), 1)
	l := synthea.NewLoader()
	known := map[string]bool{}
	var all []synthea.Resource
	for _, f := range files {
		res, err := l.Resources(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			known[r.Type+"/"+r.ID] = true
		}
		all = append(all, res...)
	}
	// The Loader's output, entry by entry, is the bundle JSON with its
	// references resolved independently (bundleoracle).
	raw, err := bundleoracle.Read(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(all) {
		t.Fatalf("the Loader returned %d resources, the files hold %d entries", len(all), len(raw))
	}
	ix := bundleoracle.NewIndex(raw)
	for i, en := range raw {
		want, err := ix.Resolved(en.Resource)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(all[i].JSON, &got); err != nil {
			t.Fatal(err)
		}
		if all[i].Type+"/"+all[i].ID != en.Key() {
			t.Fatalf("resource %d: the Loader returned %s/%s, the file holds %s", i, all[i].Type, all[i].ID, en.Key())
		}
		if path, ok := firstDiff(got, want, en.Key()); !ok {
			t.Errorf("%s: the Loader's copy differs from the file's at %s", en.Key(), path)
		}
	}
	refs := 0
	for _, r := range all {
		if strings.Contains(string(r.JSON), "urn:uuid:") {
			t.Fatalf("%s/%s still holds a urn:uuid: %s", r.Type, r.ID, r.JSON)
		}
		var m map[string]any
		if err := json.Unmarshal(r.JSON, &m); err != nil {
			t.Fatal(err)
		}
		walkRefs(m, func(ref string) {
			refs++
			if !strings.HasPrefix(ref, "#") && !known[ref] {
				t.Errorf("%s/%s: reference %q names no loaded resource", r.Type, r.ID, ref)
			}
		})
	}
	if refs == 0 {
		t.Fatal("no references seen")
	}
}

func TestLoaderResolvesConditionalReferences(t *testing.T) {
	dir := t.TempDir()
	org := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0a000000-0000-0000-0000-000000000001","resource":{"resourceType":"Organization","id":"0a000000-0000-0000-0000-000000000001",
	   "identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"org-1"}],"name":"H"},"request":{"method":"POST","url":"Organization"}},
	 {"fullUrl":"urn:uuid:0b000000-0000-0000-0000-000000000001","resource":{"resourceType":"Practitioner","id":"0b000000-0000-0000-0000-000000000001",
	   "identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999"}]},"request":{"method":"POST","url":"Practitioner"}}]}`
	pat := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0c000000-0000-0000-0000-000000000001","resource":{"resourceType":"Patient","id":"0c000000-0000-0000-0000-000000000001"},"request":{"method":"POST","url":"Patient"}},
	 {"fullUrl":"urn:uuid:0d000000-0000-0000-0000-000000000001","resource":{"resourceType":"Encounter","id":"0d000000-0000-0000-0000-000000000001","status":"finished",
	   "class":{"code":"AMB"},"subject":{"reference":"urn:uuid:0c000000-0000-0000-0000-000000000001"},
	   "participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"}}],
	   "serviceProvider":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|org-1"}},"request":{"method":"POST","url":"Encounter"}}]}`
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l := synthea.NewLoader()
	if _, err := l.Resources(write("hospitalInformation1.json", org)); err != nil {
		t.Fatal(err)
	}
	res, err := l.Resources(write("A_B.json", pat))
	if err != nil {
		t.Fatal(err)
	}
	got := string(res[1].JSON)
	for _, want := range []string{
		`"reference":"Patient/0c000000-0000-0000-0000-000000000001"`,
		`"reference":"Practitioner/0b000000-0000-0000-0000-000000000001"`,
		`"reference":"Organization/0a000000-0000-0000-0000-000000000001"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
	// An unresolvable reference is an error, not a silently dangling one.
	bad := strings.Replace(pat, "us-npi|9999", "us-npi|0000", 1)
	if _, err := synthea.NewLoader().Resources(write("C_D.json", bad)); err == nil {
		t.Fatal("unresolvable conditional reference accepted")
	}
}

func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	u := pgtest.NewDatabase(t)
	st, err := store.Open(context.Background(), u, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, u
}

// stored reads every current resource straight from the database.
func stored(t *testing.T, dbURL string) map[string]map[string]any {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT type, id, COALESCE(raw, content::text) FROM resources WHERE NOT deleted`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for rows.Next() {
		var typ, id, content string
		if err := rows.Scan(&typ, &id, &content); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(content), &m); err != nil {
			t.Fatalf("%s/%s: %v", typ, id, err)
		}
		out[typ+"/"+id] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// expected reads the files' JSON without the Loader (bundleoracle): how
// many entries they hold, and each distinct Type/id's last copy with its
// references resolved, which is what Load must leave in the database.
func expected(t *testing.T, files []string) (entries int, want map[string]map[string]any) {
	t.Helper()
	raw, err := bundleoracle.Read(files)
	if err != nil {
		t.Fatal(err)
	}
	ix := bundleoracle.NewIndex(raw)
	want = map[string]map[string]any{}
	for _, en := range raw {
		m, err := ix.Resolved(en.Resource)
		if err != nil {
			t.Fatalf("%s: %s: %v", en.File, en.Key(), err)
		}
		want[en.Key()] = m
	}
	return len(raw), want
}

// firstDiff compares got with want and returns the path of the first
// difference (ok false), or ok true when they are equal.
func firstDiff(got, want any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		for k := range w {
			if p, ok := firstDiff(g[k], w[k], path+"."+k); !ok {
				return p, false
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return path + "." + k + " (not in the file)", false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := firstDiff(g[i], w[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("%s (%v, want %v)", path, got, want), false
	}
	return "", true
}

// withoutVersionMeta returns m without what the store adds on write,
// meta.versionId and meta.lastUpdated (and meta itself when that empties it).
func withoutVersionMeta(m map[string]any) map[string]any {
	meta, ok := m["meta"].(map[string]any)
	if !ok {
		return m
	}
	out := maps.Clone(m)
	rest := maps.Clone(meta)
	delete(rest, "versionId")
	delete(rest, "lastUpdated")
	if len(rest) == 0 {
		delete(out, "meta")
	} else {
		out["meta"] = rest
	}
	return out
}

func load(t *testing.T, files []string) (map[string]map[string]any, int) {
	t.Helper()
	st, dbURL := openStore(t)
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := synthea.Load(context.Background(), eng, files)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Logf("loaded %d resources from %d files in %v", n, len(files), time.Since(start).Round(time.Millisecond))
	return stored(t, dbURL), n
}

// checkStored verifies the database against the files: every resource
// present, no urn:uuid left, every reference resolvable.
func checkStored(t *testing.T, files []string, got map[string]map[string]any, n int) {
	t.Helper()
	entries, want := expected(t, files)
	if n != entries {
		t.Errorf("Load wrote %d resources, the files hold %d", n, entries)
	}
	if len(got) != len(want) {
		t.Errorf("database holds %d resources, want %d distinct", len(got), len(want))
	}
	// Each stored resource is its file's last copy with the references
	// resolved as the spec says, nothing else changed but the version meta.
	differ := 0
	for k, w := range want {
		g := got[k]
		if g == nil {
			t.Errorf("%s not stored", k)
			continue
		}
		if path, ok := firstDiff(withoutVersionMeta(g), w, k); !ok {
			if differ++; differ <= 20 {
				t.Errorf("%s: stored copy differs from the file's at %s", k, path)
			}
		}
	}
	if differ > 0 {
		t.Errorf("%d stored resources differ from their files", differ)
	}
	dangling := 0
	for k, m := range got {
		b, _ := json.Marshal(m)
		if strings.Contains(string(b), "urn:uuid:") {
			t.Errorf("%s still holds a urn:uuid: %.300s", k, b)
		}
		walkRefs(m, func(ref string) {
			if strings.HasPrefix(ref, "#") || got[ref] != nil {
				return
			}
			if dangling++; dangling <= 20 {
				t.Errorf("%s: reference %q points to no stored resource", k, ref)
			}
		})
	}
	if dangling > 0 {
		t.Errorf("%d dangling references", dangling)
	}
}

func TestLoadThreePatients(t *testing.T) {
	files := subset(t, dataFiles(t), 3)
	got, n := load(t, files)
	checkStored(t, files, got, n)
}

// TestLoadAll loads every bundle: zero validation errors, every reference
// resolvable inside the database.
func TestLoadAll(t *testing.T) {
	if testing.Short() {
		t.Skip("loads all of Synthea; skipped with -short")
	}
	files := dataFiles(t)
	got, n := load(t, files)
	checkStored(t, files, got, n)
}
