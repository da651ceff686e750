package imaging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Preprocess is a manifest's `preprocess` block: which studies a model
// reads and how one frame becomes its input tensor. ParsePreprocess is its
// only constructor from JSON (defaults applied, every value checked); the
// zero value is not a valid Preprocess, DefaultPreprocess is.
type Preprocess struct {
	Modalities []string // Modality filter; empty = any
	BodyParts  []string // BodyPartExamined filter, case-insensitive; empty = any
	// Rescale applies RescaleSlope/RescaleIntercept (default true).
	Rescale bool
	Window  Window
	// InvertMonochrome1 makes MONOCHROME1 read like MONOCHROME2 (default true).
	InvertMonochrome1 bool
	Frame             Frame
	Resize            Resize
	// Mean and Std are per channel (length 1 or C), applied last:
	// (v - Mean[c]) / Std[c]. Defaults [0] and [1].
	Mean, Std []float64
}

// DefaultPreprocess is what an absent or empty `preprocess` block means.
func DefaultPreprocess() Preprocess {
	return Preprocess{Rescale: true, InvertMonochrome1: true, Window: Window{Mode: WindowDataset},
		Frame: Frame{Rule: FrameFirst}, Resize: ResizeBilinear, Mean: []float64{0}, Std: []float64{1}}
}

// WindowMode says where the VOI window comes from.
type WindowMode int

// Window modes.
const (
	// WindowDataset: WindowCenter/WindowWidth's first values, else the
	// frame's min–max (the default).
	WindowDataset  WindowMode = iota
	WindowExplicit            // the manifest's Center and Width
	WindowNone                // no windowing: values stay in rescaled units
)

// Window is the VOI windowing step. Windowing maps to [0,1] with PS3.3
// C.11.2.1.2.1's linear function, clipped.
type Window struct {
	Mode          WindowMode
	Center, Width float64 // WindowExplicit only
}

// FrameRule picks the frame of a multi-frame instance.
type FrameRule int

// Frame rules.
const (
	FrameFirst FrameRule = iota
	FrameMiddle
	FrameLast
	FrameIndex
)

// Frame is the manifest's frame selection: "first" (default), "middle"
// (index n/2, 0-based: the upper middle of an even count), "last", or a
// 0-based index.
type Frame struct {
	Rule  FrameRule
	Index int // FrameIndex only
}

// index is the 0-based frame the rule picks among n.
func (f Frame) index(n int) (int, bool) {
	switch f.Rule {
	case FrameMiddle:
		return n / 2, n > 0
	case FrameLast:
		return n - 1, n > 0
	case FrameIndex:
		return f.Index, f.Index >= 0 && f.Index < n
	}
	return 0, n > 0
}

func (f Frame) String() string {
	switch f.Rule {
	case FrameMiddle:
		return "middle"
	case FrameLast:
		return "last"
	case FrameIndex:
		return strconv.Itoa(f.Index)
	}
	return "first"
}

// Resize is the interpolation to the model's H×W.
type Resize int

// Resize methods.
const (
	// ResizeBilinear: half-pixel centres, edge samples clamped, no
	// antialiasing (OpenCV INTER_LINEAR, PyTorch align_corners=False with
	// antialias=False).
	ResizeBilinear Resize = iota
	// ResizeNearest: the source pixel whose area holds the output pixel's
	// centre, floor((x+0.5)·in/out) (PIL NEAREST, OpenCV
	// INTER_NEAREST_EXACT, PyTorch "nearest-exact").
	ResizeNearest
)

// preprocessJSON is the wire form; window and frame take two shapes each.
type preprocessJSON struct {
	Modalities        []string        `json:"modalities"`
	BodyParts         []string        `json:"bodyParts"`
	Rescale           *bool           `json:"rescale"`
	Window            json.RawMessage `json:"window"`
	InvertMonochrome1 *bool           `json:"invertMonochrome1"`
	Frame             json.RawMessage `json:"frame"`
	Resize            *string         `json:"resize"`
	Mean              []float64       `json:"mean"`
	Std               []float64       `json:"std"`
}

