package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/store"
)

// registerDevices writes each model's Device (a conditional create on its
// name|version identifier, so every replica finds the same one) and keeps
// its id. A Device found for the same name and version but another file
// (the .onnx changed without a new version) gets the new SHA-256.
func (s *Service) registerDevices(ctx context.Context) error {
	for _, m := range s.models.Models() {
		body, err := deviceJSON(m)
		if err != nil {
			return err
		}
		res, err := s.en.Parser().Parse(body, "Device")
		if err != nil {
			return fmt.Errorf("inference: the Device of model %s does not validate: %w", m.Manifest.Name, err)
		}
		cond := url.Values{"identifier": {ModelSystem + "|" + escapeToken(modelID(m))}}
		out, err := s.en.Create(ctx, engine.System, engine.CreateRequest{Resource: res, IfNoneExistParams: cond})
		if err != nil {
			return fmt.Errorf("inference: the Device of model %s: %w", m.Manifest.Name, err)
		}
		id := out.Version.ID
		if out.Outcome == engine.Found && !strings.Contains(string(out.Version.Content), m.SHA256) {
			s.log.Warn("inference: model file changed without a new version; updating its Device",
				"model", m.Manifest.Name, "version", m.Manifest.Version, "sha256", m.SHA256)
			if _, err := s.en.Update(ctx, engine.System, engine.UpdateRequest{Resource: res, ID: id}); err != nil {
				return fmt.Errorf("inference: the Device of model %s: %w", m.Manifest.Name, err)
			}
		}
		s.devices[m.Manifest.Name] = id
	}
	return nil
}

// DeviceID is the id of model name's Device ("" when no such model).
func (s *Service) DeviceID(name string) string { return s.devices[name] }

// StudyChanged is trigger (a) and (b): the DICOM side calls it after each
// ImagingStudy sync. QuietPeriod after the last call for a study, the
// study's models are queued: every model whose filters match one of its
// series, and every model a ServiceRequest the study is based on names
// (code system urn:ember:model, code = the model's name), whether or not
// its filters match. Models already run (or queued) on the study are not
// queued again.
func (s *Service) StudyChanged(studyUID string) {
	if s.models == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if t, ok := s.pending[studyUID]; ok {
		t.Reset(s.cfg.QuietPeriod)
		return
	}
	s.pending[studyUID] = time.AfterFunc(s.cfg.QuietPeriod, func() {
		s.mu.Lock()
		delete(s.pending, studyUID)
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.bg.Add(1)
		s.mu.Unlock()
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		if err := s.studyQuiet(ctx, studyUID); err != nil {
			s.log.Error("inference: queueing a study's models", "study", studyUID, "err", err)
		}
	})
}

// studyQuiet queues the models of a study that became quiet.
func (s *Service) studyQuiet(ctx context.Context, studyUID string) error {
	study, err := s.imagingStudyOf(ctx, studyUID)
	if err != nil || study == nil {
		return err
	}
	plan, err := s.plan(ctx, studyUID, study, nil)
	if err != nil {
		return err
	}
	if len(plan) == 0 {
		return nil
	}
	return s.en.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		for _, p := range plan {
			q, err := s.enqueue(ctx, tx, study, studyUID, p, false)
			if err != nil {
				return err
			}
			if !q.Existing {
				s.log.Info("inference: queued", "task", q.TaskID, "model", q.Model, "study", studyUID)
			}
		}
		return nil
	})
}

