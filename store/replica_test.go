package store_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

// TestReplicaReads runs a store with a read replica against a real
// streaming standby: reads go to the standby (seen by pausing its replay:
// another writer's row stays invisible), a write of this store is read
// back at once however far the standby lags (read-your-writes), and with
// the standby stopped every read still succeeds, on the primary.
func TestReplicaReads(t *testing.T) {
	ctx := context.Background()
	rep := pgtest.NewReplica(t)
	st, err := store.Open(ctx, rep.Primary.URL(), store.Options{ReadURL: rep.Standby.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Another Ember process: its writes are not this store's to wait for.
	other, err := store.Open(ctx, rep.Primary.URL(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	standby, err := pgx.Connect(ctx, rep.Standby.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close(ctx)
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	put := func(s *store.Store, id string) {
		t.Helper()
		r, err := p.Parse([]byte(`{"resourceType":"Patient","id":"`+id+`","gender":"other"}`), "Patient")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Update(ctx, r, id, 0); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := standby.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	found := func(id string) bool {
		t.Helper()
		_, err := st.Read(ctx, "Patient", id)
		if errors.Is(err, store.ErrNotFound) {
			return false
		}
		if err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		q, err := search.Parse("Patient", url.Values{"_id": {id}, "_total": {"accurate"}}, search.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := st.Search(ctx, q)
		if err != nil {
			t.Fatalf("search %s: %v", id, err)
		}
		_, herr := st.History(ctx, store.HistoryQuery{Type: "Patient", ID: id})
		if herr != nil && !errors.Is(herr, store.ErrNotFound) {
			t.Fatalf("history %s: %v", id, herr)
		}
		if (res.Total == 1) != (herr == nil) {
			t.Fatalf("%s: read found it, search total %d, history err %v: the reads disagree", id, res.Total, herr)
		}
		if res.Total != 1 {
			t.Fatalf("%s: read found it, search total %d", id, res.Total)
		}
		return true
	}
	caughtUp := func() {
		t.Helper()
		var want string
		if err := other.Pool().QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&want); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			var ok bool
			if err := standby.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", want).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("standby did not catch up in 30 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Reads go to the standby: with its replay paused, another process's
	// write is not seen through st, yet is on the primary.
	exec("SELECT pg_wal_replay_pause()")
	put(other, "theirs")
	if found("theirs") {
		t.Fatal("a write replay has not reached was read: reads do not go to the replica")
	}
	if _, err := st.Read(store.FromPrimary(ctx), "Patient", "theirs"); err != nil {
		t.Fatalf("read from the primary: %v", err)
	}

	// Read-your-writes: the standby still paused, st's own write is read at
	// once (from the primary, after a bounded wait).
	put(st, "mine")
	began := time.Now()
	if !found("mine") {
		t.Fatal("read-your-writes: this store's write was not read back")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("read-your-writes fallback took %v", d)
	}

	// Once the standby has replayed st's writes, reads go back to it.
	exec("SELECT pg_wal_replay_resume()")
	caughtUp()
	if !found("mine") || !found("theirs") {
		t.Fatal("after catching up the standby misses writes")
	}
	exec("SELECT pg_wal_replay_pause()")
	put(other, "theirs2")
	if found("theirs2") {
		t.Fatal("after catching up, reads did not go back to the replica")
	}
	exec("SELECT pg_wal_replay_resume()")

	// The standby stopped: reads still succeed, on the primary.
	standby.Close(ctx)
	rep.Standby.Stop(t)
	for _, id := range []string{"mine", "theirs", "theirs2"} {
		if !found(id) {
			t.Fatalf("standby stopped: %s not read from the primary", id)
		}
	}
	put(st, "after")
	if !found("after") {
		t.Fatal("standby stopped: a new write was not read back")
	}
}
