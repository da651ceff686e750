package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/patch"
	"github.com/emberfhir/ember/store"
)

// PatchKind is the format of a patch.
type PatchKind int

// The patch formats.
const (
	JSONPatch     PatchKind = iota + 1 // RFC 6902, application/json-patch+json
	FHIRPathPatch                      // a Parameters resource, application/fhir+json
)

// JSONPatchType is JSON Patch's media type.
const JSONPatchType = "application/json-patch+json"

// PatchRequest is a patch of Type/ID, or of the one match of
// Type?Condition (none: NotFound; several: PreconditionFailed).
type PatchRequest struct {
	Type, ID  string
	Condition string
	Kind      PatchKind
	Body      []byte // the JSON Patch, or the Parameters of a FHIRPath Patch
	IfMatch   int64
}

// Patch applies a patch and stores the result as a new version (Updated),
// or, for a patch without operations, writes nothing (Unchanged).
func (tx *Tx) Patch(req PatchRequest) (Result, error) {
	if req.Condition != "" {
		return tx.en.doConditionalPatch(tx.ctx, tx.tx, req.Type, req.Condition, req.Kind, req.Body, req.IfMatch)
	}
	return tx.en.doPatch(tx.ctx, tx.tx, req.Type, req.ID, req.Kind, req.Body, req.IfMatch)
}

// doConditionalPatch patches the one match of typ?query.
func (en *Engine) doConditionalPatch(ctx context.Context, tx *store.Tx, typ, query string, kind PatchKind, body []byte, ifMatch int64) (Result, error) {
	id, err := en.patchTarget(ctx, tx, typ, query, ifMatch)
	if err != nil {
		return Result{}, err
	}
	return en.doPatch(ctx, tx, typ, id, kind, body, ifMatch)
}

// patchTarget resolves the condition of a conditional patch to the id of
// its one match: no match is 404 (there is nothing to patch; 412 under
// If-Match: *), several 412.
func (en *Engine) patchTarget(ctx context.Context, tx *store.Tx, typ, query string, ifMatch int64) (string, error) {
	id, ok, err := en.resolveConditional(ctx, tx, typ, query)
	if err != nil {
		return "", err
	}
	if !ok && ifMatch == IfMatchAny {
		return "", errNoCurrent("no resource matches the condition")
	}
	if !ok {
		return "", fhir.Missing("no " + typ + " matches " + quote(query) + ": nothing to patch")
	}
	return id, nil
}

// doPatch applies a patch to the current version of typ/id and stores the
// result as a new version, like an update.
//
// The current version is read without a lock, so a concurrent writer may
// commit between the read and the write. The write therefore requires the
// version it patched (the If-Match version, or the one read); on a
// conflict without If-Match, the patch is applied again to the version now
// current. The failed write's row lock is held by then, so the second try
// cannot conflict: no concurrent update is ever lost.
func (en *Engine) doPatch(ctx context.Context, tx *store.Tx, typ, id string, kind PatchKind, body []byte, ifMatch int64) (Result, error) {
	if err := refuseAuditEdit(ctx, tx, typ, id); err != nil {
		return Result{}, err
	}
	for attempt := 0; ; attempt++ {
		res, err := en.patchOnce(ctx, tx, typ, id, kind, body, ifMatch)
		if errors.Is(err, store.ErrVersionConflict) && ifMatch <= 0 && attempt == 0 {
			continue
		}
		return res, err
	}
}

func (en *Engine) patchOnce(ctx context.Context, tx *store.Tx, typ, id string, kind PatchKind, body []byte, ifMatch int64) (Result, error) {
	cur, err := tx.Read(ctx, typ, id)
	if ifMatch == IfMatchAny && (errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted)) {
		return Result{}, errNoCurrent(typ + "/" + id + " does not exist or is deleted")
	}
	if err != nil {
		return Result{}, readError(cur, err)
	}
	if ifMatch > 0 && cur.VersionID != ifMatch {
		return Result{}, store.ErrVersionConflict
	}
	patched, err := applyPatch(kind, cur.Content, body)
	if err != nil {
		return Result{}, err
	}
	if noOperations(kind, body) {
		// A patch without operations changes nothing, so it writes no
		// version: 200 with the current one, as HAPI's no-op detection
		// answers. Both formats allow it (RFC 6902's document is an array
		// of zero or more operations; Parameters.parameter is 0..*), so it
		// is not a 400; a new version equal to the last would only grow
		// the history and move lastUpdated.
		return Result{Outcome: Unchanged, Version: cur, Message: "unchanged: the patch has no operations"}, nil
	}
	if err := keepsIdentity(patched, typ, id); err != nil {
		return Result{}, err
	}
	res, err := en.parser.Parse(patched, typ)
	if err != nil {
		return Result{}, patchedInvalid(err)
	}
	if res, err = en.admit(ctx, res); err != nil {
		return Result{}, err
	}
	r, err := updated(tx.Update(ctx, res, id, cur.VersionID))
	r.Message = "patched"
	return r, err
}

