package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store"
)

const (
	defaultPageSize = 20
	maxPageSize     = 1000
)

// history serves _history at system, type and instance level.
func (s *Server) history(c *gin.Context, seg []string) {
	q := store.HistoryQuery{Count: s.cfg.DefaultPageSize}
	params := url.Values{}
	path := "_history"
	switch len(seg) {
	case 2:
		q.Type = seg[0]
		path = seg[0] + "/_history"
	case 3:
		q.Type, q.ID = seg[0], seg[1]
		path = seg[0] + "/" + seg[1] + "/_history"
	}
	query := c.Request.URL.Query()
	if v := query.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(c, fhir.Invalid("invalid _count "+quote(v)+": expected a non-negative integer", "_count"))
			return
		}
		q.Count = min(max(n, 1), s.cfg.MaxPageSize)
		params.Set("_count", strconv.Itoa(q.Count))
	}
	if v := query.Get("_since"); v != "" {
		start, _, err := fhir.ParseDateRange(v)
		if err != nil {
			s.fail(c, fhir.Invalid("invalid _since: "+err.Error(), "_since"))
			return
		}
		q.Since = start
		params.Set("_since", v)
	}
	if v := query.Get("_at"); v != "" {
		start, end, err := fhir.ParseDateRange(v)
		if err != nil {
			s.fail(c, fhir.Invalid("invalid _at: "+err.Error(), "_at"))
			return
		}
		q.AtStart, q.AtEnd = start, end
		params.Set("_at", v)
	}
	self := params
	if v := query.Get("_cursor"); v != "" {
		cur, err := store.ParseCursor(v)
		if err != nil {
			s.fail(c, fhir.Invalid(err.Error(), "_cursor"))
			return
		}
		q.After = &cur
		self = cloneValues(params)
		self.Set("_cursor", v)
	}
	if p := policyOf(c.Request.Context()); p != nil && q.Type != "" {
		if _, err := p.decide(q.Type, scope.Read); err != nil {
			s.fail(c, err)
			return
		}
	}
	page, err := s.store.History(c.Request.Context(), q)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(c, fhir.NotFound(q.Type+"/"+q.ID+" is not known"))
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	links := []bundleLink{{Relation: "self", URL: s.link(path, self)}}
	if page.Next != nil {
		next := cloneValues(params)
		next.Set("_cursor", page.Next.String())
		links = append(links, bundleLink{Relation: "next", URL: s.link(path, next)})
	}
	b := newBundle("history", -1, links)
	for _, v := range page.Versions {
		b.add(s.historyEntry(v), v.Content)
	}
	s.writeJSON(c, http.StatusOK, b.bytes())
}

func (s *Server) historyEntry(v store.Version) bundleEntryMeta {
	e := bundleEntryMeta{
		FullURL:  s.base + "/" + v.Type + "/" + v.ID,
		Response: &entryResponse{Etag: etag(v.VersionID), LastModified: fhir.FormatInstant(v.LastUpdated)},
	}
	switch {
	case v.Method == store.MethodDelete:
		e.Request = &entryRequest{Method: "DELETE", URL: v.Type + "/" + v.ID}
		e.Response.Status = "204 No Content"
	case v.Method == store.MethodCreate:
		e.Request = &entryRequest{Method: "POST", URL: v.Type}
		e.Response.Status = "201 Created"
	case v.VersionID == 1:
		e.Request = &entryRequest{Method: "PUT", URL: v.Type + "/" + v.ID}
		e.Response.Status = "201 Created"
	default:
		e.Request = &entryRequest{Method: "PUT", URL: v.Type + "/" + v.ID}
		e.Response.Status = "200 OK"
	}
	return e
}

// link builds an absolute URL under the FHIR base.
func (s *Server) link(path string, params url.Values) string {
	u := s.base + "/" + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	return u
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
