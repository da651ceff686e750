package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/emberfhir/ember/store"
)

// Export tuning. A fetch is one round trip of rows held in memory at once;
// a file is split so no single download gets unwieldy; the checkpoint
// interval bounds the work a restarted export repeats.
const (
	exportFetch        = 1000
	exportFileLines    = 100_000
	exportCheckpointAt = time.Second
)

// checkpoint is an export's resumable state: every resource with a rid up
// to After is in Files, whose part counts say where each file ends. It is
// stored with the job as JSON.
type checkpoint struct {
	After int64        `json:"after"`
	Files []outputFile `json:"files"`
}

// outputFile is one output file. Files of a type are numbered from 1; only
// a type's last file is still being appended to. Count, Size and Parts
// describe what is stored as of the checkpoint.
type outputFile struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Count int64  `json:"count"`
	Size  int64  `json:"size"`
	Parts int    `json:"parts"` // stored parts (bulk_export_parts), in order
}

// runner runs export jobs for the store's River worker.
type runner struct {
	x               *Exporter
	fetch           int           // rows per cursor fetch
	checkpointEvery time.Duration // 0: after every fetch
	fileLines       int64         // resources per file
	// checkpointed, when set, is called after each checkpoint (tests
	// interrupt a run there).
	checkpointed func(exported int64)
}

func newRunner(x *Exporter) runner {
	return runner{x: x, fetch: exportFetch, checkpointEvery: exportCheckpointAt, fileLines: exportFileLines}
}

// RunExport runs or resumes one export (see store.ExportRunner).
func (r runner) RunExport(ctx context.Context, id string, finalAttempt bool) error {
	x := r.x
	err := r.run(ctx, id)
	if err != nil && !errors.Is(err, store.ErrBusy) && ctx.Err() == nil {
		x.log.Error("export failed", "export", id, "final", finalAttempt, "err", err)
		if finalAttempt {
			if ferr := x.st.FailExport(context.WithoutCancel(ctx), id, err.Error()); ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
				x.log.Error("recording export failure", "export", id, "err", ferr)
			}
		}
	}
	return err
}

// errExportGone: the export's record disappeared under a running worker
// (DELETE on its status URL); the worker has removed the files and stops.
var errExportGone = errors.New("export cancelled")

func (r runner) run(ctx context.Context, id string) error {
	err := r.runOnce(ctx, id)
	if errors.Is(err, errExportGone) {
		return nil
	}
	return err
}

func (r runner) runOnce(ctx context.Context, id string) error {
	x := r.x
	job, err := x.st.ExportJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // cancelled before it ran
	}
	if err != nil {
		return err
	}
	if job.Status != store.ExportAccepted && job.Status != store.ExportRunning {
		return nil // a duplicate run of a finished export
	}
	var p params
	if err := json.Unmarshal(job.Params, &p); err != nil {
		return x.failNow(ctx, id, fmt.Errorf("export parameters: %w", err))
	}
	sel, err := x.selection(&p)
	if err != nil {
		return x.failNow(ctx, id, fmt.Errorf("export parameters: %w", err))
	}
	// The lock comes before touching any file: a rescued duplicate must
	// not truncate the files of a run that is still alive.
	rd, err := x.st.OpenExport(ctx, id, sel)
	if err != nil {
		return err
	}
	defer rd.Close(ctx)
	// Under the lock the checkpoint cannot move: read it again.
	if job, err = x.st.StartExport(ctx, id, rd.TransactionTime()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil // cancelled meanwhile: its parts went with it
		}
		return err
	}
	var cp checkpoint
	if job.Checkpoint != nil {
		if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
			cp = checkpoint{}
		}
	}
	w, err := resumeWriter(ctx, x.st, id, &cp, r.fileLines)
	if err != nil {
		return exportGone(err)
	}
	if err := rd.Scan(ctx, cp.After); err != nil {
		return err
	}
	exported := job.Exported
	if cp.After == 0 {
		exported = 0
	}
	last := time.Now()
	for {
		rows, err := rd.Next(ctx, r.fetch)
		if err != nil {
			return err
		}
		for _, row := range rows {
			if err := w.write(ctx, row.Type, row.Content); err != nil {
				return exportGone(err)
			}
			cp.After = row.RID
		}
		exported += int64(len(rows))
		if len(rows) == 0 {
			break
		}
		if time.Since(last) >= r.checkpointEvery {
			last = time.Now()
			if err := w.flush(ctx); err != nil {
				return exportGone(err)
			}
			cp.Files = w.files
			if err := x.checkpoint(ctx, id, exported, &cp, x.st.CheckpointExport); err != nil {
				return err
			}
			if r.checkpointed != nil {
				r.checkpointed(exported)
			}
		}
	}
	// Stored before it is announced: the manifest lists these files.
	if err := w.flush(ctx); err != nil {
		return exportGone(err)
	}
	cp.Files = w.files
	return x.checkpoint(ctx, id, exported, &cp, x.st.FinishExport)
}

