package onnxgen

import (
	"fmt"
	"os"
	"path/filepath"
)

// Side is the height and width of the single-channel test models' input.
const Side = 64

// MeanIntensity is the model "mean-intensity": input "image" [1,1,64,64]
// of elem (Float; Double only to test a manifest that lies about the
// type), output "mean" [1,1], the mean of all input values (ReduceMean over
// C, H, W, then Flatten). Its manifest applies the sigmoid.
func MeanIntensity(elem int32) Model {
	return Model{
		Doc: "Mean of the input's values. Test model written by internal/onnxgen.",
		Graph: Graph{
			Name: "mean_intensity",
			Nodes: []Node{
				{Op: "ReduceMean", Name: "reduce", Inputs: []string{"image"}, Outputs: []string{"m4"},
					Attrs: []Attr{Ints("axes", 1, 2, 3), Int("keepdims", 1)}},
				{Op: "Flatten", Name: "flatten", Inputs: []string{"m4"}, Outputs: []string{"mean"},
					Attrs: []Attr{Int("axis", 1)}},
			},
			Inputs:  []Value{{Name: "image", ElemType: elem, Shape: []int64{1, 1, Side, Side}}},
			Outputs: []Value{{Name: "mean", ElemType: elem, Shape: []int64{1, 1}}},
		},
	}
}

// The conv-pool model's input is [1, ConvChannels, ConvSide, ConvSide].
const (
	ConvChannels = 3
	ConvSide     = 32
)

// The conv-pool model's fixed weights. ConvKernels[k][c] is output channel
// k's 3×3 kernel over input channel c (ONNX Conv's [M, C, kH, kW] layout);
// the dense layer computes logits[j] = Σ_i pooled[i]·Dense[i][j] + DenseBias[j]
// (Gemm without transposition).
var (
	ConvKernels = [2][ConvChannels][3][3]float32{
		// A horizontal Sobel filter, weighted 1, ½, ¼ over the channels.
		{sobel(1), sobel(0.5), sobel(0.25)},
		// The mean of the eight neighbours, averaged over the channels.
		{ring(1.0 / 24), ring(1.0 / 24), ring(1.0 / 24)},
	}
	ConvBias  = [2]float32{0, -0.5}
	Dense     = [2][2]float32{{2, -1}, {0.5, 3}}
	DenseBias = [2]float32{0.25, -0.25}
)

// ConvPoolLogits computes the conv-pool model's logits for input in (the
// [1,3,32,32] tensor, flattened) by hand in float64, from the same weights
// ConvPool writes: the tests' independent expectation of what ONNX Runtime
// returns, kept beside the weights so every test reads one definition.
func ConvPoolLogits(in []float32) []float64 {
	const n, out = ConvSide, ConvSide - 2
	var pooled [2]float64
	for k := range 2 {
		var sum float64
		for y := range out {
			for x := range out {
				v := float64(ConvBias[k])
				for c := range ConvChannels {
					for ky := range 3 {
						for kx := range 3 {
							v += float64(ConvKernels[k][c][ky][kx]) * float64(in[c*n*n+(y+ky)*n+x+kx])
						}
					}
				}
				sum += v
			}
		}
		pooled[k] = sum / (out * out)
	}
	logits := make([]float64, 2)
	for j := range 2 {
		logits[j] = float64(DenseBias[j])
		for i := range 2 {
			logits[j] += pooled[i] * float64(Dense[i][j])
		}
	}
	return logits
}

func sobel(w float32) [3][3]float32 {
	return [3][3]float32{{w, 0, -w}, {2 * w, 0, -2 * w}, {w, 0, -w}}
}

func ring(w float32) [3][3]float32 {
	return [3][3]float32{{w, w, w}, {w, 0, w}, {w, w, w}}
}

