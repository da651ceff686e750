package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/inference"
	"github.com/emberfhir/ember/inference/imaging/imagingtest"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
)

// modelsDir is the generated test models (and the demo's --models-dir).
const modelsDir = "../../testdata/models"

// inferModel is the model whose output these tests compute independently:
// the sigmoid of the preprocessed image's mean.
const inferModel = "mean-intensity"

// TestServeInferEndToEnd (issue 14, Done when): a study pushed by storescu,
// one stored over STOW-RS and one queued again with $infer each get a
// completed Task whose DiagnosticReport a clinician finds by patient and
// category, whose Observation's value is the model's output computed here
// from the same pixels and manifest (1e-5), with its Provenance and the
// model's Device.
func TestServeInferEndToEnd(t *testing.T) {
	testenv.DCMTKTools(t, "storescu")
	lib := testenv.ONNXRuntime(t)
	ct, err := dicomsamples.Pydicom(context.Background(), dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	mr, err := dicomsamples.Pydicom(context.Background(), "MR_small.dcm")
	if err != nil {
		t.Fatal(err)
	}
	addr, dimseAddr := freeAddr(t), freeAddr(t)
	s := startServe(t, []string{"EMBER_DIMSE_ADDR=" + dimseAddr, "EMBER_ONNXRUNTIME_LIB=" + lib}, addr,
		"--addr", addr, "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--ae-title", "EMBERTEST",
		"--models-dir", modelsDir, "--inference-quiet", "300ms")

	// The CapabilityStatement lists $infer on ImagingStudy.
	if _, body := httpDo(t, "GET", s.base+"/metadata", ""); !strings.Contains(body, `"name":"infer"`) {
		t.Error("the CapabilityStatement does not list $infer with models loaded")
	}
	// Every model is a Device, listed by its AI type.
	var devices bundle
	getJSON(t, s.base+"/Device?type="+url.QueryEscape(inference.AIDeviceTypeSystem+"|"+inference.AIDeviceTypeCode), &devices)
	if len(devices.Entry) != 3 {
		t.Errorf("Device?type=AI: %d Devices, want 3 (one per model)", len(devices.Entry))
	}

	// DIMSE: storescu pushes CT_small; the quiet period runs its models.
	host, port, _ := net.SplitHostPort(dimseAddr)
	store := exec.Command("storescu", "-aec", "EMBERTEST", host, port, ct)
	if out, err := store.CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	ctStudy := waitStudy(t, s, "CT")
	task := waitTask(t, s, ctStudy.ID, "", 60*time.Second)
	want := expectedMean(t, ct)
	checkFindings(t, s, ctStudy, task, want)

	// STOW-RS: MR_small over DICOMweb.
	stow(t, "http://"+addr+"/dicomweb/studies", mr)
	mrStudy := waitStudy(t, s, "MR")
	task = waitTask(t, s, mrStudy.ID, "", 60*time.Second)
	checkFindings(t, s, mrStudy, task, expectedMean(t, mr))

	// $infer, forced: a new Task, the same value.
	code, body, loc := postInfer(t, s.base+"/ImagingStudy/"+ctStudy.ID+"/$infer?force=true",
		`{"resourceType":"Parameters","parameter":[{"name":"model","valueString":"`+inferModel+`"}]}`)
	if code != http.StatusAccepted {
		t.Fatalf("$infer: %d %s", code, body)
	}
	var answer bundle
	if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Type != "collection" || len(answer.Entry) != 1 {
		t.Fatalf("$infer answer: %v %s", err, body)
	}
	forced := answer.Entry[0].Resource
	if forced.ID == task.ID || forced.ID == "" || loc != s.base+"/Task/"+forced.ID {
		t.Fatalf("$infer force: Task %q (earlier %q), Content-Location %q", forced.ID, task.ID, loc)
	}
	task = waitTask(t, s, ctStudy.ID, forced.ID, 60*time.Second)
	checkFindings(t, s, ctStudy, task, want)

	// Batch, not forced: the Tasks already done come back, nothing new.
	code, body, _ = postInfer(t, s.base+"/ImagingStudy/$infer", fmt.Sprintf(`{"resourceType":"Parameters","parameter":[
		{"name":"study","valueReference":{"reference":"ImagingStudy/%s"}},
		{"name":"study","valueReference":{"reference":"%s/ImagingStudy/%s"}},
		{"name":"model","valueString":"%s"}]}`, ctStudy.ID, s.base, mrStudy.ID, inferModel))
	if err := json.Unmarshal([]byte(body), &answer); code != http.StatusAccepted || err != nil || len(answer.Entry) != 2 {
		t.Fatalf("batch $infer: %d %s", code, body)
	}
	for _, e := range answer.Entry {
		if e.Resource.Status != "completed" {
			t.Errorf("batch $infer without force queued Task/%s again (status %s)", e.Resource.ID, e.Resource.Status)
		}
	}
	// More than 100 studies, an unknown model, a study that is not there.
	var many []string
	for i := 0; i <= inference.MaxStudies; i++ {
		many = append(many, fmt.Sprintf(`{"name":"study","valueReference":{"reference":"ImagingStudy/s%d"}}`, i))
	}
	if code, body, _ := postInfer(t, s.base+"/ImagingStudy/$infer", `{"resourceType":"Parameters","parameter":[`+strings.Join(many, ",")+`]}`); code != http.StatusBadRequest {
		t.Errorf("$infer with %d studies: %d %s, want 400", len(many), code, body)
	}
	if code, body, _ := postInfer(t, s.base+"/ImagingStudy/"+ctStudy.ID+"/$infer?model=no-such-model", ""); code/100 != 4 {
		t.Errorf("$infer of an unknown model: %d %s, want 4xx", code, body)
	}
	if code, body, _ := postInfer(t, s.base+"/ImagingStudy/absent/$infer", ""); code != http.StatusNotFound {
		t.Errorf("$infer on an absent study: %d %s, want 404", code, body)
	}
}

// TestServeInferOff: without the ONNX Runtime library serve starts, says
// why inference is off in one line, answers $infer with 503 and leaves
// $infer out of its CapabilityStatement; without --models-dir the same,
// quietly.
func TestServeInferOff(t *testing.T) {
	db := pgtest.NewDatabase(t)
	addr := freeAddr(t)
	s := startServe(t, []string{"EMBER_ONNXRUNTIME_LIB=" + filepath.Join(t.TempDir(), "libonnxruntime.so")}, addr,
		"--addr", addr, "--database-url", db, "--data-dir", t.TempDir(), "--models-dir", modelsDir)
	if n := strings.Count(s.out.String(), "inference off"); n != 1 || !strings.Contains(s.out.String(), "make onnxruntime") {
		t.Errorf("want one startup line saying inference is off and how to get the library (%d):\n%s", n, s.out.String())
	}
	if _, body := httpDo(t, "GET", s.base+"/metadata", ""); strings.Contains(body, `"name":"infer"`) {
		t.Error("the CapabilityStatement lists $infer with inference off")
	}
	code, body, _ := postInfer(t, s.base+"/ImagingStudy/x/$infer", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "OperationOutcome") || !strings.Contains(body, "make onnxruntime") {
		t.Errorf("$infer with inference off: %d %s, want 503 saying why", code, body)
	}
	if code, body := httpDo(t, "GET", s.base+"/Patient", ""); code != http.StatusOK {
		t.Errorf("the rest of the API with inference off: %d %s", code, body)
	}
	s.stop(t)

	addr = freeAddr(t)
	s = startServe(t, nil, addr, "--addr", addr, "--database-url", db, "--data-dir", t.TempDir())
	if code, body, _ := postInfer(t, s.base+"/ImagingStudy/x/$infer", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "--models-dir") {
		t.Errorf("$infer without --models-dir: %d %s, want 503 naming --models-dir", code, body)
	}
}

// TestServeInferLyingManifest: a manifest that does not match its model
// stops serve at start, exit 1, naming the file and field.
func TestServeInferLyingManifest(t *testing.T) {
	lib := testenv.ONNXRuntime(t)
	out, code := ember(t, []string{"EMBER_AUTH=none", "EMBER_DIMSE_ADDR=off", "EMBER_ONNXRUNTIME_LIB=" + lib}, "serve",
		"--addr", freeAddr(t), "--database-url", "postgres://unused.invalid/none", "--models-dir", "../../testdata/models-bad")
	if code != 1 || !strings.Contains(out, "lying-shape.json") || !strings.Contains(out, "input.shape") {
		t.Fatalf("serve with a lying manifest: exit %d, output:\n%s\nwant exit 1 naming lying-shape.json and input.shape", code, out)
	}
	for _, c := range [][]string{
		{"--inference-report-status", "amended"},
		{"--inference-workers", "-1"},
	} {
		out, code := ember(t, []string{"EMBER_AUTH=none", "EMBER_DIMSE_ADDR=off"}, append([]string{"serve", "--addr", freeAddr(t),
			"--database-url", "postgres://unused.invalid/none"}, c...)...)
		if code != 1 || !strings.Contains(out, c[0]) {
			t.Errorf("serve %v: exit %d, output %s; want exit 1 naming %s", c, code, out, c[0])
		}
	}
}

// TestServeInferKilledMidJob: with many jobs queued and one worker, ember
// is killed (SIGKILL) while they run; after a restart every Task completes,
// each with exactly one DiagnosticReport, and no finding is left without
// its report and Provenance (each job's findings are one transaction).
func TestServeInferKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: kills and restarts the server")
	}
	lib := testenv.ONNXRuntime(t)
	ct, err := dicomsamples.Pydicom(context.Background(), dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	db, dataDir := pgtest.NewDatabase(t), t.TempDir()
	addr := freeAddr(t)
	env := []string{"EMBER_ONNXRUNTIME_LIB=" + lib}
	// One River client (no export workers), so the inference client leads
	// and its rescue period applies to the job the kill interrupts.
	args := []string{"--addr", addr, "--database-url", db, "--data-dir", dataDir, "--models-dir", modelsDir,
		"--inference-quiet", "1h", "--inference-workers", "1", "--export-workers", "0", "--inference-rescue-after", "2s"}
	s := startServe(t, env, addr, args...)
	stow(t, "http://"+addr+"/dicomweb/studies", ct)
	study := waitStudy(t, s, "CT")
	const rounds = 25 // × 3 models: 75 jobs
	for i := 0; i < rounds; i++ {
		if code, body, _ := postInfer(t, s.base+"/ImagingStudy/"+study.ID+"/$infer?force=true", ""); code != http.StatusAccepted {
			t.Fatalf("$infer: %d %s", code, body)
		}
	}
	// Kill once some jobs are done, the moment one is in progress: a state,
	// not a time (a job runs for milliseconds, so the kill may still land
	// between two; the restart's log line says which).
	deadline := time.Now().Add(2 * time.Minute)
	for count(t, s.base+"/Task?status=completed") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no Task completed in 2 minutes:\n%s", s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if count(t, s.base+"/Task?status=in-progress") > 0 {
			break
		}
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	// First a restart with no workers, so nothing moves while the counts
	// are read: what the kill left must be whole.
	still := append(append([]string(nil), args...), "--inference-workers", "0")
	s2 := startServe(t, env, addr, still...)
	// Whatever the kill cut off, what is stored is whole: one report and
	// Provenance per completed Task, its findings, nothing else.
	checkWhole := func(when string) int {
		var b bundle
		getJSON(t, s2.base+"/Task?status=completed&_count=1000", &b)
		observations := 0
		for _, e := range b.Entry {
			observations++
			if strings.HasPrefix(e.Resource.Input[0].ValueString, "conv-pool|") {
				observations++ // conv-pool has two findings
			}
		}
		n := len(b.Entry)
		reports, obs, provenances := count(t, s2.base+"/DiagnosticReport"), count(t, s2.base+"/Observation"), count(t, s2.base+"/Provenance")
		if reports != n || obs != observations || provenances != n {
			t.Errorf("%s: %d Tasks completed, but %d reports, %d observations, %d provenances; want %d, %d, %d",
				when, n, reports, obs, provenances, n, observations, n)
		}
		return n
	}
	n := checkWhole("at the restart")
	inProgress := count(t, s2.base+"/Task?status=in-progress")
	if n == rounds*3 {
		t.Log("every job had finished before the kill: the restart proves less than it could")
	} else {
		t.Logf("at the restart: %d Tasks completed, %d in progress (cut off by the kill)", n, inProgress)
	}
	s2.stop(t)
	s2 = startServe(t, env, addr, args...)
	// River hands a running job whose process died to a worker once it has
	// run longer than the worker's Timeout and --inference-rescue-after,
	// checking every 30 s.
	deadline = time.Now().Add(2 * time.Minute)
	for count(t, s2.base+"/Task?status=completed") < rounds*3 {
		if count(t, s2.base+"/Task?status=failed") > 0 {
			t.Fatalf("a Task failed after the restart")
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 minutes after the restart only %d of %d Tasks completed; %d in progress (the job the kill cut off "+
				"was not run again: River rescues it only after the inference worker's Timeout, store/inference_queue.go)",
				count(t, s2.base+"/Task?status=completed"), rounds*3, count(t, s2.base+"/Task?status=in-progress"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkWhole("after the restart")
}

// resource is the part of a FHIR resource these tests read.
type resource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Status       string `json:"status"`
	Subject      ref    `json:"subject"`
	StatusReason *struct {
		Text string `json:"text"`
	} `json:"statusReason"`
	Input []struct {
		ValueString string `json:"valueString"`
	} `json:"input"`
	Output []struct {
		ValueReference ref `json:"valueReference"`
	} `json:"output"`
	Owner         ref   `json:"owner"`
	Result        []ref `json:"result"`
	Performer     []ref `json:"performer"`
	ImagingStudy  []ref `json:"imagingStudy"`
	Device        ref   `json:"device"`
	DerivedFrom   []ref `json:"derivedFrom"`
	Target        []ref `json:"target"`
	ValueQuantity *struct {
		Value float64 `json:"value"`
	} `json:"valueQuantity"`
	Meta struct {
		Security []struct{ System, Code string } `json:"security"`
	} `json:"meta"`
	Agent []struct {
		Who ref `json:"who"`
	} `json:"agent"`
}

type ref struct {
	Reference  string `json:"reference"`
	Identifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

type bundle struct {
	Type  string `json:"type"`
	Total int    `json:"total"`
	Entry []struct {
		Resource resource `json:"resource"`
	} `json:"entry"`
}

// waitStudy waits for the ImagingStudy of modality's one study.
func waitStudy(t *testing.T, s *server, modality string) resource {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); sleep() {
		var b bundle
		getJSON(t, s.base+"/ImagingStudy?modality="+modality, &b)
		if len(b.Entry) == 1 {
			return b.Entry[0].Resource
		}
	}
	t.Fatalf("no %s ImagingStudy", modality)
	return resource{}
}

// waitTask waits until study's Task for inferModel (Task id, or any when
// "") completes, and returns it.
func waitTask(t *testing.T, s *server, study, id string, within time.Duration) resource {
	t.Helper()
	var last []resource
	for deadline := time.Now().Add(within); time.Now().Before(deadline); sleep() {
		var b bundle
		getJSON(t, s.base+"/Task?focus=ImagingStudy/"+study, &b)
		last = last[:0]
		for _, e := range b.Entry {
			task := e.Resource
			last = append(last, task)
			if (id != "" && task.ID != id) || len(task.Input) == 0 || !strings.HasPrefix(task.Input[0].ValueString, inferModel+"|") {
				continue
			}
			switch task.Status {
			case "completed":
				return task
			case "failed":
				t.Fatalf("Task/%s failed: %+v", task.ID, task.StatusReason)
			}
		}
	}
	t.Fatalf("no completed %s Task for ImagingStudy/%s within %s; Tasks %+v", inferModel, study, within, last)
	return resource{}
}

// expectedMean is mean-intensity's output for file, computed without
// Ember's pipeline: the reference preprocessing (plain float64 loops from
// the manifest), the model's mean, the manifest's sigmoid.
func expectedMean(t *testing.T, file string) float64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(modelsDir, inferModel+".json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	in, _, err := imagingtest.ReferenceFile(file, m.ParsedPreprocess(), 1, 64, 64)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, v := range in {
		sum += v
	}
	return 1 / (1 + math.Exp(-sum/float64(len(in))))
}

// checkFindings follows a completed Task to its findings as a clinician
// finds them, and checks their shape and value.
func checkFindings(t *testing.T, s *server, study, task resource, want float64) {
	t.Helper()
	if len(task.Output) != 1 || !strings.HasPrefix(task.Output[0].ValueReference.Reference, "DiagnosticReport/") {
		t.Fatalf("Task/%s output %+v", task.ID, task.Output)
	}
	reportRef := task.Output[0].ValueReference.Reference
	patient := study.Subject.Reference
	var reports bundle
	getJSON(t, s.base+"/DiagnosticReport?patient="+patient+"&category="+url.QueryEscape("http://loinc.org|LP29684-5"), &reports)
	var report *resource
	for i, e := range reports.Entry {
		if "DiagnosticReport/"+e.Resource.ID == reportRef {
			report = &reports.Entry[i].Resource
		}
	}
	if report == nil {
		t.Fatalf("DiagnosticReport?patient=%s&category=radiology does not return %s (%d reports)", patient, reportRef, len(reports.Entry))
	}
	// R4's DiagnosticReport.performer cannot refer to a Device: it names
	// the model by the Device's identifier.
	if len(report.ImagingStudy) != 1 || report.ImagingStudy[0].Reference != "ImagingStudy/"+study.ID ||
		len(report.Performer) != 1 || report.Performer[0].Identifier.System != inference.ModelSystem ||
		!strings.HasPrefix(report.Performer[0].Identifier.Value, inferModel+"|") || len(report.Result) != 1 {
		t.Errorf("%s: imagingStudy %v, performer %+v, result %v", reportRef, report.ImagingStudy, report.Performer, report.Result)
	}
	var obs resource
	getJSON(t, s.base+"/"+report.Result[0].Reference, &obs)
	if obs.ValueQuantity == nil || math.Abs(obs.ValueQuantity.Value-want) > 1e-5 {
		t.Errorf("%s: value %+v, want %.9f (computed from the pixels and manifest)", report.Result[0].Reference, obs.ValueQuantity, want)
	}
	if obs.Device.Reference != task.Owner.Reference || len(obs.Meta.Security) == 0 || obs.Meta.Security[0].Code != "AIAST" {
		t.Errorf("%s: device %s, security %+v", report.Result[0].Reference, obs.Device.Reference, obs.Meta.Security)
	}
	var derived bundle
	getJSON(t, s.base+"/Observation?derived-from=ImagingStudy/"+study.ID, &derived)
	found := false
	for _, e := range derived.Entry {
		found = found || "Observation/"+e.Resource.ID == report.Result[0].Reference
	}
	if !found {
		t.Errorf("Observation?derived-from=ImagingStudy/%s does not return %s", study.ID, report.Result[0].Reference)
	}
	var provs bundle
	getJSON(t, s.base+"/Provenance?target="+reportRef, &provs)
	if len(provs.Entry) != 1 || len(provs.Entry[0].Resource.Agent) == 0 || provs.Entry[0].Resource.Agent[0].Who.Reference != task.Owner.Reference {
		t.Errorf("Provenance?target=%s: %+v", reportRef, provs.Entry)
	}
	var device resource
	getJSON(t, s.base+"/"+task.Owner.Reference, &device)
	if device.ResourceType != "Device" {
		t.Errorf("Task owner %s is not a Device", task.Owner.Reference)
	}
}

// stow stores file over STOW-RS.
func stow(t *testing.T, url, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	mw.Close()
	req, err := http.NewRequest("POST", url, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("STOW-RS %s: %d %s", file, resp.StatusCode, body)
	}
}

// postInfer POSTs a $infer request (a Parameters body, or none) and returns
// the status, body and Content-Location.
func postInfer(t *testing.T, url, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Content-Location")
}

// count is a search's total.
func count(t *testing.T, url string) int {
	t.Helper()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	var b bundle
	getJSON(t, url+sep+"_summary=count", &b)
	return b.Total
}
