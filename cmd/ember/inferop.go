package main

// $infer over the engine's generic operations: the server knows it only as
// an engine.Operation with Invoke.
//
//	POST [base]/ImagingStudy/[id]/$infer   model?, force?
//	POST [base]/ImagingStudy/$infer        study (1..100 references), model?, force?
//
// Parameters come in a Parameters body or the query (model=, force=,
// study=). The answer is 202 Accepted with a Bundle (type collection) of
// the Tasks, read with the caller's grant, one per study and model (a Task
// already done or queued for the same study and model version, when force
// is not set); Content-Location is the Task, or a Task search for all of
// them, to poll. Inference off: 503 with an OperationOutcome saying why.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/inference"
)

// inferDefinition is $infer's OperationDefinition canonical: Ember's own.
const inferDefinition = "urn:ember:OperationDefinition:ImagingStudy-infer"

// inferOperation is $infer, served by svc. It is always registered, so a
// server without models answers 503 (not 404); it is listed in the
// CapabilityStatement only when models are loaded.
func inferOperation(svc *inference.Service, en *engine.Engine) engine.Operation {
	base := strings.TrimRight(en.Base(), "/")
	return engine.Operation{
		Name:       "infer",
		Levels:     engine.TypeLevel | engine.InstanceLevel,
		Types:      []string{"ImagingStudy"},
		Methods:    []string{"POST"},
		Definition: inferDefinition,
		Unlisted:   svc.Available() != nil,
		Invoke: func(ctx context.Context, caller *engine.Caller, req engine.OpRequest) (engine.OpResponse, error) {
			if err := svc.Available(); err != nil {
				return engine.OpResponse{}, err
			}
			r, err := inferRequest(req, base)
			if err != nil {
				return engine.OpResponse{}, err
			}
			queued, err := svc.Request(ctx, caller, r)
			if err != nil {
				return engine.OpResponse{}, err
			}
			return inferResponse(ctx, en, caller, queued, base)
		},
	}
}

// inferParameters is the part of a Parameters body $infer reads.
type inferParameters struct {
	ResourceType string `json:"resourceType"`
	Parameter    []struct {
		Name           string  `json:"name"`
		ValueString    *string `json:"valueString"`
		ValueCode      *string `json:"valueCode"`
		ValueBoolean   *bool   `json:"valueBoolean"`
		ValueReference *struct {
			Reference string `json:"reference"`
		} `json:"valueReference"`
	} `json:"parameter"`
}

