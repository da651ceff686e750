package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/patch"
	"github.com/emberfhir/ember/store"
)

// patchKind is the patch format of a PATCH body.
type patchKind int

const (
	jsonPatch     patchKind = iota + 1 // RFC 6902, application/json-patch+json
	fhirPathPatch                      // a Parameters resource, application/fhir+json
)

const jsonPatchType = "application/json-patch+json"

// patch serves PATCH [type]/[id].
func (s *Server) patch(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	kind, body, ok := s.readPatch(c)
	if !ok {
		return
	}
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doPatch(ctx, tx, seg[0], seg[1], kind, body, ifMatch)
	})
}

// conditionalPatch serves PATCH [type]?search: the one match is patched.
func (s *Server) conditionalPatch(c *gin.Context, seg []string) {
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	kind, body, ok := s.readPatch(c)
	if !ok {
		return
	}
	s.inTx(c, func(ctx context.Context, tx *store.Tx) (result, error) {
		return s.doConditionalPatch(ctx, tx, seg[0], c.Request.URL.RawQuery, kind, body, ifMatch)
	})
}

// readPatch reads a PATCH body and its format from the Content-Type, which
// a PATCH must send: the same JSON could be meant either way.
func (s *Server) readPatch(c *gin.Context) (patchKind, []byte, bool) {
	kind, ferr := patchKindOf(c.GetHeader("Content-Type"))
	if ferr != nil {
		s.fail(c, ferr)
		return 0, nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(c, fhir.NewError(http.StatusRequestEntityTooLarge, "too-costly",
				fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxBody)))
			return 0, nil, false
		}
		s.fail(c, fhir.NewError(http.StatusBadRequest, "structure", "cannot read request body: "+err.Error()))
		return 0, nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.fail(c, fhir.NewError(http.StatusBadRequest, "structure", "empty body: a PATCH needs a JSON Patch or a FHIRPath Patch Parameters"))
		return 0, nil, false
	}
	return kind, body, true
}

// patchKindOf maps a Content-Type to a patch format; anything else is 415.
func patchKindOf(ct string) (patchKind, *fhir.Error) {
	if ct == "" {
		return 0, fhir.NewError(http.StatusUnsupportedMediaType, "not-supported",
			"a PATCH needs a Content-Type: "+jsonPatchType+" (JSON Patch) or application/fhir+json (a FHIRPath Patch Parameters)")
	}
	unsupported := fhir.NewError(http.StatusUnsupportedMediaType, "not-supported",
		fmt.Sprintf("unsupported Content-Type %q for PATCH: send %s (JSON Patch) or application/fhir+json (a FHIRPath Patch Parameters)", ct, jsonPatchType))
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, unsupported
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, fhir.NewError(http.StatusUnsupportedMediaType, "not-supported", fmt.Sprintf("unsupported charset %q: send UTF-8", cs))
	}
	switch {
	case mt == jsonPatchType:
		return jsonPatch, nil
	case jsonFormat(mt):
		return fhirPathPatch, nil
	}
	return 0, unsupported
}

// doConditionalPatch patches the one match of typ?query.
func (s *Server) doConditionalPatch(ctx context.Context, tx *store.Tx, typ, query string, kind patchKind, body []byte, ifMatch int64) (result, error) {
	id, err := s.patchTarget(ctx, tx, typ, query, ifMatch)
	if err != nil {
		return result{}, err
	}
	return s.doPatch(ctx, tx, typ, id, kind, body, ifMatch)
}

