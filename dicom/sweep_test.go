package dicom_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestSweepOrphans: blobs no instance names are deleted once old enough;
// young ones (an ingest may still be committing) and every referenced blob
// stay.
func TestSweepOrphans(t *testing.T) {
	e := newEnv(t, time.Millisecond)
	ctx := t.Context()
	for i, sop := range []string{"1.2.3.4.1", "1.2.3.4.2"} {
		e.store1(t, fake{study: "1.2.3", series: "1.2.3.4", sop: sop, patientID: "P1", patientName: "Doe^Jane", modality: "CT", number: i + 1})
	}
	referenced, err := e.svc.Blobs().Keys(ctx)
	if err != nil || len(referenced) != 2 {
		t.Fatalf("keys after two instances: %v %v", referenced, err)
	}
	for _, name := range []string{"zz/orphan-old", "zz/orphan-new"} {
		if err := os.MkdirAll(filepath.Join(e.dir, "zz"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte("DICM"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Everything but orphan-new is two hours old.
	old := time.Now().Add(-2 * time.Hour)
	for _, k := range append(slices.Clone(referenced), "zz/orphan-old") {
		if err := os.Chtimes(filepath.Join(e.dir, k), old, old); err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.svc.SweepOrphans(ctx, time.Now(), time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want 1", n, err)
	}
	left, err := e.svc.Blobs().Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(referenced), "zz/orphan-new")
	slices.Sort(want)
	slices.Sort(left)
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	// Once old enough, the young orphan goes too; a second sweep finds
	// nothing more.
	if n, err := e.svc.SweepOrphans(ctx, time.Now().Add(2*time.Hour), time.Hour); err != nil || n != 1 {
		t.Fatalf("later sweep: %d %v", n, err)
	}
	if n, err := e.svc.SweepOrphans(ctx, time.Now().Add(2*time.Hour), time.Hour); err != nil || n != 0 {
		t.Fatalf("third sweep: %d %v", n, err)
	}
}
