package model_test

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/emberfhir/ember/inference/model"
)

func manifest(t *testing.T, activation model.Activation, thresholds ...float64) *model.Manifest {
	t.Helper()
	m := &model.Manifest{Name: "m", Output: model.Output{Name: "y", Activation: activation}}
	for i, th := range thresholds {
		m.Findings = append(m.Findings, model.FindingRule{
			Index: i, Code: model.Coding{System: "http://example.org", Code: string(rune('a' + i))},
			Threshold: &th, Unit: "probability",
			Above: &model.Coding{System: "http://example.org", Code: "POS"},
			Below: &model.Coding{System: "http://example.org", Code: "NEG"},
		})
	}
	return m
}

func TestFindings(t *testing.T) {
	for _, tc := range []struct {
		activation model.Activation
		output     []float32
		thresholds []float64
		values     []float64
		interp     []string
	}{
		{model.Sigmoid, []float32{0}, []float64{0.5}, []float64{0.5}, []string{"POS"}}, // at the threshold: above
		{model.Sigmoid, []float32{-2, 3}, []float64{0.5, 0.99},
			[]float64{1 / (1 + math.Exp(2)), 1 / (1 + math.Exp(-3))}, []string{"NEG", "NEG"}},
		{model.Softmax, []float32{1, 2, 3}, []float64{0.5, 0.5, 0.5},
			[]float64{math.Exp(1) / (math.Exp(1) + math.Exp(2) + math.Exp(3)), math.Exp(2) / (math.Exp(1) + math.Exp(2) + math.Exp(3)), math.Exp(3) / (math.Exp(1) + math.Exp(2) + math.Exp(3))},
			[]string{"NEG", "NEG", "POS"}},
		{model.Softmax, []float32{1000, 1000}, []float64{0.5, 0.6}, []float64{0.5, 0.5}, []string{"POS", "NEG"}}, // no overflow
		{model.Raw, []float32{-1.5, 7}, []float64{0, 7}, []float64{-1.5, 7}, []string{"NEG", "POS"}},
	} {
		fs, err := model.Findings(manifest(t, tc.activation, tc.thresholds...), tc.output)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range fs {
			if f.Index != i || math.Abs(f.Value-tc.values[i]) > 1e-12 || f.Interpretation.Code != tc.interp[i] || f.Unit != "probability" {
				t.Errorf("%s %v: finding %d = %+v, want value %v, %s", tc.activation, tc.output, i, f, tc.values[i], tc.interp[i])
			}
		}
	}

	// A rule may give no interpretation; findings follow the rules' order,
	// not the output's.
	m := manifest(t, model.Raw, 0, 0)
	m.Findings[0].Above, m.Findings[0].Below = nil, nil
	m.Findings[0].Index, m.Findings[1].Index = 1, 0
	fs, err := model.Findings(m, []float32{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if fs[0].Index != 1 || fs[0].Value != 6 || fs[0].Interpretation != nil || fs[1].Index != 0 || fs[1].Value != 5 {
		t.Errorf("findings %+v", fs)
	}
	if _, err := model.Findings(manifest(t, model.Raw, 0, 0), []float32{1}); err == nil {
		t.Error("an output shorter than the rules: no error")
	}
}

func TestParseManifest(t *testing.T) {
	for _, name := range []string{"mean-intensity", "conv-pool", "demo"} {
		raw, err := os.ReadFile(testdata(t, "models/"+name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.ParseManifest(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Name != name || len(m.Findings) == 0 || m.Report.Code.Code != "18748-4" || len(m.Preprocess) == 0 {
			t.Errorf("%s: %+v", name, m)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{`[]`, "not a JSON object"},
		{`{"name": "a"} {}`, "data after the JSON object"},
		{`{"name": `, "not JSON"},
		{`{"nme": "a", "zzz": 1}`, "nme: unknown field\nzzz: unknown field"},
		{`{}`, "name: missing\nversion: missing\ninput.name: missing\ninput.shape: missing; must be [1, C, H, W]\ninput.type: missing"},
		{`{"name": "Upper"}`, `name: "Upper" must be lower-case`},
		{`{"findings": [{"index": 1.5}]}`, "findings[0].index: number 1.5 is not a valid integer"},
	} {
		_, err := model.ParseManifest([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseManifest(%s): %v, want %q", tc.in, err, tc.want)
		}
	}
}
