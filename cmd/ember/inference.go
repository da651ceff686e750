package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/inference"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/inference/onnx"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
)

// inferenceFlags are serve's flags for AI inference: the models, the ONNX
// Runtime library and the worker pool.
type inferenceFlags struct {
	modelsDir    string
	lib          string
	workers      int
	quiet        time.Duration
	rescueAfter  time.Duration
	reportStatus string
}

func (f *inferenceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.modelsDir, "models-dir", env("EMBER_MODELS_DIR", ""),
		"directory of ONNX models (NAME.onnx beside its manifest NAME.json) run on ingested studies; empty = inference off (env EMBER_MODELS_DIR)")
	fs.StringVar(&f.lib, "onnxruntime-lib", env("EMBER_ONNXRUNTIME_LIB", ""),
		"the ONNX Runtime shared library (env EMBER_ONNXRUNTIME_LIB; default "+onnx.LibraryFile+" next to the ember executable: make onnxruntime)")
	fs.IntVar(&f.workers, "inference-workers", int(envInt("EMBER_INFERENCE_WORKERS", 1)),
		"model runs this process works at once, each with max(1, CPUs / workers) threads; 0 = none, only queue them (env EMBER_INFERENCE_WORKERS)")
	fs.DurationVar(&f.quiet, "inference-quiet", envDuration("EMBER_INFERENCE_QUIET", 10*time.Second),
		"how long a study must go without a new instance before its models run (env EMBER_INFERENCE_QUIET)")
	fs.DurationVar(&f.rescueAfter, "inference-rescue-after", envDuration("EMBER_INFERENCE_RESCUE_AFTER", 5*time.Minute),
		"how long a job may stay running before it is taken to have died with its process (a crash) and run again (env EMBER_INFERENCE_RESCUE_AFTER)")
	fs.StringVar(&f.reportStatus, "inference-report-status", env("EMBER_INFERENCE_REPORT_STATUS", ""),
		"DiagnosticReport.status of every finding: preliminary, final, partial or registered; empty = each manifest's (default preliminary) (env EMBER_INFERENCE_REPORT_STATUS)")
}

// reportStatuses are the DiagnosticReport statuses a machine's report may
// carry (model.Report.Status accepts the same).
var reportStatuses = map[string]bool{"": true, "preliminary": true, "final": true, "partial": true, "registered": true}

// inferenceRuntime is serve's inference: the loaded models (nil when off),
// the service once started, and what closes them.
type inferenceRuntime struct {
	flags   inferenceFlags
	log     *slog.Logger
	rt      *onnx.Runtime
	models  *model.Registry // nil: off
	off     error           // why, when models is nil
	svc     atomic.Pointer[inference.Service]
	jobs    *store.Jobs
	service *inference.Service
}