// checkpoint records cp with save; an export that disappeared meanwhile
// was cancelled: its files go and errExportGone stops the run.
func (x *Exporter) checkpoint(ctx context.Context, id string, exported int64, cp *checkpoint,
	save func(context.Context, string, int64, []byte) error) error {
	raw, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := save(ctx, id, exported, raw); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errExportGone
		}
		return err
	}
	return nil
}

// failNow records export id as failed with err, which no retry can mend.
func (x *Exporter) failNow(ctx context.Context, id string, err error) error {
	if ferr := x.st.FailExport(ctx, id, err.Error()); ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
		return ferr
	}
	return nil // recorded; retrying cannot help
}

// exportGone turns the store's ErrNotFound for a part of a deleted export
// into errExportGone: the export was cancelled under the worker.
func exportGone(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errExportGone
	}
	return err
}

// exportPartSize is about how much of a file is buffered before it is
// stored as a part; a checkpoint stores whatever is buffered.
const exportPartSize = 1 << 20

// writer appends resources to per-type ndjson files stored in parts.
type writer struct {
	st       *store.Store
	id       string
	maxLines int64
	files    []outputFile         // in creation order, as the manifest lists them
	open     map[string]*openFile // by type: its last file
}

type openFile struct {
	i   int          // index into files
	buf bytes.Buffer // whole lines not stored yet
}

// resumeWriter prepares the export's stored parts for cp: parts
// written after the checkpoint by an interrupted run are dropped, and each
// type's last file is appended to. Without a checkpoint (or with one from
// before parts were stored in the database) the export starts over and cp
// is reset.
func resumeWriter(ctx context.Context, st *store.Store, id string, cp *checkpoint, maxLines int64) (*writer, error) {
	w := &writer{st: st, id: id, maxLines: maxLines, open: map[string]*openFile{}}
	for _, f := range cp.Files {
		if f.Size > 0 && f.Parts == 0 {
			*cp = checkpoint{} // written as local files by an earlier version
			break
		}
	}
	if cp.After == 0 {
		*cp = checkpoint{}
	}
	parts := make([]int32, len(cp.Files))
	for i, f := range cp.Files {
		parts[i] = int32(f.Parts)
	}
	if err := st.TrimExportParts(ctx, id, parts); err != nil {
		return nil, err
	}
	w.files = append([]outputFile(nil), cp.Files...)
	for i, f := range w.files {
		w.open[f.Type] = &openFile{i: i} // the last file of each type wins
	}
	return w, nil
}

// write appends one resource as one line. Stored JSON is single-line
// except a verbatim copy of a pretty-printed body, which is compacted.
func (w *writer) write(ctx context.Context, typ string, content []byte) error {
	o := w.open[typ]
	if o == nil || w.files[o.i].Count >= w.maxLines {
		if err := w.next(ctx, typ); err != nil {
			return err
		}
		o = w.open[typ]
	}
	if bytes.IndexByte(content, '\n') >= 0 || bytes.IndexByte(content, '\r') >= 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, content); err != nil {
			return fmt.Errorf("export: %s: stored JSON: %w", typ, err)
		}
		content = buf.Bytes()
	}
	o.buf.Write(content)
	o.buf.WriteByte('\n')
	f := &w.files[o.i]
	f.Count++
	f.Size += int64(len(content)) + 1
	if o.buf.Len() >= exportPartSize {
		return w.storePart(ctx, o)
	}
	return nil
}

// next starts typ's next file, storing the rest of its current one.
func (w *writer) next(ctx context.Context, typ string) error {
	if o := w.open[typ]; o != nil {
		if err := w.storePart(ctx, o); err != nil {
			return err
		}
	}
	n := 1
	for _, f := range w.files {
		if f.Type == typ {
			n++
		}
	}
	w.files = append(w.files, outputFile{Type: typ, Name: fmt.Sprintf("%s-%d.ndjson", typ, n)})
	w.open[typ] = &openFile{i: len(w.files) - 1}
	return nil
}

// storePart stores o's buffered lines as its file's next part.
func (w *writer) storePart(ctx context.Context, o *openFile) error {
	if o.buf.Len() == 0 {
		return nil
	}
	f := &w.files[o.i]
	if err := w.st.AppendExportPart(ctx, w.id, o.i, f.Parts, o.buf.Bytes()); err != nil {
		return err
	}
	f.Parts++
	o.buf.Reset()
	return nil
}

// flush stores every buffered line, so the files hold all that was written.
func (w *writer) flush(ctx context.Context) error {
	for _, o := range w.open {
		if err := w.storePart(ctx, o); err != nil {
			return err
		}
	}
	return nil
}
