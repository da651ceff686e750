package audit

import (
	"net/url"
	"sort"
	"strings"

	"github.com/emberfhir/ember/fhir/spec"
)

// Redacted stands in for a search value the trail must not keep.
const Redacted = "*"

// keptControls are result parameters whose values say how, not whom.
var keptControls = map[string]bool{
	"_count": true, "_sort": true, "_include": true, "_revinclude": true, "_summary": true,
	"_elements": true, "_total": true, "_id": true, "_lastUpdated": true, "_format": true,
	"_pretty": true, "_since": true, "_type": true, "_offset": true, "_page": true,
	"_tag": true, "_profile": true, "_security": true, "_contained": true, "_containedType": true,
	"_outputFormat": true, "_typeFilter": true,
}

// codedTokens are token parameters whose values are codes from a
// terminology, not identifiers of a person.
var codedTokens = map[string]bool{
	"code": true, "category": true, "status": true, "clinical-status": true, "verification-status": true,
	"type": true, "class": true, "intent": true, "priority": true, "modality": true, "gender": true,
	"combo-code": true, "component-code": true, "vaccine-code": true, "criticality": true, "severity": true,
	"action": true, "outcome": true, "subtype": true, "kind": true, "language": true,
}

// RedactQuery is a search's query for the trail: parameter names kept, and
// values only where they cannot identify a person — references, dates,
// numbers, quantities, URIs, coded tokens and result controls. Names,
// identifiers, telecoms, addresses and free text become Redacted, so the
// trail answers "who searched Patient by name" without copying the name.
func RedactQuery(typ string, q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var params map[string]*spec.SearchParam
	if typ != "" {
		params = spec.SearchParams(typ)
	}
	var b strings.Builder
	for _, k := range keys {
		keep := keepValue(params, k)
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			if keep {
				b.WriteString(url.QueryEscape(v))
			} else {
				b.WriteString(Redacted)
			}
		}
	}
	return b.String()
}

func keepValue(params map[string]*spec.SearchParam, key string) bool {
	name, modifier, _ := strings.Cut(key, ":")
	if modifier == "identifier" || modifier == "text" { // a person's identifier, free text
		return false
	}
	if keptControls[name] {
		return true
	}
	if strings.Contains(name, ".") { // a chain: its last link decides, unknown here
		return false
	}
	p := params[name]
	if p == nil {
		return false
	}
	switch p.Type {
	case spec.Reference, spec.Date, spec.Number, spec.Quantity, spec.URI:
		return true
	case spec.Token:
		return codedTokens[name]
	}
	return false
}
