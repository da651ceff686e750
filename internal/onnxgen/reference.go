package onnxgen

import (
	"fmt"
	"os"
	"path/filepath"
)

// ReferenceSide and ReferenceClasses shape the reference model: a chest
// X-ray classifier's usual input (224×224 RGB) and outputs (14 findings).
const (
	ReferenceSide    = 224
	ReferenceClasses = 14
)

// referenceLayers are the reference model's 3×3 convolutions (output
// channels, stride): a stem to 112×112, then three stages that halve the
// size and double the channels, each with a second convolution at its
// size. About 2.1 billion multiply-adds, the cost of the chest X-ray
// classifier README's "Bring your own model" exports (DenseNet-121 at
// 224×224 is about 2.9 billion).
var referenceLayers = [...]struct{ out, stride int64 }{
	{64, 2},
	{128, 2}, {128, 1},
	{256, 2}, {256, 1},
	{512, 2}, {512, 1},
}

// Reference is the model "reference": input "image" [1,3,224,224], the
// convolutions of referenceLayers with ReLU, global average pooling and a
// dense layer to output "logits" [1,14]. Its weights are a fixed
// pseudo-random sequence: its outputs mean nothing. It is not committed
// (about 17 MB of weights) and not a test fixture: `make bench` writes it
// to a temporary directory so that inference_overhead compares Ember's
// work per image with a model of a real classifier's cost, not with the
// microsecond test models.
func Reference() Model {
	rng := uint32(2463534242)
	weights := func(n int64, scale float32) []float32 {
		out := make([]float32, n)
		for i := range out {
			// xorshift32: the same bytes on every run and platform.
			rng ^= rng << 13
			rng ^= rng >> 17
			rng ^= rng << 5
			out[i] = (float32(rng)/float32(1<<32)*2 - 1) * scale
		}
		return out
	}
	g := Graph{
		Name:    "reference_classifier",
		Inputs:  []Value{{Name: "image", ElemType: Float, Shape: []int64{1, 3, ReferenceSide, ReferenceSide}}},
		Outputs: []Value{{Name: "logits", ElemType: Float, Shape: []int64{1, ReferenceClasses}}},
	}
	in, channels := "image", int64(3)
	for i, l := range referenceLayers {
		out := l.out
		w, b := fmt.Sprintf("conv%d.w", i), fmt.Sprintf("conv%d.b", i)
		conv, relu := fmt.Sprintf("conv%d", i), fmt.Sprintf("relu%d", i)
		g.Nodes = append(g.Nodes,
			Node{Op: "Conv", Name: conv, Inputs: []string{in, w, b}, Outputs: []string{conv},
				Attrs: []Attr{Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Ints("strides", l.stride, l.stride)}},
			Node{Op: "Relu", Name: relu, Inputs: []string{conv}, Outputs: []string{relu}})
		g.Initializers = append(g.Initializers,
			Tensor{Name: w, Dims: []int64{out, channels, 3, 3}, Data: weights(out*channels*9, 0.05)},
			Tensor{Name: b, Dims: []int64{out}, Data: weights(out, 0.01)})
		in, channels = relu, out
	}
	g.Nodes = append(g.Nodes,
		Node{Op: "GlobalAveragePool", Name: "pool", Inputs: []string{in}, Outputs: []string{"pooled4"}},
		Node{Op: "Flatten", Name: "flatten", Inputs: []string{"pooled4"}, Outputs: []string{"pooled"}, Attrs: []Attr{Int("axis", 1)}},
		Node{Op: "Gemm", Name: "dense", Inputs: []string{"pooled", "dense.w", "dense.b"}, Outputs: []string{"logits"}})
	g.Initializers = append(g.Initializers,
		Tensor{Name: "dense.w", Dims: []int64{channels, ReferenceClasses}, Data: weights(channels*ReferenceClasses, 0.1)},
		Tensor{Name: "dense.b", Dims: []int64{ReferenceClasses}, Data: weights(ReferenceClasses, 0.01)})
	return Model{Doc: "Benchmark model of realistic cost; random weights, meaningless outputs. Written by internal/onnxgen.", Graph: g}
}

// referenceManifest is the manifest of Reference, preprocessing as a chest
// X-ray classifier does (resize to 224, ImageNet mean and std) but for any
// modality, so the bench's CT studies match it.
const referenceManifest = `{
  "name": "reference",
  "version": "1.0.0",
  "description": "Benchmark model of realistic cost (random weights; its findings mean nothing).",
  "input": {"name": "image", "shape": [1, 3, 224, 224], "type": "float32"},
  "preprocess": {
    "window": "dataset",
    "resize": "bilinear",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225]
  },
  "output": {"name": "logits", "activation": "sigmoid"},
  "findings": [
    {"index": 0,
     "code": {"system": "http://example.org/fhir/CodeSystem/ember-test", "code": "reference-0", "display": "Reference output 0 (meaningless)"},
     "threshold": 0.5,
     "unit": "probability"}
  ],
  "report": {
    "code": {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"},
    "conclusion": "Benchmark model (not a medical device)."
  }
}
`

// WriteReference writes reference.onnx and reference.json into dir (a
// models directory of their own).
func WriteReference(dir string) error {
	for name, data := range map[string][]byte{
		"reference.onnx": Reference().Marshal(),
		"reference.json": []byte(referenceManifest),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("onnxgen: %w", err)
		}
	}
	return nil
}
