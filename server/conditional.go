package server

import (
	"errors"
	"net/url"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
)

// condition parses the search that selects the target of a conditional
// interaction: search parameters only (search.ParseCondition), so that a
// result parameter such as _count can neither widen nor narrow the match.
// Every conditional write (REST, Bundle entries, conditional references,
// import) comes through here.
func (s *Server) condition(typ, rawQuery string) (*search.Query, string, error) {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, "", fhir.Invalid("malformed condition " + quote(rawQuery) + ": " + err.Error())
	}
	q, cond, err := search.ParseCondition(typ, params, search.Options{Base: s.base, DefaultCount: 2, MaxCount: 2})
	if err != nil {
		return nil, "", err
	}
	// The lock key: the same condition on the same type, however ordered.
	return q, typ + "?" + cond.Encode(), nil
}

var errMultipleMatches = errors.New("multiple matches")
