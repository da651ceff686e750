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

// negotiate checks _format and Accept and records the answer's format on c
// when it is not JSON. _format overrides Accept; within Accept the highest
// q wins, and at equal q a named type beats a wildcard. A request that can
// accept neither JSON nor XML (Turtle, say) gets 406. The JSON cases parse
// nothing they need not: no _format, no Accept, or one plain media type.
func negotiate(c *gin.Context) error {
	r := c.Request
	f, err := negotiateFormat(r)
	if err != nil || f == formatJSON {
		return err
	}
	if strings.HasSuffix(r.URL.Path, "/$export") {
		// Bulk Data: the kick-off answers in application/fhir+json only.
		return httpError(http.StatusNotAcceptable, "not-supported", "$export answers in application/fhir+json only")
	}
	c.Set(formatKey, f)
	return nil
}

func negotiateFormat(r *http.Request) (format, error) {
	if strings.Contains(r.URL.RawQuery, "format") { // _format, also percent-encoded
		if f := r.URL.Query().Get("_format"); f != "" {
			switch {
			case jsonFormat(f):
				return formatJSON, nil
			case xmlFormat(f):
				return formatXML, nil
			}
			return formatJSON, httpError(http.StatusNotAcceptable, "not-supported",
				fmt.Sprintf("_format %q is not supported: Ember serves application/fhir+json and application/fhir+xml", f))
		}
	}
	accept := r.Header.Get("Accept")
	if accept == "" || accept == "*/*" || jsonFormat(accept) {
		return formatJSON, nil
	}
	best, bestQ, bestSpecific, found := formatJSON, -1.0, false, false
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if qs, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(qs, 64); err == nil {
				q = v
			}
		}
		if q <= 0 {
			continue
		}
		var f format
		specific := true
		switch {
		case jsonFormat(mt):
			f = formatJSON
		case xmlFormat(mt):
			f = formatXML
		case mt == "*/*" || mt == "application/*":
			f, specific = formatJSON, false
		default:
			continue
		}
		if q > bestQ || q == bestQ && specific && !bestSpecific {
			best, bestQ, bestSpecific, found = f, q, specific, true
		}
	}
	if !found {
		return formatJSON, httpError(http.StatusNotAcceptable, "not-supported",
			fmt.Sprintf("cannot satisfy Accept %q: Ember serves application/fhir+json and application/fhir+xml", accept))
	}
	return best, nil
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

// readBody enforces the content type and size limit of a resource body; an
// XML body is returned as the JSON it stands for.
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	isXML := false
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err == nil && xmlFormat(mt) {
			isXML = true
		} else if err != nil || !jsonFormat(mt) {
			return nil, httpError(http.StatusUnsupportedMediaType, "not-supported",
				fmt.Sprintf("unsupported Content-Type %q: send application/fhir+json or application/fhir+xml", ct))
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
	if isXML {
		return s.fromXML(c, body)
	}
	return body, nil
}

// writeJSON writes a FHIR JSON body, indented when _pretty=true, or its XML
// form when the request negotiated XML.
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	if responseFormat(c) == formatXML {
		s.writeXML(c, status, body)
		return
	}
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
