package inference

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/inference/imaging/imagingtest"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/inference/onnx"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/internal/testfiles"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	rtOnce sync.Once
	rt     *onnx.Runtime
	rtErr  error
)

func models(t *testing.T) *model.Registry {
	t.Helper()
	lib := testenv.ONNXRuntime(t)
	rtOnce.Do(func() { rt, rtErr = onnx.Open(lib) })
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	dir, err := testfiles.Path("models")
	if err != nil {
		t.Fatal(err)
	}
	r, err := model.Load(rt, dir, onnx.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

type env struct {
	eng   *engine.Engine
	dicom *dicom.Service
	svc   *Service
	jobs  *store.Jobs
	reg   *prometheus.Registry
	// hooked: the DICOM sync hook triggers inference (River works jobs).
	hooked bool
}

// newEnv builds the real parts: PostgreSQL, the engine, a DICOM service
// over a blob directory, the generated models and River. With workers,
// River runs the jobs and the DICOM sync hook triggers them; without,
// tests call Run themselves.
func newEnv(t *testing.T, workers int) *env {
	t.Helper()
	reg := models(t)
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
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := dicom.OpenBlobs(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &env{eng: eng, reg: prometheus.NewRegistry(), hooked: workers > 0}
	var svcReady sync.WaitGroup
	svcReady.Add(1)
	cfg := dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: "http://ember.test/dicomweb", SyncDelay: 20 * time.Millisecond, Logger: quiet}
	if workers > 0 {
		cfg.OnStudySynced = func(uid string) { svcReady.Wait(); e.svc.StudyChanged(uid) }
	}
	e.dicom, err = dicom.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.dicom.Close(context.Background()) })
	e.jobs, err = st.NewJobs(nil, store.JobsOptions{InferenceWorkers: workers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(ctx, Config{
		Engine: eng, Models: reg, Studies: e.dicom.InferenceStudies(), Jobs: e.jobs,
		QuietPeriod: 100 * time.Millisecond, Logger: quiet, Metrics: e.reg,
	})
	svcReady.Done()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.svc.Close() })
	if err := e.jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.jobs.Stop(context.Background()) })
	return e
}

// ingest stores a Part-10 file and writes its ImagingStudy now; it returns
// the ImagingStudy id.
func (e *env) ingest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := e.dicom.Ingest(t.Context(), f, dicom.IngestOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.dicom.Sync(t.Context(), in.StudyUID); err != nil {
		t.Fatal(err)
	}
	if e.hooked {
		// What Config.OnStudySynced does after the sync (called here too
		// in case the hook ran before: a second call within the quiet
		// period only restarts its timer).
		e.svc.StudyChanged(in.StudyUID)
	}
	return dicom.ImagingStudyID(in.StudyUID)
}

func sample(t *testing.T, name string) string {
	t.Helper()
	p, err := dicomsamples.Pydicom(t.Context(), name)
	testenv.Require(t, err, "the pydicom sample "+name, "it is committed under testdata/dicom/pydicom")
	return p
}

