// Package export is FHIR Bulk Data Access (IG v2) $export without HTTP:
// checking a kick-off, recording it as a durable job, the job's status and
// manifest, cancelling it, reading its files, and the worker that streams
// resources into ndjson files stored in the database. The HTTP layer maps
// requests onto these calls (Prefer: respond-async, 202 and
// Content-Location, X-Progress, Range) and errors onto statuses by their
// fhir.Kind.
//
// The work runs as a River job (store.Jobs), so any process on the database
// can run an export, a restart resumes it from its last checkpoint, and any
// replica can serve its files.
//
//	export.go   Exporter, Config, the sweep of expired exports
//	kickoff.go  Request, Kickoff: parameters, Group members, the job record
//	status.go   Status and its Manifest, Cancel, File and ReadFile
//	worker.go   the River job: a snapshot streamed into ndjson parts, checkpointed
package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/store"
)

// The status and file URLs, under the FHIR base. They are not FHIR
// interactions: the HTTP layer routes them ahead of its FHIR dispatcher.
const (
	StatusPath = "/$export-status/" // + job id
	FilePath   = "/$export-file/"   // + job id + "/" + file name
)

// Retention is how long a finished export is kept: the manifest's Expires.
// After it the sweep deletes its record and files.
const Retention = 24 * time.Hour

// sweepEvery is how often expired exports are looked for.
const sweepEvery = 10 * time.Minute

// Config configures an Exporter.
type Config struct {
	// Workers is how many exports this process runs at once: 0 means 1
	// (an export is I/O- and database-bound), negative none: the process
	// only accepts and reports exports, another one runs them.
	Workers int
	Logger  *slog.Logger
}

// Exporter runs bulk exports over an engine's store. It is safe for
// concurrent use.
type Exporter struct {
	en      *engine.Engine
	st      *store.Store
	jobs    *store.Jobs
	log     *slog.Logger
	working bool // this process runs exports (and sweeps expired ones)
}

// New returns an Exporter and registers $export with en's operations (so
// the CapabilityStatement lists it); call it before serving. River's schema
// must be migrated (store.MigrateJobs) before anything is enqueued.
func New(en *engine.Engine, cfg Config) (*Exporter, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	workers := cfg.Workers
	switch {
	case workers == 0:
		workers = 1
	case workers < 0:
		workers = 0
	}
	x := &Exporter{en: en, st: en.Store(), log: cfg.Logger, working: workers > 0}
	jobs, err := x.st.NewJobs(newRunner(x), store.JobsOptions{Workers: workers, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	x.jobs = jobs
	en.Register(engine.Operation{
		Name:    "export",
		Levels:  engine.SystemLevel | engine.TypeLevel | engine.InstanceLevel,
		Types:   []string{"Patient", "Group"},
		Methods: []string{"GET", "POST"},
	})
	return x, nil
}

// Start starts the export workers and, in processes that run them, the
// sweep of expired exports (until ctx ends).
func (x *Exporter) Start(ctx context.Context) error {
	if err := x.jobs.Start(ctx); err != nil {
		return err
	}
	if x.working {
		go x.sweepEvery(ctx, sweepEvery)
	}
	return nil
}

// Stop stops the workers. Running exports are interrupted at once and
// resume from their last checkpoint on the next worker to start.
func (x *Exporter) Stop(ctx context.Context) error { return x.jobs.Stop(ctx) }

func (x *Exporter) sweepEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := x.sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			x.log.Warn("sweeping expired exports", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep deletes the records and files of exports that finished more than
// Retention before now. Replicas sweeping at once are harmless: a record
// goes once.
func (x *Exporter) sweep(ctx context.Context, now time.Time) error {
	ids, err := x.st.ExportsFinishedBefore(ctx, now.Add(-Retention))
	if err != nil {
		return err
	}
	for _, id := range ids {
		// Its stored files go with its record.
		if _, err := x.jobs.CancelExport(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// idPattern is the shape of a job id (store.NewID's UUIDs).
var idPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidID reports whether id has the shape of an export's id. Checking it
// first keeps arbitrary text out of paths and queries; Status, Cancel and
// File check it too.
func ValidID(id string) bool { return idPattern.MatchString(id) }
