package subdb_test

import (
	"context"
	"testing"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/subdb"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func changes(t *testing.T, st *store.Store) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM resource_changes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChangeLogWrittenAndDropped: every write path appends to the change
// log in its transaction (single, batch and COPY forms); DropUnwatched
// empties it only while no subscription is active.
func TestChangeLogWrittenAndDropped(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	res := func(body string) *fhir.Resource {
		r, err := p.Parse([]byte(body), "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	v, err := st.Create(ctx, res(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Update(ctx, res(`{"resourceType":"Patient","id":"`+v.ID+`","active":true}`), v.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Delete(ctx, "Patient", v.ID, 0); err != nil {
		t.Fatal(err)
	}
	err = st.InTx(ctx, func(tx *store.Tx) error {
		items := []store.NewResource{{Res: res(`{"resourceType":"Patient"}`), ID: "c1"}, {Res: res(`{"resourceType":"Patient"}`), ID: "c2"}}
		if _, err := tx.CopyCreate(ctx, items); err != nil {
			return err
		}
		_, _, err := tx.UpdateMany(ctx, items)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A rolled-back write leaves nothing behind.
	_ = st.InTx(ctx, func(tx *store.Tx) error {
		_, _ = tx.Create(ctx, res(`{"resourceType":"Patient"}`))
		return context.Canceled
	})
	if n := changes(t, st); n != 7 {
		t.Fatalf("change log has %d rows, want 7 (create, update, delete, 2 copies, 2 batch updates)", n)
	}
	db := subdb.New(st)
	if _, err := st.Pool().Exec(ctx, `INSERT INTO subscriptions (id, version, status, channel, config) VALUES ('s1', 1, 'active', 'rest-hook', '{}')`); err != nil {
		t.Fatal(err)
	}
	if n, err := db.DropUnwatched(ctx); err != nil || n != 0 {
		t.Fatalf("with an active subscription DropUnwatched dropped %d (%v), want 0", n, err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE subscriptions SET status = 'off'`); err != nil {
		t.Fatal(err)
	}
	if n, err := db.DropUnwatched(ctx); err != nil || n != 7 {
		t.Fatalf("DropUnwatched dropped %d (%v), want 7", n, err)
	}
}