// imagingStudyOf finds the ImagingStudy of a Study Instance UID by its
// urn:dicom:uid identifier (nil: none).
func (s *Service) imagingStudyOf(ctx context.Context, studyUID string) (*studyFields, error) {
	bundle, err := s.en.Search(ctx, engine.System, engine.SearchRequest{
		Type:   "ImagingStudy",
		Params: url.Values{"identifier": {"urn:dicom:uid|" + escapeToken("urn:oid:"+studyUID)}, "_count": {"1"}},
	})
	if err != nil {
		return nil, fmt.Errorf("inference: the ImagingStudy of %s: %w", studyUID, err)
	}
	var b struct {
		Entry []struct {
			Resource studyFields `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		return nil, fmt.Errorf("inference: the ImagingStudy of %s: %w", studyUID, err)
	}
	if len(b.Entry) == 0 {
		return nil, nil
	}
	return &b.Entry[0].Resource, nil
}

// planned is one model to queue on a study, with the ServiceRequest that
// asked for it, if any.
type planned struct {
	model   *model.Model
	basedOn string
}

// plan lists the models to queue on a study: only (a model of the
// request) when only is set, else every model whose filters match, plus
// those a ServiceRequest the study is based on names.
func (s *Service) plan(ctx context.Context, studyUID string, study *studyFields, only *model.Model) ([]planned, error) {
	requested, err := s.requestedModels(ctx, study)
	if err != nil {
		return nil, err
	}
	if only != nil {
		return []planned{{model: only, basedOn: requested[only.Manifest.Name]}}, nil
	}
	metas, err := s.cfg.Studies.Instances(ctx, studyUID)
	if err != nil {
		return nil, err
	}
	var out []planned
	for _, m := range s.models.Models() {
		_, matches := imaging.Select(metas, m.Preprocess)
		sr, asked := requested[m.Manifest.Name]
		if matches || asked {
			out = append(out, planned{model: m, basedOn: sr})
		}
	}
	return out, nil
}

// requestedModels maps the loaded models that a ServiceRequest of the
// study's basedOn names (code system urn:ember:model) to that request.
func (s *Service) requestedModels(ctx context.Context, study *studyFields) (map[string]string, error) {
	out := map[string]string{}
	for _, b := range study.BasedOn {
		id, ok := strings.CutPrefix(b.Reference, "ServiceRequest/")
		if !ok {
			continue
		}
		v, err := s.en.Read(ctx, engine.System, "ServiceRequest", id)
		if isGone(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var sr struct {
			Code struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"code"`
		}
		if err := json.Unmarshal(v.Content, &sr); err != nil {
			return nil, fmt.Errorf("inference: ServiceRequest/%s: %w", id, err)
		}
		for _, c := range sr.Code.Coding {
			if c.System != ModelSystem {
				continue
			}
			if s.models.Model(c.Code) == nil {
				s.log.Warn("inference: a ServiceRequest names a model that is not loaded", "service_request", id, "model", c.Code)
				continue
			}
			if _, dup := out[c.Code]; !dup {
				out[c.Code] = "ServiceRequest/" + id
			}
		}
	}
	return out, nil
}

// enqueue creates the Task of one model run on a study and its River job,
// in tx. Unless force, a Task for the same study and model version that is
// queued, running or completed is returned instead (Existing): the Task is
// a conditional create on focus, owner (the model version's Device) and
// status, so racing triggers make one Task.
func (s *Service) enqueue(ctx context.Context, tx *engine.Tx, study *studyFields, studyUID string, p planned, force bool) (Queued, error) {
	m := p.model
	q := Queued{ImagingStudyID: study.ID, Model: m.Manifest.Name}
	deviceID := s.devices[m.Manifest.Name]
	body, err := taskJSON(study.ID, study.Subject.Reference, deviceID, m, p.basedOn, time.Now())
	if err != nil {
		return q, err
	}
	res, err := s.en.Parser().Parse(body, "Task")
	if err != nil {
		return q, fmt.Errorf("inference: the Task does not validate: %w", err)
	}
	req := engine.CreateRequest{Resource: res}
	if !force {
		req.IfNoneExistParams = existingTask(study.ID, deviceID)
	}
	out, err := tx.Create(req)
	if engine.IsMultipleMatches(err) {
		// Forced runs left several; any of them answers.
		id, err := s.anyExisting(ctx, tx, study.ID, deviceID)
		q.TaskID, q.Existing = id, true
		return q, err
	}
	if err != nil {
		return q, err
	}
	q.TaskID = out.Version.ID
	if out.Outcome == engine.Found {
		q.Existing = true
		return q, nil
	}
	err = s.cfg.Jobs.EnqueueInferenceTx(ctx, tx.StoreTx(), store.InferenceJob{
		TaskID: q.TaskID, StudyUID: studyUID, ImagingStudyID: study.ID,
		Model: m.Manifest.Name, ModelVersion: m.Manifest.Version,
	})
	return q, err
}

