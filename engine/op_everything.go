package engine

import (
	"context"
	"errors"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store"
)

// Patient/[id]/$everything
// (https://hl7.org/fhir/R4/patient-operation-everything.html): the patient
// and every resource in its compartment, as a searchset Bundle with paging.
// Resources outside the compartment that those refer to (practitioners,
// organizations, medications) are not added.
//
// A multi-type search with one compartment condition cannot express the
// compartment exactly: the store looks the compartment's parameter codes up
// across all searched types, and a code that links one type to the patient
// (say "performer") can be a reference to a Patient on another type that
// the definition does not put in the compartment that way (MedicationDispense,
// ImagingStudy). So the operation searches type by type, each with its own
// compartment parameters, and pages across them with a cursor of its own:
// "Type:storeCursor", the type being read and the store's cursor within it.
// Types come in a fixed order (Patient first, then alphabetical) and each
// type's search in the store's stable order, so next links are stable.
//
// Parameters: _since (an instant or coarser date: resources last updated at
// or after its start), _type (a comma-separated list; types outside the
// compartment contribute nothing), _count (page size, bounded like search).
// Others, including start and end, are not supported: ignored with a warning
// entry, or a 400 under Prefer: handling=strict.

// everythingRequest is a parsed $everything request.
type everythingRequest struct {
	patient string
	types   []string // compartment types to return, in page order
	since   string   // the _since value, "" for none
	count   int
	start   int    // index in types of the first type of this page
	cursor  string // the store cursor within types[start]
	ignored []string
	self    url.Values // the parameters that shaped the result, for links
}

// everythingPage is one page of results.
type everythingPage struct {
	matches []store.Match
	next    string // our cursor for the next page, "" for the last page
}

// EverythingRequest is a Patient/[ID]/$everything with its URL parameters
// (_since, _type, _count, _cursor). Strict refuses unsupported parameters
// instead of ignoring them with a warning.
type EverythingRequest struct {
	ID     string
	Params url.Values
	Strict bool
}

// Everything returns one page of Patient/[id]/$everything as a searchset
// Bundle.
func (en *Engine) Everything(ctx context.Context, caller *Caller, r EverythingRequest) ([]byte, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return nil, err
	}
	req, ferr := en.parseEverything(r)
	if ferr != nil {
		return nil, ferr
	}
	if p := caller.policy(); p != nil {
		// Types the grant cannot search are left out, not refused.
		kept := req.types[:0:0]
		for _, t := range req.types {
			if _, err := p.decide(t, scope.Search); err == nil {
				kept = append(kept, t)
			}
		}
		req.types = kept
	}
	if _, err := en.currentVersion(ctx, en.store.Read, "Patient", r.ID); err != nil {
		return nil, err
	}
	page, err := en.everything(ctx, req)
	if errors.Is(err, store.ErrBadCursor) {
		err = fhir.Invalid("the paging link is invalid or has expired: repeat the request", "_cursor")
	}
	if err != nil {
		return nil, err
	}
	return en.everythingBundle(req, page), nil
}

// parseEverything reads and checks the request's parameters.
func (en *Engine) parseEverything(r EverythingRequest) (everythingRequest, *fhir.Error) {
	query := r.Params
	req := everythingRequest{patient: r.ID, count: en.cfg.DefaultPageSize, self: url.Values{}}
	strict := r.Strict
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	sort.Strings(names) // the warnings come out in a stable order
	for _, name := range names {
		switch name {
		case "_count", "_since", "_type", "_cursor", "_format", "_pretty":
		default:
			msg := "parameter " + quote(name) + " is not supported by $everything"
			if strict {
				return req, fhir.NewError(fhir.BadRequest, "not-supported", msg)
			}
			req.ignored = append(req.ignored, msg)
		}
	}
	if v := query.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return req, fhir.Invalid("invalid _count "+quote(v)+": expected a non-negative integer", "_count")
		}
		req.count = min(max(n, 1), en.cfg.MaxPageSize)
		req.self.Set("_count", strconv.Itoa(req.count))
	}
	if v := query.Get("_since"); v != "" {
		if _, _, err := fhir.ParseDateRange(v); err != nil {
			return req, fhir.Invalid("invalid _since: "+err.Error(), "_since")
		}
		req.since = v
		req.self.Set("_since", v)
	}
	types, ferr := everythingTypes(query["_type"])
	if ferr != nil {
		return req, ferr
	}
	req.types = types
	if vs := query["_type"]; len(vs) > 0 {
		req.self["_type"] = vs
	}
	if v := query.Get("_cursor"); v != "" {
		if ferr := req.setCursor(v); ferr != nil {
			return req, ferr
		}
	}
	return req, nil
}

