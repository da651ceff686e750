package main_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberfhir/ember/internal/pgtest"
)

// ember import refuses a Period.stop by default; --lenient drops it and
// lists each drop, with its expression, in the summary.
func TestImportLenient(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "enc.ndjson"), strings.Join([]string{
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"period":{"start":"2020-01-01","stop":"2020-01-02"}}`,
		`{"resourceType":"Patient","id":"p1","gender":"female"}`,
	}, "\n")+"\n")
	writeFile(t, filepath.Join(dir, "tx.json"), `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Device","id":"d1","udiCarrier":[{"carrierAIDC":"QUJD\r\nREVG"}],"colour":"red"},"request":{"method":"PUT","url":"Device/d1"}}]}`)
	url := pgtest.NewDatabase(t)
	out, code := ember(t, nil, "import", dir, "--database-url", url)
	if code != 1 || !strings.Contains(out, "Encounter.period") || !strings.Contains(out, "2 errors") {
		t.Fatalf("strict import: exit %d:\n%s", code, out)
	}
	out, code = ember(t, nil, "import", "--lenient", dir, "--database-url", url)
	if code != 0 {
		t.Fatalf("lenient import: exit %d:\n%s", code, out)
	}
	for _, s := range []string{"imported 3 resources", "lenient: dropped 2 unknown elements",
		"enc.ndjson:1: unknown element \"stop\" dropped (lenient handling) at Encounter.period.stop",
		"tx.json: entry 0: unknown element \"colour\" dropped (lenient handling) at Device.colour"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if got := typeCounts(t, url); got["Encounter"] != 1 || got["Device"] != 1 {
		t.Errorf("stored %v", got)
	}
}