// existingTask is the condition of a Task that makes another run of a model
// version on a study redundant.
func existingTask(studyID, deviceID string) url.Values {
	return url.Values{
		"focus":  {"ImagingStudy/" + studyID},
		"owner":  {"Device/" + deviceID},
		"status": {"requested,received,accepted,ready,in-progress,completed"},
	}
}

func (s *Service) anyExisting(ctx context.Context, tx *engine.Tx, studyID, deviceID string) (string, error) {
	params := existingTask(studyID, deviceID)
	params.Set("_count", "1")
	q, err := search.Parse("Task", params, search.Options{Strict: true})
	if err != nil {
		return "", err
	}
	res, err := tx.StoreTx().Search(ctx, q)
	if err != nil {
		return "", err
	}
	if len(res.Matches) == 0 {
		return "", errors.New("inference: several existing Tasks matched, then none")
	}
	return res.Matches[0].ID, nil
}

// Request is trigger (c), $infer: it queues a model (or every model whose
// filters match) on each of up to MaxStudies ImagingStudies, on behalf of
// caller. The caller must be able to read each study (one it cannot see
// is NotFound, as if absent) and to write Tasks (Forbidden otherwise); the
// Tasks are created with the caller, in one transaction with their jobs:
// all are queued, or none.
func (s *Service) Request(ctx context.Context, caller *engine.Caller, r Request) ([]Queued, error) {
	if err := s.Available(); err != nil {
		return nil, err
	}
	switch n := len(r.ImagingStudyIDs); {
	case n == 0:
		return nil, fhir.NewError(fhir.BadRequest, "required", "no ImagingStudy to run inference on")
	case n > MaxStudies:
		return nil, fhir.NewError(fhir.BadRequest, "too-costly", fmt.Sprintf("%d studies: at most %d per request", n, MaxStudies))
	}
	var only *model.Model
	if r.Model != "" {
		if only = s.models.Model(r.Model); only == nil {
			return nil, fhir.NewError(fhir.BadRequest, "not-found", "no model "+r.Model+" is loaded (loaded: "+s.modelNames()+")")
		}
	}
	type job struct {
		study    *studyFields
		studyUID string
		plan     []planned
	}
	var jobs []job
	seen := map[string]bool{}
	for _, id := range r.ImagingStudyIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		v, err := s.en.Read(ctx, caller, "ImagingStudy", id)
		if err != nil {
			return nil, err
		}
		var sf studyFields
		if err := json.Unmarshal(v.Content, &sf); err != nil {
			return nil, fmt.Errorf("inference: ImagingStudy/%s: %w", id, err)
		}
		uid, err := s.cfg.Studies.StudyOf(ctx, id)
		if err != nil {
			if _, ok := engine.AsError(err); ok {
				return nil, err
			}
			return nil, fhir.NewError(fhir.Unprocessable, "processing", "ImagingStudy/"+id+" has no stored DICOM study: "+err.Error())
		}
		plan, err := s.plan(ctx, uid, &sf, only)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, job{study: &sf, studyUID: uid, plan: plan})
	}
	var out []Queued
	err := s.en.InTx(ctx, caller, func(tx *engine.Tx) error {
		for _, j := range jobs {
			for _, p := range j.plan {
				q, err := s.enqueue(ctx, tx, j.study, j.studyUID, p, r.Force)
				if err != nil {
					return err
				}
				out = append(out, q)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fhir.NewError(fhir.Unprocessable, "not-found", "no loaded model applies to the studies (loaded: "+s.modelNames()+"); name one with the model parameter")
	}
	return out, nil
}

func (s *Service) modelNames() string {
	var names []string
	for _, m := range s.models.Models() {
		names = append(names, m.Manifest.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
