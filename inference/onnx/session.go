package onnx

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// TensorInfo is one of a model's inputs or outputs as ONNX Runtime reads it
// from the model.
type TensorInfo struct {
	Name string
	// Type is the element type of a dense tensor ("float32", "float64",
	// "uint8", "int64", …), else what the value is ("sequence", "map",
	// "sparse tensor", …).
	Type string
	// Shape has -1 for a dimension the model leaves symbolic (a batch
	// dimension "N", say); nil when Type is not a dense tensor's.
	Shape []int64
}

// Graph is a model's bytes with the inputs and outputs ONNX Runtime reads
// from them, to be checked before a Session is made of it.
type Graph struct {
	data    []byte
	Inputs  []TensorInfo
	Outputs []TensorInfo
}

// Inspect parses the ONNX model in data (building, then dropping, a
// session: ONNX Runtime offers no lighter way) and lists its inputs and
// outputs.
func (r *Runtime) Inspect(data []byte) (*Graph, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("onnx: not a model ONNX Runtime can load: %w", err)
	}
	g := &Graph{data: data, Inputs: make([]TensorInfo, len(ins)), Outputs: make([]TensorInfo, len(outs))}
	for i := range ins {
		g.Inputs[i] = tensorInfo(&ins[i])
	}
	for i := range outs {
		g.Outputs[i] = tensorInfo(&outs[i])
	}
	return g, nil
}

func tensorInfo(info *ort.InputOutputInfo) TensorInfo {
	t := TensorInfo{Name: info.Name}
	switch info.OrtValueType {
	case ort.ONNXTypeTensor:
		t.Type = elementType(info.DataType)
		t.Shape = append([]int64{}, info.Dimensions...)
	case ort.ONNXTypeSparseTensor:
		t.Type = "sparse tensor"
	default:
		t.Type = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(info.OrtValueType.String(), "ONNX_TYPE_"), "_", " "))
	}
	return t
}