// patchTarget resolves the condition of a conditional patch to the id of
// its one match: no match is 404 (there is nothing to patch; 412 under
// If-Match: *), several 412.
func (s *Server) patchTarget(ctx context.Context, tx *store.Tx, typ, query string, ifMatch int64) (string, error) {
	id, ok, err := s.resolveConditional(ctx, tx, typ, query)
	if err != nil {
		return "", err
	}
	if !ok && ifMatch == ifMatchAny {
		return "", errNoCurrent("no resource matches the condition")
	}
	if !ok {
		return "", fhir.NotFound("no " + typ + " matches " + quote(query) + ": nothing to patch")
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
func (s *Server) doPatch(ctx context.Context, tx *store.Tx, typ, id string, kind patchKind, body []byte, ifMatch int64) (result, error) {
	for attempt := 0; ; attempt++ {
		res, err := s.patchOnce(ctx, tx, typ, id, kind, body, ifMatch)
		if errors.Is(err, store.ErrVersionConflict) && ifMatch <= 0 && attempt == 0 {
			continue
		}
		return res, err
	}
}

func (s *Server) patchOnce(ctx context.Context, tx *store.Tx, typ, id string, kind patchKind, body []byte, ifMatch int64) (result, error) {
	cur, err := tx.Read(ctx, typ, id)
	if ifMatch == ifMatchAny && (errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted)) {
		return result{}, errNoCurrent(typ + "/" + id + " does not exist or is deleted")
	}
	if err != nil {
		return result{}, readError(cur, err)
	}
	if ifMatch > 0 && cur.VersionID != ifMatch {
		return result{}, store.ErrVersionConflict
	}
	patched, err := applyPatch(kind, cur.Content, body)
	if err != nil {
		return result{}, err
	}
	if noOperations(kind, body) {
		// A patch without operations changes nothing, so it writes no
		// version: 200 with the current one, as HAPI's no-op detection
		// answers. Both formats allow it (RFC 6902's document is an array
		// of zero or more operations; Parameters.parameter is 0..*), so it
		// is not a 400; a new version equal to the last would only grow
		// the history and move lastUpdated.
		return result{status: http.StatusOK, version: cur, message: "unchanged: the patch has no operations"}, nil
	}
	if err := keepsIdentity(patched, typ, id); err != nil {
		return result{}, err
	}
	res, err := s.parser.Parse(patched, typ)
	if err != nil {
		return result{}, patchedInvalid(err)
	}
	r, err := updated(tx.Update(ctx, res, id, cur.VersionID))
	r.message = "patched"
	return r, err
}

func applyPatch(kind patchKind, doc, body []byte) ([]byte, error) {
	if kind == jsonPatch {
		return patch.JSON(doc, body)
	}
	if err := fhir.CheckJSON(body); err != nil {
		return nil, err
	}
	return patch.FHIRPath(doc, body)
}

// noOperations reports whether a patch that applied holds no operation:
// a JSON Patch [] or a Parameters without parameters.
func noOperations(kind patchKind, body []byte) bool {
	if kind == jsonPatch {
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
		return fhir.NewError(http.StatusUnprocessableEntity, "processing", "the patched resource is not a JSON object")
	}
	if head.ResourceType != typ {
		return fhir.NewError(http.StatusUnprocessableEntity, "processing",
			fmt.Sprintf("the patch changes resourceType: %s must remain a %s", typ+"/"+id, typ), "resourceType")
	}
	if head.ID != id {
		return fhir.NewError(http.StatusUnprocessableEntity, "processing",
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
	out := &fhir.Error{Status: http.StatusUnprocessableEntity}
	for _, is := range fe.Issues {
		is.Diagnostics = "the patched resource is invalid: " + is.Diagnostics
		out.Issues = append(out.Issues, is)
	}
	return out
}

// entryPatch reads a transaction or batch PATCH entry's resource: a Binary
// holding a JSON Patch (base64 data) or a Parameters (FHIRPath Patch).
func entryPatch(raw []byte) (patchKind, []byte, error) {
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
		return fhirPathPatch, raw, nil
	case "Binary":
		if mt, _, err := mime.ParseMediaType(head.ContentType); err != nil || mt != jsonPatchType {
			return 0, nil, fhir.NewError(http.StatusUnsupportedMediaType, "not-supported",
				"a PATCH entry's Binary must have contentType "+jsonPatchType+", not "+quote(head.ContentType), "Binary.contentType")
		}
		// base64Binary may be broken by whitespace (MIME's line breaks).
		body, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(head.Data), ""))
		if err != nil || len(body) == 0 {
			return 0, nil, fhir.Invalid("a PATCH entry's Binary.data must be the base64 JSON Patch", "Binary.data")
		}
		return jsonPatch, body, nil
	}
	return 0, nil, fhir.Invalid("a PATCH entry's resource must be a Binary (JSON Patch) or a Parameters (FHIRPath Patch), not " + quote(head.ResourceType))
}

// executePatch runs a PATCH entry. A transaction resolved its condition
// already (resolveIdentities); a batch entry resolves it here.
func (s *Server) executePatch(ctx context.Context, tx *store.Tx, e *txEntry) (result, error) {
	kind, body := e.patchKind, e.patch
	if body == nil {
		var err error
		if kind, body, err = entryPatch(e.raw); err != nil {
			return result{}, err
		}
	}
	if e.id == "" {
		return s.doConditionalPatch(ctx, tx, e.typ, e.query, kind, body, e.ifMatch)
	}
	return s.doPatch(ctx, tx, e.typ, e.id, kind, body, e.ifMatch)
}
