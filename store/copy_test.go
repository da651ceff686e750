package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/store"
)

// copyFixtures are resources with the index values COPY encodes itself:
// decimals with exponents and trailing zeros, ranges open at one end,
// composites with quantity and date halves.
var copyFixtures = []string{
	`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":1.50e2,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},"effectiveDateTime":"2021-03-04T05:06:07+02:00","component":[{"code":{"text":"a"},"valueQuantity":{"value":-0.0010}},{"code":{"coding":[{"code":"b"}]},"valueRange":{"low":{"value":3}}}]}`,
	`{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/x"},"prediction":[{"probabilityDecimal":1E-3},{"probabilityRange":{"high":{"value":0.25}}}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"t"},"valuePeriod":{"start":"2020"},"component":[{"code":{"text":"d"},"valueDateTime":"2020-02"}]}`,
}

// TestCopyCreateMatchesCreateMany stores every resource example of the R4
// package twice, once with CopyCreate and once with CreateMany (one
// statement per resource), and requires the same resource rows and index
// rows from both.
func TestCopyCreateMatchesCreateMany(t *testing.T) {
	ctx := context.Background()
	dir := testenv.FHIRPackage(t)
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	var resources []*fhir.Resource
	for _, f := range copyFixtures {
		r, err := p.Parse([]byte(f), "")
		if err != nil {
			t.Fatalf("fixture %s: %v", f, err)
		}
		resources = append(resources, r)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := p.Parse(b, ""); err == nil && r.Type() != "StructureDefinition" {
			resources = append(resources, r)
		}
	}
	if len(resources) < 2000 {
		t.Fatalf("only %d examples parsed", len(resources))
	}
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const batch = 250
	for lo := 0; lo < len(resources); lo += batch {
		hi := min(lo+batch, len(resources))
		var viaCopy, viaInsert []store.NewResource
		for i, r := range resources[lo:hi] {
			viaCopy = append(viaCopy, store.NewResource{Res: r, ID: fmt.Sprintf("c-%d", lo+i)})
			viaInsert = append(viaInsert, store.NewResource{Res: r, ID: fmt.Sprintf("i-%d", lo+i)})
		}
		err := st.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.CopyCreate(ctx, viaCopy); err != nil {
				return err
			}
			_, err := tx.CreateMany(ctx, viaInsert)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	rowsIn := compareSides(t, dbURL, "c", "i")
	if rowsIn < 20*len(resources) {
		t.Fatalf("only %d rows compared for %d resources", rowsIn, len(resources))
	}

	// An id that exists already fails the whole COPY with ErrExists.
	err = st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.CopyCreate(ctx, []store.NewResource{{Res: resources[0], ID: "new-1"}, {Res: resources[0], ID: "c-0"}})
		return err
	})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("CopyCreate over an existing id: %v, want ErrExists", err)
	}
}

