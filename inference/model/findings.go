package model

import (
	"fmt"
	"math"
)

// Finding is one finding read from a model's output: what becomes an
// Observation (code, value with unit, interpretation).
type Finding struct {
	Index int    // the output value it comes from
	Code  Coding // what was found
	Value float64
	Unit  string
	// Interpretation is the rule's Above when Value is at or above its
	// threshold, its Below otherwise; nil when the rule gives none.
	Interpretation *Coding
}

// Findings applies the manifest's activation to a run's output and reads
// each finding rule from it, in the manifest's order. It is a pure
// function of the manifest and output; the error says the output is
// shorter than a rule's index needs.
func Findings(m *Manifest, output []float32) ([]Finding, error) {
	values := Activate(m.Output.Activation, output)
	out := make([]Finding, len(m.Findings))
	for i, r := range m.Findings {
		if r.Index >= len(values) {
			return nil, fmt.Errorf("model %s: findings[%d].index %d but the output has %d values", m.Name, i, r.Index, len(values))
		}
		f := Finding{Index: r.Index, Code: r.Code, Value: values[r.Index], Unit: r.Unit}
		if r.Threshold != nil {
			if f.Value >= *r.Threshold {
				f.Interpretation = r.Above
			} else {
				f.Interpretation = r.Below
			}
		}
		out[i] = f
	}
	return out, nil
}

// Activate returns output with the activation applied, in float64.
func Activate(a Activation, output []float32) []float64 {
	v := make([]float64, len(output))
	for i, x := range output {
		v[i] = float64(x)
	}
	switch a {
	case Sigmoid:
		for i, x := range v {
			v[i] = 1 / (1 + math.Exp(-x))
		}
	case Softmax:
		// Shifted by the maximum so that no exponential overflows.
		hi := math.Inf(-1)
		for _, x := range v {
			hi = math.Max(hi, x)
		}
		var sum float64
		for i, x := range v {
			v[i] = math.Exp(x - hi)
			sum += v[i]
		}
		for i := range v {
			v[i] /= sum
		}
	}
	return v
}