// strict decodes one JSON value into v, refusing unknown members and
// trailing data; errors name the field under prefix.
func strict(raw []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return fmt.Errorf("%s.%s: must be %s, not %s", prefix, te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		case errors.As(err, &te):
			return fmt.Errorf("%s: must be an object, not %s", prefix, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("%s: unknown field %s", prefix, strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return fmt.Errorf("%s: %v", prefix, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s: data after the value", prefix)
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "an array"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "ptr", "string":
		return "a string"
	}
	return k
}

// ParsePreprocess reads a manifest's `preprocess` block (raw may be empty
// or null: all defaults). Unknown fields are errors; every error names its
// field ("preprocess.window.width: must be >= 1"). The number of mean and
// std values is checked by Validate, against the input's channels.
func ParsePreprocess(raw json.RawMessage) (Preprocess, error) {
	p := DefaultPreprocess()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return p, nil
	}
	var j preprocessJSON
	if err := strict(raw, &j, "preprocess"); err != nil {
		return Preprocess{}, err
	}
	for i, m := range j.Modalities {
		if m = strings.TrimSpace(m); m == "" {
			return Preprocess{}, fmt.Errorf("preprocess.modalities[%d]: must not be empty", i)
		}
		p.Modalities = append(p.Modalities, strings.ToUpper(m))
	}
	for i, b := range j.BodyParts {
		if b = strings.TrimSpace(b); b == "" {
			return Preprocess{}, fmt.Errorf("preprocess.bodyParts[%d]: must not be empty", i)
		}
		p.BodyParts = append(p.BodyParts, b)
	}
	if j.Rescale != nil {
		p.Rescale = *j.Rescale
	}
	if j.InvertMonochrome1 != nil {
		p.InvertMonochrome1 = *j.InvertMonochrome1
	}
	var err error
	if p.Window, err = parseWindow(j.Window); err != nil {
		return Preprocess{}, err
	}
	if p.Frame, err = parseFrame(j.Frame); err != nil {
		return Preprocess{}, err
	}
	if j.Resize != nil {
		switch *j.Resize {
		case "bilinear":
			p.Resize = ResizeBilinear
		case "nearest":
			p.Resize = ResizeNearest
		default:
			return Preprocess{}, fmt.Errorf("preprocess.resize: %q is not \"bilinear\" or \"nearest\"", *j.Resize)
		}
	}
	if j.Mean != nil {
		p.Mean = j.Mean
	}
	if j.Std != nil {
		p.Std = j.Std
	}
	for _, f := range []struct {
		name string
		v    []float64
	}{{"mean", p.Mean}, {"std", p.Std}} {
		if len(f.v) == 0 {
			return Preprocess{}, fmt.Errorf("preprocess.%s: no values (1, or one per channel)", f.name)
		}
	}
	for i, v := range p.Std {
		if v == 0 {
			return Preprocess{}, fmt.Errorf("preprocess.std[%d]: must not be 0", i)
		}
	}
	return p, nil
}

func parseWindow(raw json.RawMessage) (Window, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return Window{Mode: WindowDataset}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Window{}, fmt.Errorf("preprocess.window: %v", err)
		}
		switch s {
		case "dataset":
			return Window{Mode: WindowDataset}, nil
		case "none":
			return Window{Mode: WindowNone}, nil
		}
		return Window{}, fmt.Errorf("preprocess.window: %q is not \"dataset\", \"none\" or {\"center\": …, \"width\": …}", s)
	}
	var w struct {
		Center *float64 `json:"center"`
		Width  *float64 `json:"width"`
	}
	if raw[0] != '{' {
		return Window{}, fmt.Errorf("preprocess.window: must be \"dataset\", \"none\" or {\"center\": …, \"width\": …}")
	}
	if err := strict(raw, &w, "preprocess.window"); err != nil {
		return Window{}, err
	}
	switch {
	case w.Center == nil:
		return Window{}, errors.New("preprocess.window.center: required")
	case w.Width == nil:
		return Window{}, errors.New("preprocess.window.width: required")
	case *w.Width < 1:
		// PS3.3 C.11.2.1.2.1: the linear function needs width ≥ 1.
		return Window{}, fmt.Errorf("preprocess.window.width: must be >= 1, not %g", *w.Width)
	}
	return Window{Mode: WindowExplicit, Center: *w.Center, Width: *w.Width}, nil
}

func parseFrame(raw json.RawMessage) (Frame, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return Frame{Rule: FrameFirst}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Frame{}, fmt.Errorf("preprocess.frame: %v", err)
		}
		switch s {
		case "first":
			return Frame{Rule: FrameFirst}, nil
		case "middle":
			return Frame{Rule: FrameMiddle}, nil
		case "last":
			return Frame{Rule: FrameLast}, nil
		}
		return Frame{}, fmt.Errorf("preprocess.frame: %q is not \"first\", \"middle\", \"last\" or a 0-based index", s)
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 0 {
		return Frame{}, fmt.Errorf("preprocess.frame: %s is not \"first\", \"middle\", \"last\" or a 0-based index", raw)
	}
	return Frame{Rule: FrameIndex, Index: n}, nil
}

// Validate checks the block against the model input's channel count C
// (1 or 3): mean and std must have 1 or C values.
func (p Preprocess) Validate(channels int) error {
	if channels != 1 && channels != 3 {
		return fmt.Errorf("preprocess: %d input channels (1 or 3)", channels)
	}
	if len(p.Mean) != 1 && len(p.Mean) != channels {
		return fmt.Errorf("preprocess.mean: %d values for %d channels", len(p.Mean), channels)
	}
	if len(p.Std) != 1 && len(p.Std) != channels {
		return fmt.Errorf("preprocess.std: %d values for %d channels", len(p.Std), channels)
	}
	return nil
}

// Matches reports whether a series with this Modality and BodyPartExamined
// passes the filters. An empty filter passes anything; a non-empty one
// needs a value (case-insensitive).
func (p Preprocess) Matches(modality, bodyPart string) bool {
	return anyEqualFold(p.Modalities, strings.TrimSpace(modality)) && anyEqualFold(p.BodyParts, strings.TrimSpace(bodyPart))
}

func anyEqualFold(filter []string, v string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if strings.EqualFold(f, v) {
			return true
		}
	}
	return false
}
