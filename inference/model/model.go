// Package model loads the models of a models directory (--models-dir):
// each NAME.onnx beside its manifest NAME.json, the manifest decoded
// strictly and checked against the model as ONNX Runtime reads it, one
// onnx.Session per model. A Registry answers which models apply to a study;
// a Model runs a tensor and turns the output into findings.
//
// Depends on inference/onnx (sessions) and, for the manifest's preprocess
// block, inference/imaging. It writes no FHIR: the job runner does, from
// Model's identity (name, version, SHA-256) and Findings.
package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/onnx"
)

// Model is one loaded model, ready to run; safe for concurrent use.
type Model struct {
	Manifest Manifest
	// Path is the model file, SHA256 the hex SHA-256 of its bytes as
	// loaded: the identity of what ran, for the model's Device.
	Path   string
	SHA256 string
	// Preprocess turns a study's pixels into Run's input (the manifest's
	// preprocess block, parsed).
	Preprocess imaging.Preprocess

	session *onnx.Session
}

// Run feeds one preprocessed input (NCHW float32, Manifest.Input.Shape)
// and returns the raw output.
func (m *Model) Run(ctx context.Context, input []float32) ([]float32, error) {
	out, err := m.session.Run(ctx, input)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Manifest.Name, err)
	}
	return out, nil
}

// Findings turns a Run's output into findings (see the package function).
func (m *Model) Findings(output []float32) ([]Finding, error) {
	return Findings(&m.Manifest, output)
}

// Session is the model's ONNX Runtime session, for measuring a bare run.
func (m *Model) Session() *onnx.Session { return m.session }

// Matches reports whether the model applies to a study of modality and
// bodyPart (its manifest's preprocess filters).
func (m *Model) Matches(modality, bodyPart string) bool {
	return m.Preprocess.Matches(modality, bodyPart)
}

// Close releases the model's session.
func (m *Model) Close() error { return m.session.Close() }

// Registry is the models of a directory, by name. A nil Registry (inference
// off) has no models.
type Registry struct {
	models []*Model // sorted by name
}

// Load loads every model of dir: each NAME.onnx with its NAME.json. Other
// files are ignored; a model without a manifest, or a manifest without a
// model, is an error. Nothing is loaded unless everything is: the error
// lists every problem, one per line, each naming the file and the field
// (e.g. `models/x.json: input.shape: [1,3,64,64] but the model's input
// "image" is [1,1,64,64]`). opts sets threads and memory for every session
// (its Input, Output and InputShape come from each manifest).
func Load(rt *onnx.Runtime, dir string, opts onnx.SessionOptions) (*Registry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	stems := map[string]int{} // bit 1: .onnx, bit 2: .json
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		switch ext := filepath.Ext(name); ext {
		case ".onnx":
			stems[strings.TrimSuffix(name, ext)] |= 1
		case ".json":
			stems[strings.TrimSuffix(name, ext)] |= 2
		}
	}
	r := &Registry{}
	var errs []error
	for _, stem := range slices.Sorted(maps.Keys(stems)) {
		base := filepath.Join(dir, stem)
		switch stems[stem] {
		case 1:
			errs = append(errs, fmt.Errorf("%s.onnx: no manifest %s.json beside it", base, stem))
			continue
		case 2:
			errs = append(errs, fmt.Errorf("%s.json: no model %s.onnx beside it", base, stem))
			continue
		}
		m, err := loadModel(rt, base, stem, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.models = append(r.models, m)
	}
	if len(errs) > 0 {
		r.Close()
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// loadModel loads base.onnx with its manifest base.json; the manifest's
// name must be stem.
func loadModel(rt *onnx.Runtime, base, stem string, opts onnx.SessionOptions) (*Model, error) {
	manifestPath, modelPath := base+".json", base+".onnx"
	prefix := func(err error) error { return prefixErrors(manifestPath, err) }

	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, err
	}
	man, err := ParseManifest(raw)
	if err != nil {
		return nil, prefix(err)
	}
	if man.Name != stem {
		return nil, prefix(fieldErr("name", "%q but the file is %s.json: a manifest's name is its file's", man.Name, stem))
	}
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	g, err := rt.Inspect(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	if err := checkGraph(man, g); err != nil {
		return nil, prefix(err)
	}
	opts.Input, opts.Output, opts.InputShape = man.Input.Name, man.Output.Name, man.Input.Shape
	s, err := rt.NewSession(g, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	return &Model{Manifest: *man, Path: modelPath, SHA256: hex.EncodeToString(sum[:]),
		Preprocess: man.ParsedPreprocess(), session: s}, nil
}

// prefixErrors puts path in front of each of err's joined errors, so every
// line of the message names its file.
func prefixErrors(path string, err error) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = fmt.Errorf("%s: %w", path, e)
	}
	return errors.Join(out...)
}

// Models returns every model, sorted by name.
func (r *Registry) Models() []*Model {
	if r == nil {
		return nil
	}
	return slices.Clone(r.models)
}

// Model returns the model called name, or nil.
func (r *Registry) Model(name string) *Model {
	if r == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(r.models, name, func(m *Model, name string) int {
		return strings.Compare(m.Manifest.Name, name)
	})
	if !ok {
		return nil
	}
	return r.models[i]
}

// Match returns the models that apply to a study of modality and bodyPart
// (DICOM Modality and BodyPartExamined), sorted by name.
func (r *Registry) Match(modality, bodyPart string) []*Model {
	if r == nil {
		return nil
	}
	var out []*Model
	for _, m := range r.models {
		if m.Matches(modality, bodyPart) {
			out = append(out, m)
		}
	}
	return out
}

// Close releases every model's session.
func (r *Registry) Close() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, m := range r.models {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}
