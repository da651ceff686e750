package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// MigrateJobs applies River's own schema migrations (its job tables), which
// live beside goose's. rivermigrate takes no lock of its own, so a session
// advisory lock serialises concurrent callers the way goose's does: several
// processes starting at once each end with a migrated schema.
func MigrateJobs(ctx context.Context, databaseURL string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("migrate jobs: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	const key = "SELECT hashtextextended('ember.rivermigrate', 0)"
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(("+key+"))"); err != nil {
		return fmt.Errorf("migrate jobs: lock: %w", err)
	}
	// Closing the connection releases the lock too; unlocking first just
	// lets the next migrator go without waiting for the close.
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(("+key+"))") //nolint:errcheck
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("migrate jobs: connect: %w", err)
	}
	defer pool.Close()
	// River logs every applied version at info level; only problems matter here.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: quiet})
	if err != nil {
		return fmt.Errorf("migrate jobs: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate jobs: %w", err)
	}
	return nil
}

// ExportRunner does the work of one export. The server implements it (it
// owns the files); the store only schedules it.
type ExportRunner interface {
	// RunExport runs or resumes export id. finalAttempt says River will not
	// retry an error, so the runner should record the export as failed.
	RunExport(ctx context.Context, id string, finalAttempt bool) error
}

// bulkQueue is the River queue export jobs run on.
const bulkQueue = "bulk"

// exportMaxAttempts bounds retries of a failing export. Shutdowns and
// busy snoozes do not spend attempts.
const exportMaxAttempts = 10

// exportArgs is River's job payload: the export's own row holds the rest.
type exportArgs struct {
	ExportID string `json:"export_id"`
}

func (exportArgs) Kind() string { return "ember_bulk_export" }

func (exportArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: bulkQueue, MaxAttempts: exportMaxAttempts}
}

type exportWorker struct {
	river.WorkerDefaults[exportArgs]
	run ExportRunner
}

// Timeout: an export runs as long as it needs; progress is checkpointed.
func (w *exportWorker) Timeout(*river.Job[exportArgs]) time.Duration { return -1 }

func (w *exportWorker) Work(ctx context.Context, job *river.Job[exportArgs]) error {
	err := w.run.RunExport(ctx, job.Args.ExportID, job.Attempt >= job.MaxAttempts)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBusy):
		// A rescued duplicate: the first run is alive and holds the lock.
		// Look again later in case it dies.
		return river.JobSnooze(30 * time.Second)
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely):
		// Shutdown: run again as soon as any worker starts, from the last
		// checkpoint, without spending an attempt.
		return river.JobSnooze(0)
	}
	return err
}

// JobsOptions tune NewJobs.
type JobsOptions struct {
	// Workers is how many exports this process runs at once; 0 makes a
	// client that only enqueues and cancels (another process works).
	Workers int
	// RescueAfter is how long a job may stay "running" before River
	// assumes its process died and hands it to another worker (whose run
	// waits while the first still holds the export's lock). 0 means 5 minutes.
	RescueAfter time.Duration
	// InferenceWorkers is how many inference jobs this process runs at
	// once (their runner bound with SetInferenceRunner); 0 runs none.
	InferenceWorkers int
	// InferenceTimeout bounds one inference job's run; River also leaves a
	// job "running" at least this long before rescuing it, so it is how
	// soon a job of a killed process runs again. 0 means RescueAfter.
	InferenceTimeout time.Duration
	Logger           *slog.Logger
}

// Jobs runs background jobs with River in the store's database: any process
// on the database can enqueue, and any with workers can run, a job; a job
// whose process dies is retried elsewhere.
type Jobs struct {
	s       *Store
	client  *river.Client[pgx.Tx]
	working bool
	started atomic.Bool
	// inferRun runs inference jobs (SetInferenceRunner); nil until bound.
	inferRun atomic.Pointer[InferenceRunner]
}

// NewJobs builds the River client. MigrateJobs must have run before
// anything is enqueued.
func (s *Store) NewJobs(run ExportRunner, opts JobsOptions) (*Jobs, error) {
	j := &Jobs{s: s, working: opts.Workers > 0 || opts.InferenceWorkers > 0}
	workers := river.NewWorkers()
	river.AddWorker(workers, &exportWorker{run: run})
	timeout := opts.InferenceTimeout
	if timeout <= 0 {
		timeout = cmp.Or(opts.RescueAfter, 5*time.Minute)
	}
	river.AddWorker(workers, &inferenceWorker{run: &j.inferRun, timeout: timeout})
	cfg := &river.Config{
		Workers:              workers,
		Logger:               opts.Logger,
		JobTimeout:           -1,
		RescueStuckJobsAfter: opts.RescueAfter,
	}
	if cfg.RescueStuckJobsAfter <= 0 {
		cfg.RescueStuckJobsAfter = 5 * time.Minute
	}
	if j.working {
		cfg.Queues = map[string]river.QueueConfig{}
	}
	if opts.Workers > 0 {
		cfg.Queues[bulkQueue] = river.QueueConfig{MaxWorkers: opts.Workers}
	}
	if opts.InferenceWorkers > 0 {
		cfg.Queues[inferenceQueue] = river.QueueConfig{MaxWorkers: opts.InferenceWorkers}
		// An inference job takes milliseconds to seconds: River's default
		// 100 ms between fetches would cap a worker at ten jobs a second.
		cfg.FetchCooldown = 5 * time.Millisecond
	}
	client, err := river.NewClient(riverpgxv5.New(s.pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("store: jobs: %w", err)
	}
	j.client = client
	return j, nil
}

// Start starts working jobs (when there are workers). River keeps ctx for
// its lifetime; Stop ends it.
func (j *Jobs) Start(ctx context.Context) error {
	if !j.working {
		return nil
	}
	if err := j.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("store: jobs: start: %w", err)
	}
	j.started.Store(true)
	return nil
}

// Stop cancels running jobs, which checkpoint and are picked up again by
// the next worker to start, and waits for them to return.
func (j *Jobs) Stop(ctx context.Context) error {
	if !j.started.Swap(false) {
		return nil
	}
	if err := j.client.StopAndCancel(ctx); err != nil {
		return fmt.Errorf("store: jobs: stop: %w", err)
	}
	return nil
}

// EnqueueExport records a new export and its River job in one transaction.
func (j *Jobs) EnqueueExport(ctx context.Context, e ExportJob) error {
	tx, err := j.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: create export: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	if err := insertExport(ctx, tx, e); err != nil {
		return err
	}
	res, err := j.client.InsertTx(ctx, tx, exportArgs{ExportID: e.ID}, nil)
	if err != nil {
		return fmt.Errorf("store: create export: enqueue: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE bulk_exports SET river_job = $2 WHERE id = $1`, e.ID, res.Job.ID); err != nil {
		return fmt.Errorf("store: create export: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: create export: commit: %w", err)
	}
	return nil
}

// CancelExport deletes the export's record and cancels its River job; a
// running worker sees the record gone at its next checkpoint (or its
// context cancelled) and stops. It returns the deleted record, or
// ErrNotFound.
func (j *Jobs) CancelExport(ctx context.Context, id string) (ExportJob, error) {
	e, err := j.s.deleteExport(ctx, id)
	if err != nil {
		return e, err
	}
	if e.RiverJob != 0 {
		if _, err := j.client.JobCancel(ctx, e.RiverJob); err != nil && !errors.Is(err, rivertype.ErrNotFound) {
			return e, fmt.Errorf("store: cancel export %s: %w", id, err)
		}
	}
	return e, nil
}
