package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/internal/testfiles"
)

// The study the imaging test pushes: pydicom's CT_small made a series of
// imagingImages instances (new SOP Instance UIDs, InstanceNumber 1…n), so
// there is something to scroll.
const (
	imagingImages  = 3
	imagingStudy   = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
	imagingPatient = "CompressedSamples" // the family part of its PatientName
	imagingModel   = "demo"
)

// TestImagingInBrowser (issue 18, Imaging): a study pushed with storescu is
// listed on the Imaging screen and found by its filters; its viewer shows
// the series thumbnail decoded, scrolls with the buttons, keyboard, wheel
// and slider, and applies window presets (new rendered images, decoded);
// "Run model" queues a Task the page watches to completion and the finding
// it wrote appears beside the images, as the FHIR API has it; the patient's
// chart lists the study with its thumbnail and findings; a study that is
// not there is "not found" and a patient's DICOMweb search "not permitted".
// axe-core runs on every screen, which is photographed; any browser console
// error fails the test.
func TestImagingInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test builds ember and drives chromium")
	}
	browser, node := browserTools(t)
	testenv.DCMTKTools(t, "storescu", "dcmodify")
	lib := testenv.ONNXRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	pw, axe := driverPackages(ctx, t)
	models, err := testfiles.Path("models")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := dicomsamples.Pydicom(ctx, dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	files := seriesOf(ctx, t, ct, imagingImages)

	bin := buildEmber(ctx, t)
	dbURL := pgtest.NewDatabase(t)
	ember := emberCLI(ctx, t, bin, dbURL)

	// Models run only when asked: the quiet period is an hour, so the
	// finding the page shows is the one its button asked for.
	addr, dimse := freeAddr(t), freeAddr(t)
	origin := serve(ctx, t, bin, addr, dbURL, append(os.Environ(), "EMBER_ONNXRUNTIME_LIB="+lib), "--data-dir", t.TempDir(),
		"--dimse-addr", dimse, "--ae-title", "EMBERTEST", "--models-dir", models, "--inference-quiet", "1h")

	host, port, _ := net.SplitHostPort(dimse)
	if out, err := exec.CommandContext(ctx, "storescu", append([]string{"-aec", "EMBERTEST", host, port}, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	api := systemClient(t, ember, origin, "console-e2e")
	study := waitImagingStudy(t, api, imagingStudy, imagingImages)
	patient, ok := strings.CutPrefix(study.Subject.Reference, "Patient/")
	if !ok {
		t.Fatalf("ImagingStudy/%s has subject %q", study.ID, study.Subject.Reference)
	}
	reportsQuery := "DiagnosticReport?patient=" + patient + "&category=" + url.QueryEscape("http://loinc.org|LP29684-5")
	if n := api.count(reportsQuery); n != 0 {
		t.Fatalf("%d reports before the button was pressed: the quiet period ran the models", n)
	}

	ember("user", "add", "--username", "dora", "--password", password, "--role", "doctor", "--fhir-user", "Practitioner/dora")
	ember("user", "add", "--username", "pat", "--password", password, "--role", "patient", "--fhir-user", "Patient/"+patient)
	t.Logf("built ember, served and stored %d instances in %s", imagingImages, time.Since(start).Round(time.Millisecond))

	var got imagingOutput
	browserRun{browser: browser, node: node, pw: pw, axe: axe, script: "imaging_drive.js", start: start}.drive(ctx, t, origin,
		shotsDir(t, "console-imaging-e2e"), map[string]any{
			"users": map[string]string{"doctor": "dora", "patient": "pat"}, "study": imagingStudy, "patient": patient,
			"patientName": imagingPatient, "model": imagingModel,
		}, &got)
	checkScreens(t, &got.driveReport, 6)
	checkImagingDoctor(t, got.Results.Doctor, api, study.ID, reportsQuery)
	checkImagingPatient(t, got.Results.Patient)
}

// seriesOf copies file n times into one series: each copy a new SOP
// Instance UID (dcmodify updates the meta header with it) and
// InstanceNumber 1…n.
func seriesOf(ctx context.Context, t *testing.T, file string, n int) []string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("ct-%d.dcm", i))
		if err := os.WriteFile(p, src, 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.CommandContext(ctx, "dcmodify", "-nb", "-gin", "-i", "(0020,0013)="+strconv.Itoa(i), p).CombinedOutput(); err != nil {
			t.Fatalf("dcmodify: %v\n%s", err, b)
		}
		out = append(out, p)
	}
	return out
}

type imagingStudyResource struct {
	ID                string
	NumberOfInstances int
	Subject           struct{ Reference string }
}

