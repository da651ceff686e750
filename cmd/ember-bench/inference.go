package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/inference/onnx"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/onnxgen"
)

// Inference scenario (issue 14): the generated models of testdata/models
// (the demo's --models-dir) on CT studies made from pydicom's CT_small.dcm,
// each study one instance with fresh UIDs (every model matches CT, so each
// study is three jobs). Registered in scenarios() as "inference"; `make
// bench ONLY=inference` runs it alone. Needs `make onnxruntime` (the
// library next to the ember binary, where serve looks for it).
//
//	inference_overhead           Ember's CPU time per image (decode and
//	                             preprocess the instance, Model.Run, the
//	                             findings) over a bare Session.Run of the
//	                             same preprocessed tensor, in %, for the
//	                             reference model (onnxgen.Reference: seven
//	                             convolutions over 224×224 RGB, ~2.1 G
//	                             multiply-adds, a chest X-ray classifier's
//	                             cost; written to a temporary directory);
//	                             in-process, no database. Target ≤ 20 %.
//	inference_overhead_<model>   the same for each test model; they run in
//	                             microseconds, so decoding dominates and the
//	                             figure says how much Ember's own work costs.
//	inference_studies_per_s_w1/_w2   studies whose every Task completed per
//	                             second, queued with batch $infer, against a
//	                             server with --inference-workers 1 and 2.
//	inference_rss_peak           the w2 server's peak RSS over a 500-study
//	                             run; inference_models_size is what the
//	                             target (≤ 400 MB beyond it) adds to.
//	inference_job_<phase>_ms     the server's mean time per job phase
//	                             (ember_inference_seconds): preprocess, run,
//	                             write.
const (
	inferW1Studies = 100
	inferW2Studies = 500
	inferImages    = 300 // per model, for the overhead
)

