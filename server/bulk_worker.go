package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
// rid up to After is in Files, whose sizes say where each file ends.
type exportCheckpoint struct {
	After int64        `json:"after"`
	Files []exportFile `json:"files"`
}

// exportFile is one output file. Files of a type are numbered from 1; only
// a type's last file is still being appended to.
type exportFile struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Count int64  `json:"count"`
	Size  int64  `json:"size"`
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
			return s.removeExportFiles(id)
		}
		return err
	}
	var cp exportCheckpoint
	if job.Checkpoint != nil {
		if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
			cp = exportCheckpoint{}
		}
	}
	dir := s.exportDir(id)
	w, err := resumeExportWriter(dir, &cp, r.fileLines)
	if err != nil {
		return err
	}
	defer w.closeFiles()
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
			if err := w.write(row.Type, row.Content); err != nil {
				return err
			}
			cp.After = row.RID
		}
		exported += int64(len(rows))
		if len(rows) == 0 {
			break
		}
		if time.Since(last) >= r.checkpointEvery {
			last = time.Now()
			if err := w.flush(false); err != nil {
				return err
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
	// Durable before it is announced: the manifest lists these files.
	if err := w.flush(true); err != nil {
		return err
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
			return errors.Join(errExportGone, s.removeExportFiles(id))
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

// removeExportFiles deletes a cancelled export's directory.
func (s *Server) removeExportFiles(id string) error {
	if err := os.RemoveAll(s.exportDir(id)); err != nil {
		return fmt.Errorf("server: remove export %s: %w", id, err)
	}
	return nil
}

// exportWriter appends resources to per-type ndjson files.
type exportWriter struct {
	dir      string
	maxLines int64
	files    []exportFile           // in creation order, as the manifest lists them
	open     map[string]*openExport // by type: its last file
}

type openExport struct {
	i int // index into files
	f *os.File
	w *bufio.Writer
}

// resumeExportWriter prepares dir for cp: files past the checkpoint are
// cut back to its sizes and strays removed. If a file is shorter than the
// checkpoint says (data lost in a crash), the export starts over and cp is
// reset.
func resumeExportWriter(dir string, cp *exportCheckpoint, maxLines int64) (*exportWriter, error) {
	w := &exportWriter{dir: dir, maxLines: maxLines, open: map[string]*openExport{}}
	if cp.After > 0 {
		if err := w.resume(cp); err == nil {
			return w, nil
		}
		w.closeFiles()
		w = &exportWriter{dir: dir, maxLines: maxLines, open: map[string]*openExport{}}
		*cp = exportCheckpoint{}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("server: export directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("server: export directory: %w", err)
	}
	return w, nil
}

func (w *exportWriter) resume(cp *exportCheckpoint) error {
	keep := map[string]bool{}
	lastOf := map[string]int{}
	for i, f := range cp.Files {
		keep[f.Name] = true
		lastOf[f.Type] = i
	}
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(w.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	w.files = append([]exportFile(nil), cp.Files...)
	for i, f := range w.files {
		fh, err := os.OpenFile(filepath.Join(w.dir, f.Name), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		st, err := fh.Stat()
		if err != nil || st.Size() < f.Size {
			fh.Close()
			return fmt.Errorf("export file %s is shorter than its checkpoint", f.Name)
		}
		if st.Size() > f.Size {
			if err := fh.Truncate(f.Size); err != nil {
				fh.Close()
				return err
			}
		}
		if lastOf[f.Type] != i {
			fh.Close()
			continue
		}
		if _, err := fh.Seek(f.Size, 0); err != nil {
			fh.Close()
			return err
		}
		w.open[f.Type] = &openExport{i: i, f: fh, w: bufio.NewWriterSize(fh, 32<<10)}
	}
	return nil
}

// write appends one resource as one line. Stored JSON is single-line
// except a verbatim copy of a pretty-printed body, which is compacted.
func (w *exportWriter) write(typ string, content []byte) error {
	o := w.open[typ]
	if o == nil || w.files[o.i].Count >= w.maxLines {
		if err := w.next(typ); err != nil {
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
	if _, err := o.w.Write(content); err != nil {
		return fmt.Errorf("server: export write: %w", err)
	}
	if err := o.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("server: export write: %w", err)
	}
	f := &w.files[o.i]
	f.Count++
	f.Size += int64(len(content)) + 1
	return nil
}

// next starts typ's next file, closing its current one.
func (w *exportWriter) next(typ string) error {
	n := 1
	if o := w.open[typ]; o != nil {
		if err := o.close(true); err != nil {
			return err
		}
		delete(w.open, typ)
	}
	for _, f := range w.files {
		if f.Type == typ {
			n++
		}
	}
	name := fmt.Sprintf("%s-%d.ndjson", typ, n)
	fh, err := os.OpenFile(filepath.Join(w.dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("server: export file: %w", err)
	}
	w.files = append(w.files, exportFile{Type: typ, Name: name})
	w.open[typ] = &openExport{i: len(w.files) - 1, f: fh, w: bufio.NewWriterSize(fh, 32<<10)}
	return nil
}

// flush writes every buffer out, and with sync makes the files durable.
func (w *exportWriter) flush(sync bool) error {
	for _, o := range w.open {
		if err := o.w.Flush(); err != nil {
			return fmt.Errorf("server: export write: %w", err)
		}
		if sync {
			if err := o.f.Sync(); err != nil {
				return fmt.Errorf("server: export sync: %w", err)
			}
		}
	}
	return nil
}

func (o *openExport) close(sync bool) error {
	if err := o.w.Flush(); err != nil {
		o.f.Close()
		return fmt.Errorf("server: export write: %w", err)
	}
	if sync {
		if err := o.f.Sync(); err != nil {
			o.f.Close()
			return fmt.Errorf("server: export sync: %w", err)
		}
	}
	return o.f.Close()
}

// closeFiles closes every open file without flushing: unflushed data is
// past the last checkpoint and would be cut off on resume anyway.
func (w *exportWriter) closeFiles() {
	for typ, o := range w.open {
		o.f.Close()
		delete(w.open, typ)
	}
}
