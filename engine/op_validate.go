package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// $validate (https://hl7.org/fhir/R4/resource-operation-validate.html).
//
// The body is the resource itself (mode and profile then come from the URL),
// or a Parameters with resource, mode and profile. The answer is always 200
// with an OperationOutcome: what the validating parser (the same one every
// write goes through) reports, as errors, or one information issue
// "validation successful". Only a request that cannot be understood (a body
// that is not a JSON object, a Parameters without resource, an unknown mode)
// is a 400; a resource that does not exist for mode=delete is a 404 (410
// when deleted). Nothing is ever stored.

// ValidateRequest is a $validate on Type (or Type/ID). Mode and Profiles
// come from the URL; Body is the resource, or a Parameters with resource,
// mode and profile (nil: none was sent, which only mode=delete allows).
type ValidateRequest struct {
	Type, ID string
	Mode     string
	Profiles []string
	Body     []byte
}

// validateRequest is a decoded $validate request.
type validateRequest struct {
	resource json.RawMessage // nil only for mode=delete
	mode     string          // "", create, update or delete
	profiles []string
}

// Validate runs $validate and returns its OperationOutcome. Nothing is
// ever stored.
func (en *Engine) Validate(ctx context.Context, caller *Caller, r ValidateRequest) ([]byte, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return nil, err
	}
	typ, id := r.Type, r.ID
	req := validateRequest{mode: r.Mode, profiles: r.Profiles}
	if r.Body != nil {
		if ferr := req.readBody(r.Body, typ); ferr != nil {
			return nil, ferr
		}
	}
	switch req.mode {
	case "", "create", "update":
		if req.resource == nil {
			return nil, fhir.Invalid("$validate needs a resource (the body, or the Parameters' \"resource\") unless mode is delete")
		}
	case "delete":
		if id == "" {
			return nil, fhir.Invalid("mode=delete validates deleting one resource: invoke $validate on [type]/[id]")
		}
	default:
		return nil, fhir.Invalid("unknown $validate mode "+quote(req.mode)+": expected create, update or delete", "mode")
	}
	var issues []fhir.Issue
	if req.mode == "delete" {
		var err error
		if issues, err = en.validateDelete(ctx, typ, id); err != nil {
			return nil, err
		}
	} else {
		issues = en.validateContent(req, typ, id)
		switch {
		case !outcomeHasErrors(issues):
			issues = append(issues, en.validateProfiles(typ, req.resource, req.profiles)...)
		default:
			for _, p := range req.profiles {
				issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported",
					Diagnostics: "profile " + quote(p) + " was not checked: the resource is not valid R4"})
			}
		}
	}
	if !outcomeHasErrors(issues) {
		issues = append([]fhir.Issue{{Severity: "information", Code: "informational", Diagnostics: "validation successful"}}, issues...)
	}
	return fhir.Outcome(issues...), nil
}

// readBody takes the resource, or a Parameters wrapping it, from body. A
// Parameters body is the wrapper unless Parameters itself is being validated
// and it has no "resource" parameter.
func (req *validateRequest) readBody(body []byte, typ string) *fhir.Error {
	members, err := jsonMembers(body)
	if err != nil {
		// Say why, as a create of the same body would (too deep, malformed…).
		var fe *fhir.Error
		if errors.As(fhir.CheckJSON(body), &fe) {
			return fe
		}
		return fhir.NewError(fhir.BadRequest, "structure", "the body is not a JSON object: a resource or a Parameters is required")
	}
	if string(memberValue(members, "resourceType")) != `"Parameters"` {
		req.resource = body
		return nil
	}
	p, ferr := decodeParameters(body)
	if ferr != nil {
		return ferr
	}
	if typ == "Parameters" && !hasParameter(p, "resource") {
		req.resource = body
		return nil
	}
	return req.readParameters(p)
}

