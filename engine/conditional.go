package engine

import (
	"net/url"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
)

// parseCondition parses a condition given as a query string.
func parseCondition(rawQuery string) (url.Values, error) {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fhir.Invalid("malformed condition " + quote(rawQuery) + ": " + err.Error())
	}
	return params, nil
}

// condition parses the search that selects the target of a conditional
// interaction: search parameters only (search.ParseCondition), so that a
// result parameter such as _count can neither widen nor narrow the match.
// Every conditional write (REST, Bundle entries, conditional references,
// import, DICOM) comes through here, so the lock key — the normalised
// condition — is the same whichever producer asks.
func (en *Engine) condition(typ string, params url.Values) (*search.Query, string, error) {
	q, cond, err := search.ParseCondition(typ, params, search.Options{Base: en.base, DefaultCount: 2, MaxCount: 2})
	if err != nil {
		return nil, "", err
	}
	// The lock key: the same condition on the same type, however ordered.
	return q, typ + "?" + cond.Encode(), nil
}
