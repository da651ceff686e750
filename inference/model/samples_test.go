package model_test

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/onnxgen"
	"github.com/emberfhir/ember/internal/testenv"
)

// TestDICOMSamples runs the generated models on the pydicom samples the
// DICOM tests use, through imaging's preprocessing, and checks each value
// against the model computed by hand from the same tensor.
func TestDICOMSamples(t *testing.T) {
	r := load(t, testdata(t, "models"))
	for _, tc := range []struct {
		sample, model string
		want          func(tensor []float32) []float64
	}{
		{"CT_small.dcm", "demo", func(x []float32) []float64 { return []float64{sigmoid(16 * (mean(x) - 0.35))} }},
		{"CT_small.dcm", "mean-intensity", func(x []float32) []float64 { return []float64{sigmoid(mean(x))} }},
		{"MR_small.dcm", "mean-intensity", func(x []float32) []float64 { return []float64{sigmoid(mean(x))} }},
		{"CT_small.dcm", "conv-pool", func(x []float32) []float64 { return softmax(onnxgen.ConvPoolLogits(x)) }},
		{"SC_rgb_small_odd.dcm", "conv-pool", func(x []float32) []float64 { return softmax(onnxgen.ConvPoolLogits(x)) }},
	} {
		path, err := dicomsamples.Pydicom(context.Background(), tc.sample)
		testenv.Require(t, err, "the pydicom sample "+tc.sample, "it is committed under testdata/dicom/pydicom")
		m := r.Model(tc.model)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		shape := m.Manifest.Input.Shape
		tensor, _, err := imaging.Tensor(f, st.Size(), m.Preprocess, int(shape[1]), int(shape[2]), int(shape[3]))
		f.Close()
		if err != nil {
			t.Fatalf("%s for %s: %v", tc.sample, tc.model, err)
		}
		fs := run(t, m, tensor)
		want := tc.want(tensor)
		for i, f := range fs {
			near(t, tc.sample+" "+tc.model+" "+f.Code.Code, f.Value, want[i])
			t.Logf("%s, %s: %s = %.6f (%s)", tc.sample, tc.model, f.Code.Code, f.Value, f.Interpretation.Code)
		}
	}
}

func softmax(v []float64) []float64 {
	out := make([]float64, len(v))
	var sum float64
	for i, x := range v {
		out[i] = math.Exp(x)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