func applyPatch(kind PatchKind, doc, body []byte) ([]byte, error) {
	if kind == JSONPatch {
		return patch.JSON(doc, body)
	}
	if err := fhir.CheckJSON(body); err != nil {
		return nil, err
	}
	return patch.FHIRPath(doc, body)
}

// noOperations reports whether a patch that applied holds no operation:
// a JSON Patch [] or a Parameters without parameters.
func noOperations(kind PatchKind, body []byte) bool {
	if kind == JSONPatch {
		var ops []json.RawMessage
		return json.Unmarshal(body, &ops) == nil && len(ops) == 0
	}
	var params struct {
		Parameter []json.RawMessage `json:"parameter"`
	}
	return json.Unmarshal(body, &params) == nil && len(params.Parameter) == 0
}

// keepsIdentity rejects a patch that changes the resource's type or id: a
// patch edits one resource, it cannot turn it into another.
func keepsIdentity(patched []byte, typ, id string) error {
	var head struct {
		ResourceType any `json:"resourceType"`
		ID           any `json:"id"`
	}
	if err := json.Unmarshal(patched, &head); err != nil {
		return fhir.NewError(fhir.Unprocessable, "processing", "the patched resource is not a JSON object")
	}
	if head.ResourceType != typ {
		return fhir.NewError(fhir.Unprocessable, "processing",
			fmt.Sprintf("the patch changes resourceType: %s must remain a %s", typ+"/"+id, typ), "resourceType")
	}
	if head.ID != id {
		return fhir.NewError(fhir.Unprocessable, "processing",
			fmt.Sprintf("the patch changes or removes the id: %s must keep the id %s", typ+"/"+id, quote(id)), typ+".id")
	}
	return nil
}

// patchedInvalid reports a patch result that is not a valid resource. It
// is always 422: the request was well formed, its outcome is not.
func patchedInvalid(err error) error {
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		return err
	}
	out := &fhir.Error{Kind: fhir.Unprocessable}
	for _, is := range fe.Issues {
		is.Diagnostics = "the patched resource is invalid: " + is.Diagnostics
		out.Issues = append(out.Issues, is)
	}
	return out
}

// entryPatch reads a transaction or batch PATCH entry's resource: a Binary
// holding a JSON Patch (base64 data) or a Parameters (FHIRPath Patch).
func entryPatch(raw []byte) (PatchKind, []byte, error) {
	var head struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &head) != nil {
		return 0, nil, fhir.Invalid("a PATCH entry needs a resource: a Binary (JSON Patch) or a Parameters (FHIRPath Patch)")
	}
	switch head.ResourceType {
	case "Parameters":
		return FHIRPathPatch, raw, nil
	case "Binary":
		if mt, _, err := mime.ParseMediaType(head.ContentType); err != nil || mt != JSONPatchType {
			return 0, nil, fhir.NewError(fhir.UnsupportedFormat, "not-supported",
				"a PATCH entry's Binary must have contentType "+JSONPatchType+", not "+quote(head.ContentType), "Binary.contentType")
		}
		// base64Binary may be broken by whitespace (MIME's line breaks).
		body, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(head.Data), ""))
		if err != nil || len(body) == 0 {
			return 0, nil, fhir.Invalid("a PATCH entry's Binary.data must be the base64 JSON Patch", "Binary.data")
		}
		return JSONPatch, body, nil
	}
	return 0, nil, fhir.Invalid("a PATCH entry's resource must be a Binary (JSON Patch) or a Parameters (FHIRPath Patch), not " + quote(head.ResourceType))
}

// executePatch runs a PATCH entry. A transaction resolved its condition
// already (resolveIdentities); a batch entry resolves it here.
func (en *Engine) executePatch(ctx context.Context, tx *store.Tx, e *txEntry) (Result, error) {
	kind, body := e.patchKind, e.patch
	if body == nil {
		var err error
		if kind, body, err = entryPatch(e.raw); err != nil {
			return Result{}, err
		}
	}
	if e.id == "" {
		return en.doConditionalPatch(ctx, tx, e.typ, e.query, kind, body, e.ifMatch)
	}
	return en.doPatch(ctx, tx, e.typ, e.id, kind, body, e.ifMatch)
}
