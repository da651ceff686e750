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

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

const contentTypeFHIR = "application/fhir+json; charset=utf-8"

// negotiate checks _format and Accept. Only JSON is served for now, so a
// request that can accept nothing but XML or Turtle gets 406.
func negotiate(r *http.Request) error {
	if f := r.URL.Query().Get("_format"); f != "" {
		if !jsonFormat(f) {
			return httpError(http.StatusNotAcceptable, "not-supported",
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
	return httpError(http.StatusNotAcceptable, "not-supported",
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
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || !jsonFormat(mt) {
			return nil, httpError(http.StatusUnsupportedMediaType, "not-supported",
				fmt.Sprintf("unsupported Content-Type %q: send application/fhir+json", ct))
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, httpError(http.StatusUnsupportedMediaType, "not-supported",
				fmt.Sprintf("unsupported charset %q: send UTF-8", cs))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, httpError(http.StatusRequestEntityTooLarge, "too-costly",
				fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxBody))
		}
		return nil, fhir.NewError(fhir.BadRequest, "structure", "cannot read request body: "+err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fhir.NewError(fhir.BadRequest, "structure", "empty body: a FHIR resource is required")
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

// fail writes err as an OperationOutcome, with the status of its kind.
func (s *Server) fail(c *gin.Context, err error) {
	if errors.Is(err, context.Canceled) {
		c.Status(499) // client went away; nobody reads the body
		return
	}
	status, fe, ok := asHTTPError(err)
	if !ok {
		s.log.ErrorContext(c.Request.Context(), "request failed", "method", c.Request.Method, "route", routeTemplate(c.Request.URL.Path), "err", err)
	}
	s.writeOutcome(c, status, fe.Outcome())
}

// versionHeaders sets ETag and Last-Modified for a version.
func versionHeaders(c *gin.Context, v store.Version) {
	c.Header("ETag", engine.ETag(v.VersionID))
	c.Header("Last-Modified", v.LastUpdated.UTC().Format(http.TimeFormat))
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
			if ver, ok := engine.ParseETag(tag); ok && ver == v.VersionID {
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
