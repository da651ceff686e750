package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// State is where an export stands.
type State uint8

// The states of an export.
const (
	// Queued: accepted, no worker has started it.
	Queued State = iota + 1
	// Running: a worker took its snapshot; Exported says how far it got.
	Running
	// Failed: given up; Error says why.
	Failed
	// Completed: every file is written; the Manifest lists them.
	Completed
)

// Status is an export's state as its status URL reports it.
type Status struct {
	State State
	// Exported is how many resources are written so far (Running) or in
	// all (Completed).
	Exported int64
	// Error says why a Failed export failed.
	Error string
	// Manifest lists a Completed export's files.
	Manifest *Manifest
	// Expires is when a Completed export is deleted (Retention after it
	// finished).
	Expires time.Time
}

// Manifest is a completed export's status body (Bulk Data IG v2), to be
// encoded as JSON.
type Manifest struct {
	TransactionTime string `json:"transactionTime"`
	Request         string `json:"request"`
	// RequiresAccessToken: the files are served under the FHIR base with
	// its authorisation, so they need the kick-off client's token whenever
	// the status request came with one.
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []ManifestFile `json:"output"`
	Error               []ManifestFile `json:"error"`
}

// ManifestFile is one output file in a Manifest.
type ManifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count"`
}

// owned reads export id's record, hidden (not found, as if absent) from
// every OAuth client but the one that started it.
func (x *Exporter) owned(ctx context.Context, caller *engine.Caller, id string) (store.ExportJob, error) {
	if caller == nil {
		return store.ExportJob{}, errNoCaller
	}
	notFound := fhir.Missing("no export " + id + " (unknown, or cancelled)")
	if !ValidID(id) {
		return store.ExportJob{}, fhir.Missing("no export " + quote(id))
	}
	job, err := x.st.ExportJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return job, notFound
	}
	if err != nil {
		return job, err
	}
	if g := caller.Grant(); g != nil {
		var p params
		if err := json.Unmarshal(job.Params, &p); err != nil {
			return job, fmt.Errorf("export: %s params: %w", id, err)
		}
		if p.Client != g.ClientID {
			return job, notFound
		}
	}
	return job, nil
}

// Status returns export id's status, for the client that started it.
func (x *Exporter) Status(ctx context.Context, caller *engine.Caller, id string) (Status, error) {
	job, err := x.owned(ctx, caller, id)
	if err != nil {
		return Status{}, err
	}
	switch job.Status {
	case store.ExportAccepted:
		return Status{State: Queued}, nil
	case store.ExportRunning:
		return Status{State: Running, Exported: job.Exported}, nil
	case store.ExportFailed:
		return Status{State: Failed, Exported: job.Exported, Error: job.Error}, nil
	case store.ExportCompleted:
		var cp checkpoint
		if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
			return Status{}, fmt.Errorf("export: %s checkpoint: %w", id, err)
		}
		m := &Manifest{
			TransactionTime:     job.TransactionTime.UTC().Format(time.RFC3339Nano),
			Request:             job.Request,
			RequiresAccessToken: caller.Grant() != nil,
			Output:              []ManifestFile{},
			Error:               []ManifestFile{},
		}
		for _, f := range cp.Files {
			m.Output = append(m.Output, ManifestFile{Type: f.Type, URL: x.en.Base() + FilePath + id + "/" + f.Name, Count: f.Count})
		}
		return Status{State: Completed, Exported: job.Exported, Manifest: m, Expires: job.FinishedAt.Add(Retention)}, nil
	}
	return Status{}, fmt.Errorf("export: %s in unknown state %q", id, job.Status)
}

// Cancel deletes export id, with its files, for the client that started
// it; a worker still running it stops at its next write.
func (x *Exporter) Cancel(ctx context.Context, caller *engine.Caller, id string) error {
	if _, err := x.owned(ctx, caller, id); err != nil {
		return err
	}
	if _, err := x.jobs.CancelExport(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fhir.Missing("no export " + id)
		}
		return err
	}
	return nil
}

// File is one output file of a completed export, as File found it.
type File struct {
	Export, Name, Type string
	Count              int64 // resources (lines)
	Size               int64 // bytes
	index              int   // in the checkpoint's files: the stored parts' file number
}

// File returns the output file name of export id, for the client that
// started it. Only names the manifest lists are found: no path ever comes
// from the caller.
func (x *Exporter) File(ctx context.Context, caller *engine.Caller, id, name string) (File, error) {
	job, err := x.owned(ctx, caller, id)
	if err != nil {
		return File{}, err
	}
	var cp checkpoint
	if job.Status != store.ExportCompleted || json.Unmarshal(job.Checkpoint, &cp) != nil {
		return File{}, fhir.Missing("export " + id + " has no files yet")
	}
	i := slices.IndexFunc(cp.Files, func(f outputFile) bool { return f.Name == name })
	if i < 0 {
		return File{}, fhir.Missing("export " + id + " has no file " + quote(name))
	}
	f := cp.Files[i]
	if f.Parts == 0 && f.Size > 0 {
		return File{}, fhir.NewError(fhir.Gone, "not-found", "the files of export "+id+" were written by an earlier version of Ember and are gone: start the export again")
	}
	return File{Export: id, Name: f.Name, Type: f.Type, Count: f.Count, Size: f.Size, index: i}, nil
}

// ReadFile passes length bytes of f from offset (length < 0: to its end)
// to fn, a stored part at a time; it reads only the parts the range needs.
func (x *Exporter) ReadFile(ctx context.Context, f File, offset, length int64, fn func([]byte) error) error {
	return x.st.ExportFileRange(ctx, f.Export, f.index, offset, length, fn)
}
