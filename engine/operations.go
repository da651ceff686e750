package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"github.com/emberfhir/ember/fhir"
)

// Level is where an operation may be invoked.
type Level uint8

// The invocation levels.
const (
	SystemLevel   Level = 1 << iota // [base]/$op
	TypeLevel                       // [base]/Type/$op
	InstanceLevel                   // [base]/Type/id/$op
)

// Operation describes one FHIR operation Ember implements. The registry is
// what the CapabilityStatement advertises and the HTTP layer dispatches.
type Operation struct {
	Name   string // without "$"
	Levels Level
	Types  []string // resource types it applies to at type/instance level; nil = all
	// Methods are the HTTP methods the operation accepts: GET too only for
	// operations that change nothing.
	Methods []string
	// Definition is the canonical URL of the operation's
	// OperationDefinition, for operations the FHIR specification does not
	// define; "" for the core ones (the HTTP layer knows their URLs).
	Definition string
	// Unlisted operations are served but left out of the
	// CapabilityStatement: one whose service is off in this process
	// ($infer without models) answers 503 saying why, not 404, yet does
	// not advertise what it cannot do.
	Unlisted bool
	// Invoke, when set, is the whole operation: the HTTP layer reads a
	// request into an OpRequest, calls it with the token's Caller and
	// writes the OpResponse, knowing nothing of the operation by name.
	// Operations registered outside the engine (inference's $infer) set
	// it; nil leaves the HTTP binding to the server (the core operations,
	// $export).
	Invoke func(ctx context.Context, caller *Caller, req OpRequest) (OpResponse, error)
}

// OpRequest is one invocation of an operation with Invoke.
type OpRequest struct {
	Level    Level
	Type, ID string // "" where the level has none
	// Body is the request body (a Parameters resource, size-checked and
	// JSON-typed by the HTTP layer); nil for a request without one (GET).
	Body []byte
	// Query are the URL's parameters, HTTP's own (_format, _pretty)
	// included: an operation reads the names it defines.
	Query url.Values
	// RespondAsync is "Prefer: respond-async".
	RespondAsync bool
}

// OpOutcome is what an invoked operation did.
type OpOutcome uint8

// The outcomes of an invoked operation.
const (
	// OpOK: done; the body is the answer (200).
	OpOK OpOutcome = iota
	// OpAccepted: work was queued; the body lists it and ContentLocation,
	// when set, is where to follow it (202).
	OpAccepted
)

// OpResponse is what an operation with Invoke answers.
type OpResponse struct {
	Outcome OpOutcome
	// Body is a FHIR resource as JSON; nil answers without a body.
	Body []byte
	// ContentLocation is an absolute URL to poll for queued work ("" none).
	ContentLocation string
}

// AppliesTo reports whether the operation may be invoked at level on typ
// ("" at system level).
func (op Operation) AppliesTo(level Level, typ string) bool {
	return op.Levels&level != 0 && (typ == "" || op.Types == nil || contains(op.Types, typ))
}

// Operations lists the operations the engine implements, by name. The
// registry is the only shared line: each operation's core lives in its own
// file (op_*.go).
func (en *Engine) Operations() map[string]Operation { return en.ops }

// Operation returns the operation name, and whether it is registered.
func (en *Engine) Operation(name string) (Operation, bool) {
	op, ok := en.ops[name]
	return op, ok
}

// Register adds an operation implemented outside the engine's core (bulk
// export: engine/export registers $export; inference's $infer comes with
// its Invoke). Call it before serving.
func (en *Engine) Register(op Operation) { en.ops[op.Name] = op }

// coreOperations registers $validate, $meta, $meta-add, $meta-delete,
// $everything and the terminology operations: op_validate.go, op_meta.go,
// op_everything.go and op_terminology.go.
func (en *Engine) coreOperations() map[string]Operation {
	ops := map[string]Operation{}
	for _, op := range append([]Operation{
		{Name: "validate", Levels: TypeLevel | InstanceLevel, Methods: []string{"POST"}},
		{Name: "meta", Levels: SystemLevel | TypeLevel | InstanceLevel, Methods: []string{"GET", "POST"}},
		{Name: "meta-add", Levels: InstanceLevel, Methods: []string{"POST"}},
		{Name: "meta-delete", Levels: InstanceLevel, Methods: []string{"POST"}},
		// Patient/$everything (all patients) is not implemented: the
		// type level is not registered.
		{Name: "everything", Levels: InstanceLevel, Types: []string{"Patient"}, Methods: []string{"GET"}},
	}, en.terminologyOperations()...) {
		ops[op.Name] = op
	}
	return ops
}

// opParameters is the part of a FHIR Parameters resource the core operations
// read. It is decoded with encoding/json rather than validated whole: the
// operations validate what they take out of it themselves (a resource part
// with the resource's own rules and error locations).
type opParameters struct {
	ResourceType string        `json:"resourceType"`
	Parameter    []opParameter `json:"parameter"`
}

// opParameter is one Parameters.parameter; only the value types the core
// operations accept are decoded.
type opParameter struct {
	Name           string          `json:"name"`
	Resource       json.RawMessage `json:"resource"`
	ValueCode      *string         `json:"valueCode"`
	ValueString    *string         `json:"valueString"`
	ValueURI       *string         `json:"valueUri"`
	ValueCanonical *string         `json:"valueCanonical"`
	ValueMeta      json.RawMessage `json:"valueMeta"`
}

// decodeParameters reads body as a Parameters resource; anything else is a
// malformed request (400).
func decodeParameters(body []byte) (*opParameters, *fhir.Error) {
	var p opParameters
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fhir.NewError(fhir.BadRequest, "structure", "the body is not a valid Parameters resource: "+err.Error())
	}
	if p.ResourceType != "Parameters" {
		return nil, fhir.Invalid("expected a Parameters resource, got resourceType "+quote(p.ResourceType), "resourceType")
	}
	for i, prm := range p.Parameter {
		if prm.Name == "" {
			return nil, fhir.Invalid(fmt.Sprintf("Parameters.parameter[%d] has no name", i), fmt.Sprintf("Parameters.parameter[%d].name", i))
		}
	}
	return &p, nil
}

// primitive returns a code, string, uri or canonical parameter's value.
func (p opParameter) primitive() (string, bool) {
	for _, v := range []*string{p.ValueCode, p.ValueString, p.ValueURI, p.ValueCanonical} {
		if v != nil {
			return *v, true
		}
	}
	return "", false
}

// returnMeta renders the Parameters answer of the $meta operations: one
// "return" parameter holding meta (a JSON object).
func returnMeta(meta []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Parameters","parameter":[{"name":"return","valueMeta":`)
	b.Write(meta)
	b.WriteString(`}]}`)
	return b.Bytes()
}

// jsonMember is one member of a JSON object, its value kept as written.
type jsonMember struct {
	key   string
	value json.RawMessage
}

// errNotObject: the JSON is not an object.
var errNotObject = errors.New("not a JSON object")

// jsonMembers splits a JSON object into its members in order, keeping each
// value's bytes (decimals keep their written precision).
func jsonMembers(b []byte) ([]jsonMember, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	var out []jsonMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string) // object keys are always strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, jsonMember{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// encodeMembers is the inverse of jsonMembers.
func encodeMembers(ms []jsonMember) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key) // a string: cannot fail
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// memberValue returns the value of key ("" absent).
func memberValue(ms []jsonMember, key string) json.RawMessage {
	for _, m := range ms {
		if m.key == key {
			return m.value
		}
	}
	return nil
}
