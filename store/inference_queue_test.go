package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

type runnerFunc func(ctx context.Context, job store.InferenceJob, attempt int, final bool) error

func (f runnerFunc) RunInference(ctx context.Context, job store.InferenceJob, attempt int, final bool) error {
	return f(ctx, job, attempt, final)
}

// TestInferenceJobs: a job inserted in a transaction that rolls back never
// runs; one that commits reaches the bound runner with its fields, and a
// failing one is retried with the next attempt.
func TestInferenceJobs(t *testing.T) {
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := store.MigrateJobs(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	jobs, err := st.NewJobs(nil, store.JobsOptions{InferenceWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		job     store.InferenceJob
		attempt int
	}
	calls := make(chan call, 10)
	jobs.SetInferenceRunner(runnerFunc(func(_ context.Context, job store.InferenceJob, attempt int, _ bool) error {
		calls <- call{job, attempt}
		if job.TaskID == "flaky" && attempt == 1 {
			return errors.New("transient")
		}
		return nil
	}))
	rollback := errors.New("roll back")
	err = st.InTx(ctx, func(tx *store.Tx) error {
		if err := jobs.EnqueueInferenceTx(ctx, tx, store.InferenceJob{TaskID: "never"}); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	want := store.InferenceJob{TaskID: "t1", StudyUID: "1.2.3", ImagingStudyID: "1.2.3", Model: "m", ModelVersion: "1"}
	for _, j := range []store.InferenceJob{want, {TaskID: "flaky"}} {
		if err := st.InTx(ctx, func(tx *store.Tx) error { return jobs.EnqueueInferenceTx(ctx, tx, j) }); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := jobs.InferenceQueueDepth(ctx); err != nil || n != 2 {
		t.Errorf("queue depth before start: %d %v, want 2", n, err)
	}
	if err := jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jobs.Stop(context.Background()) })
	got := map[string][]int{}
	deadline := time.After(30 * time.Second)
	for len(got["t1"]) < 1 || len(got["flaky"]) < 2 {
		select {
		case c := <-calls:
			if c.job.TaskID == "t1" && c.job != want {
				t.Errorf("job: %+v, want %+v", c.job, want)
			}
			got[c.job.TaskID] = append(got[c.job.TaskID], c.attempt)
		case <-deadline:
			t.Fatalf("runs after 30s: %v", got)
		}
	}
	if len(got["never"]) != 0 || len(got["t1"]) != 1 || got["flaky"][1] != 2 {
		t.Errorf("runs: %v", got)
	}
}
