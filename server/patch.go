package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
)

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
	r, err := s.eng.Patch(c.Request.Context(), s.caller(c), engine.PatchRequest{Type: seg[0], ID: seg[1], Kind: kind, Body: body, IfMatch: ifMatch})
	s.answer(c, r, err)
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
	r, err := s.eng.Patch(c.Request.Context(), s.caller(c), engine.PatchRequest{Type: seg[0], Condition: c.Request.URL.RawQuery, Kind: kind, Body: body, IfMatch: ifMatch})
	s.answer(c, r, err)
}

// readPatch reads a PATCH body and its format from the Content-Type, which
// a PATCH must send: the same JSON could be meant either way.
func (s *Server) readPatch(c *gin.Context) (engine.PatchKind, []byte, bool) {
	kind, ferr := patchKindOf(c.GetHeader("Content-Type"))
	if ferr != nil {
		s.fail(c, ferr)
		return 0, nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(c, httpError(http.StatusRequestEntityTooLarge, "too-costly",
				fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxBody)))
			return 0, nil, false
		}
		s.fail(c, fhir.NewError(fhir.BadRequest, "structure", "cannot read request body: "+err.Error()))
		return 0, nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.fail(c, fhir.NewError(fhir.BadRequest, "structure", "empty body: a PATCH needs a JSON Patch or a FHIRPath Patch Parameters"))
		return 0, nil, false
	}
	if body, err = s.patchFromXML(c, body); err != nil {
		s.fail(c, err)
		return 0, nil, false
	}
	return kind, body, true
}

// patchKindOf maps a Content-Type to a patch format; anything else is 415.
func patchKindOf(ct string) (engine.PatchKind, error) {
	if ct == "" {
		return 0, httpError(http.StatusUnsupportedMediaType, "not-supported",
			"a PATCH needs a Content-Type: "+engine.JSONPatchType+" (JSON Patch) or application/fhir+json (a FHIRPath Patch Parameters)")
	}
	unsupported := httpError(http.StatusUnsupportedMediaType, "not-supported",
		fmt.Sprintf("unsupported Content-Type %q for PATCH: send %s (JSON Patch) or application/fhir+json (a FHIRPath Patch Parameters)", ct, engine.JSONPatchType))
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, unsupported
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, httpError(http.StatusUnsupportedMediaType, "not-supported", fmt.Sprintf("unsupported charset %q: send UTF-8", cs))
	}
	switch {
	case mt == engine.JSONPatchType:
		return engine.JSONPatch, nil
	case jsonFormat(mt) || xmlFormat(mt):
		return engine.FHIRPathPatch, nil
	}
	return 0, unsupported
}