func (e *env) read(t *testing.T, ref string) map[string]any {
	t.Helper()
	typ, id, _ := cut(ref)
	v, err := e.eng.Read(t.Context(), engine.System, typ, id)
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	var m map[string]any
	if err := json.Unmarshal(v.Content, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func cut(ref string) (string, string, bool) {
	for i := range ref {
		if ref[i] == '/' {
			return ref[:i], ref[i+1:], true
		}
	}
	return ref, "", false
}

func (e *env) search(t *testing.T, typ string, params url.Values) []map[string]any {
	t.Helper()
	b, err := e.eng.Search(t.Context(), engine.System, engine.SearchRequest{Type: typ, Params: params, Strict: true})
	if err != nil {
		t.Fatalf("search %s?%s: %v", typ, params.Encode(), err)
	}
	var bundle struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, en := range bundle.Entry {
		out = append(out, en.Resource)
	}
	return out
}

// request queues model on study as System and returns the one Task.
func (e *env) request(t *testing.T, study, model string, force bool) Queued {
	t.Helper()
	qs, err := e.svc.Request(t.Context(), engine.System, Request{ImagingStudyIDs: []string{study}, Model: model, Force: force})
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 {
		t.Fatalf("Request: %d Tasks, want 1: %+v", len(qs), qs)
	}
	return qs[0]
}

// runQueued runs q's job the way the queue would.
func (e *env) runQueued(t *testing.T, q Queued, final bool) error {
	t.Helper()
	uid := q.ImagingStudyID // dicom.ImagingStudyID(uid) is the UID (and the study may be gone)
	m := e.svc.models.Model(q.Model)
	return e.svc.Run(t.Context(), Job{TaskID: q.TaskID, StudyUID: uid, ImagingStudyID: q.ImagingStudyID,
		Model: q.Model, ModelVersion: m.Manifest.Version, Attempt: 1, Final: final})
}

func str(v any, path ...any) string {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return ""
			}
			v = a[k]
		}
	}
	s, _ := v.(string)
	return s
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// expected computes a model's first finding from the file independently:
// imagingtest.Reference's float64 pipeline, then the model's math (see
// testdata/models/README.md).
func expected(t *testing.T, reg *model.Registry, name, path string) float64 {
	t.Helper()
	m := reg.Model(name)
	s := m.Manifest.Input.Shape
	x, _, err := imagingtest.ReferenceFile(path, m.Preprocess, int(s[1]), int(s[2]), int(s[3]))
	if err != nil {
		t.Fatal(err)
	}
	switch name {
	case "mean-intensity":
		return sigmoid(mean(x))
	case "demo":
		return sigmoid(16 * (mean(x) - 0.35))
	}
	t.Fatalf("no expectation for %s", name)
	return 0
}