func elementType(t ort.TensorElementDataType) string {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return "float32"
	case ort.TensorElementDataTypeDouble:
		return "float64"
	case ort.TensorElementDataTypeFloat16:
		return "float16"
	case ort.TensorElementDataTypeBFloat16:
		return "bfloat16"
	case ort.TensorElementDataTypeUint8:
		return "uint8"
	case ort.TensorElementDataTypeInt8:
		return "int8"
	case ort.TensorElementDataTypeUint16:
		return "uint16"
	case ort.TensorElementDataTypeInt16:
		return "int16"
	case ort.TensorElementDataTypeUint32:
		return "uint32"
	case ort.TensorElementDataTypeInt32:
		return "int32"
	case ort.TensorElementDataTypeUint64:
		return "uint64"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeBool:
		return "bool"
	case ort.TensorElementDataTypeString:
		return "string"
	}
	return strings.ToLower(strings.TrimPrefix(t.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
}

// SessionOptions says which input and output a Session binds and how it
// uses the machine.
type SessionOptions struct {
	// Input and Output name the tensors Run feeds and reads; empty means
	// the model's only input (output).
	Input, Output string
	// InputShape is the shape Run feeds; nil means the input's own, which
	// then must have no symbolic dimension.
	InputShape []int64
	// IntraOpThreads caps the threads one Run uses inside an operator; 0
	// leaves ONNX Runtime's default (one per physical core). Workers ×
	// IntraOpThreads should not exceed the cores.
	IntraOpThreads int
	// CPUArena keeps ONNX Runtime's CPU memory arena, which holds on to the
	// largest memory any Run needed. Off (the zero value), a Run's
	// intermediate tensors are freed when it returns, so memory stays
	// bounded while many studies go through.
	CPUArena bool
}

// Session is one model ready to run, created once and shared: Run may be
// called from several goroutines at once. ONNX Runtime's OrtSession::Run is
// thread-safe, and onnxruntime_go's DynamicAdvancedSession (unlike
// AdvancedSession, which reuses its bound tensors) takes fresh tensors on
// every call and is documented for concurrent use (yalue/onnxruntime_go#79).
// The only lock is a read lock so that Close waits for runs in flight.
type Session struct {
	s        *ort.DynamicAdvancedSession
	input    TensorInfo // Shape is the shape fed
	output   TensorInfo
	inShape  ort.Shape
	inLen    int
	outShape ort.Shape // nil when the model leaves a dimension symbolic
	outLen   int

	mu     sync.RWMutex
	closed bool
}

// NewSession makes g runnable with opts. The input and output it binds must
// be float32 tensors.
func (r *Runtime) NewSession(g *Graph, opts SessionOptions) (*Session, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	in, err := pick("input", g.Inputs, opts.Input)
	if err != nil {
		return nil, err
	}
	out, err := pick("output", g.Outputs, opts.Output)
	if err != nil {
		return nil, err
	}
	if in.Type != "float32" {
		return nil, fmt.Errorf("onnx: input %q is %s, not float32", in.Name, in.Type)
	}
	if out.Type != "float32" {
		return nil, fmt.Errorf("onnx: output %q is %s, not float32", out.Name, out.Type)
	}
	shape := opts.InputShape
	if shape == nil {
		shape = in.Shape
	}
	if err := fits(shape, in.Shape); err != nil {
		return nil, fmt.Errorf("onnx: input %q: %w", in.Name, err)
	}
	in.Shape = append([]int64{}, shape...)
	s := &Session{input: in, output: out, inShape: ort.NewShape(shape...)}
	s.inLen = int(s.inShape.FlattenedSize())
	if known(out.Shape) {
		s.outShape = ort.NewShape(out.Shape...)
		s.outLen = int(s.outShape.FlattenedSize())
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	defer so.Destroy()
	if err := configure(so, opts); err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	s.s, err = ort.NewDynamicAdvancedSessionWithONNXData(g.data, []string{in.Name}, []string{out.Name}, so)
	if err != nil {
		return nil, fmt.Errorf("onnx: create session: %w", err)
	}
	return s, nil
}

func configure(so *ort.SessionOptions, opts SessionOptions) error {
	if opts.IntraOpThreads < 0 {
		return fmt.Errorf("IntraOpThreads %d is negative", opts.IntraOpThreads)
	}
	if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
		return err
	}
	if err := so.SetCpuMemArena(opts.CPUArena); err != nil {
		return err
	}
	// Idle intra-op threads would otherwise spin for a while after each
	// operator, taking cores the FHIR server and the other workers need.
	return so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
}

func pick(kind string, infos []TensorInfo, name string) (TensorInfo, error) {
	if name == "" {
		if len(infos) != 1 {
			return TensorInfo{}, fmt.Errorf("onnx: the model has %d %ss %s: name one", len(infos), kind, names(infos))
		}
		return infos[0], nil
	}
	for _, t := range infos {
		if t.Name == name {
			return t, nil
		}
	}
	return TensorInfo{}, fmt.Errorf("onnx: the model has no %s %q (its %ss: %s)", kind, name, kind, names(infos))
}

func names(infos []TensorInfo) string {
	q := make([]string, len(infos))
	for i, t := range infos {
		q[i] = fmt.Sprintf("%q", t.Name)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// fits checks that the concrete shape can be fed to a tensor declared as
// model (where -1 accepts any size).
func fits(shape, model []int64) error {
	if len(shape) != len(model) {
		return fmt.Errorf("shape %v has rank %d, the model's %v rank %d", shape, len(shape), model, len(model))
	}
	for i, d := range shape {
		if d <= 0 {
			return fmt.Errorf("shape %v: dimension %d is not positive", shape, i)
		}
		if model[i] >= 0 && model[i] != d {
			return fmt.Errorf("shape %v does not fit the model's %v", shape, model)
		}
	}
	return nil
}

func known(shape []int64) bool {
	for _, d := range shape {
		if d < 0 {
			return false
		}
	}
	return true
}

// Input returns the input Run feeds, with the shape it feeds.
func (s *Session) Input() TensorInfo { return s.input }

// Output returns the output Run reads, as the model declares it.
func (s *Session) Output() TensorInfo { return s.output }

// Run feeds input (the input tensor's elements, row-major, e.g. NCHW) to the
// model and returns the output tensor's elements. Cancelling ctx stops a
// run in progress (ONNX Runtime's terminate flag, checked between
// operators).
func (s *Session) Run(ctx context.Context, input []float32) ([]float32, error) {
	if len(input) != s.inLen {
		return nil, fmt.Errorf("onnx: input %q %v takes %d values, got %d", s.input.Name, s.input.Shape, s.inLen, len(input))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errors.New("onnx: the session is closed")
	}

	in, err := ort.NewTensor(s.inShape, input)
	if err != nil {
		return nil, fmt.Errorf("onnx: input tensor: %w", err)
	}
	defer in.Destroy()
	// With a known output shape, ONNX Runtime writes straight into result;
	// otherwise it allocates the output and onnxruntime_go copies it.
	var result []float32
	outs := []ort.Value{nil}
	if s.outShape != nil {
		result = make([]float32, s.outLen)
		out, err := ort.NewTensor(s.outShape, result)
		if err != nil {
			return nil, fmt.Errorf("onnx: output tensor: %w", err)
		}
		outs[0] = out
	}
	defer func() {
		if outs[0] != nil {
			outs[0].Destroy()
		}
	}()

	var ro *ort.RunOptions
	if ctx.Done() != nil {
		if ro, err = ort.NewRunOptions(); err != nil {
			return nil, fmt.Errorf("onnx: run options: %w", err)
		}
		defer ro.Destroy()
		terminated := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(terminated)
			_ = ro.Terminate()
		})
		// Runs before ro.Destroy (deferred earlier): never destroy the
		// options while Terminate may still be using them.
		defer func() {
			if !stop() {
				<-terminated
			}
		}()
	}

	err = s.s.RunWithOptions([]ort.Value{in}, outs, ro)
	runtime.KeepAlive(input)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("onnx: run: %w", cerr)
		}
		return nil, fmt.Errorf("onnx: run: %w", err)
	}
	if result != nil {
		return result, nil
	}
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("onnx: output %q is %T, not a float32 tensor", s.output.Name, outs[0])
	}
	// GetData is a Go copy of ONNX Runtime's buffer, still valid after the
	// deferred Destroy releases the OrtValue.
	return t.GetData(), nil
}

// Close releases the session after the runs in flight return; Run then
// fails.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.s.Destroy(); err != nil {
		return fmt.Errorf("onnx: close session: %w", err)
	}
	return nil
}
