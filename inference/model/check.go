package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/emberfhir/ember/inference/onnx"
)

// checkGraph checks the manifest against the model as ONNX Runtime reads
// it: the input's name, element type and shape, the output's name, type
// and shape, and the findings' indexes against the output's size. Every
// problem comes back, each a *FieldError.
func checkGraph(m *Manifest, g *onnx.Graph) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	switch {
	case len(g.Inputs) != 1:
		add(fieldErr("input.name", "the model has %d inputs %s; Ember feeds exactly one", len(g.Inputs), tensorNames(g.Inputs)))
	case g.Inputs[0].Name != m.Input.Name:
		add(fieldErr("input.name", "%q but the model's input is %q", m.Input.Name, g.Inputs[0].Name))
	default:
		in := g.Inputs[0]
		if in.Type != m.Input.Type {
			add(fieldErr("input.type", "%q but the model's input %q is %s", m.Input.Type, in.Name, in.Type))
		}
		if !fits(m.Input.Shape, in.Shape) {
			add(fieldErr("input.shape", "%s but the model's input %q is %s", formatShape(m.Input.Shape), in.Name, formatShape(in.Shape)))
		}
	}

	i := slices.IndexFunc(g.Outputs, func(t onnx.TensorInfo) bool { return t.Name == m.Output.Name })
	if i < 0 {
		add(fieldErr("output.name", "%q but the model's outputs are %s", m.Output.Name, tensorNames(g.Outputs)))
		return errors.Join(errs...)
	}
	out := g.Outputs[i]
	if out.Type != "float32" {
		add(fieldErr("output.name", "the model's output %q is %s; Ember reads float32", out.Name, out.Type))
	}
	k, ok := outputSize(out.Shape)
	if !ok {
		add(fieldErr("output.name", "the model's output %q is %s; Ember reads [1,K] or [K] with K fixed", out.Name, formatShape(out.Shape)))
		return errors.Join(errs...)
	}
	if m.Output.Activation == Softmax && k == 1 {
		add(fieldErr("output.activation", "softmax over the output's single value is always 1"))
	}
	for j, f := range m.Findings {
		if f.Index >= k {
			add(fieldErr(fmt.Sprintf("findings[%d].index", j), "%d but the model's output %q has %d value(s)", f.Index, out.Name, k))
		}
	}
	return errors.Join(errs...)
}

// fits reports whether shape matches model, where the model's symbolic
// dimensions (-1) accept any size.
func fits(shape, model []int64) bool {
	if len(shape) != len(model) {
		return false
	}
	for i, d := range model {
		if d >= 0 && d != shape[i] {
			return false
		}
	}
	return true
}

// outputSize returns K for an output of shape [K] or [1,K] (the 1 may be
// symbolic: a batch dimension, and Ember feeds a batch of one).
func outputSize(shape []int64) (int, bool) {
	switch {
	case len(shape) == 1 && shape[0] > 0:
		return int(shape[0]), true
	case len(shape) == 2 && (shape[0] == 1 || shape[0] < 0) && shape[1] > 0:
		return int(shape[1]), true
	}
	return 0, false
}

func tensorNames(ts []onnx.TensorInfo) string {
	s := "["
	for i, t := range ts {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", t.Name)
	}
	return s + "]"
}
