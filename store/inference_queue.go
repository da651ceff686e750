package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
)

// InferenceJob is one queued model run: the Task that records it and what
// it runs on. The Task, written in the same transaction as the job, holds
// the rest.
type InferenceJob struct {
	TaskID         string `json:"task_id"`
	StudyUID       string `json:"study_uid"`
	ImagingStudyID string `json:"imaging_study_id"`
	Model          string `json:"model"`
	ModelVersion   string `json:"model_version"`
}

// InferenceRunner runs one inference job. Package inference implements it
// (it owns models and findings); the store only schedules it.
type InferenceRunner interface {
	// RunInference runs job; attempt counts from 1, and final says River
	// will not retry an error, so the runner should fail the Task.
	RunInference(ctx context.Context, job InferenceJob, attempt int, final bool) error
}

// inferenceQueue is the River queue inference jobs run on, apart from
// exports so a long export never holds up a model run (and the other way).
const inferenceQueue = "inference"

// inferenceMaxAttempts bounds retries of a transient failure (the database
// gone, a shutdown's cancellation does not count: it snoozes).
const inferenceMaxAttempts = 5

// inferenceArgs is River's payload for an inference job.
type inferenceArgs struct {
	InferenceJob
}

func (inferenceArgs) Kind() string { return "ember_inference" }

func (inferenceArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: inferenceQueue, MaxAttempts: inferenceMaxAttempts}
}

// inferenceWorker hands River's jobs to the runner bound with
// Jobs.SetInferenceRunner. The worker is registered with every client (River
// needs it at construction, before the runner exists); a process without a
// runner does not work the queue (JobsOptions.InferenceWorkers 0).
type inferenceWorker struct {
	river.WorkerDefaults[inferenceArgs]
	run     *atomic.Pointer[InferenceRunner]
	timeout time.Duration
}

// Timeout (JobsOptions.InferenceTimeout): a model run on one image takes
// well under it; a stuck one is cancelled and retried.
func (w *inferenceWorker) Timeout(*river.Job[inferenceArgs]) time.Duration { return w.timeout }

func (w *inferenceWorker) Work(ctx context.Context, job *river.Job[inferenceArgs]) error {
	run := w.run.Load()
	if run == nil {
		// Inference is off in this process; leave the job for one where it is on.
		return river.JobSnooze(time.Minute)
	}
	err := (*run).RunInference(ctx, job.Args.InferenceJob, job.Attempt, job.Attempt >= job.MaxAttempts)
	if err != nil && ctx.Err() != nil && !errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely) &&
		!errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Shutdown: run again when any worker starts, without spending an attempt.
		return river.JobSnooze(0)
	}
	return err
}

// SetInferenceRunner binds the runner of inference jobs; call it before Start.
// Without one this process enqueues inference jobs but runs none.
func (j *Jobs) SetInferenceRunner(r InferenceRunner) {
	j.inferRun.Store(&r)
}

// EnqueueInferenceTx inserts job's River job in tx, the transaction that
// creates its Task: both commit, or neither does.
func (j *Jobs) EnqueueInferenceTx(ctx context.Context, tx *Tx, job InferenceJob) error {
	if _, err := j.client.InsertTx(ctx, tx.DB(), inferenceArgs{job}, nil); err != nil {
		return fmt.Errorf("store: enqueue inference for Task/%s: %w", job.TaskID, err)
	}
	return nil
}

// InferenceQueueDepth counts inference jobs waiting to run or retry (not
// the running ones), for the queue-depth gauge.
func (j *Jobs) InferenceQueueDepth(ctx context.Context) (int64, error) {
	var n int64
	err := j.s.pool.QueryRow(ctx, `SELECT count(*) FROM river_job
		WHERE queue = $1 AND state IN ('available', 'scheduled', 'retryable', 'pending')`, inferenceQueue).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: inference queue depth: %w", err)
	}
	return n, nil
}