func inferenceBench(ctx context.Context, e *env) ([]figure, error) {
	lib := filepath.Join(filepath.Dir(e.bin), onnx.LibraryFile)
	if _, err := os.Stat(lib); err != nil {
		return nil, fmt.Errorf("inference: no ONNX Runtime library next to %s (run `make onnxruntime`): %w", e.bin, err)
	}
	models := filepath.Join(filepath.Dir(e.bin), "..", "testdata", "models")
	if _, err := os.Stat(models); err != nil {
		return nil, fmt.Errorf("inference: the test models: %w", err)
	}
	sample, err := dicomsamples.Pydicom(ctx, dicomsamples.CTSmall)
	if err != nil {
		return nil, err
	}
	reference, err := os.MkdirTemp("", "ember-bench-reference-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(reference)
	if err := onnxgen.WriteReference(reference); err != nil {
		return nil, err
	}
	var figs []figure
	for _, dir := range []string{reference, models} {
		f, err := inferenceOverhead(ctx, lib, dir, sample)
		figs = append(figs, f...)
		if err != nil {
			return figs, err
		}
	}
	tmpl, err := newCTTemplate(sample)
	if err != nil {
		return figs, err
	}
	run := rand.Uint64()
	for _, c := range []struct {
		workers, studies, scenario int
		last                       bool
	}{{1, inferW1Studies, 31, false}, {2, inferW2Studies, 32, true}} {
		f, err := inferenceStudies(ctx, e.bin, models, tmpl, run, c.scenario, c.workers, c.studies, c.last)
		figs = append(figs, f...)
		if err != nil {
			return figs, err
		}
	}
	return figs, nil
}

// inferenceOverhead times, per model, what a job does on the CPU for one
// image against a bare Session.Run of the same tensor.
func inferenceOverhead(ctx context.Context, lib, dir, sample string) ([]figure, error) {
	rt, err := onnx.Open(lib)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	reg, err := model.Load(rt, dir, onnx.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	data, err := os.ReadFile(sample)
	if err != nil {
		return nil, err
	}
	r := bytes.NewReader(data)
	var figs []figure
	for _, m := range reg.Models() {
		shape := m.Manifest.Input.Shape
		c, h, w := int(shape[1]), int(shape[2]), int(shape[3])
		tensor, _, err := imaging.Tensor(r, int64(len(data)), m.Preprocess, c, h, w)
		if err != nil {
			return figs, fmt.Errorf("inference: %s: %w", m.Manifest.Name, err)
		}
		ember := func() error {
			in, _, err := imaging.Tensor(r, int64(len(data)), m.Preprocess, c, h, w)
			if err != nil {
				return err
			}
			out, err := m.Run(ctx, in)
			if err != nil {
				return err
			}
			_, err = m.Findings(out)
			return err
		}
		bare := func() error {
			_, err := m.Session().Run(ctx, tensor)
			return err
		}
		// Interleaved rounds, best of each: the machine's noise is not
		// the figure. A round is inferImages/5 images, or fewer for a
		// model whose run is long (about half a second a round).
		start := time.Now()
		if err := bare(); err != nil {
			return figs, fmt.Errorf("inference: %s: %w", m.Manifest.Name, err)
		}
		perRound := max(3, min(inferImages/5, int(500*time.Millisecond/max(time.Since(start), 1))))
		var bestEmber, bestBare time.Duration
		for round := 0; round < 5; round++ {
			for _, x := range []struct {
				f    func() error
				best *time.Duration
			}{{ember, &bestEmber}, {bare, &bestBare}} {
				start := time.Now()
				for i := 0; i < perRound; i++ {
					if err := x.f(); err != nil {
						return figs, fmt.Errorf("inference: %s: %w", m.Manifest.Name, err)
					}
				}
				if d := time.Since(start) / time.Duration(perRound); *x.best == 0 || d < *x.best {
					*x.best = d
				}
			}
		}
		name := "_" + strings.ReplaceAll(m.Manifest.Name, "-", "_")
		overhead := "inference_overhead" + name
		if m.Manifest.Name == "reference" {
			overhead = "inference_overhead"
		}
		figs = append(figs,
			figure{overhead, 100 * (float64(bestEmber)/float64(bestBare) - 1), "%"},
			figure{"inference_image" + name, float64(bestEmber) / float64(time.Microsecond), "µs"},
			figure{"inference_bare_run" + name, float64(bestBare) / float64(time.Microsecond), "µs"},
		)
	}
	return figs, nil
}

// inferenceStudies stores studies over STOW-RS on a fresh server with
// workers inference workers, queues every model on all of them with batch
// $infer and times until every Task has completed.
func inferenceStudies(ctx context.Context, bin, models string, tmpl *ctTemplate, run uint64, scenario, workers, studies int, last bool) ([]figure, error) {
	srv, err := startEmber(ctx, bin, false, func(error) {}, "--models-dir", models,
		"--inference-workers", strconv.Itoa(workers), "--inference-quiet", "24h")
	defer func() {
		if srv != nil {
			_ = shutdown(srv, false, false, io.Discard)
		}
	}()
	if err != nil {
		log := ""
		if srv != nil {
			log = srv.logTail(20)
		}
		return nil, fmt.Errorf("inference: start ember: %w\n%s", err, log)
	}
	client := newClient()
	client.Timeout = 2 * time.Minute
	base := srv.baseURL + "/fhir"
	t := dicomTarget{pid: srv.cmd.Process.Pid}

	// One STOW-RS request, one instance per study.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := range studies {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		// A series of its own per study: a series UID names one study.
		w.Write(tmpl.instance(false, run, scenario, tmpl.uid(tmpl.study, run, scenario, i), i+1, 0))
	}
	mw.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.baseURL+"/dicomweb/studies", &body)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	if err := expectStatus(client.Do(req)); err != nil {
		return nil, fmt.Errorf("inference: STOW-RS: %w", err)
	}
	var ids []string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var b struct {
			Entry []struct {
				Resource struct{ ID string } `json:"resource"`
			} `json:"entry"`
		}
		if err := getFHIR(ctx, client, base+"/ImagingStudy?_elements=id&_count=1000", &b); err != nil {
			return nil, err
		}
		if len(b.Entry) == studies {
			for _, e := range b.Entry {
				ids = append(ids, e.Resource.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("inference: %d of %d ImagingStudies after 2 minutes", len(b.Entry), studies)
		}
	}

	before, _ := readRSS(t.pid)
	stopRSS := t.sampleRSS()
	start := time.Now()
	for i := 0; i < len(ids); i += 100 {
		var params []string
		for _, id := range ids[i:min(i+100, len(ids))] {
			params = append(params, `{"name":"study","valueReference":{"reference":"ImagingStudy/`+id+`"}}`)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/ImagingStudy/$infer",
			strings.NewReader(`{"resourceType":"Parameters","parameter":[`+strings.Join(params, ",")+`]}`))
		req.Header.Set("Content-Type", "application/fhir+json")
		if err := expectStatus(client.Do(req)); err != nil {
			stopRSS()
			return nil, fmt.Errorf("inference: $infer: %w", err)
		}
	}
	want := 3 * studies
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		done, err := fhirCount(ctx, client, base+"/Task?status=completed")
		if err != nil {
			stopRSS()
			return nil, err
		}
		if done >= want {
			break
		}
		if failed, _ := fhirCount(ctx, client, base+"/Task?status=failed"); failed > 0 {
			stopRSS()
			return nil, fmt.Errorf("inference: %d Tasks failed", failed)
		}
		if time.Now().After(deadline) {
			stopRSS()
			return nil, fmt.Errorf("inference: %d of %d Tasks completed after 5 minutes", done, want)
		}
	}
	elapsed := time.Since(start)
	peak := stopRSS()
	figs := []figure{{fmt.Sprintf("inference_studies_per_s_w%d", workers), rate(studies, elapsed), "studies/s"}}
	if !last {
		return figs, nil
	}
	var size int64
	if files, err := filepath.Glob(filepath.Join(models, "*.onnx")); err == nil {
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				size += st.Size()
			}
		}
	}
	figs = append(figs,
		figure{"inference_rss_before", float64(before) / 1024, "MB"},
		figure{"inference_rss_peak", float64(peak) / 1024, "MB"},
		figure{"inference_models_size", float64(size) / (1 << 20), "MB"},
	)
	phases, err := inferencePhases(ctx, client, srv.baseURL+"/metrics")
	return append(figs, phases...), err
}