// ConvPool is the model "conv-pool": input "pixels" [1,3,32,32] (float32),
// a 3×3 convolution with ConvKernels and ConvBias (no padding, stride 1) to
// [1,2,30,30], global average pooling and Flatten to [1,2], then Gemm with
// Dense and DenseBias to output "logits" [1,2]. Its manifest applies the
// softmax.
func ConvPool() Model {
	var w []float32
	for k := range ConvKernels {
		for c := range ConvKernels[k] {
			for y := range 3 {
				w = append(w, ConvKernels[k][c][y][:]...)
			}
		}
	}
	return Model{
		Doc: "3x3 convolution, global average pool, dense layer. Test model written by internal/onnxgen.",
		Graph: Graph{
			Name: "conv_pool",
			Nodes: []Node{
				{Op: "Conv", Name: "conv", Inputs: []string{"pixels", "conv.w", "conv.b"}, Outputs: []string{"features"},
					Attrs: []Attr{Ints("kernel_shape", 3, 3), Ints("pads", 0, 0, 0, 0), Ints("strides", 1, 1)}},
				{Op: "GlobalAveragePool", Name: "pool", Inputs: []string{"features"}, Outputs: []string{"pooled4"}},
				{Op: "Flatten", Name: "flatten", Inputs: []string{"pooled4"}, Outputs: []string{"pooled"},
					Attrs: []Attr{Int("axis", 1)}},
				{Op: "Gemm", Name: "dense", Inputs: []string{"pooled", "dense.w", "dense.b"}, Outputs: []string{"logits"}},
			},
			Initializers: []Tensor{
				{Name: "conv.w", Dims: []int64{2, ConvChannels, 3, 3}, Data: w},
				{Name: "conv.b", Dims: []int64{2}, Data: ConvBias[:]},
				{Name: "dense.w", Dims: []int64{2, 2}, Data: []float32{Dense[0][0], Dense[0][1], Dense[1][0], Dense[1][1]}},
				{Name: "dense.b", Dims: []int64{2}, Data: DenseBias[:]},
			},
			Inputs:  []Value{{Name: "pixels", ElemType: Float, Shape: []int64{1, ConvChannels, ConvSide, ConvSide}}},
			Outputs: []Value{{Name: "logits", ElemType: Float, Shape: []int64{1, 2}}},
		},
	}
}

// The demo model's logit is DemoGain × (mean − DemoLevel): its sigmoid
// passes 0.5 when the mean windowed intensity passes DemoLevel.
const (
	DemoLevel = 0.35
	DemoGain  = 16
)

// Demo is the model "demo": input "image" [1,1,64,64] (float32, an
// image in a soft-tissue window mapped to [0,1] by its manifest), output
// "logit" [1,1] = DemoGain × (mean − DemoLevel). Its input's batch
// dimension is symbolic ("N"), as exported classifiers usually have it.
func Demo() Model {
	return Model{
		Doc: "Demo, not a medical device: high-density content = mean soft-tissue-window intensity above 0.35. Written by internal/onnxgen.",
		Graph: Graph{
			Name: "demo_high_density",
			Nodes: []Node{
				{Op: "ReduceMean", Name: "reduce", Inputs: []string{"image"}, Outputs: []string{"m4"},
					Attrs: []Attr{Ints("axes", 1, 2, 3), Int("keepdims", 1)}},
				{Op: "Flatten", Name: "flatten", Inputs: []string{"m4"}, Outputs: []string{"mean"},
					Attrs: []Attr{Int("axis", 1)}},
				{Op: "Sub", Name: "level", Inputs: []string{"mean", "level"}, Outputs: []string{"centred"}},
				{Op: "Mul", Name: "gain", Inputs: []string{"centred", "gain"}, Outputs: []string{"logit"}},
			},
			Initializers: []Tensor{
				{Name: "level", Dims: []int64{1}, Data: []float32{DemoLevel}},
				{Name: "gain", Dims: []int64{1}, Data: []float32{DemoGain}},
			},
			Inputs:  []Value{{Name: "image", ElemType: Float, Shape: []int64{-1, 1, Side, Side}}},
			Outputs: []Value{{Name: "logit", ElemType: Float, Shape: []int64{-1, 1}}},
		},
	}
}

// File is one generated file, Path relative to testdata/.
type File struct {
	Path string
	Data []byte
}

// Files returns every file the generator writes under testdata/.
func Files() []File {
	return []File{
		{"models/README.md", []byte(modelsReadme)},
		{"models/conv-pool.json", []byte(convPoolManifest)},
		{"models/conv-pool.onnx", ConvPool().Marshal()},
		{"models/demo.json", []byte(demoManifest)},
		{"models/demo.onnx", Demo().Marshal()},
		{"models/mean-intensity.json", []byte(meanIntensityManifest)},
		{"models/mean-intensity.onnx", MeanIntensity(Float).Marshal()},
		{"models-bad/README.md", []byte(badReadme)},
		{"models-bad/lying-shape.json", []byte(lyingShapeManifest)},
		{"models-bad/lying-shape.onnx", MeanIntensity(Float).Marshal()},
	}
}

// Write writes Files under testdata, creating its directories.
func Write(testdata string) error {
	for _, f := range Files() {
		p := filepath.Join(testdata, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("onnxgen: %w", err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("onnxgen: %w", err)
		}
	}
	return nil
}
