package engine

import (
	"context"
	"net/url"
	"sort"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/shape"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store"
)

// SearchRequest is a search: of a type, across types (Type "", with
// _type), or within a compartment (CompartmentType/CompartmentID/Type).
type SearchRequest struct {
	Type                           string
	CompartmentType, CompartmentID string
	// Params are the search parameters (the query string, plus a POSTed
	// form body).
	Params url.Values
	// Strict refuses unknown or unsupported parameters (Prefer:
	// handling=strict) instead of ignoring them with a warning.
	Strict bool
}

// Search runs a search and returns the searchset Bundle, with self, next
// and previous links under the base URL.
func (en *Engine) Search(ctx context.Context, caller *Caller, req SearchRequest) ([]byte, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return nil, err
	}
	path := req.Type
	var comp *search.Compartment
	if req.CompartmentType != "" {
		params := spec.CompartmentParams(req.CompartmentType, req.Type)
		if params == nil {
			return nil, fhir.Missing(req.Type + " is not in the " + req.CompartmentType + " compartment")
		}
		comp = &search.Compartment{Type: req.CompartmentType, ID: req.CompartmentID, Params: params}
		path = req.CompartmentType + "/" + req.CompartmentID + "/" + req.Type
	}
	q, err := en.parseSearch(req.Strict, req.Type, req.Params)
	if err != nil {
		return nil, err
	}
	q.Compartment = comp
	res, err := en.store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	return en.searchBundle(q, req.Params, path, res)
}

// parseSearch parses a search of typ ("" = system).
func (en *Engine) parseSearch(strict bool, typ string, params url.Values) (*search.Query, error) {
	return search.Parse(typ, params, search.Options{
		Strict:       strict,
		Base:         en.base,
		DefaultCount: en.cfg.DefaultPageSize,
		MaxCount:     en.cfg.MaxPageSize,
	})
}

// searchBundle renders a searchset Bundle.
func (en *Engine) searchBundle(q *search.Query, params url.Values, path string, res *store.SearchResult) ([]byte, error) {
	self := usedParams(params, q)
	links := []bundleLink{{Relation: "self", URL: en.link(path, self)}}
	if res.Next != "" {
		links = append(links, bundleLink{Relation: "next", URL: en.link(path, withCursor(self, res.Next))})
	}
	if res.Prev != "" {
		links = append(links, bundleLink{Relation: "previous", URL: en.link(path, withCursor(self, res.Prev))})
	}
	b := newBundle("searchset", res.Total, links)
	for _, m := range res.Matches {
		content, err := en.shape(q, m)
		if err != nil {
			return nil, err
		}
		b.add(bundleEntryMeta{FullURL: en.base + "/" + m.Type + "/" + m.ID, Search: &entrySearch{Mode: "match"}}, content)
	}
	for _, m := range res.Included {
		content, err := en.shape(q, m)
		if err != nil {
			return nil, err
		}
		b.add(bundleEntryMeta{FullURL: en.base + "/" + m.Type + "/" + m.ID, Search: &entrySearch{Mode: "include"}}, content)
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
func (en *Engine) shape(q *search.Query, m store.Match) ([]byte, error) {
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
