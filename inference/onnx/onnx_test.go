package onnx_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emberfhir/ember/inference/onnx"
	"github.com/emberfhir/ember/internal/onnxgen"
	"github.com/emberfhir/ember/internal/testenv"
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

func session(t *testing.T, m onnxgen.Model, opts onnx.SessionOptions) *onnx.Session {
	t.Helper()
	r := openRuntime(t)
	g, err := r.Inspect(m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.NewSession(g, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// image returns n deterministic values in [0,1), varied by seed.
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

func near(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > 1e-5 {
			t.Errorf("%s[%d] = %.7f, want %.7f", what, i, got[i], want[i])
		}
	}
}

func TestRuntime(t *testing.T) {
	r := openRuntime(t)
	if !strings.HasPrefix(r.Version(), "1.") {
		t.Errorf("Version() = %q", r.Version())
	}
	if _, err := onnx.Open(r.Path()); !errors.Is(err, onnx.ErrOpen) {
		t.Errorf("a second Open: %v, want ErrOpen", err)
	}
	// The library's telemetry layer creates an empty log per process in
	// TMPDIR; Open removes it.
	if _, err := os.Stat(filepath.Join(os.TempDir(), fmt.Sprintf("mat-debug-%d.log", os.Getpid()))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the telemetry log is left in %s: %v", os.TempDir(), err)
	}
}

func TestMeanIntensity(t *testing.T) {
	s := session(t, onnxgen.MeanIntensity(onnxgen.Float), onnx.SessionOptions{IntraOpThreads: 1})
	if in := s.Input(); in.Name != "image" || in.Type != "float32" || fmt.Sprint(in.Shape) != "[1 1 64 64]" {
		t.Errorf("Input() = %+v", in)
	}
	if out := s.Output(); out.Name != "mean" || out.Type != "float32" || fmt.Sprint(out.Shape) != "[1 1]" {
		t.Errorf("Output() = %+v", out)
	}
	for seed := range 3 {
		in := image(64*64, seed)
		got, err := s.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "mean", got, []float64{mean(in)})
	}
	// A constant image has exactly its value as mean.
	in := make([]float32, 64*64)
	for i := range in {
		in[i] = 0.25
	}
	got, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "mean of 0.25", got, []float64{0.25})
}

func TestConvPool(t *testing.T) {
	s := session(t, onnxgen.ConvPool(), onnx.SessionOptions{})
	const size = onnxgen.ConvChannels * onnxgen.ConvSide * onnxgen.ConvSide
	for seed := range 3 {
		in := image(size, seed)
		got, err := s.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "logits", got, onnxgen.ConvPoolLogits(in))
	}
	// A ramp left to right: the Sobel channel sees a constant gradient.
	in := make([]float32, size)
	for i := range in {
		in[i] = float32(i%onnxgen.ConvSide) / onnxgen.ConvSide
	}
	got, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "logits of a ramp", got, onnxgen.ConvPoolLogits(in))
}

