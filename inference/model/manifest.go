package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/inference/imaging"
)

// Manifest is a model's NAME.json: what the model takes and gives, which
// studies it applies to, and what its outputs mean as FHIR findings.
type Manifest struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	Input       Input  `json:"input"`
	// Preprocess is the block as written; inference/imaging owns its
	// meaning (study filters, windowing, resizing, normalisation) and
	// parses it: see Preprocess().
	Preprocess json.RawMessage `json:"preprocess,omitempty"`
	Output     Output          `json:"output"`
	Findings   []FindingRule   `json:"findings"`
	Report     Report          `json:"report"`

	preprocess imaging.Preprocess // Preprocess parsed by ParseManifest
}

// ParsedPreprocess returns the preprocess block as ParseManifest parsed
// it, defaults applied.
func (m *Manifest) ParsedPreprocess() imaging.Preprocess { return m.preprocess }

// Input is the tensor the model is fed: NCHW float32 with N = 1 and C 1
// (grayscale) or 3 (RGB).
type Input struct {
	Name  string  `json:"name"`
	Shape []int64 `json:"shape"`
	Type  string  `json:"type"`
}

// Output is the tensor read back, [1,K] or [K], and the activation that
// turns it into the values findings compare with their thresholds.
type Output struct {
	Name       string     `json:"name"`
	Activation Activation `json:"activation"`
}

// Activation is applied to the whole output before findings are read.
type Activation string

const (
	Sigmoid Activation = "sigmoid" // each value on its own: 1 / (1 + e^-x)
	Softmax Activation = "softmax" // over the K values together
	Raw     Activation = "raw"     // the values as the model gives them
)

// Coding is a FHIR Coding: a code from a code system.
type Coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// FindingRule turns output value Index into a finding: an Observation
// coded Code whose value is the activated output, interpreted Above when
// the value is at or above Threshold and Below otherwise.
type FindingRule struct {
	Index     int      `json:"index"`
	Code      Coding   `json:"code"`
	Threshold *float64 `json:"threshold"` // required; a pointer to tell 0 from absent
	Above     *Coding  `json:"above,omitempty"`
	Below     *Coding  `json:"below,omitempty"`
	Unit      string   `json:"unit,omitempty"`
}

// Report is the DiagnosticReport written for each run.
type Report struct {
	Code       Coding   `json:"code"`
	Category   []Coding `json:"category,omitempty"`
	Conclusion string   `json:"conclusion,omitempty"`
	// Status is the DiagnosticReport's status: "preliminary" (the default)
	// or "final", "partial", "registered".
	Status string `json:"status,omitempty"`
}

// DefaultStatus is Report.Status when the manifest gives none: a machine's
// finding awaits a clinician's review.
const DefaultStatus = "preliminary"

