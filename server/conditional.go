package server

import (
	"errors"
	"net/url"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
)

// condition parses the search that selects the target of a conditional
// interaction. Unknown parameters are errors here: ignoring one would widen
// the match and create, update or delete the wrong resources.
func (s *Server) condition(typ, rawQuery string) (*search.Query, string, error) {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, "", fhir.Invalid("malformed condition " + quote(rawQuery) + ": " + err.Error())
	}
	for k := range params {
		switch k {
		case "_format", "_pretty":
			delete(params, k)
		}
	}
	if len(params) == 0 {
		return nil, "", fhir.Invalid("a conditional interaction needs search parameters")
	}
	q, err := search.Parse(typ, params, search.Options{Strict: true, Base: s.base, DefaultCount: 2, MaxCount: 2})
	if err != nil {
		return nil, "", err
	}
	// The lock key: the same condition on the same type, however ordered.
	return q, typ + "?" + params.Encode(), nil
}

var errMultipleMatches = errors.New("multiple matches")
