package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/store"
)

var _ store.InferenceRunner = (*Service)(nil)

// RunInference implements store.InferenceRunner: the queue's job as a Job.
func (s *Service) RunInference(ctx context.Context, j store.InferenceJob, attempt int, final bool) error {
	return s.Run(ctx, Job{
		TaskID: j.TaskID, StudyUID: j.StudyUID, ImagingStudyID: j.ImagingStudyID,
		Model: j.Model, ModelVersion: j.ModelVersion, Attempt: attempt, Final: final,
	})
}

// Run runs one job: it marks the Task in-progress, picks the study's
// instance for the model, reads it (one instance's bytes, one frame),
// runs the model, and writes the findings with the Task's completion in one
// transaction. A permanent problem (undecodable pixels, no matching
// instance, a model error, the study gone) fails the Task with its coded
// reason and returns nil; a transient one (the database, the blob store)
// returns the error for River to retry, and on the final attempt fails the
// Task too. A Task already completed or failed (a job run twice) is left
// alone.
func (s *Service) Run(ctx context.Context, job Job) error {
	if err := s.Available(); err != nil {
		return err
	}
	task, err := s.en.Read(ctx, engine.System, "Task", job.TaskID)
	if isGone(err) {
		s.log.Info("inference: the job's Task is gone; nothing to do", "task", job.TaskID)
		return nil
	}
	if err != nil {
		return s.transient(ctx, job, err)
	}
	var tf taskFields
	if err := json.Unmarshal(task.Content, &tf); err != nil {
		return fmt.Errorf("inference: Task/%s: %w", job.TaskID, err)
	}
	switch tf.Status {
	case "completed", "failed", "cancelled", "rejected", "entered-in-error":
		return nil
	case "requested", "received", "accepted", "ready":
		if task, err = s.setStatus(ctx, task, "in-progress", nil); err != nil {
			return s.transient(ctx, job, err)
		}
	}
	r, err := s.run(ctx, job, tf)
	if err == nil {
		err = s.write(ctx, r)
	}
	var f *failure
	if errors.As(err, &f) {
		s.log.Warn("inference: job failed", "task", job.TaskID, "model", job.Model, "study", job.StudyUID, "reason", f.reason, "err", f.text)
		if err := s.failTask(ctx, job, f); err != nil {
			return s.transient(ctx, job, err)
		}
		return nil
	}
	if err != nil {
		return s.transient(ctx, job, err)
	}
	s.metrics.ended(job.Model, "completed")
	return nil
}

// transient handles an error worth retrying: on the job's final attempt
// the Task fails (timeout when time ran out, else model-error naming the
// error), otherwise River runs it again.
func (s *Service) transient(ctx context.Context, job Job, err error) error {
	if !job.Final || ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.metrics.ended(job.Model, "retried")
		return err
	}
	reason := ReasonModelError
	if errors.Is(err, context.DeadlineExceeded) {
		reason = ReasonTimeout
	}
	f := fail(reason, "gave up after "+strconv.Itoa(job.Attempt)+" attempts: "+err.Error())
	if ferr := s.failTask(context.WithoutCancel(ctx), job, f); ferr != nil {
		return errors.Join(err, ferr)
	}
	return nil
}

// failTask records f on the job's Task (unless it already ended).
func (s *Service) failTask(ctx context.Context, job Job, f *failure) error {
	err := s.en.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		v, err := tx.Read("Task", job.TaskID)
		if isGone(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var tf taskFields
		if err := json.Unmarshal(v.Content, &tf); err != nil {
			return err
		}
		if tf.Status == "completed" || tf.Status == "failed" {
			return nil
		}
		_, err = s.updateTask(tx, v, "failed", f, "")
		return err
	})
	if err != nil {
		return fmt.Errorf("inference: fail Task/%s: %w", job.TaskID, err)
	}
	s.metrics.ended(job.Model, "failed")
	return nil
}

// setStatus writes v (a Task) with a new status in its own transaction.
func (s *Service) setStatus(ctx context.Context, v store.Version, status string, f *failure) (store.Version, error) {
	var out store.Version
	err := s.en.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		res, err := s.updateTask(tx, v, status, f, "")
		out = res.Version
		return err
	})
	return out, err
}

// updateTask writes Task v with a new status, if it is still version v.
func (s *Service) updateTask(tx *engine.Tx, v store.Version, status string, f *failure, output string) (engine.Result, error) {
	body, err := withTaskStatus(v.Content, status, f, output, time.Now())
	if err != nil {
		return engine.Result{}, fmt.Errorf("inference: Task/%s: %w", v.ID, err)
	}
	res, err := s.en.Parser().Parse(body, "Task")
	if err != nil {
		return engine.Result{}, fmt.Errorf("inference: Task/%s does not validate: %w", v.ID, err)
	}
	return tx.Update(engine.UpdateRequest{Resource: res, ID: v.ID, IfMatch: v.VersionID})
}

