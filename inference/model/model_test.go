package model_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/model"
	"github.com/emberfhir/ember/inference/onnx"
	"github.com/emberfhir/ember/internal/onnxgen"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/internal/testfiles"
)

// The ONNX Runtime environment is per process: every test shares one.
var (
	rtOnce sync.Once
	rt     *onnx.Runtime
	rtErr  error
)

func openRuntime(t *testing.T) *onnx.Runtime {
	t.Helper()
	lib := testenv.ONNXRuntime(t)
	rtOnce.Do(func() { rt, rtErr = onnx.Open(lib) })
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	return rt
}

func testdata(t *testing.T, rel string) string {
	t.Helper()
	p, err := testfiles.Path(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, dir string) *model.Registry {
	t.Helper()
	r, err := model.Load(openRuntime(t), dir, onnx.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func image(n, seed int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((i*7919+seed*104729)%1009) / 1009
	}
	return v
}

func mean(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(len(v))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-5 {
		t.Errorf("%s = %.7f, want %.7f", what, got, want)
	}
}

// run runs the model on input and returns its findings.
func run(t *testing.T, m *model.Model, input []float32) []model.Finding {
	t.Helper()
	out, err := m.Run(context.Background(), input)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := m.Findings(out)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestLoadTestdata(t *testing.T) {
	dir := testdata(t, "models")
	r := load(t, dir)
	var names []string
	for _, m := range r.Models() {
		names = append(names, m.Manifest.Name)
		data, err := os.ReadFile(filepath.Join(dir, m.Manifest.Name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if m.SHA256 != hex.EncodeToString(sum[:]) || m.Path != filepath.Join(dir, m.Manifest.Name+".onnx") {
			t.Errorf("%s: SHA256 %s, Path %s", m.Manifest.Name, m.SHA256, m.Path)
		}
		if m.Manifest.Version != "1.0.0" || m.Manifest.Report.Status != "preliminary" {
			t.Errorf("%s: version %q, report status %q", m.Manifest.Name, m.Manifest.Version, m.Manifest.Report.Status)
		}
	}
	if got := strings.Join(names, ","); got != "conv-pool,demo,mean-intensity" {
		t.Fatalf("models %s", got)
	}
	if r.Model("demo") == nil || r.Model("nope") != nil {
		t.Fatal("Model(name) lookup")
	}
	if pp := r.Model("demo").Preprocess; pp.Window != (imaging.Window{Mode: imaging.WindowExplicit, Center: 40, Width: 400}) ||
		pp.Frame.Rule != imaging.FrameMiddle || len(pp.Modalities) != 1 || pp.Modalities[0] != "CT" {
		t.Errorf("demo's preprocess %+v", pp)
	}

	// mean-intensity: sigmoid(mean), high from 0.6 (a mean above ~0.405).
	mi := r.Model("mean-intensity")
	for _, tc := range []struct {
		in   []float32
		code string
	}{
		{image(64*64, 1), "H"},        // mean ≈ 0.5
		{make([]float32, 64*64), "N"}, // mean 0
		{constant(64*64, 0.40), "N"},  // sigmoid 0.5987: under 0.6
		{constant(64*64, 0.41), "H"},  // sigmoid 0.6011: over
	} {
		fs := run(t, mi, tc.in)
		near(t, "mean-intensity value", fs[0].Value, sigmoid(mean(tc.in)))
		if fs[0].Interpretation == nil || fs[0].Interpretation.Code != tc.code || fs[0].Unit != "probability" || fs[0].Code.Code != "mean-intensity" {
			t.Errorf("mean-intensity of mean %v: %+v, want interpretation %s", mean(tc.in), fs[0], tc.code)
		}
	}

	// conv-pool: the softmax of the reference logits.
	cp := r.Model("conv-pool")
	in := image(onnxgen.ConvChannels*onnxgen.ConvSide*onnxgen.ConvSide, 2)
	logits := onnxgen.ConvPoolLogits(in)
	e0, e1 := math.Exp(logits[0]), math.Exp(logits[1])
	fs := run(t, cp, in)
	if len(fs) != 2 || fs[0].Code.Code != "edges" || fs[1].Code.Code != "brightness" {
		t.Fatalf("conv-pool findings %+v", fs)
	}
	near(t, "conv-pool p0", fs[0].Value, e0/(e0+e1))
	near(t, "conv-pool p1", fs[1].Value, e1/(e0+e1))

	// demo: sigmoid(16 (mean - 0.35)), positive above a mean of 0.35.
	demo := r.Model("demo")
	for _, tc := range []struct {
		in   []float32
		code string
	}{
		{constant(64*64, 0.2), "NEG"},
		{constant(64*64, 0.5), "POS"},
		{image(64*64, 3), "POS"},
	} {
		fs := run(t, demo, tc.in)
		near(t, "demo value", fs[0].Value, sigmoid(onnxgen.DemoGain*(mean(tc.in)-onnxgen.DemoLevel)))
		if fs[0].Interpretation == nil || fs[0].Interpretation.Code != tc.code {
			t.Errorf("demo of mean %v: %+v, want %s", mean(tc.in), fs[0], tc.code)
		}
	}
}

func constant(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestMatch(t *testing.T) {
	r := load(t, testdata(t, "models"))
	names := func(ms []*model.Model) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Manifest.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct{ modality, bodyPart, want string }{
		{"CT", "CHEST", "conv-pool,demo,mean-intensity"},
		{"MR", "", "conv-pool,mean-intensity"},
		{"US", "ABDOMEN", "conv-pool"},
		{"ct", "", "conv-pool,demo,mean-intensity"}, // imaging.Preprocess.Matches folds case
	} {
		if got := names(r.Match(tc.modality, tc.bodyPart)); got != tc.want {
			t.Errorf("Match(%q, %q) = %s, want %s", tc.modality, tc.bodyPart, got, tc.want)
		}
	}

	var none *model.Registry
	if none.Match("CT", "") != nil || none.Model("demo") != nil || none.Models() != nil || none.Close() != nil {
		t.Error("a nil Registry has models")
	}

	// Body parts compare case-insensitively.
	dir := t.TempDir()
	writeModel(t, dir, "chest", func(m map[string]any) {
		m["preprocess"] = map[string]any{"modalities": []any{"CR", "DX"}, "bodyParts": []any{"CHEST"}}
	})
	r = load(t, dir)
	for _, tc := range []struct {
		modality, bodyPart string
		want               bool
	}{{"DX", "chest", true}, {"CR", "CHEST", true}, {"DX", "HAND", false}, {"CT", "CHEST", false}} {
		if got := len(r.Match(tc.modality, tc.bodyPart)) == 1; got != tc.want {
			t.Errorf("chest model Match(%q, %q) = %v", tc.modality, tc.bodyPart, got)
		}
	}
}

// writeModel writes mean-intensity's model as dir/name.onnx and its
// manifest, renamed and changed by edit, as dir/name.json.
func writeModel(t *testing.T, dir, name string, edit func(map[string]any)) {
	t.Helper()
	writeFiles(t, dir, name, onnxgen.MeanIntensity(onnxgen.Float).Marshal(), edit)
}

func writeFiles(t *testing.T, dir, name string, onnxBytes []byte, edit func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(testdata(t, "models/mean-intensity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["name"] = name
	if edit != nil {
		edit(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".onnx"), onnxBytes, 0o644); err != nil {
		t.Fatal(err)
	}
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func finding0(m map[string]any) map[string]any { return m["findings"].([]any)[0].(map[string]any) }

// loadErr loads dir, which must fail, and returns the message.
func loadErr(t *testing.T, dir string) string {
	t.Helper()
	r, err := model.Load(openRuntime(t), dir, onnx.SessionOptions{})
	if err == nil {
		r.Close()
		t.Fatalf("Load(%s): no error", dir)
	}
	return err.Error()
}

func TestLyingManifest(t *testing.T) {
	dir := testdata(t, "models-bad")
	got := loadErr(t, dir)
	want := filepath.Join(dir, "lying-shape.json") + `: input.shape: [1,3,64,64] but the model's input "image" is [1,1,64,64]`
	if got != want {
		t.Errorf("Load(models-bad):\n got %s\nwant %s", got, want)
	}
}

// TestRefused checks that a manifest that does not match its model, or is
// invalid on its own, is refused with a message naming the field.
func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string // the message after "DIR/x.json: "
	}{
		{"input name", func(m map[string]any) { obj(m, "input")["name"] = "img" },
			`input.name: "img" but the model's input is "image"`},
		{"input shape", func(m map[string]any) { obj(m, "input")["shape"] = []any{1, 1, 32, 32} },
			`input.shape: [1,1,32,32] but the model's input "image" is [1,1,64,64]`},
		{"output name", func(m map[string]any) { obj(m, "output")["name"] = "score" },
			`output.name: "score" but the model's outputs are ["mean"]`},
		{"finding index", func(m map[string]any) { finding0(m)["index"] = 1 },
			`findings[0].index: 1 but the model's output "mean" has 1 value(s)`},
		{"softmax of one", func(m map[string]any) { obj(m, "output")["activation"] = "softmax" },
			`output.activation: softmax over the output's single value is always 1`},
		{"name", func(m map[string]any) { m["name"] = "other" },
			`name: "other" but the file is x.json: a manifest's name is its file's`},
		{"unknown field", func(m map[string]any) { obj(m, "output")["activaton"] = "sigmoid" },
			`output.activaton: unknown field`},
		{"field name case", func(m map[string]any) { m["Version"] = "2" },
			`Version: unknown field`},
		{"unknown in finding", func(m map[string]any) { finding0(m)["thresold"] = 0.5 },
			`findings[0].thresold: unknown field`},
		{"input type", func(m map[string]any) { obj(m, "input")["type"] = "float16" },
			`input.type: "float16": Ember feeds "float32" only`},
		{"shape type", func(m map[string]any) { obj(m, "input")["shape"] = "1x1x64x64" },
			`input.shape: a string is not a valid array of integers`},
		{"shape rank", func(m map[string]any) { obj(m, "input")["shape"] = []any{1, 64, 64} },
			`input.shape: [1,64,64] must be [1, C, H, W]`},
		{"channels", func(m map[string]any) { obj(m, "input")["shape"] = []any{1, 2, 64, 64} },
			`input.shape: [1,2,64,64]: C must be 1 (grayscale) or 3 (RGB)`},
		{"batch", func(m map[string]any) { obj(m, "input")["shape"] = []any{4, 1, 64, 64} },
			`input.shape: [4,1,64,64]: N must be 1 (one image per run)`},
		{"activation", func(m map[string]any) { obj(m, "output")["activation"] = "relu" },
			`output.activation: "relu" must be "sigmoid", "softmax" or "raw"`},
		{"threshold missing", func(m map[string]any) { delete(finding0(m), "threshold") },
			`findings[0].threshold: missing`},
		{"threshold range", func(m map[string]any) { finding0(m)["threshold"] = 1.5 },
			`findings[0].threshold: 1.5 is outside [0,1], where sigmoid values lie`},
		{"code system", func(m map[string]any) { obj(finding0(m), "code")["system"] = "snomed" },
			`findings[0].code.system: "snomed" is not an absolute URI`},
		{"interpretation code", func(m map[string]any) { delete(obj(finding0(m), "above"), "code") },
			`findings[0].above.code: missing`},
		{"no findings", func(m map[string]any) { m["findings"] = []any{} },
			`findings: missing; at least one finding is needed`},
		{"report code", func(m map[string]any) { delete(m, "report") },
			"report.code.system: missing\n"},
		{"report status", func(m map[string]any) { obj(m, "report")["status"] = "amended" },
			`report.status: "amended" must be one of registered, partial, preliminary, final`},
		{"preprocess field", func(m map[string]any) { obj(m, "preprocess")["sigma"] = 1 },
			`preprocess: unknown field "sigma"`},
		{"preprocess mean", func(m map[string]any) { obj(m, "preprocess")["mean"] = []any{0, 0} },
			`preprocess.mean: 2 values for 1 channels`},
		{"preprocess window", func(m map[string]any) { obj(m, "preprocess")["window"] = map[string]any{"center": 40} },
			`preprocess.window.width: required`},
		{"version", func(m map[string]any) { m["version"] = "1.0 beta" },
			`version: "1.0 beta" must be letters, digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeModel(t, dir, "x", tc.edit)
			got := loadErr(t, dir)
			if !strings.Contains(got+"\n", filepath.Join(dir, "x.json")+": "+tc.want) {
				t.Errorf("got  %s\nwant %s: %s", got, filepath.Join(dir, "x.json"), tc.want)
			}
		})
	}
}

// A model whose tensors are float64 is refused, naming input.type and the
// output.
func TestRefusedElementType(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, "x", onnxgen.MeanIntensity(onnxgen.Double).Marshal(), nil)
	got := loadErr(t, dir)
	p := filepath.Join(dir, "x.json")
	for _, want := range []string{
		p + `: input.type: "float32" but the model's input "image" is float64`,
		p + `: output.name: the model's output "mean" is float64; Ember reads float32`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

func TestLoadPairs(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "ok", nil)
	if err := os.WriteFile(filepath.Join(dir, "lonely.onnx"), onnxgen.Demo().Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orphan.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.onnx"), []byte("not onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, "garbage", []byte("not onnx"), nil)
	got := loadErr(t, dir)
	for _, want := range []string{
		filepath.Join(dir, "lonely.onnx") + ": no manifest lonely.json beside it",
		filepath.Join(dir, "orphan.json") + ": no model orphan.onnx beside it",
		filepath.Join(dir, "garbage.onnx") + ": onnx: not a model ONNX Runtime can load",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if strings.Contains(got, "ok.json") {
		t.Errorf("the valid model is reported: %s", got)
	}

	// Other files are ignored; an empty directory is an empty registry.
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "README.md"), []byte("models"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := load(t, empty); len(r.Models()) != 0 {
		t.Errorf("empty dir: %d models", len(r.Models()))
	}
	if _, err := model.Load(openRuntime(t), filepath.Join(empty, "missing"), onnx.SessionOptions{}); err == nil {
		t.Error("Load of a missing directory: no error")
	}
}

func TestConcurrentModelRuns(t *testing.T) {
	m := load(t, testdata(t, "models")).Model("mean-intensity")
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 30 {
				in := image(64*64, w*100+i)
				out, err := m.Run(context.Background(), in)
				if err != nil {
					t.Error(err)
					return
				}
				if math.Abs(float64(out[0])-mean(in)) > 1e-5 {
					t.Errorf("worker %d run %d: %v, want %v", w, i, out[0], mean(in))
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestReferenceModel: the bench's model of realistic cost loads with its
// manifest (the session agrees with it) and runs to its 14 outputs, of
// which the manifest reports the first.
func TestReferenceModel(t *testing.T) {
	dir := t.TempDir()
	if err := onnxgen.WriteReference(dir); err != nil {
		t.Fatal(err)
	}
	m := load(t, dir).Model("reference")
	if m == nil {
		t.Fatal("the reference model did not load")
	}
	fs := run(t, m, constant(3*onnxgen.ReferenceSide*onnxgen.ReferenceSide, 0.5))
	if len(fs) != 1 || fs[0].Value <= 0 || fs[0].Value >= 1 {
		t.Errorf("reference findings: %+v, want one probability", fs)
	}
}
