package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newExporter returns an Exporter without workers (tests drive the runner
// themselves) on a private database.
func newExporter(t *testing.T) (*Exporter, *store.Store) {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	if err := store.MigrateJobs(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	en, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir", Logger: quiet}, st)
	if err != nil {
		t.Fatal(err)
	}
	x, err := New(en, Config{Workers: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := en.Operation("export"); !ok {
		t.Fatal("New did not register $export with the engine")
	}
	return x, st
}

// TestExportResume interrupts an export between checkpoints, leaves junk
// past the checkpoint in its files (a partial write, a stray file), and
// checks the next run resumes to exactly one copy of every resource. It
// drives the runner directly, without River, to control the interruption.
func TestExportResume(t *testing.T) {
	ctx := context.Background()
	x, st := newExporter(t)
	const n = 300
	err := st.InTx(ctx, func(tx *store.Tx) error {
		for i := range n {
			for _, body := range []string{
				fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","gender":"female"}`, i),
				fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i),
			} {
				r, err := x.en.Parser().Parse([]byte(body), "")
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
	if err := x.jobs.EnqueueExport(ctx, store.ExportJob{ID: id, Request: "http://ember.test/fhir/$export", Params: []byte(`{"level":"system"}`)}); err != nil {
		t.Fatal(err)
	}
	if s, err := x.Status(ctx, engine.System, id); err != nil || s.State != Queued {
		t.Fatalf("status before any run: %+v %v", s, err)
	}

	// A second worker is turned away while the first holds the export.
	held, err := st.OpenExport(ctx, id, store.ExportSelection{})
	if err != nil {
		t.Fatal(err)
	}
	r := runner{x: x, fetch: 7, checkpointEvery: 0, fileLines: 100}
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
	if s, err := x.Status(ctx, engine.System, id); err != nil || s.State != Running || s.Exported != job.Exported {
		t.Fatalf("status of the interrupted export: %+v %v", s, err)
	}
	var cp checkpoint
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
	cp = checkpoint{}
	if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
		t.Fatal(err)
	}
	status, err := x.Status(ctx, engine.System, id)
	if err != nil || status.State != Completed || status.Manifest == nil || len(status.Manifest.Output) != len(cp.Files) {
		t.Fatalf("status of the completed export: %+v %v", status, err)
	}
	// Without authorisation the files need no token; with it, the
	// kick-off client's (the files are served under the same guard).
	if status.Manifest.RequiresAccessToken {
		t.Error("requiresAccessToken true without authorisation")
	}
	owner := x.en.Grant("owner-token", &access.Grant{Scopes: []string{"system/*.rs"}, Expiry: time.Now().Add(time.Hour)})
	if s, err := x.Status(ctx, owner, id); err != nil || s.Manifest == nil || !s.Manifest.RequiresAccessToken {
		t.Errorf("status with a token: %+v %v, want requiresAccessToken true", s, err)
	}
	seen := map[string]bool{}
	for i, o := range status.Manifest.Output {
		name, ok := strings.CutPrefix(o.URL, "http://ember.test/fhir"+FilePath+id+"/")
		if !ok || o.Type != cp.Files[i].Type || o.Count != cp.Files[i].Count {
			t.Fatalf("manifest output %+v, checkpoint %+v", o, cp.Files[i])
		}
		f, err := x.File(ctx, engine.System, id, name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Count > 100 {
			t.Errorf("%s has %d lines, more than the split size", f.Name, f.Count)
		}
		var content bytes.Buffer
		if err := x.ReadFile(ctx, f, 0, -1, func(b []byte) error { content.Write(b); return nil }); err != nil {
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
	// first file has several: parts are cut at every checkpoint).
	f0, err := x.File(ctx, engine.System, id, cp.Files[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Files[0].Parts < 2 {
		t.Fatalf("the first file has %d parts; the range test wants several", cp.Files[0].Parts)
	}
	var whole bytes.Buffer
	if err := x.ReadFile(ctx, f0, 0, -1, func(b []byte) error { whole.Write(b); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ offset, length int64 }{
		{f0.Size - 10, 10}, {5, -1}, {f0.Size / 3, f0.Size/3 + 1}, {0, f0.Size},
	} {
		var got bytes.Buffer
		if err := x.ReadFile(ctx, f0, tc.offset, tc.length, func(b []byte) error { got.Write(b); return nil }); err != nil {
			t.Fatal(err)
		}
		want := whole.Bytes()[tc.offset:]
		if tc.length >= 0 {
			want = want[:tc.length]
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("ReadFile(%d, %d): %d bytes, want %d", tc.offset, tc.length, got.Len(), len(want))
		}
	}
	for _, name := range []string{"nope.ndjson", "../" + f0.Name, ""} {
		if _, err := x.File(ctx, engine.System, id, name); !isKind(err, fhir.NotFound) {
			t.Errorf("File %q: %v, want not found", name, err)
		}
	}

	// An export whose stored parameters no longer parse fails at once,
	// and its status says so.
	bad := store.NewID()
	if err := x.jobs.EnqueueExport(ctx, store.ExportJob{ID: bad, Request: "x", Params: []byte(`{"level":"system","typeFilters":["Patient?nonsense=1"]}`)}); err != nil {
		t.Fatal(err)
	}
	if err := r.run(ctx, bad); err != nil {
		t.Fatalf("permanently failing export: %v", err)
	}
	if s, err := x.Status(ctx, engine.System, bad); err != nil || s.State != Failed || !strings.Contains(s.Error, "nonsense") {
		t.Fatalf("failed export status: %+v %v", s, err)
	}
	if _, err := x.File(ctx, engine.System, bad, "Patient-1.ndjson"); !isKind(err, fhir.NotFound) {
		t.Errorf("file of a failed export: %v, want not found", err)
	}
}

func isKind(err error, k fhir.Kind) bool {
	var fe *fhir.Error
	return errors.As(err, &fe) && fe.Kind == k
}

// TestExportSweep: exports that finished more than Retention ago lose
// their record and files; younger ones stay.
func TestExportSweep(t *testing.T) {
	ctx := context.Background()
	x, st := newExporter(t)
	finished := map[string]time.Duration{store.NewID(): 25 * time.Hour, store.NewID(): time.Hour}
	for id, age := range finished {
		if err := x.jobs.EnqueueExport(ctx, store.ExportJob{ID: id, Request: "http://ember.test/fhir/$export", Params: []byte(`{"level":"system"}`)}); err != nil {
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
	if err := x.sweep(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for id, age := range finished {
		_, err := st.ExportJob(ctx, id)
		var parts int
		if qerr := st.Pool().QueryRow(ctx, `SELECT count(*) FROM bulk_export_parts WHERE export_id = $1`, id).Scan(&parts); qerr != nil {
			t.Fatal(qerr)
		}
		expired := age > Retention
		if expired != errors.Is(err, store.ErrNotFound) || expired != (parts == 0) {
			t.Errorf("export finished %v ago: record err %v, %d parts", age, err, parts)
		}
	}
}

// TestKickoffOwnership: an export is its kicking-off client's: another
// client's status, file and cancel requests find nothing, as if it did
// not exist; a confined grant cannot start one; no caller is refused.
func TestKickoffOwnership(t *testing.T) {
	ctx := context.Background()
	x, _ := newExporter(t)
	grant := func(client string, scopes ...string) *engine.Caller {
		return x.en.Grant(client+"-token", &access.Grant{ClientID: client, Scopes: scopes, Expiry: time.Now().Add(time.Hour)})
	}
	a, b := grant("a", "system/*.rs"), grant("b", "system/*.rs")
	req := Request{Async: true, Params: url.Values{"_type": {"Patient"}}, URL: "http://ember.test/fhir/$export?_type=Patient"}

	if _, err := x.Kickoff(ctx, nil, req); err == nil {
		t.Error("a kick-off without a caller was accepted")
	}
	if _, err := x.Kickoff(ctx, grant("c", "patient/*.rs"), req); !isKind(err, fhir.Forbidden) {
		t.Errorf("a patient-confined kick-off: %v, want forbidden", err)
	}
	job, err := x.Kickoff(ctx, a, req)
	if err != nil {
		t.Fatal(err)
	}
	if job.StatusURL != "http://ember.test/fhir"+StatusPath+job.ID || !ValidID(job.ID) {
		t.Fatalf("job %+v", job)
	}
	for name, c := range map[string]*engine.Caller{"a": a, "system": engine.System} {
		if s, err := x.Status(ctx, c, job.ID); err != nil || s.State != Queued {
			t.Errorf("%s's status: %+v %v", name, s, err)
		}
	}
	if _, err := x.Status(ctx, b, job.ID); !isKind(err, fhir.NotFound) {
		t.Errorf("another client's status: %v, want not found", err)
	}
	if _, err := x.File(ctx, b, job.ID, "Patient-1.ndjson"); !isKind(err, fhir.NotFound) {
		t.Errorf("another client's file: %v, want not found", err)
	}
	if err := x.Cancel(ctx, b, job.ID); !isKind(err, fhir.NotFound) {
		t.Errorf("another client's cancel: %v, want not found", err)
	}
	if err := x.Cancel(ctx, a, job.ID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if _, err := x.Status(ctx, a, job.ID); !isKind(err, fhir.NotFound) {
		t.Errorf("status after cancel: %v, want not found", err)
	}
	if err := x.Cancel(ctx, a, job.ID); !isKind(err, fhir.NotFound) {
		t.Errorf("second cancel: %v, want not found", err)
	}
	if _, err := x.Status(ctx, a, "../../etc"); !isKind(err, fhir.NotFound) {
		t.Errorf("status of a malformed id: %v, want not found", err)
	}
}

// TestKickoffRequest: the checks a kick-off makes before it records a job,
// and the parameters it records.
func TestKickoffRequest(t *testing.T) {
	ctx := context.Background()
	x, st := newExporter(t)
	for _, tc := range []struct {
		name string
		req  Request
		kind fhir.Kind
	}{
		{"patient instance", Request{Type: "Patient", ID: "1", Async: true}, fhir.NotFound},
		{"group type", Request{Type: "Group", Async: true}, fhir.NotFound},
		{"synchronous", Request{}, fhir.BadRequest},
		{"unknown group", Request{Type: "Group", ID: "nope", Async: true}, fhir.NotFound},
		{"unknown parameter", Request{Async: true, Params: url.Values{"frobnicate": {"1"}}}, fhir.BadRequest},
		{"not a Parameters", Request{Async: true, Parameters: []byte(`{"resourceType":"Patient"}`)}, fhir.BadRequest},
		{"Parameters value", Request{Async: true, Parameters: []byte(`{"resourceType":"Parameters","parameter":[{"name":"_type","valueBoolean":true}]}`)}, fhir.BadRequest},
		{"compartment", Request{Type: "Patient", Async: true, Params: url.Values{"_type": {"Organization"}}}, fhir.BadRequest},
	} {
		if _, err := x.Kickoff(ctx, engine.System, tc.req); !isKind(err, tc.kind) {
			t.Errorf("%s: %v, want kind %v", tc.name, err, tc.kind)
		}
	}
	// A POST's Parameters add to the query; lenient ignores the unknown.
	job, err := x.Kickoff(ctx, engine.System, Request{Async: true, Lenient: true,
		Params:     url.Values{"_since": {"2024-01-02T03:04:05+01:00"}, "frobnicate": {"1"}},
		Parameters: []byte(`{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient,Observation"},{"name":"_typeFilter","valueString":"Observation?status=final,Observation?code=x,y"}]}`),
		URL:        "http://ember.test/fhir/$export"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.ExportJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	var p params
	if err := json.Unmarshal(rec.Params, &p); err != nil {
		t.Fatal(err)
	}
	want := params{Level: "system", Types: []string{"Observation", "Patient"}, TypeFilters: []string{"Observation?status=final", "Observation?code=x,y"}}
	if p.Level != want.Level || fmt.Sprint(p.Types) != fmt.Sprint(want.Types) || fmt.Sprint(p.TypeFilters) != fmt.Sprint(want.TypeFilters) ||
		p.Since == nil || !p.Since.Equal(time.Date(2024, 1, 2, 2, 4, 5, 0, time.UTC)) || rec.Request != "http://ember.test/fhir/$export" {
		t.Fatalf("recorded %+v (request %q)", p, rec.Request)
	}
}
