package engine

import (
	"context"
	"errors"
	"net/url"
	"strconv"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store"
)

// HistoryRequest is a history interaction: of the whole system (Type ""),
// of a type (ID ""), or of one resource. Params are the request's
// parameters: _count, _since, _at and the paging _cursor.
type HistoryRequest struct {
	Type, ID string
	Params   url.Values
}

// History returns one page of history as a Bundle, newest first, with its
// self and next links. The history of a resource the caller cannot see is
// NotFound, as a read of it is: an empty page would tell which ids exist.
func (en *Engine) History(ctx context.Context, caller *Caller, req HistoryRequest) ([]byte, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return nil, err
	}
	q := store.HistoryQuery{Count: en.cfg.DefaultPageSize, Type: req.Type, ID: req.ID}
	params := url.Values{}
	path := "_history"
	switch {
	case req.ID != "":
		path = req.Type + "/" + req.ID + "/_history"
	case req.Type != "":
		path = req.Type + "/_history"
	}
	query := req.Params
	if v := query.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fhir.Invalid("invalid _count "+quote(v)+": expected a non-negative integer", "_count")
		}
		q.Count = min(max(n, 1), en.cfg.MaxPageSize)
		params.Set("_count", strconv.Itoa(q.Count))
	}
	if v := query.Get("_since"); v != "" {
		start, _, err := fhir.ParseDateRange(v)
		if err != nil {
			return nil, fhir.Invalid("invalid _since: "+err.Error(), "_since")
		}
		q.Since = start
		params.Set("_since", v)
	}
	if v := query.Get("_at"); v != "" {
		start, end, err := fhir.ParseDateRange(v)
		if err != nil {
			return nil, fhir.Invalid("invalid _at: "+err.Error(), "_at")
		}
		q.AtStart, q.AtEnd = start, end
		params.Set("_at", v)
	}
	self := params
	if v := query.Get("_cursor"); v != "" {
		cur, err := store.ParseCursor(v)
		if err != nil {
			return nil, fhir.Invalid(err.Error(), "_cursor")
		}
		q.After = &cur
		self = cloneValues(params)
		self.Set("_cursor", v)
	}
	if p := caller.policy(); p != nil && q.Type != "" {
		if _, err := p.decide(q.Type, scope.Read); err != nil {
			return nil, err
		}
		if q.ID != "" {
			// Answer as a read would: a resource the grant cannot see is
			// not found. A deleted one the grant may see has a history.
			if _, err := en.store.Read(ctx, q.Type, q.ID); err != nil && !errors.Is(err, store.ErrDeleted) {
				return nil, versionError(store.Version{Type: q.Type, ID: q.ID}, err)
			}
		}
	}
	page, err := en.store.History(ctx, q)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fhir.Missing(q.Type + "/" + q.ID + " is not known")
	case err != nil:
		return nil, err
	}
	links := []bundleLink{{Relation: "self", URL: en.link(path, self)}}
	if page.Next != nil {
		next := cloneValues(params)
		next.Set("_cursor", page.Next.String())
		links = append(links, bundleLink{Relation: "next", URL: en.link(path, next)})
	}
	b := newBundle("history", -1, links)
	for _, v := range page.Versions {
		b.add(en.historyEntry(v), v.Content)
	}
	return b.bytes(), nil
}

func (en *Engine) historyEntry(v store.Version) bundleEntryMeta {
	e := bundleEntryMeta{
		FullURL:  en.base + "/" + v.Type + "/" + v.ID,
		Response: &entryResponse{Etag: ETag(v.VersionID), LastModified: fhir.FormatInstant(v.LastUpdated)},
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
func (en *Engine) link(path string, params url.Values) string {
	u := en.base + "/" + path
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