func waitTask(t *testing.T, e *env, study, deviceID string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ts := e.search(t, "Task", url.Values{"focus": {"ImagingStudy/" + study}, "owner": {"Device/" + deviceID}})
		if len(ts) == 1 && (ts[0]["status"] == "completed" || ts[0]["status"] == "failed") {
			return ts[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no Task of Device/%s on ImagingStudy/%s ended within 30s", deviceID, study)
	return nil
}

// TestInferEndToEnd: a CT study ingested through the DICOM service becomes
// quiet, River runs every matching model, and the findings are there in
// the documented shape, with the value computed independently.
func TestInferEndToEnd(t *testing.T) {
	e := newEnv(t, 1)
	path := sample(t, "CT_small.dcm")
	study := e.ingest(t, path)
	for _, name := range []string{"demo", "mean-intensity", "conv-pool"} {
		task := waitTask(t, e, study, e.svc.DeviceID(name))
		if task["status"] != "completed" {
			t.Fatalf("%s: Task %s: %v", name, task["status"], task["statusReason"])
		}
	}
	reg := e.svc.models
	dev := e.svc.DeviceID("mean-intensity")
	task := waitTask(t, e, study, dev)
	is := e.read(t, "ImagingStudy/"+study)
	patient := str(is, "subject", "reference")
	if str(task, "for", "reference") != patient || str(task, "intent") != "order" || str(task, "code", "text") != "AI inference" ||
		str(task, "input", 0, "valueString") != "mean-intensity|1.0.0" || str(task, "authoredOn") == "" || str(task, "lastModified") == "" {
		t.Errorf("Task shape: %v", task)
	}
	reportRef := str(task, "output", 0, "valueReference", "reference")
	report := e.read(t, reportRef)
	if report["status"] != "preliminary" || str(report, "category", 0, "coding", 0, "code") != "LP29684-5" ||
		str(report, "performer", 0, "identifier", "value") != "mean-intensity|1.0.0" || str(report, "imagingStudy", 0, "reference") != "ImagingStudy/"+study ||
		str(report, "subject", "reference") != patient || str(report, "meta", "security", 0, "code") != "AIAST" {
		t.Errorf("DiagnosticReport shape: %v", report)
	}
	obs := e.read(t, str(report, "result", 0, "reference"))
	want := expected(t, reg, "mean-intensity", path)
	got := obs["valueQuantity"].(map[string]any)["value"].(float64)
	if math.Abs(got-want) > 1e-5 {
		t.Errorf("mean-intensity on CT_small: %.8f, want %.8f", got, want)
	}
	if str(obs, "category", 0, "coding", 0, "code") != "imaging" || str(obs, "device", "reference") != "Device/"+dev ||
		str(obs, "derivedFrom", 0, "reference") != "ImagingStudy/"+study || str(obs, "meta", "security", 0, "code") != "AIAST" ||
		str(obs, "valueQuantity", "code") != "1" || str(obs, "interpretation", 0, "coding", 0, "code") == "" {
		t.Errorf("Observation shape: %v", obs)
	}
	// The demo model's value too (a different pipeline: explicit window).
	demoTask := waitTask(t, e, study, e.svc.DeviceID("demo"))
	demoReport := e.read(t, str(demoTask, "output", 0, "valueReference", "reference"))
	demoObs := e.read(t, str(demoReport, "result", 0, "reference"))
	if got, want := demoObs["valueQuantity"].(map[string]any)["value"].(float64), expected(t, reg, "demo", path); math.Abs(got-want) > 1e-5 {
		t.Errorf("demo on CT_small: %.8f, want %.8f", got, want)
	}
	// Provenance: targets the findings, the Device as author, the study as source.
	provs := e.search(t, "Provenance", url.Values{"target": {reportRef}})
	if len(provs) != 1 || str(provs[0], "agent", 0, "who", "reference") != "Device/"+dev ||
		str(provs[0], "entity", 0, "what", "reference") != "ImagingStudy/"+study || str(provs[0], "reason", 0, "coding", 0, "code") != "AIAST" {
		t.Errorf("Provenance: %v", provs)
	}
	// Device: listed by type, identified by name|version and the file's hash.
	devs := e.search(t, "Device", url.Values{"type": {AIDeviceTypeSystem + "|" + AIDeviceTypeCode}})
	if len(devs) != 3 {
		t.Errorf("Device?type=…: %d Devices, want 3", len(devs))
	}
	d := e.read(t, "Device/"+dev)
	if str(d, "identifier", 0, "value") != "mean-intensity|1.0.0" || str(d, "identifier", 1, "value") != reg.Model("mean-intensity").SHA256 ||
		str(d, "version", 0, "value") != "1.0.0" || str(d, "deviceName", 0, "type") != "model-name" {
		t.Errorf("Device: %v", d)
	}
	// What a clinician searches.
	if got := e.search(t, "DiagnosticReport", url.Values{"patient": {patient}, "category": {"http://loinc.org|LP29684-5"}}); len(got) != 3 {
		t.Errorf("DiagnosticReport?patient&category: %d, want 3 (one per model)", len(got))
	}
	if got := e.search(t, "Observation", url.Values{"derived-from": {"ImagingStudy/" + study}}); len(got) != 4 {
		t.Errorf("Observation?derived-from: %d, want 4 (1 + 1 + 2 findings)", len(got))
	}
	// The metrics: three jobs completed, each phase timed, the queue empty.
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "ember_inference_jobs_total":
				seen[mf.GetName()] += m.GetCounter().GetValue()
			case "ember_inference_seconds":
				seen[mf.GetName()] += float64(m.GetHistogram().GetSampleCount())
			case "ember_inference_queue_depth":
				seen[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	if seen["ember_inference_jobs_total"] != 3 || seen["ember_inference_seconds"] != 9 || seen["ember_inference_queue_depth"] != 0 {
		t.Errorf("metrics: %v, want 3 jobs, 9 phase samples, depth 0", seen)
	}
	// A second sync of the study queues nothing new.
	e.svc.StudyChanged(studyUIDOf(t, e, study))
	time.Sleep(300 * time.Millisecond)
	if ts := e.search(t, "Task", url.Values{"focus": {"ImagingStudy/" + study}}); len(ts) != 3 {
		t.Errorf("after a resync: %d Tasks, want 3", len(ts))
	}
}

func studyUIDOf(t *testing.T, e *env, study string) string {
	uid, err := e.dicom.InferenceStudies().StudyOf(t.Context(), study)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func statusReason(task map[string]any) string {
	return str(task, "statusReason", "coding", 0, "code")
}

// TestInferUndecodable: JPEG-LS pixels (not decodable) fail the Task with
// a coded reason, and nothing else is written.
func TestInferUndecodable(t *testing.T) {
	e := newEnv(t, 0)
	study := e.ingest(t, sample(t, "MR_small_jpeg_ls_lossless.dcm"))
	q := e.request(t, study, "mean-intensity", false)
	if err := e.runQueued(t, q, false); err != nil {
		t.Fatal(err)
	}
	task := e.read(t, "Task/"+q.TaskID)
	if task["status"] != "failed" || statusReason(task) != string(ReasonUndecodable) || str(task, "statusReason", "text") == "" {
		t.Fatalf("Task: %v", task)
	}
	if got := e.search(t, "Observation", url.Values{"derived-from": {"ImagingStudy/" + study}}); len(got) != 0 {
		t.Errorf("%d Observations of a failed job", len(got))
	}
}

// TestInferForce: a second request for the same study and model version
// returns the first Task; Force queues another.
func TestInferForce(t *testing.T) {
	e := newEnv(t, 0)
	study := e.ingest(t, sample(t, "CT_small.dcm"))
	first := e.request(t, study, "mean-intensity", false)
	if first.Existing {
		t.Fatal("the first request found an existing Task")
	}
	again := e.request(t, study, "mean-intensity", false)
	if !again.Existing || again.TaskID != first.TaskID {
		t.Errorf("again: %+v, want the existing Task/%s", again, first.TaskID)
	}
	if err := e.runQueued(t, first, false); err != nil {
		t.Fatal(err)
	}
	done := e.request(t, study, "mean-intensity", false)
	if !done.Existing || done.TaskID != first.TaskID {
		t.Errorf("after completion: %+v, want the completed Task/%s", done, first.TaskID)
	}
	forced := e.request(t, study, "mean-intensity", true)
	if forced.Existing || forced.TaskID == first.TaskID {
		t.Errorf("forced: %+v, want a new Task", forced)
	}
	if err := e.runQueued(t, forced, false); err != nil {
		t.Fatal(err)
	}
	// Two completed Tasks now: a plain request still answers with one.
	if q := e.request(t, study, "mean-intensity", false); !q.Existing {
		t.Errorf("with two completed Tasks: %+v", q)
	}
	// Running a completed job again writes nothing more.
	if err := e.runQueued(t, first, false); err != nil {
		t.Fatal(err)
	}
	if got := e.search(t, "DiagnosticReport", url.Values{}); len(got) != 2 {
		t.Errorf("%d DiagnosticReports, want 2", len(got))
	}
}

// TestInferCrashMidWrite: a findings transaction that fails after the
// Observations leaves none of them; the retry writes everything once.
func TestInferCrashMidWrite(t *testing.T) {
	e := newEnv(t, 0)
	study := e.ingest(t, sample(t, "CT_small.dcm"))
	q := e.request(t, study, "conv-pool", false)
	crash := errors.New("crash after the Observations")
	e.svc.afterObservations = func() error { return crash }
	if err := e.runQueued(t, q, false); !errors.Is(err, crash) {
		t.Fatalf("Run: %v, want the injected error (retried)", err)
	}
	for _, typ := range []string{"Observation", "DiagnosticReport", "Provenance"} {
		if got := e.search(t, typ, url.Values{}); len(got) != 0 {
			t.Errorf("after the failed write: %d %s", len(got), typ)
		}
	}
	if task := e.read(t, "Task/"+q.TaskID); task["status"] != "in-progress" {
		t.Errorf("Task after the failed write: %v", task["status"])
	}
	e.svc.afterObservations = nil
	if err := e.runQueued(t, q, false); err != nil {
		t.Fatal(err)
	}
	if task := e.read(t, "Task/"+q.TaskID); task["status"] != "completed" {
		t.Errorf("Task after the retry: %v", task["status"])
	}
	if got := e.search(t, "Observation", url.Values{}); len(got) != 2 {
		t.Errorf("after the retry: %d Observations, want 2", len(got))
	}
	// The last attempt of a transient error fails the Task.
	q2 := e.request(t, study, "conv-pool", true)
	e.svc.afterObservations = func() error { return crash }
	if err := e.runQueued(t, q2, true); err != nil {
		t.Fatalf("final attempt: %v", err)
	}
	if task := e.read(t, "Task/"+q2.TaskID); task["status"] != "failed" || statusReason(task) != string(ReasonModelError) {
		t.Errorf("Task after the final attempt: %v", task)
	}
}

// TestInferStudyGone: a job whose ImagingStudy was deleted fails study-gone.
func TestInferStudyGone(t *testing.T) {
	e := newEnv(t, 0)
	study := e.ingest(t, sample(t, "CT_small.dcm"))
	q := e.request(t, study, "mean-intensity", false)
	if _, err := e.eng.Delete(t.Context(), engine.System, engine.DeleteRequest{Type: "ImagingStudy", ID: study}); err != nil {
		t.Fatal(err)
	}
	if err := e.runQueued(t, q, false); err != nil {
		t.Fatal(err)
	}
	if task := e.read(t, "Task/"+q.TaskID); task["status"] != "failed" || statusReason(task) != string(ReasonStudyGone) {
		t.Errorf("Task: %v", task)
	}
}

// TestInferRequestAuthorisation: $infer with a patient-scoped token reaches
// only that patient's studies (another's is 404, as if absent), and needs
// Task write scope (403).
func TestInferRequestAuthorisation(t *testing.T) {
	e := newEnv(t, 0)
	ct := e.ingest(t, sample(t, "CT_small.dcm"))
	mr := e.ingest(t, sample(t, "MR_small.dcm"))
	_, ctPatient, _ := cut(str(e.read(t, "ImagingStudy/"+ct), "subject", "reference"))
	grant := func(token string, scopes ...string) *engine.Caller {
		return e.eng.Grant(token, &access.Grant{Scopes: scopes, Patient: ctPatient, Expiry: time.Now().Add(time.Hour)})
	}
	full := grant("t1", "patient/ImagingStudy.rs", "patient/Task.cruds")
	kind := func(err error) fhir.Kind {
		fe, ok := engine.AsError(err)
		if !ok {
			t.Fatalf("%v: not a fhir.Error", err)
		}
		return fe.Kind
	}
	_, err := e.svc.Request(t.Context(), full, Request{ImagingStudyIDs: []string{mr}, Model: "mean-intensity"})
	if err == nil || kind(err) != fhir.NotFound {
		t.Errorf("another patient's study: %v, want NotFound", err)
	}
	readOnly := grant("t2", "patient/ImagingStudy.rs")
	_, err = e.svc.Request(t.Context(), readOnly, Request{ImagingStudyIDs: []string{ct}, Model: "mean-intensity"})
	if err == nil || kind(err) != fhir.Forbidden {
		t.Errorf("without Task write scope: %v, want Forbidden", err)
	}
	qs, err := e.svc.Request(t.Context(), full, Request{ImagingStudyIDs: []string{ct}, Model: "mean-intensity"})
	if err != nil || len(qs) != 1 {
		t.Errorf("own study: %v %v", qs, err)
	}
	// Findings of both patients; a patient-scoped reader sees only its own
	// (its compartment), and another patient's report reads as absent.
	if err := e.runQueued(t, qs[0], false); err != nil {
		t.Fatal(err)
	}
	mrRun := e.request(t, mr, "mean-intensity", false)
	if err := e.runQueued(t, mrRun, false); err != nil {
		t.Fatal(err)
	}
	reader := grant("t3", "patient/DiagnosticReport.rs", "patient/Observation.rs", "patient/Task.rs")
	for _, typ := range []string{"DiagnosticReport", "Observation", "Task"} {
		if all := e.search(t, typ, nil); len(all) != 2 {
			t.Fatalf("%s: %d in all, want 2 (one per study)", typ, len(all))
		}
		b, err := e.eng.Search(t.Context(), reader, engine.SearchRequest{Type: typ, Strict: true})
		if err != nil {
			t.Fatalf("patient-scoped %s search: %v", typ, err)
		}
		var got struct {
			Entry []struct {
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		subject := "subject"
		if typ == "Task" {
			subject = "for"
		}
		if len(got.Entry) != 1 || str(got.Entry[0].Resource, subject, "reference") != "Patient/"+ctPatient {
			t.Errorf("patient-scoped %s search: %d entries (%v), want only Patient/%s's", typ, len(got.Entry), got.Entry, ctPatient)
		}
	}
	mrReport := str(e.read(t, "Task/"+mrRun.TaskID), "output", 0, "valueReference", "reference")
	if _, err := e.eng.Read(t.Context(), reader, "DiagnosticReport", strings.TrimPrefix(mrReport, "DiagnosticReport/")); err == nil || kind(err) != fhir.NotFound {
		t.Errorf("another patient's report read with a patient-scoped token: %v, want NotFound", err)
	}

	ids := make([]string, MaxStudies+1)
	for i := range ids {
		ids[i] = ct
	}
	if _, err := e.svc.Request(t.Context(), engine.System, Request{ImagingStudyIDs: ids}); err == nil || kind(err) != fhir.BadRequest {
		t.Errorf("%d studies: %v, want BadRequest", len(ids), err)
	}
}

// TestInferServiceRequest: trigger (b): a study whose ServiceRequest
// (linked by accession number) names a model runs it though its filters
// do not match (demo is CT-only; the study is MR), based on the request.
func TestInferServiceRequest(t *testing.T) {
	dcmodify := testenv.DCMTKTool(t, "dcmodify")
	e := newEnv(t, 1)
	body := `{"resourceType":"ServiceRequest","status":"active","intent":"order",
		"identifier":[{"system":"urn:test:accession","value":"ACC-42"}],
		"code":{"coding":[{"system":"urn:ember:model","code":"demo"}]},
		"subject":{"display":"someone"}}`
	res, err := e.eng.Parser().Parse([]byte(body), "ServiceRequest")
	if err != nil {
		t.Fatal(err)
	}
	sr, err := e.eng.Create(t.Context(), engine.System, engine.CreateRequest{Resource: res})
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(sample(t, "MR_small.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mr.dcm")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(dcmodify, "-nb", "-m", "(0008,0050)=ACC-42", path).CombinedOutput(); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, out)
	}
	study := e.ingest(t, path)
	if got := str(e.read(t, "ImagingStudy/"+study), "basedOn", 0, "reference"); got != "ServiceRequest/"+sr.Version.ID {
		t.Fatalf("ImagingStudy.basedOn = %q", got)
	}
	task := waitTask(t, e, study, e.svc.DeviceID("demo"))
	if task["status"] != "completed" || str(task, "basedOn", 0, "reference") != "ServiceRequest/"+sr.Version.ID {
		t.Fatalf("demo Task: %v", task)
	}
	report := e.read(t, str(task, "output", 0, "valueReference", "reference"))
	obs := e.read(t, str(report, "result", 0, "reference"))
	if str(obs, "basedOn", 0, "reference") != "ServiceRequest/"+sr.Version.ID {
		t.Errorf("Observation.basedOn: %v", obs["basedOn"])
	}
}
