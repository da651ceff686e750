package server

import (
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	fhirxml "github.com/emberfhir/ember/fhir/xml"
)

// FHIR XML is converted at the edge: an XML body becomes the JSON the
// engine takes (so validation, PATCH Parameters, Bundles and operations are
// the same code), and a JSON answer becomes XML when the client negotiated
// it. JSON requests never touch this file's conversions: their reads still
// serve the stored bytes.

const contentTypeFHIRXML = "application/fhir+xml; charset=utf-8"

// format is a negotiated response syntax.
type format uint8

const (
	formatJSON format = iota // the default: nothing is recorded for it
	formatXML
)

// formatKey is the gin context key under which negotiation records a
// response format other than JSON.
const formatKey = "ember.format"

// responseFormat is the format negotiated for c's answer.
func responseFormat(c *gin.Context) format {
	if v, ok := c.Get(formatKey); ok {
		if f, ok := v.(format); ok {
			return f
		}
	}
	return formatJSON
}

func xmlFormat(f string) bool {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(f)), " ", "+") {
	case "xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir":
		return true
	}
	return false
}

// statedPreference reports whether the request names a response format
// (_format, or an Accept more specific than */*). Without one, an XML body
// is answered in XML, as a client that speaks only XML expects.
func statedPreference(r *http.Request) bool {
	if r.URL.Query().Get("_format") != "" {
		return true
	}
	a := strings.TrimSpace(r.Header.Get("Accept"))
	return a != "" && a != "*/*"
}

// fromXML turns an XML request body into the JSON the engine takes; its
// errors are 400s naming what is wrong and where.
func (s *Server) fromXML(c *gin.Context, body []byte) ([]byte, error) {
	if !statedPreference(c.Request) {
		c.Set(formatKey, formatXML)
	}
	out, err := fhirxml.Unmarshal(make([]byte, 0, len(body)), body)
	if err != nil {
		return nil, fhir.NewError(fhir.BadRequest, "structure", err.Error())
	}
	return out, nil
}

// writeXML writes a JSON answer as XML. A body the converter refuses (a
// server fault: answers are JSON the R4 tables know) is logged and answered
// as an OperationOutcome in JSON, which cannot fail the same way.
func (s *Server) writeXML(c *gin.Context, status int, body []byte) {
	out, err := fhirxml.Marshal(make([]byte, 0, len(body)+len(body)/2), body, c.Query("_pretty") == "true")
	if err != nil {
		s.log.ErrorContext(c.Request.Context(), "cannot write the answer as XML", "route", routeTemplate(c.Request.URL.Path), "err", err)
		c.Data(http.StatusInternalServerError, contentTypeFHIR,
			fhir.Outcome(fhir.Issue{Severity: "fatal", Code: "exception", Diagnostics: "internal error: the answer cannot be written as XML"}))
		return
	}
	c.Data(status, contentTypeFHIRXML, out)
}

// patchFromXML converts a FHIRPath Patch Parameters sent as XML.
func (s *Server) patchFromXML(c *gin.Context, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || !xmlFormat(mt) {
		return body, nil
	}
	return s.fromXML(c, body)
}
