package server

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

// exportCheckpoint is an export's resumable state: every resource with a
// rid up to After is in Files, whose part counts say where each file ends.
type exportCheckpoint struct {
	After int64        `json:"after"`
	Files []exportFile `json:"files"`
}

// exportFile is one output file. Files of a type are numbered from 1; only
// a type's last file is still being appended to. Count, Size and Parts
// describe what is stored as of the checkpoint.
type exportFile struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Count int64  `json:"count"`
	Size  int64  `json:"size"`
	Parts int    `json:"parts"` // stored parts (bulk_export_parts), in order
}

// exportRunner runs export jobs for the store's River worker.
type exportRunner struct {
	s               *Server
	fetch           int           // rows per cursor fetch
	checkpointEvery time.Duration // 0: after every fetch
	fileLines       int64         // resources per file
	// checkpointed, when set, is called after each checkpoint (tests
	// interrupt a run there).
	checkpointed func(exported int64)
}

func newExportRunner(s *Server) exportRunner {
	return exportRunner{s: s, fetch: exportFetch, checkpointEvery: exportCheckpointAt, fileLines: exportFileLines}
}

// RunExport runs or resumes one export (see store.ExportRunner).
func (r exportRunner) RunExport(ctx context.Context, id string, finalAttempt bool) error {
	s := r.s
	err := r.run(ctx, id)
	if err != nil && !errors.Is(err, store.ErrBusy) && ctx.Err() == nil {
		s.log.Error("export failed", "export", id, "final", finalAttempt, "err", err)
		if finalAttempt {
			if ferr := s.store.FailExport(context.WithoutCancel(ctx), id, err.Error()); ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
				s.log.Error("recording export failure", "export", id, "err", ferr)
			}
		}
	}
	return err
}

// errExportGone: the export's record disappeared under a running worker
// (DELETE on its status URL); the worker has removed the files and stops.
var errExportGone = errors.New("export cancelled")

func (r exportRunner) run(ctx context.Context, id string) error {
	err := r.runOnce(ctx, id)
	if errors.Is(err, errExportGone) {
		return nil
	}
	return err
}

func (r exportRunner) runOnce(ctx context.Context, id string) error {
	s := r.s
	job, err := s.store.ExportJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // cancelled before it ran
	}
	if err != nil {
		return err
	}
	if job.Status != store.ExportAccepted && job.Status != store.ExportRunning {
		return nil // a duplicate run of a finished export
	}
	var p exportParams
	if err := json.Unmarshal(job.Params, &p); err != nil {
		return s.failNow(ctx, id, fmt.Errorf("export parameters: %w", err))
	}
	sel, err := s.selection(&p)
	if err != nil {
		return s.failNow(ctx, id, fmt.Errorf("export parameters: %w", err))
	}
	// The lock comes before touching any file: a rescued duplicate must
	// not truncate the files of a run that is still alive.
	rd, err := s.store.OpenExport(ctx, id, sel)
	if err != nil {
		return err
	}
	defer rd.Close(ctx)
	// Under the lock the checkpoint cannot move: read it again.
	if job, err = s.store.StartExport(ctx, id, rd.TransactionTime()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil // cancelled meanwhile: its parts went with it
		}
		return err
	}
	var cp exportCheckpoint
	if job.Checkpoint != nil {
		if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
			cp = exportCheckpoint{}
		}
	}
	w, err := resumeExportWriter(ctx, s.store, id, &cp, r.fileLines)
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
			if err := s.checkpoint(ctx, id, exported, &cp, s.store.CheckpointExport); err != nil {
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
	return s.checkpoint(ctx, id, exported, &cp, s.store.FinishExport)
}

// checkpoint records cp with save; an export that disappeared meanwhile
// was cancelled: its files go and errExportGone stops the run.
func (s *Server) checkpoint(ctx context.Context, id string, exported int64, cp *exportCheckpoint,
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

func (s *Server) failNow(ctx context.Context, id string, err error) error {
	if ferr := s.store.FailExport(ctx, id, err.Error()); ferr != nil && !errors.Is(ferr, store.ErrNotFound) {
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

// exportWriter appends resources to per-type ndjson files stored in parts.
type exportWriter struct {
	st       *store.Store
	id       string
	maxLines int64
	files    []exportFile           // in creation order, as the manifest lists them
	open     map[string]*openExport // by type: its last file
}

type openExport struct {
	i   int          // index into files
	buf bytes.Buffer // whole lines not stored yet
}

// resumeExportWriter prepares the export's stored parts for cp: parts
// written after the checkpoint by an interrupted run are dropped, and each
// type's last file is appended to. Without a checkpoint (or with one from
// before parts were stored in the database) the export starts over and cp
// is reset.
func resumeExportWriter(ctx context.Context, st *store.Store, id string, cp *exportCheckpoint, maxLines int64) (*exportWriter, error) {
	w := &exportWriter{st: st, id: id, maxLines: maxLines, open: map[string]*openExport{}}
	for _, f := range cp.Files {
		if f.Size > 0 && f.Parts == 0 {
			*cp = exportCheckpoint{} // written as local files by an earlier version
			break
		}
	}
	if cp.After == 0 {
		*cp = exportCheckpoint{}
	}
	parts := make([]int32, len(cp.Files))
	for i, f := range cp.Files {
		parts[i] = int32(f.Parts)
	}
	if err := st.TrimExportParts(ctx, id, parts); err != nil {
		return nil, err
	}
	w.files = append([]exportFile(nil), cp.Files...)
	for i, f := range w.files {
		w.open[f.Type] = &openExport{i: i} // the last file of each type wins
	}
	return w, nil
}

// write appends one resource as one line. Stored JSON is single-line
// except a verbatim copy of a pretty-printed body, which is compacted.
func (w *exportWriter) write(ctx context.Context, typ string, content []byte) error {
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
			return fmt.Errorf("server: export %s: stored JSON: %w", typ, err)
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
func (w *exportWriter) next(ctx context.Context, typ string) error {
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
	w.files = append(w.files, exportFile{Type: typ, Name: fmt.Sprintf("%s-%d.ndjson", typ, n)})
	w.open[typ] = &openExport{i: len(w.files) - 1}
	return nil
}

// storePart stores o's buffered lines as its file's next part.
func (w *exportWriter) storePart(ctx context.Context, o *openExport) error {
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
func (w *exportWriter) flush(ctx context.Context) error {
	for _, o := range w.open {
		if err := w.storePart(ctx, o); err != nil {
			return err
		}
	}
	return nil
}