// inferencePhases reads the mean of each ember_inference_seconds phase
// over every model from /metrics.
func inferencePhases(ctx context.Context, client *http.Client, url string) ([]figure, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sum, count := map[string]float64{}, map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		var into map[string]float64
		switch {
		case strings.HasPrefix(line, "ember_inference_seconds_sum{"):
			into = sum
		case strings.HasPrefix(line, "ember_inference_seconds_count{"):
			into = count
		default:
			continue
		}
		_, rest, _ := strings.Cut(line, `phase="`)
		phase, _, _ := strings.Cut(rest, `"`)
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			into[phase] += v
		}
	}
	var figs []figure
	for _, phase := range []string{"preprocess", "run", "write"} {
		if count[phase] > 0 {
			figs = append(figs, figure{"inference_job_" + phase + "_ms", 1000 * sum[phase] / count[phase], "ms"})
		}
	}
	if len(figs) == 0 {
		return nil, errors.New("inference: no ember_inference_seconds in /metrics")
	}
	return figs, sc.Err()
}

// expectStatus reads a response to the end and wants a 2xx status.
func expectStatus(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, tail(string(b), 5))
	}
	return nil
}

func getFHIR(ctx context.Context, client *http.Client, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func fhirCount(ctx context.Context, client *http.Client, url string) (int, error) {
	var b struct{ Total int }
	err := getFHIR(ctx, client, url+"&_summary=count", &b)
	return b.Total, err
}
