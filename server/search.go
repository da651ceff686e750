package server

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/shape"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store"
)

// searchParams returns the request's search parameters: the query string,
// plus the form body of POST [type]/_search.
func (s *Server) searchParams(c *gin.Context) (url.Values, *fhir.Error) {
	params := c.Request.URL.Query()
	if c.Request.Method != http.MethodPost {
		return params, nil
	}
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct != "" && (err != nil || mt != "application/x-www-form-urlencoded") {
		return nil, fhir.NewError(http.StatusUnsupportedMediaType, "not-supported",
			"_search expects a form body (application/x-www-form-urlencoded), got "+quote(ct))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBody))
	if err != nil {
		return nil, fhir.NewError(http.StatusRequestEntityTooLarge, "too-costly", "search body too large")
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

// parseSearch parses a search of typ ("" = system) with the request's
// handling preference.
func (s *Server) parseSearch(c *gin.Context, typ string, params url.Values) (*search.Query, error) {
	strict := c != nil && prefer(c.Request, "handling") == "strict"
	return search.Parse(typ, params, search.Options{
		Strict:       strict,
		Base:         s.base,
		DefaultCount: s.cfg.DefaultPageSize,
		MaxCount:     s.cfg.MaxPageSize,
	})
}

// searchType serves GET [type]?… and POST [type]/_search.
func (s *Server) searchType(c *gin.Context, seg []string) {
	s.runSearch(c, seg[0], nil, seg[0])
}

// searchSystem serves GET /fhir?_type=…
func (s *Server) searchSystem(c *gin.Context, _ []string) {
	s.runSearch(c, "", nil, "")
}

// searchCompartment serves GET [compartment type]/[id]/[type].
func (s *Server) searchCompartment(c *gin.Context, seg []string) {
	params := spec.CompartmentParams(seg[0], seg[2])
	if params == nil {
		s.fail(c, fhir.NotFound(seg[2]+" is not in the "+seg[0]+" compartment"))
		return
	}
	comp := &search.Compartment{Type: seg[0], ID: seg[1], Params: params}
	s.runSearch(c, seg[2], comp, strings.Join(seg, "/"))
}

func (s *Server) runSearch(c *gin.Context, typ string, comp *search.Compartment, path string) {
	params, ferr := s.searchParams(c)
	if ferr != nil {
		s.fail(c, ferr)
		return
	}
	q, err := s.parseSearch(c, typ, params)
	if err != nil {
		s.fail(c, err)
		return
	}
	q.Compartment = comp
	res, err := s.store.Search(c.Request.Context(), q)
	if err != nil {
		s.fail(c, err)
		return
	}
	body, err := s.searchBundle(q, params, path, res)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, body)
}

// searchBundle renders a searchset Bundle.
func (s *Server) searchBundle(q *search.Query, params url.Values, path string, res *store.SearchResult) ([]byte, error) {
	self := usedParams(params, q)
	links := []bundleLink{{Relation: "self", URL: s.link(path, self)}}
	if res.Next != "" {
		links = append(links, bundleLink{Relation: "next", URL: s.link(path, withCursor(self, res.Next))})
	}
	if res.Prev != "" {
		links = append(links, bundleLink{Relation: "previous", URL: s.link(path, withCursor(self, res.Prev))})
	}
	b := newBundle("searchset", res.Total, links)
	for _, m := range res.Matches {
		content, err := s.shape(q, m)
		if err != nil {
			return nil, err
		}
		b.add(bundleEntryMeta{FullURL: s.base + "/" + m.Type + "/" + m.ID, Search: &entrySearch{Mode: "match"}}, content)
	}
	for _, m := range res.Included {
		content, err := s.shape(q, m)
		if err != nil {
			return nil, err
		}
		b.add(bundleEntryMeta{FullURL: s.base + "/" + m.Type + "/" + m.ID, Search: &entrySearch{Mode: "include"}}, content)
	}
	if len(q.Ignored) > 0 || res.IncludesCut != "" {
		var issues []fhir.Issue
		for _, msg := range q.Ignored {
			issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported", Diagnostics: msg + " (ignored)"})
		}
		if res.IncludesCut != "" {
			issues = append(issues, fhir.Issue{Severity: "warning", Code: "too-costly", Diagnostics: res.IncludesCut})
		}
		b.add(bundleEntryMeta{Search: &entrySearch{Mode: "outcome"}}, fhir.Outcome(issues...))
	}
	return b.bytes(), nil
}

// shape applies _summary and _elements; only then is a stored resource
// re-serialised, and only its top level.
func (s *Server) shape(q *search.Query, m store.Match) ([]byte, error) {
	switch {
	case len(q.Elements) > 0:
		return shape.Elements(m.Content, m.Type, q.Elements)
	case q.Summary != "" && q.Summary != "false":
		return shape.Summary(m.Content, m.Type, q.Summary)
	}
	return m.Content, nil
}

// usedParams is the request's parameters minus those Ember ignored and
// minus paging state, for the self link.
func usedParams(params url.Values, q *search.Query) url.Values {
	out := url.Values{}
	dropped := map[string]bool{"_cursor": true, "_format": true, "_pretty": true}
	for _, n := range q.Dropped {
		dropped[n] = true
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !dropped[k] {
			out[k] = params[k]
		}
	}
	return out
}

func withCursor(v url.Values, cursor string) url.Values {
	out := cloneValues(v)
	out.Set("_cursor", cursor)
	return out
}
