package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

const contentTypeFHIR = "application/fhir+json; charset=utf-8"

// negotiate checks _format and Accept. Only JSON is served for now, so a
// request that can accept nothing but XML or Turtle gets 406.
func negotiate(r *http.Request) *fhir.Error {
	if f := r.URL.Query().Get("_format"); f != "" {
		if !jsonFormat(f) {
			return fhir.NewError(http.StatusNotAcceptable, "not-supported",
				fmt.Sprintf("_format %q is not supported: Ember serves application/fhir+json", f))
		}
		return nil // _format overrides Accept
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return nil
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				continue
			}
		}
		if mt == "*/*" || mt == "application/*" || jsonFormat(mt) {
			return nil
		}
	}
	return fhir.NewError(http.StatusNotAcceptable, "not-supported",
		fmt.Sprintf("cannot satisfy Accept %q: Ember serves application/fhir+json", accept))
}

func jsonFormat(f string) bool {
	// An unescaped "+" in a query string decodes to a space; clients that
	// write _format=application/fhir+json by hand mean the plus.
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(f)), " ", "+") {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}

// readBody enforces the content type and size limit of a resource body.
func (s *Server) readBody(c *gin.Context) ([]byte, *fhir.Error) {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || !jsonFormat(mt) {
			return nil, fhir.NewError(http.StatusUnsupportedMediaType, "not-supported",
				fmt.Sprintf("unsupported Content-Type %q: send application/fhir+json", ct))
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, fhir.NewError(http.StatusUnsupportedMediaType, "not-supported",
				fmt.Sprintf("unsupported charset %q: send UTF-8", cs))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fhir.NewError(http.StatusRequestEntityTooLarge, "too-costly",
				fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxBody))
		}
		return nil, fhir.NewError(http.StatusBadRequest, "structure", "cannot read request body: "+err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fhir.NewError(http.StatusBadRequest, "structure", "empty body: a FHIR resource is required")
	}
	return body, nil
}

// writeJSON writes a FHIR JSON body, indented when _pretty=true.
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	if c.Query("_pretty") == "true" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, body, "", "  "); err == nil {
			body = buf.Bytes()
		}
	}
	c.Data(status, contentTypeFHIR, body)
}

func (s *Server) writeOutcome(c *gin.Context, status int, outcome []byte) {
	s.writeJSON(c, status, outcome)
}

// fail writes err as an OperationOutcome.
func (s *Server) fail(c *gin.Context, err error) {
	if errors.Is(err, context.Canceled) {
		c.Status(499) // client went away; nobody reads the body
		return
	}
	fe, ok := asFHIRError(err)
	if !ok {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	s.writeOutcome(c, fe.Status, fe.Outcome())
}

// asFHIRError maps err to the FHIR error it stands for. ok is false for
// server faults, which map to a 500 that reveals no internals.
func asFHIRError(err error) (*fhir.Error, bool) {
	var fe *fhir.Error
	switch {
	case errors.As(err, &fe):
		return fe, true
	case errors.Is(err, store.ErrVersionConflict):
		return fhir.NewError(http.StatusPreconditionFailed, "conflict", "version conflict: the If-Match version is not the current version"), true
	case errors.Is(err, store.ErrExists):
		return fhir.NewError(http.StatusConflict, "duplicate", "a resource with that id exists already"), true
	case errors.Is(err, store.ErrNotFound):
		return fhir.NotFound("the resource is not known"), true
	case errors.Is(err, store.ErrDeleted):
		return fhir.NewError(http.StatusGone, "deleted", "the resource was deleted"), true
	case errors.Is(err, store.ErrBadCursor):
		return fhir.NewError(http.StatusBadRequest, "invalid", "the paging link is invalid or has expired: repeat the search"), true
	case errors.Is(err, errMultipleMatches):
		return fhir.NewError(http.StatusPreconditionFailed, "multiple-matches", "the condition matches more than one resource"), true
	case errors.Is(err, context.DeadlineExceeded):
		return fhir.NewError(http.StatusServiceUnavailable, "timeout", "the request timed out"), true
	case store.IsCanceled(err):
		return fhir.NewError(http.StatusServiceUnavailable, "timeout",
			"the request ran past the database statement timeout and was stopped: narrow the search (more selective parameters, fewer values) or ask the administrator about --statement-timeout"), true
	}
	return &fhir.Error{Status: http.StatusInternalServerError, Issues: []fhir.Issue{{Severity: "fatal", Code: "exception", Diagnostics: "internal error"}}}, false
}

// versionHeaders sets ETag and Last-Modified for a version.
func versionHeaders(c *gin.Context, v store.Version) {
	c.Header("ETag", etag(v.VersionID))
	c.Header("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
}

func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// parseETag reads a version from an ETag-like header value: W/"3", "3" or 3.
func parseETag(h string) (int64, bool) {
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(h, "W/")
	h = strings.Trim(h, `"`)
	v, err := strconv.ParseInt(h, 10, 64)
	return v, err == nil && v > 0
}

// prefer returns the value of one Prefer header token, e.g. prefer(r, "return").
func prefer(r *http.Request, key string) string {
	for _, h := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(h, ",") {
			part = strings.TrimSpace(part)
			if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), key) {
				return strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	}
	return ""
}

// notModified applies If-None-Match and If-Modified-Since to a read.
func notModified(r *http.Request, v store.Version) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			if ver, ok := parseETag(tag); ok && ver == v.VersionID {
				return true
			}
			if strings.TrimSpace(tag) == "*" {
				return true
			}
		}
		return false // If-None-Match takes precedence over If-Modified-Since
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil {
			return !v.LastUpdated.Truncate(time.Second).After(t)
		}
	}
	return false
}