// TestResourcesCompressWithLZ4: large resource JSON is compressed with LZ4
// (migration 00006) where the server has it.
func TestResourcesCompressWithLZ4(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SET default_toast_compression = lz4")
	testenv.Require(t, err, "a PostgreSQL server built with LZ4", "PostgreSQL 14+ built --with-lz4, as Debian's postgresql package is")
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Parse([]byte(`{"resourceType":"Basic","code":{"text":"`+strings.Repeat("compressible ", 1000)+`"}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	var method string
	if err := conn.QueryRow(ctx, `SELECT pg_column_compression(content) FROM resources WHERE type = 'Basic' AND id = $1`, v.ID).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != "lz4" {
		t.Fatalf("content compressed with %q, want lz4", method)
	}
}

// compareSides compares every row stored for resources whose ids start
// with prefix a+"-" with those for b+"-" (same suffix), in resources,
// resource_history and every index table, with rids, ids and timestamps
// taken out: the two must be the same multiset. It returns how many rows
// it compared.
func compareSides(t *testing.T, dbURL, a, b string) int {
	t.Helper()
	ctx := context.Background()
	version := `format('%s|%s|%s|%s|%s|%s', type, version, method, deleted,
		(content #- '{meta,lastUpdated}') - 'id'::text, regexp_replace(raw, '"(id|lastUpdated)":"[^"]*"', '', 'g'))`
	queries := map[string]string{
		"resources":        `SELECT id, ` + version + ` FROM resources`,
		"resource_history": `SELECT id, ` + version + ` FROM resource_history`,
	}
	for _, tbl := range []string{"idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_composite"} {
		queries[tbl] = `SELECT r.id, (i.*)::text FROM ` + tbl + ` i JOIN resources r USING (rid)`
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	rowsIn := 0
	for tbl, q := range queries {
		rows, err := db.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for rows.Next() {
			var id, row string
			if err := rows.Scan(&id, &row); err != nil {
				t.Fatal(err)
			}
			side, n, _ := strings.Cut(id, "-")
			if strings.HasPrefix(tbl, "idx_") {
				row = row[strings.IndexByte(row, ',')+1:] // drop rid
			}
			key := n + "|" + row
			switch side {
			case a:
				count[key]++
			case b:
				count[key]--
			default:
				continue
			}
			rowsIn++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		var diffs []string
		for k, v := range count {
			if v != 0 {
				diffs = append(diffs, fmt.Sprintf("%+d %s", v, k))
			}
		}
		if len(diffs) > 0 {
			if len(diffs) > 10 {
				diffs = diffs[:10]
			}
			t.Errorf("%s: rows differ (+ only %s-, - only %s-):\n%s", tbl, a, b, strings.Join(diffs, "\n"))
		}
	}
	return rowsIn
}

// TestUpdateManyMatchesUpdate updates resources twice over, once with
// UpdateMany and once with Update one by one, and requires the same
// current rows, history rows and index rows from both.
func TestUpdateManyMatchesUpdate(t *testing.T) {
	ctx := context.Background()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	parse := func(body string) *fhir.Resource {
		t.Helper()
		r, err := p.Parse([]byte(body), "")
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return r
	}
	// Each resource is created from the first body, then updated to the
	// second and the third: index rows come, change and go.
	versions := [][3]string{
		{`{"resourceType":"Patient","name":[{"family":"Old"}],"gender":"male"}`,
			`{"resourceType":"Patient","name":[{"family":"New","given":["A"]}],"birthDate":"2001-02"}`,
			`{"resourceType":"Patient","active":true}`},
		{copyFixtures[0], `{"resourceType":"Observation","status":"amended","code":{"text":"t"},"valueQuantity":{"value":1e-2}}`, copyFixtures[0]},
		{`{"resourceType":"Organization","name":"A"}`, `{"resourceType":"Organization","name":"A"}`, `{"resourceType":"Organization","name":"B","identifier":[{"system":"s","value":"v"}]}`},
	}
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const copies = 50 // enough rows for a real batch
	for step := range 3 {
		var many []store.NewResource
		err := st.InTx(ctx, func(tx *store.Tx) error {
			for c := range copies {
				for i, v := range versions {
					r := parse(v[step])
					id := fmt.Sprintf("%d.%d", i, c)
					if step == 0 {
						if _, err := tx.CreateAs(ctx, r, "u-"+id); err != nil {
							return err
						}
						if _, err := tx.CreateAs(ctx, r, "m-"+id); err != nil {
							return err
						}
						continue
					}
					if _, _, err := tx.Update(ctx, r, "u-"+id, 0); err != nil {
						return err
					}
					many = append(many, store.NewResource{Res: r, ID: "m-" + id})
				}
			}
			if len(many) == 0 {
				return nil
			}
			vs, created, err := tx.UpdateMany(ctx, many)
			if err != nil {
				return err
			}
			for i, v := range vs {
				if v.VersionID != int64(step+1) || v.Method != store.MethodUpdate || created[i] {
					return fmt.Errorf("%s/%s: version %d method %c created %v", v.Type, v.ID, v.VersionID, v.Method, created[i])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	// A deleted resource is re-created, and says so.
	err = st.InTx(ctx, func(tx *store.Tx) error {
		for _, id := range []string{"u-0.0", "m-0.0"} {
			if _, _, err := tx.Delete(ctx, "Patient", id, 0); err != nil {
				return err
			}
		}
		if _, created, err := tx.Update(ctx, parse(versions[0][1]), "u-0.0", 0); err != nil || !created {
			return fmt.Errorf("Update after delete: created %v, %v", created, err)
		}
		_, created, err := tx.UpdateMany(ctx, []store.NewResource{{Res: parse(versions[0][1]), ID: "m-0.0"}, {Res: parse(versions[0][1]), ID: "m-0.1"}})
		if err != nil || !created[0] || created[1] {
			return fmt.Errorf("UpdateMany after delete: created %v, %v", created, err)
		}
		_, _, err = tx.Update(ctx, parse(versions[0][1]), "u-0.1", 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := compareSides(t, dbURL, "m", "u"); n < 10*copies*len(versions) {
		t.Fatalf("only %d rows compared", n)
	}
	// A key with no row fails the whole call.
	err = st.InTx(ctx, func(tx *store.Tx) error {
		_, _, err := tx.UpdateMany(ctx, []store.NewResource{{Res: parse(versions[0][0]), ID: "m-0.0"}, {Res: parse(versions[0][0]), ID: "nobody"}})
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateMany of a missing resource: %v, want ErrNotFound", err)
	}
}

// TestSavepointUndoesFailedCopy: a COPY that meets an existing id inside a
// savepoint fails with ErrExists, leaves nothing behind, and the
// transaction goes on to commit other writes.
func TestSavepointUndoesFailedCopy(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Parse([]byte(`{"resourceType":"Patient","gender":"other"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Update(ctx, r, "taken", 0); err != nil {
		t.Fatal(err)
	}
	err = st.InTx(ctx, func(tx *store.Tx) error {
		err := tx.Savepoint(ctx, func(sp *store.Tx) error {
			_, err := sp.CopyCreate(ctx, []store.NewResource{{Res: r, ID: "free", Method: store.MethodUpdate}, {Res: r, ID: "taken"}})
			return err
		})
		if !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("COPY over a taken id: %v, want ErrExists", err)
		}
		_, err = tx.CopyCreate(ctx, []store.NewResource{{Res: r, ID: "free", Method: store.MethodUpdate}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Read(ctx, "Patient", "free")
	if err != nil || v.VersionID != 1 || v.Method != store.MethodUpdate {
		t.Fatalf("free: %+v %v, want version 1 written by an update", v, err)
	}
}
