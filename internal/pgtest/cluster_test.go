package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestClusterStopStart: a dedicated cluster keeps its URL and its data
// across a stop and a start, and refuses connections while stopped.
func TestClusterStopStart(t *testing.T) {
	c := NewCluster(t)
	conn := connect(t, c.URL())
	if !tableExists(t, conn, "resources") {
		t.Fatal("the cluster's database lacks the Ember schema")
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (x int)"); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if down, err := pgx.Connect(ctx, c.URL()); err == nil {
		down.Close(context.Background())
		t.Fatal("connected to a stopped cluster")
	}
	c.Start(t)
	if !tableExists(t, connect(t, c.URL()), "kept") {
		t.Fatal("the table made before the restart is gone")
	}
}