var reportStatuses = []string{"registered", "partial", "preliminary", "final"}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]*$`)
)

// maxSide bounds an input's height and width: a manifest asking for more
// is a mistake, and would make every job allocate gigabytes.
const maxSide = 8192

// FieldError is one problem with a manifest, naming the field (a JSON path
// such as "findings[1].threshold").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseManifest decodes and validates a manifest on its own, without its
// model: every problem comes back, each a *FieldError, joined. Decoding is
// strict: a member Manifest does not define (names are case-sensitive) is
// an error naming it, as is trailing data. Absent optional fields get
// their defaults (Report.Status).
func ParseManifest(data []byte) (*Manifest, error) {
	var generic any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, &FieldError{Msg: "not JSON: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &FieldError{Msg: "data after the JSON object"}
	}
	if _, ok := generic.(map[string]any); !ok {
		return nil, &FieldError{Msg: "not a JSON object"}
	}
	var errs []error
	checkJSON(generic, reflect.TypeFor[Manifest](), "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		// checkJSON has seen every type, so this is a number out of range.
		return nil, &FieldError{Msg: err.Error()}
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	if m.Report.Status == "" {
		m.Report.Status = DefaultStatus
	}
	return &m, nil
}

// checkJSON reports the members of v (decoded with UseNumber) that t does
// not define and the values whose JSON type t cannot hold, each with its
// path. encoding/json matches member names case-insensitively, its
// DisallowUnknownFields stops at the first unknown member, and its type
// errors lose array indexes; a manifest's author is better served by every
// problem, exactly placed.
func checkJSON(v any, t reflect.Type, path string, errs *[]error) {
	if v == nil {
		return // null: the field keeps its zero value, and validation says if it is missing
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[json.RawMessage]() {
		return // parsed, strictly, by its owner
	}
	bad := func() { *errs = append(*errs, fieldErr(path, "%s is not a valid %s", describe(v), jsonType(t))) }
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			bad()
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields[name] = f.Type
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			ft, ok := fields[k]
			if !ok {
				*errs = append(*errs, fieldErr(join(path, k), "unknown field"))
				continue
			}
			checkJSON(obj[k], ft, join(path, k), errs)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			bad()
			return
		}
		for i, e := range arr {
			checkJSON(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad()
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			bad()
		} else if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
			bad()
		}
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			bad()
		} else if _, err := strconv.ParseFloat(string(n), 64); err != nil {
			bad()
		}
	}
}

func describe(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "number " + string(v)
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%v", v)
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "array of " + jsonType(t.Elem()) + "s"
	case reflect.Struct:
		return "object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return t.String()
}

func (m *Manifest) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case m.Name == "":
		add(fieldErr("name", "missing"))
	case !nameRE.MatchString(m.Name):
		add(fieldErr("name", "%q must be lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", m.Name))
	}
	switch {
	case m.Version == "":
		add(fieldErr("version", "missing"))
	case len(m.Version) > 64 || !versionRE.MatchString(m.Version):
		add(fieldErr("version", "%q must be letters, digits, '.', '+', '_' or '-' (at most 64), starting with a letter or digit", m.Version))
	}

	if m.Input.Name == "" {
		add(fieldErr("input.name", "missing"))
	}
	add(checkInputShape(m.Input.Shape))
	switch m.Input.Type {
	case "":
		add(fieldErr("input.type", `missing; must be "float32"`))
	case "float32":
	default:
		add(fieldErr("input.type", `%q: Ember feeds "float32" only`, m.Input.Type))
	}

	if m.Output.Name == "" {
		add(fieldErr("output.name", "missing"))
	}
	switch m.Output.Activation {
	case "":
		add(fieldErr("output.activation", `missing; must be "sigmoid", "softmax" or "raw"`))
	case Sigmoid, Softmax, Raw:
	default:
		add(fieldErr("output.activation", `%q must be "sigmoid", "softmax" or "raw"`, m.Output.Activation))
	}

	if len(m.Findings) == 0 {
		add(fieldErr("findings", "missing; at least one finding is needed"))
	}
	seen := map[int]int{}
	for i, f := range m.Findings {
		p := fmt.Sprintf("findings[%d]", i)
		if f.Index < 0 {
			add(fieldErr(p+".index", "%d is negative", f.Index))
		} else if j, dup := seen[f.Index]; dup {
			add(fieldErr(p+".index", "%d is already findings[%d].index", f.Index, j))
		} else {
			seen[f.Index] = i
		}
		add(checkCoding(p+".code", &f.Code))
		switch {
		case f.Threshold == nil:
			add(fieldErr(p+".threshold", "missing"))
		case m.Output.Activation != Raw && (*f.Threshold < 0 || *f.Threshold > 1):
			add(fieldErr(p+".threshold", "%v is outside [0,1], where %s values lie", *f.Threshold, m.Output.Activation))
		}
		if f.Above != nil {
			add(checkCoding(p+".above", f.Above))
		}
		if f.Below != nil {
			add(checkCoding(p+".below", f.Below))
		}
	}

	// imaging's errors name their field ("preprocess.window.width: …").
	if pp, err := imaging.ParsePreprocess(m.Preprocess); err != nil {
		add(err)
	} else if c := m.Input.Shape; len(c) == 4 && (c[1] == 1 || c[1] == 3) {
		if err := pp.Validate(int(c[1])); err != nil {
			add(err)
		}
		m.preprocess = pp
	}

	add(checkCoding("report.code", &m.Report.Code))
	for i := range m.Report.Category {
		add(checkCoding(fmt.Sprintf("report.category[%d]", i), &m.Report.Category[i]))
	}
	if s := m.Report.Status; s != "" && !slices.Contains(reportStatuses, s) {
		add(fieldErr("report.status", "%q must be one of %s", s, strings.Join(reportStatuses, ", ")))
	}
	return errors.Join(errs...)
}

func checkInputShape(shape []int64) error {
	const f = "input.shape"
	if shape == nil {
		return fieldErr(f, "missing; must be [1, C, H, W]")
	}
	if len(shape) != 4 {
		return fieldErr(f, "%s must be [1, C, H, W]", formatShape(shape))
	}
	switch {
	case shape[0] != 1:
		return fieldErr(f, "%s: N must be 1 (one image per run)", formatShape(shape))
	case shape[1] != 1 && shape[1] != 3:
		return fieldErr(f, "%s: C must be 1 (grayscale) or 3 (RGB)", formatShape(shape))
	case shape[2] < 1 || shape[2] > maxSide || shape[3] < 1 || shape[3] > maxSide:
		return fieldErr(f, "%s: H and W must be between 1 and %d", formatShape(shape), maxSide)
	}
	return nil
}

func checkCoding(field string, c *Coding) error {
	var errs []error
	if c.System == "" {
		errs = append(errs, fieldErr(field+".system", "missing"))
	} else if u, err := url.Parse(c.System); err != nil || !u.IsAbs() {
		errs = append(errs, fieldErr(field+".system", "%q is not an absolute URI", c.System))
	}
	if c.Code == "" {
		errs = append(errs, fieldErr(field+".code", "missing"))
	} else if strings.TrimSpace(c.Code) != c.Code {
		errs = append(errs, fieldErr(field+".code", "%q has leading or trailing whitespace", c.Code))
	}
	return errors.Join(errs...)
}

// formatShape writes a shape as manifests do, [1,3,224,224], with "?" for
// a dimension the model leaves symbolic.
func formatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		if d < 0 {
			b.WriteByte('?')
		} else {
			b.WriteString(strconv.FormatInt(d, 10))
		}
	}
	b.WriteByte(']')
	return b.String()
}