// load checks the flags and loads the models before anything serves: a
// manifest that does not match its model stops serve here, naming the
// file and field. No --models-dir, or no usable ONNX Runtime library,
// leaves inference off with one line saying why.
func (f *inferenceFlags) load(log *slog.Logger) (*inferenceRuntime, error) {
	ir := &inferenceRuntime{flags: *f, log: log}
	if !reportStatuses[f.reportStatus] {
		return nil, fmt.Errorf("serve: --inference-report-status %q: use preliminary, final, partial or registered", f.reportStatus)
	}
	if f.workers < 0 {
		return nil, fmt.Errorf("serve: --inference-workers %d: use 0 or more", f.workers)
	}
	if f.quiet <= 0 {
		return nil, fmt.Errorf("serve: --inference-quiet %s: use a positive duration", f.quiet)
	}
	if f.rescueAfter <= 0 {
		return nil, fmt.Errorf("serve: --inference-rescue-after %s: use a positive duration", f.rescueAfter)
	}
	if f.modelsDir == "" {
		ir.off = errors.New("no models directory (set --models-dir)")
		log.Info("inference off: no --models-dir")
		return ir, nil
	}
	path, err := onnx.FindLibrary(f.lib)
	if err == nil {
		ir.rt, err = onnx.Open(path)
	}
	if err != nil {
		var le *onnx.LibraryError
		if !errors.As(err, &le) {
			return nil, fmt.Errorf("serve: ONNX Runtime: %w", err)
		}
		ir.off = err
		log.Warn("inference off: " + err.Error())
		return ir, nil
	}
	// Workers × intra-op threads stay within the cores: a model run is
	// CPU-bound, and oversubscription only adds switching.
	threads := max(1, numCPU()/max(1, f.workers))
	ir.models, err = model.Load(ir.rt, f.modelsDir, onnx.SessionOptions{IntraOpThreads: threads})
	if err != nil {
		ir.rt.Close()
		return nil, fmt.Errorf("serve: --models-dir %s: %w", f.modelsDir, err)
	}
	if len(ir.models.Models()) == 0 {
		ir.models.Close()
		ir.rt.Close()
		ir.models, ir.rt = nil, nil
		ir.off = fmt.Errorf("no models in %s (each is NAME.onnx beside NAME.json)", f.modelsDir)
		log.Warn("inference off: " + ir.off.Error())
		return ir, nil
	}
	names := make([]string, 0, len(ir.models.Models()))
	for _, m := range ir.models.Models() {
		names = append(names, m.Manifest.Name+"|"+m.Manifest.Version)
	}
	log.Info("inference models loaded", "dir", f.modelsDir, "models", names, "workers", f.workers, "threads", threads)
	return ir, nil
}

// studyChanged is the DICOM service's OnStudySynced: trigger (a) once the
// service runs (the DICOM side starts first; a sync before then is picked
// up by the study's next one, or by $infer).
func (ir *inferenceRuntime) studyChanged(studyUID string) {
	if svc := ir.svc.Load(); svc != nil {
		svc.StudyChanged(studyUID)
	}
}

// start starts the inference service over the server's engine and the
// DICOM service's studies: the models' Devices, the queue's workers, the
// metrics, and $infer (served, and listed in the CapabilityStatement only
// when models are loaded).
func (ir *inferenceRuntime) start(ctx context.Context, srv *server.Server, studies *dicom.Service, st *store.Store) error {
	cfg := inference.Config{Engine: srv.Engine(), Off: ir.off, QuietPeriod: ir.flags.quiet,
		ReportStatus: ir.flags.reportStatus, Logger: ir.log, Metrics: srv.MetricsRegisterer()}
	if ir.models != nil {
		// A River client of its own, on the inference queue only: bulk
		// export's client works the export queue with its own workers.
		jobs, err := st.NewJobs(nil, store.JobsOptions{InferenceWorkers: ir.flags.workers,
			RescueAfter: ir.flags.rescueAfter, InferenceTimeout: ir.flags.rescueAfter, Logger: ir.log})
		if err != nil {
			return fmt.Errorf("serve: inference queue: %w", err)
		}
		ir.jobs = jobs
		cfg.Models, cfg.Studies, cfg.Jobs = ir.models, studies.InferenceStudies(), jobs
	}
	svc, err := inference.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ir.service = svc
	if err := srv.RegisterOperation(inferOperation(svc, srv.Engine())); err != nil {
		return err
	}
	if ir.jobs != nil {
		if err := ir.jobs.Start(ctx); err != nil {
			return fmt.Errorf("serve: inference queue: %w", err)
		}
	}
	ir.svc.Store(svc)
	return nil
}

// stop stops the workers (a running job is cancelled and runs again on the
// next start: River keeps it) and the triggers; call it while the store is
// open.
func (ir *inferenceRuntime) stop(log *slog.Logger) {
	ir.svc.Store(nil)
	if ir.jobs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := ir.jobs.Stop(ctx); err != nil {
			log.Error("inference workers shutdown", "err", err)
		}
		cancel()
	}
	if ir.service != nil {
		ir.service.Close()
	}
}

// close releases the models and the ONNX Runtime, after stop.
func (ir *inferenceRuntime) close() {
	if ir.models != nil {
		ir.models.Close()
	}
	if ir.rt != nil {
		ir.rt.Close()
	}
}