// run does a job's work up to its findings.
func (s *Service) run(ctx context.Context, job Job, tf taskFields) (*run, error) {
	m := s.models.Model(job.Model)
	if m == nil || m.Manifest.Version != job.ModelVersion {
		return nil, fail(ReasonModelError, "model "+job.Model+" version "+job.ModelVersion+" is not loaded")
	}
	study, err := s.en.Read(ctx, engine.System, "ImagingStudy", job.ImagingStudyID)
	if isGone(err) {
		return nil, fail(ReasonStudyGone, "ImagingStudy/"+job.ImagingStudyID+" is gone")
	}
	if err != nil {
		return nil, err
	}
	var sf studyFields
	if err := json.Unmarshal(study.Content, &sf); err != nil {
		return nil, fmt.Errorf("inference: ImagingStudy/%s: %w", job.ImagingStudyID, err)
	}
	start := time.Now()
	p := m.Preprocess
	if tf.serviceRequest() != "" {
		// Ordered by name: the study's modality and body part do not
		// decide (the order did), any instance with pixels may be read.
		p.Modalities, p.BodyParts = nil, nil
	}
	tensor, info, err := s.tensor(ctx, job.StudyUID, m, p)
	if err != nil {
		return nil, err
	}
	start = s.metrics.phase(m.Manifest.Name, "preprocess", start)
	out, err := m.Run(ctx, tensor)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fail(ReasonModelError, err.Error())
	}
	findings, err := m.Findings(out)
	if err != nil {
		return nil, fail(ReasonModelError, err.Error())
	}
	s.metrics.phase(m.Manifest.Name, "run", start)
	status := s.cfg.ReportStatus
	if status == "" {
		status = m.Manifest.Report.Status
	}
	if status == "" {
		status = model.DefaultStatus
	}
	return &run{
		job: job, model: m, deviceID: s.devices[m.Manifest.Name], subject: sf.Subject.Reference,
		basedOn: tf.serviceRequest(), findings: findings, image: info, status: status, now: time.Now(),
	}, nil
}

// tensor selects the study's instance for m (by p, m's preprocessing or
// it without filters) and computes m's input from it: one instance open at a time, one frame of it read.
func (s *Service) tensor(ctx context.Context, studyUID string, m *model.Model, p imaging.Preprocess) ([]float32, imaging.Info, error) {
	metas, err := s.cfg.Studies.Instances(ctx, studyUID)
	if err != nil {
		return nil, imaging.Info{}, err
	}
	pick, ok := imaging.Select(metas, p)
	if !ok {
		return nil, imaging.Info{}, fail(ReasonNoMatchingInstance,
			"none of the study's "+strconv.Itoa(len(metas))+" instances has pixels and passes model "+m.Manifest.Name+"'s filters")
	}
	r, size, closeFn, err := s.cfg.Studies.Open(ctx, pick.SOPInstanceUID)
	if err != nil {
		return nil, imaging.Info{}, err
	}
	defer closeFn() //nolint:errcheck // read-only
	shape := m.Manifest.Input.Shape
	tensor, info, err := imaging.Tensor(r, size, p, int(shape[1]), int(shape[2]), int(shape[3]))
	if err != nil {
		if undecodable(err) {
			return nil, info, fail(ReasonUndecodable, "instance "+pick.SOPInstanceUID+": "+err.Error())
		}
		return nil, info, err
	}
	return tensor, info, nil
}

// undecodable reports whether err is the instance's own fault (its data),
// not the store's: retrying cannot help.
func undecodable(err error) bool {
	for _, e := range []error{imaging.ErrNotDICOM, imaging.ErrNoPixelData, imaging.ErrNoFrame,
		imaging.ErrUnsupportedTransferSyntax, imaging.ErrUnsupportedPixels, imaging.ErrCorrupt,
		io.ErrUnexpectedEOF, io.EOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isGone reports whether a read found nothing (absent, or deleted).
func isGone(err error) bool {
	fe, ok := engine.AsError(err)
	return ok && (fe.Kind == fhir.NotFound || fe.Kind == fhir.Gone)
}

// write writes r's Observations, DiagnosticReport and Provenance and
// completes its Task, in one transaction: all of them, or none.
func (s *Service) write(ctx context.Context, r *run) error {
	start := time.Now()
	err := s.en.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		task, err := tx.Read("Task", r.job.TaskID)
		if isGone(err) {
			return errTaskGone
		}
		if err != nil {
			return err
		}
		var tf taskFields
		if err := json.Unmarshal(task.Content, &tf); err != nil {
			return err
		}
		if tf.Status == "completed" || tf.Status == "failed" {
			return errTaskGone
		}
		var created []string
		for _, f := range r.findings {
			id, err := s.create(tx, "Observation", func() ([]byte, error) { return r.observationJSON(f) })
			if err != nil {
				return err
			}
			created = append(created, id)
		}
		if s.afterObservations != nil {
			if err := s.afterObservations(); err != nil {
				return err
			}
		}
		report, err := s.create(tx, "DiagnosticReport", func() ([]byte, error) { return r.reportJSON(created) })
		if err != nil {
			return err
		}
		created = append(created, report)
		if _, err := s.create(tx, "Provenance", func() ([]byte, error) { return r.provenanceJSON(created) }); err != nil {
			return err
		}
		_, err = s.updateTask(tx, task, "completed", nil, report)
		return err
	})
	if errors.Is(err, errTaskGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inference: write findings of Task/%s: %w", r.job.TaskID, err)
	}
	s.metrics.phase(r.model.Manifest.Name, "write", start)
	return nil
}

// errTaskGone: the Task was deleted or ended while the job ran; its
// findings are not written.
var errTaskGone = errors.New("inference: the Task is gone or ended")

// create validates and creates one resource, returning "Type/id".
func (s *Service) create(tx *engine.Tx, typ string, build func() ([]byte, error)) (string, error) {
	body, err := build()
	if err != nil {
		return "", err
	}
	res, err := s.en.Parser().Parse(body, typ)
	if err != nil {
		return "", fmt.Errorf("inference: the %s does not validate: %w", typ, err)
	}
	out, err := tx.Create(engine.CreateRequest{Resource: res})
	if err != nil {
		return "", err
	}
	return typ + "/" + out.Version.ID, nil
}