// everythingTypes lists the Patient compartment's types (restricted to
// _type when given): Patient first, so the patient opens the first page.
func everythingTypes(typeParams []string) ([]string, *fhir.Error) {
	var want map[string]bool
	for _, v := range typeParams {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !spec.IsResourceType(t) {
				return nil, fhir.Invalid("unknown resource type "+quote(t)+" in _type", "_type")
			}
			if want == nil {
				want = map[string]bool{}
			}
			want[t] = true
		}
	}
	out := []string{}
	if want == nil || want["Patient"] {
		out = append(out, "Patient")
	}
	for _, t := range spec.CompartmentTypes("Patient") {
		if t != "Patient" && (want == nil || want[t]) {
			out = append(out, t)
		}
	}
	return out, nil
}

// setCursor reads "Type:storeCursor".
func (req *everythingRequest) setCursor(v string) *fhir.Error {
	typ, cur, ok := strings.Cut(v, ":")
	i := positionOf(req.types, typ)
	if !ok || i < 0 {
		return fhir.Invalid("the paging link is invalid: repeat the request", "_cursor")
	}
	req.start, req.cursor = i, cur
	return nil
}

func positionOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// everything reads one page: it runs the types' searches in order from the
// cursor until the page is full.
func (en *Engine) everything(ctx context.Context, req everythingRequest) (everythingPage, error) {
	var page everythingPage
	cursor := req.cursor
	for i := req.start; i < len(req.types); i++ {
		need := req.count - len(page.matches)
		res, err := en.compartmentSearch(ctx, req, req.types[i], need, cursor)
		if err != nil {
			return page, err
		}
		cursor = ""
		page.matches = append(page.matches, res.Matches...)
		if res.Next != "" {
			page.next = req.types[i] + ":" + res.Next
			return page, nil
		}
		if len(page.matches) == req.count {
			// This type is done and the page is full: the next page starts
			// at the next type with any match, so the last page is never
			// an empty one.
			next, err := en.nextNonEmpty(ctx, req, i+1)
			if err != nil {
				return page, err
			}
			if next >= 0 {
				page.next = req.types[next] + ":"
			}
			return page, nil
		}
	}
	return page, nil
}

// nextNonEmpty returns the index of the first type from `from` on that has
// a resource in the compartment, or -1.
func (en *Engine) nextNonEmpty(ctx context.Context, req everythingRequest, from int) (int, error) {
	for i := from; i < len(req.types); i++ {
		res, err := en.compartmentSearch(ctx, req, req.types[i], 1, "")
		if err != nil {
			return -1, err
		}
		if len(res.Matches) > 0 {
			return i, nil
		}
	}
	return -1, nil
}

// compartmentSearch searches one type within the patient's compartment,
// with the type's own compartment parameters.
func (en *Engine) compartmentSearch(ctx context.Context, req everythingRequest, typ string, count int, cursor string) (*store.SearchResult, error) {
	params := url.Values{}
	if req.since != "" {
		params.Set("_lastUpdated", "ge"+req.since)
	}
	q, err := en.parseSearch(false, typ, params)
	if err != nil {
		return nil, err
	}
	q.Count = count
	q.Total = "none"
	q.Cursor = cursor
	q.Compartment = &search.Compartment{Type: "Patient", ID: req.patient, Params: spec.CompartmentParams("Patient", typ)}
	return en.store.Search(ctx, q)
}

// everythingBundle renders a page as a searchset Bundle. The total is given
// when the whole result fits on the first page, as for search.
func (en *Engine) everythingBundle(req everythingRequest, page everythingPage) []byte {
	path := "Patient/" + req.patient + "/$everything"
	self := req.self
	if req.start > 0 || req.cursor != "" {
		self = cloneValues(req.self)
		self.Set("_cursor", req.types[req.start]+":"+req.cursor)
	}
	links := []bundleLink{{Relation: "self", URL: en.link(path, self)}}
	if page.next != "" {
		next := cloneValues(req.self)
		next.Set("_cursor", page.next)
		links = append(links, bundleLink{Relation: "next", URL: en.link(path, next)})
	}
	total := -1
	if self.Get("_cursor") == "" && page.next == "" {
		total = len(page.matches)
	}
	b := newBundle("searchset", total, links)
	for _, m := range page.matches {
		b.add(bundleEntryMeta{FullURL: en.base + "/" + m.Type + "/" + m.ID, Search: &entrySearch{Mode: "match"}}, m.Content)
	}
	if len(req.ignored) > 0 {
		var issues []fhir.Issue
		for _, msg := range req.ignored {
			issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported", Diagnostics: msg + " (ignored)"})
		}
		b.add(bundleEntryMeta{Search: &entrySearch{Mode: "outcome"}}, fhir.Outcome(issues...))
	}
	return b.bytes()
}