// inferRequest reads $infer's parameters: the body's, then the query's.
func inferRequest(req engine.OpRequest, base string) (inference.Request, error) {
	var r inference.Request
	var refs []string
	var modelSet, forceSet bool
	setModel := func(v, where string) error {
		if modelSet {
			return fhir.Invalid("parameter model is given more than once", where)
		}
		if v == "" {
			return fhir.Invalid("parameter model is empty", where)
		}
		r.Model, modelSet = v, true
		return nil
	}
	setForce := func(v bool, where string) error {
		if forceSet {
			return fhir.Invalid("parameter force is given more than once", where)
		}
		r.Force, forceSet = v, true
		return nil
	}
	if len(bytes.TrimSpace(req.Body)) > 0 {
		var p inferParameters
		if err := json.Unmarshal(req.Body, &p); err != nil {
			return r, fhir.NewError(fhir.BadRequest, "structure", "the body is not a valid Parameters resource: "+err.Error())
		}
		if p.ResourceType != "Parameters" {
			return r, fhir.Invalid(fmt.Sprintf("expected a Parameters resource, got resourceType %q", p.ResourceType), "resourceType")
		}
		for i, prm := range p.Parameter {
			where := fmt.Sprintf("Parameters.parameter[%d]", i)
			var err error
			switch prm.Name {
			case "model":
				v := prm.ValueString
				if v == nil {
					v = prm.ValueCode
				}
				if v == nil {
					return r, fhir.Invalid("parameter model needs a valueString (the model's name)", where)
				}
				err = setModel(*v, where)
			case "force":
				if prm.ValueBoolean == nil {
					return r, fhir.Invalid("parameter force needs a valueBoolean", where)
				}
				err = setForce(*prm.ValueBoolean, where)
			case "study":
				if prm.ValueReference == nil {
					return r, fhir.Invalid("parameter study needs a valueReference to an ImagingStudy", where)
				}
				refs = append(refs, prm.ValueReference.Reference)
			default:
				err = fhir.Invalid(fmt.Sprintf("unknown parameter %q: $infer takes model, force and, at type level, study", prm.Name), where+".name")
			}
			if err != nil {
				return r, err
			}
		}
	}
	for name, vs := range req.Query {
		for _, v := range vs {
			var err error
			switch name {
			case "model":
				err = setModel(v, "model")
			case "force":
				b, perr := strconv.ParseBool(v)
				if perr != nil {
					return r, fhir.Invalid(fmt.Sprintf("parameter force %q: use true or false", v), "force")
				}
				err = setForce(b, "force")
			case "study":
				refs = append(refs, v)
			}
			if err != nil {
				return r, err
			}
		}
	}
	if req.Level == engine.InstanceLevel {
		if len(refs) > 0 {
			return r, fhir.Invalid("parameter study is for the type-level POST ImagingStudy/$infer; this request names its study in the URL", "study")
		}
		r.ImagingStudyIDs = []string{req.ID}
		return r, nil
	}
	if len(refs) == 0 {
		return r, fhir.Invalid("ImagingStudy/$infer needs at least one study parameter (a reference to an ImagingStudy)", "study")
	}
	if len(refs) > inference.MaxStudies {
		return r, fhir.Invalid(fmt.Sprintf("%d studies: ImagingStudy/$infer takes at most %d; split the request", len(refs), inference.MaxStudies), "study")
	}
	seen := make(map[string]bool, len(refs))
	for _, ref := range refs {
		id, err := studyID(ref, base)
		if err != nil {
			return r, err
		}
		if !seen[id] {
			seen[id] = true
			r.ImagingStudyIDs = append(r.ImagingStudyIDs, id)
		}
	}
	return r, nil
}

// studyID reads an ImagingStudy reference: ImagingStudy/[id], or the same
// under this server's base.
func studyID(ref, base string) (string, error) {
	rel := strings.TrimPrefix(ref, base+"/")
	id, ok := strings.CutPrefix(rel, "ImagingStudy/")
	if !ok || !fhir.ValidID(id) {
		return "", fhir.Invalid(fmt.Sprintf("study %q is not a reference to an ImagingStudy of this server (ImagingStudy/[id])", ref), "study")
	}
	return id, nil
}

// inferResponse is the 202 answer: the Tasks, read with the caller's grant,
// in a collection Bundle; Content-Location is where to poll them.
func inferResponse(ctx context.Context, en *engine.Engine, caller *engine.Caller, queued []inference.Queued, base string) (engine.OpResponse, error) {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"collection"`)
	if len(queued) == 0 { // FHIR has no empty arrays
		b.WriteByte('}')
		return engine.OpResponse{Outcome: engine.OpAccepted, Body: b.Bytes()}, nil
	}
	b.WriteString(`,"entry":[`)
	ids := make([]string, len(queued))
	for i, q := range queued {
		ids[i] = q.TaskID
	}
	loc := base + "/Task?_id=" + url.QueryEscape(strings.Join(ids, ","))
	if len(ids) == 1 {
		loc = base + "/Task/" + ids[0]
	}
	for i, q := range queued {
		v, err := en.Read(ctx, caller, "Task", q.TaskID)
		if fe, ok := engine.AsError(err); err != nil && ok && (fe.Kind == fhir.Forbidden || fe.Kind == fhir.NotFound) {
			// A grant that creates Tasks but may not read them: the
			// work is queued all the same; say where it is, show nothing.
			return engine.OpResponse{Outcome: engine.OpAccepted, ContentLocation: loc}, nil
		}
		if err != nil {
			return engine.OpResponse{}, fmt.Errorf("$infer: reading Task/%s: %w", q.TaskID, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		full, _ := json.Marshal(base + "/Task/" + q.TaskID) // a string: cannot fail
		b.WriteString(`{"fullUrl":`)
		b.Write(full)
		b.WriteString(`,"resource":`)
		b.Write(v.Content)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return engine.OpResponse{Outcome: engine.OpAccepted, Body: b.Bytes(), ContentLocation: loc}, nil
}
