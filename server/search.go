package server

import (
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// searchParams returns the request's search parameters: the query string,
// plus the form body of POST [type]/_search.
func (s *Server) searchParams(c *gin.Context) (url.Values, error) {
	params := c.Request.URL.Query()
	if c.Request.Method != http.MethodPost {
		return params, nil
	}
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct != "" && (err != nil || mt != "application/x-www-form-urlencoded") {
		return nil, httpError(http.StatusUnsupportedMediaType, "not-supported",
			"_search expects a form body (application/x-www-form-urlencoded), got "+quote(ct))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBody))
	if err != nil {
		return nil, httpError(http.StatusRequestEntityTooLarge, "too-costly", "search body too large")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fhir.Invalid("malformed form body: " + err.Error())
	}
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	return params, nil
}

// searchType serves GET [type]?… and POST [type]/_search.
func (s *Server) searchType(c *gin.Context, seg []string) {
	s.runSearch(c, engine.SearchRequest{Type: seg[0]})
}

// searchSystem serves GET /fhir?_type=…
func (s *Server) searchSystem(c *gin.Context, _ []string) {
	s.runSearch(c, engine.SearchRequest{})
}

// searchCompartment serves GET [compartment type]/[id]/[type].
func (s *Server) searchCompartment(c *gin.Context, seg []string) {
	s.runSearch(c, engine.SearchRequest{Type: seg[2], CompartmentType: seg[0], CompartmentID: seg[1]})
}

func (s *Server) runSearch(c *gin.Context, req engine.SearchRequest) {
	if req.CompartmentType != "" && spec.CompartmentParams(req.CompartmentType, req.Type) == nil {
		s.fail(c, fhir.Missing(req.Type+" is not in the "+req.CompartmentType+" compartment"))
		return
	}
	params, ferr := s.searchParams(c)
	if ferr != nil {
		s.fail(c, ferr)
		return
	}
	req.Params = params
	noteSearchParams(c, params)
	req.Strict = prefer(c.Request, "handling") == "strict"
	body, err := s.eng.Search(c.Request.Context(), s.caller(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, body)
}
