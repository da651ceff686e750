package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

// TestExportResume interrupts an export between checkpoints, leaves junk
// past the checkpoint in its files (a partial write, a stray file), and
// checks the next run resumes to exactly one copy of every resource. It
// drives the runner directly, without River, to control the interruption.
func TestExportResume(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	if err := store.MigrateJobs(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Config{BaseURL: "http://ember.test/fhir", BulkExport: true, ExportWorkers: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	err = st.InTx(ctx, func(tx *store.Tx) error {
		for i := range n {
			for _, body := range []string{
				fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","gender":"female"}`, i),
				fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i),
			} {
				r, err := s.parser.Parse([]byte(body), "")
				if err != nil {
					return err
				}
				if _, _, err := tx.Update(ctx, r, r.ID(), 0); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	id := store.NewID()
	if err := s.jobs.EnqueueExport(ctx, store.ExportJob{ID: id, Request: "http://ember.test/fhir/$export", Params: []byte(`{"level":"system"}`)}); err != nil {
		t.Fatal(err)
	}

	// A second worker is turned away while the first holds the export.
	held, err := st.OpenExport(ctx, id, store.ExportSelection{})
	if err != nil {
		t.Fatal(err)
	}
	r := exportRunner{s: s, fetch: 7, checkpointEvery: 0, fileLines: 100}
	if err := r.run(ctx, id); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("run while locked: %v, want ErrBusy", err)
	}
	held.Close(ctx)

	// Interrupt after some checkpoints.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.checkpointed = func(exported int64) {
		if exported >= 100 {
			cancel()
		}
	}
	if err := r.run(runCtx, id); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	job, err := st.ExportJob(ctx, id)
	if err != nil || job.Status != store.ExportRunning || job.Exported < 100 || job.Exported >= 2*n {
		t.Fatalf("after interruption: %+v %v", job, err)
	}
	var cp exportCheckpoint
	if err := json.Unmarshal(job.Checkpoint, &cp); err != nil || len(cp.Files) == 0 {
		t.Fatalf("checkpoint %s: %v", job.Checkpoint, err)
	}
	// What the interrupted run stored after its checkpoint: a part of its
	// last file and a part of a file the checkpoint does not know.
	last := len(cp.Files) - 1
	if err := st.AppendExportPart(ctx, id, last, cp.Files[last].Parts, []byte(`{"resourceType":"Patient","id":"after-checkpoint"}`+"\n")); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendExportPart(ctx, id, len(cp.Files)+3, 0, []byte("{}\n")); err != nil {
		t.Fatal(err)
	}

	r.fetch, r.checkpointEvery = 1000, time.Hour
	// The interrupted run's connection may take a moment to end on the
	// server side, releasing the export's lock; River would snooze.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := r.run(ctx, id)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("resumed run: %v", err)
		}
	}
	job, err = st.ExportJob(ctx, id)
	if err != nil || job.Status != store.ExportCompleted || job.Exported != 2*n {
		t.Fatalf("after resume: %+v %v", job, err)
	}
	cp = exportCheckpoint{}
	if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range cp.Files {
		if f.Count > 100 {
			t.Errorf("%s has %d lines, more than the split size", f.Name, f.Count)
		}
		var content bytes.Buffer
		if err := st.ExportFileRange(ctx, id, slices.Index(cp.Files, f), 0, -1, func(b []byte) error { content.Write(b); return nil }); err != nil {
			t.Fatal(err)
		}
		if int64(content.Len()) != f.Size {
			t.Fatalf("%s: %d bytes stored, checkpoint says %d", f.Name, content.Len(), f.Size)
		}
		sc := bufio.NewScanner(&content)
		lines := int64(0)
		for sc.Scan() {
			var res struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
				t.Fatalf("%s line %d: %v", f.Name, lines+1, err)
			}
			key := res.ResourceType + "/" + res.ID
			if seen[key] || res.ResourceType != f.Type {
				t.Fatalf("%s: %s duplicated or misfiled", f.Name, key)
			}
			seen[key] = true
			lines++
		}
		if lines != f.Count {
			t.Fatalf("%s: %d lines, checkpoint says %d", f.Name, lines, f.Count)
		}
	}
	if len(seen) != 2*n {
		t.Fatalf("%d resources exported, want %d", len(seen), 2*n)
	}
	var stray int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM bulk_export_parts WHERE export_id = $1 AND file >= $2`, id, len(cp.Files)).Scan(&stray); err != nil || stray != 0 {
		t.Fatalf("%d parts of files the checkpoint does not list kept (%v)", stray, err)
	}

	// Byte ranges of a file: its last 10 bytes, a span across parts (the
	// first file has several: parts are cut at every checkpoint), a start
	// past the end.
	f0 := cp.Files[0]
	var whole bytes.Buffer
	if err := st.ExportFileRange(ctx, id, 0, 0, -1, func(b []byte) error { whole.Write(b); return nil }); err != nil {
		t.Fatal(err)
	}
	fileURL := "/fhir/$export-file/" + id + "/" + f0.Name
	for _, tc := range []struct {
		rng    string
		status int
		body   []byte
	}{
		{"bytes=-10", http.StatusPartialContent, whole.Bytes()[f0.Size-10:]},
		{"bytes=5-", http.StatusPartialContent, whole.Bytes()[5:]},
		{fmt.Sprintf("bytes=%d-%d", f0.Size/3, 2*f0.Size/3), http.StatusPartialContent, whole.Bytes()[f0.Size/3 : 2*f0.Size/3+1]},
		{fmt.Sprintf("bytes=0-%d", f0.Size+100), http.StatusPartialContent, whole.Bytes()},
		{"bytes=0-1,5-6", http.StatusOK, whole.Bytes()},
		{"lines=1-2", http.StatusOK, whole.Bytes()},
		{fmt.Sprintf("bytes=%d-", f0.Size), http.StatusRequestedRangeNotSatisfiable, nil},
	} {
		req := httptest.NewRequest("GET", fileURL, nil)
		req.Header.Set("Range", tc.rng)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.status || tc.body != nil && !bytes.Equal(rec.Body.Bytes(), tc.body) {
			t.Errorf("Range %s: %d, %d bytes; want %d, %d bytes", tc.rng, rec.Code, rec.Body.Len(), tc.status, len(tc.body))
		}
		if tc.body != nil && rec.Header().Get("Content-Length") != strconv.Itoa(len(tc.body)) {
			t.Errorf("Range %s: Content-Length %s, want %d", tc.rng, rec.Header().Get("Content-Length"), len(tc.body))
		}
	}
	if f0.Parts < 2 {
		t.Fatalf("the first file has %d parts; the range test wants several", f0.Parts)
	}

	// An export whose stored parameters no longer parse fails at once,
	// and its status says so.
	bad := store.NewID()
	if err := s.jobs.EnqueueExport(ctx, store.ExportJob{ID: bad, Request: "x", Params: []byte(`{"level":"system","typeFilters":["Patient?nonsense=1"]}`)}); err != nil {
		t.Fatal(err)
	}
	if err := r.run(ctx, bad); err != nil {
		t.Fatalf("permanently failing export: %v", err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/fhir/$export-status/"+bad, nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "nonsense") {
		t.Fatalf("failed export status: %d %s", rec.Code, rec.Body)
	}

}

// TestExportSweep: exports that finished more than exportRetention ago lose
// their record and files; younger ones stay.
func TestExportSweep(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	if err := store.MigrateJobs(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Config{BaseURL: "http://ember.test/fhir", BulkExport: true, ExportWorkers: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	finished := map[string]time.Duration{store.NewID(): 25 * time.Hour, store.NewID(): time.Hour}
	for id, age := range finished {
		if err := s.jobs.EnqueueExport(ctx, store.ExportJob{ID: id, Request: "http://ember.test/fhir/$export", Params: []byte(`{"level":"system"}`)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Pool().Exec(ctx, `UPDATE bulk_exports SET status = 'completed', finished_at = now() - $2::interval WHERE id = $1`,
			id, fmt.Sprintf("%d seconds", int(age.Seconds()))); err != nil {
			t.Fatal(err)
		}
		if err := st.AppendExportPart(ctx, id, 0, 0, []byte("{}\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.sweepExports(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for id, age := range finished {
		_, err := st.ExportJob(ctx, id)
		var parts int
		if qerr := st.Pool().QueryRow(ctx, `SELECT count(*) FROM bulk_export_parts WHERE export_id = $1`, id).Scan(&parts); qerr != nil {
			t.Fatal(qerr)
		}
		expired := age > exportRetention
		if expired != errors.Is(err, store.ErrNotFound) || expired != (parts == 0) {
			t.Errorf("export finished %v ago: record err %v, %d parts", age, err, parts)
		}
	}
}