// readParameters takes resource, mode and profile from a Parameters body.
func (req *validateRequest) readParameters(p *opParameters) *fhir.Error {
	for i, prm := range p.Parameter {
		at := "Parameters.parameter[" + strconv.Itoa(i) + "]"
		switch prm.Name {
		case "resource":
			if len(prm.Resource) == 0 || req.resource != nil {
				return fhir.Invalid("\"resource\" must appear once and hold a resource", at)
			}
			req.resource = prm.Resource
		case "mode":
			v, ok := prm.primitive()
			if !ok {
				return fhir.Invalid("\"mode\" must have a valueCode", at)
			}
			if req.mode != "" && req.mode != v {
				return fhir.Invalid("mode is given twice, as "+quote(req.mode)+" and "+quote(v), at)
			}
			req.mode = v
		case "profile":
			v, ok := prm.primitive()
			if !ok {
				return fhir.Invalid("\"profile\" must have a valueUri or valueCanonical", at)
			}
			req.profiles = append(req.profiles, v)
		default:
			return fhir.Invalid("unknown $validate parameter "+quote(prm.Name)+": expected resource, mode or profile", at)
		}
	}
	return nil
}

func hasParameter(p *opParameters, name string) bool {
	for _, prm := range p.Parameter {
		if prm.Name == name {
			return true
		}
	}
	return false
}

// validateContent validates the resource as the URL's type and applies the
// mode's rules on its id.
func (en *Engine) validateContent(req validateRequest, typ, id string) []fhir.Issue {
	var issues []fhir.Issue
	if _, err := en.parser.Parse(req.resource, typ); err != nil {
		issues = append(issues, validationIssues(err)...)
	}
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(req.resource, &head) // a malformed id is the parser's issue
	idError := func(msg string) {
		issues = append(issues, fhir.Issue{Severity: "error", Code: "invalid", Diagnostics: msg, Expression: []string{typ + ".id"}})
	}
	switch {
	case req.mode == "update" && head.ID == "":
		idError("mode=update: the resource has no id, and an update must carry the id of the resource it replaces")
	case (req.mode == "update" || req.mode == "") && id != "" && head.ID != "" && head.ID != id:
		idError("the resource's id " + quote(head.ID) + " does not match the URL's id " + quote(id))
	case req.mode == "create" && head.ID != "":
		issues = append(issues, fhir.Issue{Severity: "information", Code: "informational",
			Diagnostics: "mode=create: the id " + quote(head.ID) + " would be replaced by a server-assigned id"})
	}
	return issues
}

// validationIssues turns a parser error into error issues.
func validationIssues(err error) []fhir.Issue {
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		return []fhir.Issue{{Severity: "error", Code: "invalid", Diagnostics: err.Error()}}
	}
	out := make([]fhir.Issue, len(fe.Issues))
	for i, is := range fe.Issues {
		if is.Severity != "fatal" {
			is.Severity = "error"
		}
		out[i] = is
	}
	return out
}

// validateDelete checks typ/id exists. Deleting is otherwise always allowed:
// Ember does not enforce referential integrity, which the outcome says.
func (en *Engine) validateDelete(ctx context.Context, typ, id string) ([]fhir.Issue, error) {
	v, err := en.store.Read(ctx, typ, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fhir.Missing(typ + "/" + id + " is not known: there is nothing to delete")
	case errors.Is(err, store.ErrDeleted):
		return nil, fhir.NewError(fhir.Gone, "deleted", typ+"/"+id+" was deleted (version "+strconv.FormatInt(v.VersionID, 10)+")")
	case err != nil:
		return nil, err
	}
	return []fhir.Issue{{Severity: "information", Code: "informational",
		Diagnostics: "no referential integrity checks are made: Ember allows deleting " + typ + "/" + id + " even if other resources refer to it"}}, nil
}

func outcomeHasErrors(issues []fhir.Issue) bool {
	for _, is := range issues {
		if is.Severity == "error" || is.Severity == "fatal" {
			return true
		}
	}
	return false
}