// The demo model's batch dimension is symbolic: the session needs the
// shape to feed, and reads an output of undeclared size.
func TestDemoSymbolicBatch(t *testing.T) {
	r := openRuntime(t)
	g, err := r.Inspect(onnxgen.Demo().Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(g.Inputs[0].Shape) != "[-1 1 64 64]" || fmt.Sprint(g.Outputs[0].Shape) != "[-1 1]" {
		t.Fatalf("Inspect: %+v %+v", g.Inputs, g.Outputs)
	}
	if _, err := r.NewSession(g, onnx.SessionOptions{}); err == nil {
		t.Fatal("NewSession without InputShape on a symbolic input: no error")
	}
	s, err := r.NewSession(g, onnx.SessionOptions{InputShape: []int64{1, 1, 64, 64}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := image(64*64, 5)
	got, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "logit", got, []float64{onnxgen.DemoGain * (mean(in) - onnxgen.DemoLevel)})
}

func TestConcurrentRun(t *testing.T) {
	s := session(t, onnxgen.ConvPool(), onnx.SessionOptions{IntraOpThreads: 1})
	const size = onnxgen.ConvChannels * onnxgen.ConvSide * onnxgen.ConvSide
	const workers, runs = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range runs {
				in := image(size, w*runs+i)
				got, err := s.Run(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				want := onnxgen.ConvPoolLogits(in)
				for j := range want {
					if math.Abs(float64(got[j])-want[j]) > 1e-5 {
						errs <- fmt.Errorf("worker %d run %d: logits %v, want %v", w, i, got, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunErrors(t *testing.T) {
	s := session(t, onnxgen.MeanIntensity(onnxgen.Float), onnx.SessionOptions{})
	if _, err := s.Run(context.Background(), make([]float32, 10)); err == nil {
		t.Error("Run with 10 values for [1,1,64,64]: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Run(ctx, make([]float32, 64*64)); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v", err)
	}
	// A live cancellable context takes the terminate path and still runs.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.Run(ctx, make([]float32, 64*64)); err != nil {
		t.Errorf("Run with a live context: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), make([]float32, 64*64)); err == nil {
		t.Error("Run after Close: no error")
	}
}

func TestSessionErrors(t *testing.T) {
	r := openRuntime(t)
	if _, err := r.Inspect([]byte("not a model")); err == nil {
		t.Error("Inspect of garbage: no error")
	}
	g, err := r.Inspect(onnxgen.MeanIntensity(onnxgen.Float).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts onnx.SessionOptions
		want string
	}{
		{onnx.SessionOptions{Input: "img"}, `no input "img" (its inputs: ["image"])`},
		{onnx.SessionOptions{Output: "score"}, `no output "score" (its outputs: ["mean"])`},
		{onnx.SessionOptions{InputShape: []int64{1, 3, 64, 64}}, "does not fit"},
		{onnx.SessionOptions{IntraOpThreads: -1}, "negative"},
	} {
		if _, err := r.NewSession(g, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSession(%+v): %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
	g64, err := r.Inspect(onnxgen.MeanIntensity(onnxgen.Double).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if g64.Inputs[0].Type != "float64" {
		t.Errorf("float64 model's input type %q", g64.Inputs[0].Type)
	}
	if _, err := r.NewSession(g64, onnx.SessionOptions{}); err == nil || !strings.Contains(err.Error(), "float64, not float32") {
		t.Errorf("NewSession of a float64 model: %v", err)
	}
}

func TestMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so")
	for name, err := range map[string]error{
		"FindLibrary": func() error { _, err := onnx.FindLibrary(missing); return err }(),
		"Open":        func() error { _, err := onnx.Open(missing); return err }(),
	} {
		var le *onnx.LibraryError
		if !errors.As(err, &le) {
			t.Fatalf("%s(%s): %v, want a *LibraryError", name, missing, err)
		}
		if le.Path != missing || !strings.Contains(err.Error(), "make onnxruntime") || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The default is next to the test binary, where no library is.
	_, err := onnx.FindLibrary("")
	var le *onnx.LibraryError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "next to the executable") {
		t.Errorf("FindLibrary(\"\"): %v", err)
	}
}

// A file that is not a library fails to load with a *LibraryError. The
// environment is per process, so this runs in a child process where no
// Runtime is open.
func TestNotALibrary(t *testing.T) {
	if os.Getenv("ONNX_TEST_NOT_A_LIBRARY") == "1" {
		p := filepath.Join(t.TempDir(), "libonnxruntime.so")
		if err := os.WriteFile(p, []byte("not a shared library"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := onnx.Open(p)
		var le *onnx.LibraryError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "make onnxruntime") {
			t.Fatalf("Open(not a library): %v", err)
		}
		fmt.Println("CHILD-OK:", err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNotALibrary$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "ONNX_TEST_NOT_A_LIBRARY=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CHILD-OK:") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