// waitImagingStudy waits for the ImagingStudy of uid to hold n instances
// (a burst of instances is one version, rebuilt once it is quiet).
func waitImagingStudy(t *testing.T, api *client, uid string, n int) imagingStudyResource {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var b struct {
			Entry []struct{ Resource imagingStudyResource }
		}
		api.get("ImagingStudy?identifier="+url.QueryEscape("urn:oid:"+uid), &b)
		if len(b.Entry) == 1 && b.Entry[0].Resource.NumberOfInstances == n {
			return b.Entry[0].Resource
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ImagingStudy of %s with %d instances in 30 s: %+v", uid, n, b.Entry)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type imagingOutput struct {
	driveReport
	Results struct {
		Doctor  imagingDoctor         `json:"doctor"`
		Patient imagingPatientResults `json:"patient"`
	} `json:"results"`
}

// shownImage is an <img> as the page had it.
type shownImage struct {
	Decoded                   bool
	Width                     int
	Src, Alt, State, Instance string
	Index                     int
	Window                    *string
}

type imagingDoctor struct {
	NavCurrent                                          string
	Studies, Filtered                                   []string
	FilteredHash, NoMatch, Title                        string
	Series                                              []struct{ UID, Pressed, Text string }
	Thumbnail                                           shownImage
	Images                                              int
	First, Next, Key, Wheel, Slider, Lung, Bone, Custom shownImage
	SliderText, LungPressed, Caption                    string
	FindingsBefore, FindingsAfter                       string
	ReportsBefore                                       int
	Models, TaskSeen                                    []string
	RunStatus                                           struct{ State, Text string }
	RunTasks, Runs                                      []struct{ ID, Status string }
	Findings                                            []struct {
		Report, Model, Status, Heading, Conclusion string
		Observations                               []string
	}
	Chart struct {
		Link, AI, Text string
		Img            bool
	}
	ChartThumb *shownImage
	FromChart  string
	Absent     struct{ Text, Cls string }
}

type imagingPatientResults struct {
	Studies struct{ Text, Cls string }
	Chart   struct{ AI, Thumb string }
}

func checkImagingDoctor(t *testing.T, r imagingDoctor, api *client, studyID, reportsQuery string) {
	t.Helper()
	if r.NavCurrent != "page" || !slices.Equal(r.Studies, []string{imagingStudy}) {
		t.Errorf("Imaging lists %v (nav current %q), want [%s]", r.Studies, r.NavCurrent, imagingStudy)
	}
	if !slices.Equal(r.Filtered, []string{imagingStudy}) || !strings.Contains(r.FilteredHash, "PatientName="+imagingPatient) ||
		!strings.Contains(r.FilteredHash, "from=2004-01-01") || r.NoMatch != "No study matches." {
		t.Errorf("filters: name, CT and 2004 found %v (%s); MR said %q", r.Filtered, r.FilteredHash, r.NoMatch)
	}
	if !strings.Contains(r.Title, "CompressedSamples, CT1") || len(r.Series) != 1 || r.Series[0].Pressed != "true" {
		t.Errorf("viewer %q, series %+v", r.Title, r.Series)
	}
	if th := r.Thumbnail; !th.Decoded || th.Width != 128 || !strings.HasPrefix(th.Src, "blob:") || !strings.Contains(th.Alt, "middle image, 2 of 3") {
		t.Errorf("series thumbnail not decoded from a blob: %+v", th)
	}
	if r.Images != imagingImages {
		t.Errorf("the viewer scrolls %d images, want %d", r.Images, imagingImages)
	}
	// Scrolling: the middle image first, then next, back by key, on by the
	// wheel, to the first by the slider; each a decoded image of its own
	// instance.
	steps := []struct {
		name  string
		img   shownImage
		index int
	}{{"first", r.First, 1}, {"next", r.Next, 2}, {"ArrowUp", r.Key, 1}, {"wheel", r.Wheel, 2}, {"slider", r.Slider, 0}}
	instances := map[int]string{}
	for _, s := range steps {
		if !s.img.Decoded || s.img.Index != s.index || !strings.HasPrefix(s.img.Src, "blob:") || s.img.Instance == "" ||
			!strings.Contains(s.img.Alt, "image "+strconv.Itoa(s.index+1)+" of 3") {
			t.Errorf("%s: %+v, want image %d decoded", s.name, s.img, s.index)
		}
		if prev, ok := instances[s.index]; ok && prev != s.img.Instance {
			t.Errorf("%s: image %d is instance %s, earlier %s", s.name, s.index, s.img.Instance, prev)
		}
		instances[s.index] = s.img.Instance
	}
	if len(instances) != 3 || instances[0] == instances[1] || instances[1] == instances[2] || r.SliderText != "1 / 3" {
		t.Errorf("scrolling showed instances %v, position %q", instances, r.SliderText)
	}
	// Windows: each preset a new rendered image, decoded.
	srcs := map[string]bool{r.Slider.Src: true}
	for name, w := range map[string]struct {
		img  shownImage
		want string
	}{"lung": {r.Lung, "-600,1500"}, "bone": {r.Bone, "300,1500"}, "custom": {r.Custom, "50,350"}} {
		if !w.img.Decoded || w.img.Window == nil || *w.img.Window != w.want || srcs[w.img.Src] || w.img.Index != 0 {
			t.Errorf("%s window: %+v, want %s decoded at a new src", name, w.img, w.want)
		}
		srcs[w.img.Src] = true
	}
	if r.LungPressed != "true" || !strings.Contains(r.Caption, "custom window 50/350") {
		t.Errorf("preset pressed %q, caption %q", r.LungPressed, r.Caption)
	}

	// Run model: one Task, completed, and its report shown as stored.
	if r.FindingsBefore != "No AI findings" || r.ReportsBefore != 0 || !slices.Contains(r.Models, imagingModel) {
		t.Errorf("before the run: %q, %d reports, models %v", r.FindingsBefore, r.ReportsBefore, r.Models)
	}
	if r.RunStatus.State != "completed" || len(r.RunTasks) != 1 || r.RunTasks[0].Status != "completed" {
		t.Fatalf("run: %+v, tasks %+v (first seen %v)", r.RunStatus, r.RunTasks, r.TaskSeen)
	}
	var task struct {
		Status string
		Focus  struct{ Reference string }
		Input  []struct{ ValueString string }
		Output []struct{ ValueReference struct{ Reference string } }
	}
	api.get("Task/"+r.RunTasks[0].ID, &task)
	if task.Status != "completed" || task.Focus.Reference != "ImagingStudy/"+studyID || len(task.Input) != 1 ||
		!strings.HasPrefix(task.Input[0].ValueString, imagingModel+"|") || len(task.Output) != 1 {
		t.Fatalf("Task/%s: %+v", r.RunTasks[0].ID, task)
	}
	report := strings.TrimPrefix(task.Output[0].ValueReference.Reference, "DiagnosticReport/")
	if n := api.count(reportsQuery); n != 1 || len(r.Findings) != 1 {
		t.Fatalf("the API has %d reports for the patient, the page shows %d: %+v", n, len(r.Findings), r.Findings)
	}
	var rep struct {
		Status, Conclusion string
		Result             []struct{ Reference string }
	}
	api.get("DiagnosticReport/"+report, &rep)
	var obs struct {
		Code          struct{ Coding []struct{ Display string } }
		ValueQuantity struct{ Value float64 }
	}
	if len(rep.Result) != 1 {
		t.Fatalf("DiagnosticReport/%s results %v", report, rep.Result)
	}
	api.get(rep.Result[0].Reference, &obs)
	f := r.Findings[0]
	want := strconv.FormatFloat(obs.ValueQuantity.Value, 'f', -1, 64)
	if f.Report != report || f.Model != imagingModel || f.Status != rep.Status || !strings.Contains(f.Heading, "demo 1.0.0") ||
		f.Conclusion != rep.Conclusion || len(f.Observations) != 1 || len(obs.Code.Coding) == 0 ||
		!strings.Contains(f.Observations[0], obs.Code.Coding[0].Display) || !strings.Contains(f.Observations[0], want) {
		t.Errorf("the page shows %+v; the API has report %s %+v with %s = %s", f, report, rep, obs.Code.Coding, want)
	}
	if r.FindingsAfter != "1 report: "+rep.Status || !slices.ContainsFunc(r.Runs, func(x struct{ ID, Status string }) bool {
		return x.ID == r.RunTasks[0].ID && x.Status == "completed"
	}) {
		t.Errorf("after the run: %q, runs %+v", r.FindingsAfter, r.Runs)
	}

	// The chart's Imaging section.
	if r.Chart.Link != "#/imaging/"+imagingStudy || r.Chart.AI != "1 report: "+rep.Status || r.ChartThumb == nil ||
		!r.ChartThumb.Decoded || !strings.HasPrefix(r.ChartThumb.Src, "blob:") || r.FromChart != "#/imaging/"+imagingStudy {
		t.Errorf("chart: %+v, thumbnail %+v, link went to %q", r.Chart, r.ChartThumb, r.FromChart)
	}
	if !strings.Contains(r.Absent.Cls, "msg-missing") || !strings.Contains(r.Absent.Text, "not found") {
		t.Errorf("an absent study showed %+v", r.Absent)
	}
}

func checkImagingPatient(t *testing.T, r imagingPatientResults) {
	t.Helper()
	if !strings.Contains(r.Studies.Cls, "msg-denied") || !strings.Contains(r.Studies.Text, "not permitted") {
		t.Errorf("a patient's Imaging screen showed %+v", r.Studies)
	}
	if !strings.HasPrefix(r.Chart.AI, "1 report") || r.Chart.Thumb != "Images need staff access" {
		t.Errorf("a patient's chart: %+v", r.Chart)
	}
}
