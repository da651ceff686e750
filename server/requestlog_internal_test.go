package server

import "testing"

func TestRouteTemplate(t *testing.T) {
	for path, want := range map[string]string{
		"/fhir":                                  "/fhir",
		"/fhir/":                                 "/fhir",
		"/fhir/metadata":                         "/fhir/metadata",
		"/fhir/Patient":                          "/fhir/Patient",
		"/fhir/Patient/smith-john":               "/fhir/Patient/{id}",
		"/fhir/Patient/123/_history/2":           "/fhir/Patient/{id}/_history/{id}",
		"/fhir/Patient/123/$everything":          "/fhir/Patient/{id}/$everything",
		"/fhir/Patient/123/Observation":          "/fhir/Patient/{id}/Observation",
		"/fhir/Patient/_search":                  "/fhir/Patient/_search",
		"/fhir/$export-status/abc":               "/fhir/$export-status/{id}",
		"/fhir/$Smith%20John":                    "/fhir/{id}",
		"/fhir/NotAType/x":                       "/fhir/{id}/{id}",
		"/fhirish/Patient":                       "{other}",
		"/healthz":                               "/healthz",
		"/metrics":                               "/metrics",
		"/somewhere/Smith":                       "{other}",
		"/dicomweb/studies/1.2.3/series/4.5.6":   "{other}",
		"/fhir/Patient/Smith/_history/Smith/Foo": "/fhir/Patient/{id}/_history/{id}/{id}",
	} {
		if got := routeTemplate(path); got != want {
			t.Errorf("routeTemplate(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestQueryNames(t *testing.T) {
	for raw, want := range map[string]string{
		"":                                       "",
		"name=Smith":                             "name",
		"name=Smith&name:exact=Smith&name=Jones": "name,name:exact",
		"identifier=urn:mrn%7C123&_count=5":      "identifier,_count",
		"subject:Patient.name=x&_has:Observation:patient:code=1": "subject:Patient.name,_has:Observation:patient:code",
		"John%20Smith":                    "?",
		"a@b=1&&=2":                       "?",
		"_summary":                        "_summary",
		"given=Al&given%3Aexact=x&family": "given,?,family",
	} {
		if got := queryNames(raw); got != want {
			t.Errorf("queryNames(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestRequestIDs(t *testing.T) {
	for id, ok := range map[string]bool{
		"": false, "a": true, "A.b_c-9": true, "has space": false, "é": false,
		"0123456789012345678901234567890123456789012345678901234567890123":  true,
		"01234567890123456789012345678901234567890123456789012345678901234": false,
	} {
		if validRequestID(id) != ok {
			t.Errorf("validRequestID(%q) = %v", id, !ok)
		}
	}
	a, b := newRequestID(), newRequestID()
	if a == b || len(a) != 32 || !validRequestID(a) {
		t.Errorf("newRequestID: %q, %q", a, b)
	}
}

func TestStatusClassAndType(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 201: "2xx", 304: "3xx", 404: "4xx", 499: "4xx", 503: "5xx", 0: "5xx", 700: "5xx", 101: "1xx"} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%d) = %q, want %q", code, got, want)
		}
	}
	for _, c := range []struct{ path, interaction, want string }{
		{"/fhir/Patient/1", "read", "Patient"},
		{"/fhir/Patient/1/Observation", "search-compartment", "Observation"},
		{"/fhir", "transaction", ""},
		{"/fhir/$export", "operation", ""},
		{"/fhir/Nonsense", "unknown", ""},
	} {
		if got := resourceTypeOf(c.path, c.interaction); got != c.want {
			t.Errorf("resourceTypeOf(%q, %q) = %q, want %q", c.path, c.interaction, got, c.want)
		}
	}
}
