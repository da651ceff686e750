package store_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestReindexRestoresSearch(t *testing.T) {
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
	const n = 1203 // more than two reindex batches
	for i := 0; i < n; i++ {
		r, err := p.Parse([]byte(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","name":[{"family":"Fam%d"}],"gender":"other"}`, i, i%7)), "Patient")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Update(ctx, r, r.ID(), 0); err != nil {
			t.Fatal(err)
		}
	}
	q, err := search.Parse("Patient", url.Values{"family": {"fam3"}, "gender": {"other"}, "_total": {"accurate"}}, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	total := func() int {
		res, err := st.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return res.Total
	}
	want := total()
	if want != 172 { // i%7 == 3 for i < 1203
		t.Fatalf("before: %d matches, want 172", want)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "TRUNCATE idx_string, idx_token"); err != nil {
		t.Fatal(err)
	}
	if got := total(); got != 0 {
		t.Fatalf("after wiping the index: %d matches, want 0", got)
	}
	var calls int
	done, err := st.Reindex(ctx, func(int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if done != n || calls != 3 {
		t.Fatalf("reindexed %d in %d batches, want %d in 3", done, calls, n)
	}
	if got := total(); got != want {
		t.Fatalf("after reindex: %d matches, want %d", got, want)
	}
}
