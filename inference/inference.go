// Package inference runs the models of a models directory on ingested
// imaging studies and writes what they find as FHIR: one Task per job
// (requested → in-progress → completed | failed), and on success the
// Observations, DiagnosticReport and Provenance of the findings, written in
// one engine transaction with the Task's completion so a crash leaves
// either all of them or none.
//
// Jobs come from three triggers: a study that became quiet after its last
// instance (StudyChanged, debounced), a ServiceRequest whose code names a
// model (checked when its study syncs), and $infer (Request). Each job is a
// River job in PostgreSQL (store.Jobs), inserted in the transaction that
// creates its Task, so any replica can run it and a restart loses none.
//
// Depends on engine (every write; System for the server's own work, the
// token's Caller for $infer), store (the queue), inference/model (the
// loaded models) and inference/imaging (selection and pixels). The DICOM
// side comes in through Studies, which package dicom implements.
package inference

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Service.
type Config struct {
	Engine *engine.Engine
	// Models are the loaded models; nil turns inference off.
	Models *model.Registry
	// Off is why inference is off when Models is nil (Available's error,
	// $infer's 503).
	Off error
	// Studies is the DICOM side: a study's instances and their bytes.
	Studies Studies
	// Jobs is the durable queue (shared with bulk export). New binds the
	// Service as its inference runner.
	Jobs *store.Jobs
	// QuietPeriod is how long a study must go without a new instance
	// before trigger (a) runs its models; 0 means 10s.
	QuietPeriod time.Duration
	// ReportStatus overrides every manifest's DiagnosticReport.status; ""
	// keeps the manifest's (whose default is preliminary).
	ReportStatus string
	Logger       *slog.Logger
	// Metrics registers the inference metrics; nil registers none.
	Metrics prometheus.Registerer
}

// Studies is what inference needs of the DICOM side. dicom.Service
// implements it (dicom/inference.go).
type Studies interface {
	// Instances lists the stored instances of a study (metadata only).
	Instances(ctx context.Context, studyUID string) ([]imaging.InstanceMeta, error)
	// Open opens one instance's Part-10 bytes; close releases them.
	Open(ctx context.Context, sopInstanceUID string) (r io.ReaderAt, size int64, close func() error, err error)
	// StudyOf maps an ImagingStudy id to its StudyInstanceUID.
	StudyOf(ctx context.Context, imagingStudyID string) (studyUID string, err error)
}

// Request is a request for model runs: $infer (trigger c).
type Request struct {
	// ImagingStudyIDs are the studies, at most MaxStudies.
	ImagingStudyIDs []string
	// Model is the model to run; "" runs every model whose filters match.
	Model string
	// Force runs again what already ran (or is queued) on a study.
	Force bool
}

// MaxStudies bounds one Request.
const MaxStudies = 100

// Queued is one Task of a Request's answer.
type Queued struct {
	TaskID                string
	ImagingStudyID, Model string
	// Existing: a Task for this study and model version was already done
	// or queued, and Force was not set; TaskID is that Task.
	Existing bool
}

// Job is one model run, as the queue hands it to Run.
type Job struct {
	TaskID, StudyUID, ImagingStudyID, Model, ModelVersion string
	// Attempt counts from 1; Final says an error will not be retried.
	Attempt int
	Final   bool
}

// Service runs inference jobs and queues new ones. It is safe for
// concurrent use.
type Service struct {
	cfg     Config
	en      *engine.Engine
	models  *model.Registry
	log     *slog.Logger
	metrics *metrics
	devices map[string]string // model name → Device id

	mu      sync.Mutex
	pending map[string]*time.Timer // study UID → its quiet-period timer
	closed  bool
	bg      sync.WaitGroup // timers' runs in flight
	ctx     context.Context
	cancel  context.CancelFunc

	// afterObservations, when set (tests), runs inside the findings
	// transaction after the Observations are written.
	afterObservations func() error
}

// defaultQuietPeriod is QuietPeriod's default.
const defaultQuietPeriod = 10 * time.Second

// New returns the Service. With models it writes one Device per model
// (a conditional create on its name|version identifier) and binds itself
// as cfg.Jobs' inference runner. Without models (cfg.Models nil) it
// returns a Service whose Available says why inference is off.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Engine == nil {
		return nil, errors.New("inference: Config.Engine is required")
	}
	if cfg.QuietPeriod <= 0 {
		cfg.QuietPeriod = defaultQuietPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Models == nil && cfg.Off == nil {
		cfg.Off = errors.New("no models are loaded (set --models-dir)")
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{
		cfg: cfg, en: cfg.Engine, models: cfg.Models, log: cfg.Logger,
		devices: map[string]string{}, pending: map[string]*time.Timer{},
		ctx: bg, cancel: cancel,
	}
	if cfg.Models == nil {
		return s, nil
	}
	if cfg.Studies == nil || cfg.Jobs == nil {
		cancel()
		return nil, errors.New("inference: Config.Studies and Config.Jobs are required with models")
	}
	m, err := newMetrics(cfg.Metrics, cfg.Jobs)
	if err != nil {
		cancel()
		return nil, err
	}
	s.metrics = m
	if err := s.registerDevices(ctx); err != nil {
		cancel()
		return nil, err
	}
	cfg.Jobs.SetInferenceRunner(s)
	return s, nil
}

// Available is nil when inference is on, else why it is off (a
// fhir.Unavailable error).
func (s *Service) Available() error {
	if s.models != nil {
		return nil
	}
	return fhir.NewError(fhir.Unavailable, "not-supported", "inference is off: "+s.cfg.Off.Error())
}

// Models are the loaded models (nil when off).
func (s *Service) Models() *model.Registry { return s.models }

// Close stops the quiet-period timers and waits for the triggers they
// started. It does not close the models (their owner does) or the queue.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	for uid, t := range s.pending {
		t.Stop()
		delete(s.pending, uid)
	}
	s.mu.Unlock()
	s.cancel()
	s.bg.Wait()
	return nil
}
