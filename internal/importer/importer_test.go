package importer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/importer"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newImportEnv opens a fresh database's store, a parser, and the engine to
// import with.
func newImportEnv(t *testing.T) (string, *store.Store, *fhir.Parser, *engine.Engine) {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(t.Context(), dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{BaseURL: "http://localhost/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	return dbURL, st, p, eng
}

// TestConcurrentWritersKeepFileOrder imports files whose resources repeat
// across many small batches, with several writers, and checks the outcome
// is that of writing everything in order: the last copy of each resource
// wins, each copy is one version, a transaction Bundle in the middle sees
// what came before it and is overridden by what comes after, and errors are
// reported in input order.
func TestConcurrentWritersKeepFileOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const patients, rounds = 7, 9
	var lines []string
	var wantErrs []string
	for r := range rounds {
		for p := range patients {
			lines = append(lines, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","name":[{"family":"round%d"}]}`, p, r))
		}
		// One invalid line per round, at a line number we can predict.
		lines = append(lines, `{"resourceType":"Patient","id":"bad","gender":"sometimes"}`)
		wantErrs = append(wantErrs, fmt.Sprintf("1-patients.ndjson:%d:", len(lines)))
		// Resources without ids are always created.
		lines = append(lines, `{"resourceType":"Basic","code":{"text":"no id"}}`)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1-patients.ndjson", strings.Join(lines, "\n")+"\n")
	// Sorted after the ndjson: the Bundle sees round 8 and renames p0.
	write("2-tx.json", `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Patient","id":"p0","name":[{"family":"bundle"}]},"request":{"method":"PUT","url":"Patient/p0"}},
		{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"bundle"}]},"request":{"method":"PUT","url":"Patient/p1"}}]}`)
	write("3-after.ndjson", `{"resourceType":"Patient","id":"p1","name":[{"family":"last"}]}`+"\n")

	dbURL, _, _, eng := newImportEnv(t)
	res, err := importer.Import(ctx, eng, []string{dir}, importer.Options{BatchSize: 3, Writers: 4, MaxErrors: 5})
	if err != nil {
		t.Fatal(err)
	}
	wantRes := int64(rounds*patients + rounds + 2 + 1)
	if res.Resources != wantRes || res.Failed != rounds || res.Files != 3 {
		t.Fatalf("imported %d, failed %d, files %d; want %d, %d, 3", res.Resources, res.Failed, res.Files, wantRes, rounds)
	}
	if len(res.Errors) != 5 {
		t.Fatalf("%d errors kept, want MaxErrors=5: %v", len(res.Errors), res.Errors)
	}
	for i, e := range res.Errors {
		if got := strings.TrimPrefix(e.Error(), dir+string(filepath.Separator)); !strings.HasPrefix(got, wantErrs[i]) {
			t.Errorf("error %d = %q, want it at %s (input order)", i, got, wantErrs[i])
		}
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for pi := range patients {
		id := fmt.Sprintf("p%d", pi)
		want, versions := fmt.Sprintf("round%d", rounds-1), int64(rounds)
		switch pi {
		case 0:
			want, versions = "bundle", rounds+1
		case 1:
			want, versions = "last", rounds+2
		}
		var family string
		var version int64
		err := conn.QueryRow(ctx, `SELECT content->'name'->0->>'family', version FROM resources WHERE type = 'Patient' AND id = $1`, id).Scan(&family, &version)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if family != want || version != versions {
			t.Errorf("%s: family %q version %d, want %q version %d", id, family, version, want, versions)
		}
		var hist int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM resource_history h JOIN resources r USING (rid) WHERE r.id = $1 AND r.type = 'Patient'`, id).Scan(&hist); err != nil {
			t.Fatal(err)
		}
		if hist != versions-1 {
			t.Errorf("%s: %d history rows, want %d", id, hist, versions-1)
		}
	}
	var basics int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM resources WHERE type = 'Basic'`).Scan(&basics); err != nil {
		t.Fatal(err)
	}
	if basics != rounds {
		t.Errorf("%d Basic resources, want %d", basics, rounds)
	}
}

// TestConcurrentWritersSerialiseSharedIDs sets a trap for writers that run
// batches sharing an id at the same time: each round's first batch writes
// 40 new resources before its copy of "px", the next batch starts with a
// newer copy of "px". Written concurrently, the later copy would usually
// land first and be overwritten by the earlier one.
func TestConcurrentWritersSerialiseSharedIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const batch, rounds = 41, 12
	var lines []string
	for r := range rounds {
		for i := range batch - 1 {
			lines = append(lines, fmt.Sprintf(`{"resourceType":"Patient","id":"f%d-%d","name":[{"family":"filler"}]}`, r, i))
		}
		lines = append(lines, fmt.Sprintf(`{"resourceType":"Patient","id":"px","name":[{"family":"copy%d"}]}`, 2*r))
		lines = append(lines, fmt.Sprintf(`{"resourceType":"Patient","id":"px","name":[{"family":"copy%d"}]}`, 2*r+1))
		for range batch - 1 {
			lines = append(lines, `{"resourceType":"Basic","code":{"text":"filler"}}`)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "px.ndjson"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dbURL, _, _, eng := newImportEnv(t)
	res, err := importer.Import(ctx, eng, []string{dir}, importer.Options{BatchSize: batch, Writers: 4})
	if err != nil || res.Failed != 0 {
		t.Fatalf("import: %v, %d failed: %v", err, res.Failed, res.Errors)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var family string
	var version int64
	if err := conn.QueryRow(ctx, `SELECT content->'name'->0->>'family', version FROM resources WHERE type = 'Patient' AND id = 'px'`).Scan(&family, &version); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("copy%d", 2*rounds-1); family != want || version != 2*rounds {
		t.Fatalf("px: %q version %d, want %q version %d", family, version, want, 2*rounds)
	}
	// Every copy is a version, in file order.
	rows, err := conn.Query(ctx, `SELECT h.content->'name'->0->>'family' FROM resource_history h JOIN resources r USING (rid)
		WHERE r.type = 'Patient' AND r.id = 'px' ORDER BY h.version`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range got {
		if want := fmt.Sprintf("copy%d", i); f != want {
			t.Fatalf("history version %d is %q, want %q (all: %v)", i+1, f, want, got)
		}
	}
}

// TestBundlesWaitForWhatTheySearch: a transaction whose conditional
// reference finds an Organization written by the last batches of the file
// before it must not start until those batches commit, while Bundles that
// share nothing run side by side.
func TestBundlesWaitForWhatTheySearch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const orgs = 400
	var lines []string
	for i := range orgs {
		lines = append(lines, fmt.Sprintf(`{"resourceType":"Organization","id":"o%d","identifier":[{"system":"http://example.org/org","value":"%d"}]}`, i, i))
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1-orgs.ndjson", strings.Join(lines, "\n")+"\n")
	for i := range 6 {
		write(fmt.Sprintf("2-tx%d.json", i), fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=http://example.org/org|%d"}},"request":{"method":"POST","url":"Patient"}}]}`, orgs-1-i))
	}
	dbURL, _, _, eng := newImportEnv(t)
	res, err := importer.Import(ctx, eng, []string{dir}, importer.Options{BatchSize: orgs, Writers: 4})
	if err != nil || res.Failed != 0 {
		t.Fatalf("import: %v; %d failed: %v", err, res.Failed, res.Errors)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var linked int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM resources WHERE type = 'Patient' AND content->'managingOrganization'->>'reference' LIKE 'Organization/o%'`).Scan(&linked); err != nil {
		t.Fatal(err)
	}
	if linked != 6 {
		t.Fatalf("%d patients linked to their organization, want 6", linked)
	}
}
