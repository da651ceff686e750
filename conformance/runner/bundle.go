package runner

import (
	"encoding/json"
	"net/http"
	"strings"
)

// searchResult is what a search returned: its match entries, its include
// entries, and outcome warnings (parameters a lenient server ignored).
type searchResult struct {
	matches  []map[string]any
	included []map[string]any
	warnings []string
	complete bool   // every page was read
	request  string // the first page's request
}

// bundle is the part of a searchset the runner reads.
type bundle struct {
	ResourceType string
	Type         string
	Link         []struct{ Relation, URL string }
	Entry        []struct {
		FullURL  string
		Resource json.RawMessage
		Search   *struct{ Mode string }
	}
}

// maxPages bounds how far a search is followed.
const maxPages = 10

// search GETs typ?query and follows next links up to maxPages.
func (r *run) search(typ, query string) (*searchResult, error) {
	return r.searchWith(http.MethodGet, typ, query)
}

// searchWith runs a search by GET or by POST [type]/_search with a form
// body, then follows next links (GET) up to maxPages.
func (r *run) searchWith(method, typ, query string) (*searchResult, error) {
	var resp *response
	var err error
	if method == http.MethodPost {
		resp, err = r.do(http.MethodPost, typ+"/_search", "application/x-www-form-urlencoded", []byte(query), "")
	} else {
		resp, err = r.get(typ + "?" + query)
	}
	if err != nil {
		return nil, err
	}
	out := &searchResult{request: resp.request}
	for page := 0; ; page++ {
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return out, err
		}
		var b bundle
		if err := resp.json(&b); err != nil {
			return out, err
		}
		if b.ResourceType != "Bundle" || b.Type != "searchset" {
			return out, failf(resp.request, "answered a %s %s, want a searchset Bundle", b.ResourceType, b.Type)
		}
		for _, e := range b.Entry {
			var res map[string]any
			if err := json.Unmarshal(e.Resource, &res); err != nil {
				return out, failf(resp.request, "an entry's resource is not JSON: %v", err)
			}
			mode := "match"
			if e.Search != nil && e.Search.Mode != "" {
				mode = e.Search.Mode
			}
			switch {
			case res["resourceType"] == "OperationOutcome" || mode == "outcome":
				out.warnings = append(out.warnings, outcomeText(e.Resource))
			case mode == "include":
				out.included = append(out.included, res)
			default:
				out.matches = append(out.matches, res)
			}
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			out.complete = true
			return out, nil
		}
		if page+1 >= maxPages {
			return out, nil
		}
		if resp, err = r.get(next); err != nil {
			return out, err
		}
	}
}

// ids returns "Type/id" of each resource.
func ids(rs []map[string]any) []string {
	out := make([]string, 0, len(rs))
	for _, x := range rs {
		out = append(out, key(x))
	}
	return out
}

// key is a resource's "Type/id".
func key(res map[string]any) string {
	t, _ := res["resourceType"].(string)
	id, _ := res["id"].(string)
	return t + "/" + id
}

// ignoredParam returns the first of params a warning says was ignored.
func (s *searchResult) ignoredParam(params []string) string {
	for _, w := range s.warnings {
		for _, p := range params {
			if strings.Contains(w, p) {
				return p
			}
		}
	}
	return ""
}
