package main_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
)

// noAudit is the environment of these tests' commands and servers: they
// count the resources an import stores, which the audit trail's own
// AuditEvents (of the import and of the export) would add to.
var noAudit = []string{"EMBER_AUDIT=off"}

// typeCounts counts current resources per type in the database at url.
func typeCounts(t *testing.T, url string) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT type, count(*) FROM resources WHERE NOT deleted GROUP BY type`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			t.Fatal(err)
		}
		out[typ] = n
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImport(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a", "patients.ndjson"), strings.Join([]string{
		`{"resourceType":"Patient","id":"p1","gender":"female"}`,
		`{"resourceType":"Patient","id":"p2","gender":"male"}`,
		`{"resourceType":"Patient","id":"bad","gender":"sometimes"}`,
		``,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`,
		`not json`,
		`{"resourceType":"Patient","id":"p3"}`,
	}, "\n")+"\n")
	writeFile(t, filepath.Join(dir, "b", "transaction.json"), `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:6b0f5a5c-57e0-4b6b-8bc0-5d9a8b7c0001","resource":{"resourceType":"Patient","id":"t1"},"request":{"method":"PUT","url":"Patient/t1"}},
		{"resource":{"resourceType":"Observation","id":"t2","status":"final","code":{"text":"y"},"subject":{"reference":"urn:uuid:6b0f5a5c-57e0-4b6b-8bc0-5d9a8b7c0001"}},"request":{"method":"PUT","url":"Observation/t2"}}]}`)
	writeFile(t, filepath.Join(dir, "b", "collection.json"), `{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"Organization","id":"org1","name":"A"}},
		{"resource":{"resourceType":"Organization","id":"org2","name":"B"}}]}`)
	writeFile(t, filepath.Join(dir, "b", "single.json"), `{"resourceType":"Practitioner","id":"pr1"}`)
	writeFile(t, filepath.Join(dir, "c", "notes.txt"), `ignored: not a FHIR file name`)

	url := pgtest.NewDatabase(t)
	want := map[string]int{"Patient": 4, "Observation": 2, "Organization": 2, "Practitioner": 1}
	for run := 1; run <= 2; run++ {
		out, code := ember(t, noAudit, "import", dir, "--database-url", url)
		if code != 1 {
			t.Fatalf("run %d: exit %d, want 1 (two bad lines):\n%s", run, code, out)
		}
		for _, s := range []string{"imported 9 resources from 4 files", "2 errors",
			filepath.Join(dir, "a", "patients.ndjson") + ":3: ", "patients.ndjson:6: "} {
			if !strings.Contains(out, s) {
				t.Fatalf("run %d: output lacks %q:\n%s", run, s, out)
			}
		}
		if got := typeCounts(t, url); !maps.Equal(got, want) {
			t.Fatalf("run %d: stored %v, want %v", run, got, want)
		}
	}

	// A clean directory exits 0; a file named directly is read whatever its
	// name, as ndjson.
	writeFile(t, filepath.Join(dir, "d", "more.data"), `{"resourceType":"Patient"}`+"\n")
	out, code := ember(t, noAudit, "import", "--database-url", url, filepath.Join(dir, "d", "more.data"), filepath.Join(dir, "b"))
	if code != 0 || !strings.Contains(out, "imported 6 resources from 4 files") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	want["Patient"]++ // no id: created
	if got := typeCounts(t, url); !maps.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if _, code := ember(t, noAudit, "import", "--database-url", url, filepath.Join(dir, "nope")); code != 1 {
		t.Fatalf("missing path: exit %d", code)
	}
}

// TestExportImportRoundTrip: Synthea bundles imported (as transactions)
// into one database, exported with $export by `ember serve`, and the
// ndjson imported into an empty database give the same counts per type.
func TestExportImportRoundTrip(t *testing.T) {
	sdir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := synthea.Files(sdir)
	if err != nil {
		t.Fatal(err)
	}
	var pick []string
	n := 3
	for _, f := range files {
		if !synthea.IsPatientBundle(f) {
			pick = append(pick, f)
		} else if n > 0 {
			pick = append(pick, f)
			n--
		}
	}
	src := pgtest.NewDatabase(t)
	out, code := ember(t, noAudit, append([]string{"import", "--database-url", src}, pick...)...)
	if code != 0 {
		t.Fatalf("import Synthea: exit %d:\n%s", code, out)
	}
	want := typeCounts(t, src)

	addr := freeAddr(t)
	s := startServe(t, noAudit, addr, "--database-url", src, "--data-dir", filepath.Join(t.TempDir(), "data"), "--addr", addr)
	req, _ := http.NewRequest("GET", s.base+"/$export", nil)
	req.Header.Set("Prefer", "respond-async")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	status := resp.Header.Get("Content-Location")
	if resp.StatusCode != http.StatusAccepted || status == "" {
		t.Fatalf("kick-off: %d, Content-Location %q", resp.StatusCode, status)
	}
	var m struct {
		Output []struct {
			Type, URL string
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		code, body := httpDo(t, "GET", status, "")
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatal(err)
			}
			break
		}
		if code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("status: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	exportDir := t.TempDir()
	for _, o := range m.Output {
		resp, err := http.Get(o.URL)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(exportDir, filepath.Base(o.URL)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		f.Close()
	}

	dst := pgtest.NewDatabase(t)
	out, code = ember(t, noAudit, "import", "--database-url", dst, exportDir)
	if code != 0 {
		t.Fatalf("import export: exit %d:\n%s", code, out)
	}
	if got := typeCounts(t, dst); !maps.Equal(got, want) {
		t.Fatalf("round trip counts differ:\ngot  %v\nwant %v", got, want)
	}
}
