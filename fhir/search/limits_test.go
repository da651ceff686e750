package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

// httpStatus is the status the HTTP layer answers for the kinds these
// functions return.
func httpStatus(k fhir.Kind) int {
	return map[fhir.Kind]int{fhir.BadRequest: 400, fhir.Unprocessable: 422}[k]
}

func status(err error) int {
	var fe *fhir.Error
	if errors.As(err, &fe) {
		return httpStatus(fe.Kind)
	}
	return 0
}

func TestParseConditionTakesSearchParametersOnly(t *testing.T) {
	for _, query := range []string{
		"_count=1", "_count=0", "name=x&_count=1", "identifier=a&_count=0", "_sort=name", "name=x&_sort=-name",
		"_elements=id", "_summary=count", "_total=accurate", "_include=Patient:organization",
		"_revinclude=Observation:subject", "_include:iterate=Patient:link", "_contained=true", "_containedType=contained",
		"_cursor=abc", "_type=Patient", "name=x&_page=2",
		"", "_format=json", "_pretty=true&_format=json",
	} {
		v, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ParseCondition("Patient", v, Options{}); status(err) != 400 {
			t.Errorf("condition %q: %v, want a 400", query, err)
		}
	}
	v, _ := url.ParseQuery("identifier=http://x|1&_format=json&_pretty=true")
	q, cond, err := ParseCondition("Patient", v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Params) != 1 || cond.Encode() != "identifier=http%3A%2F%2Fx%7C1" {
		t.Fatalf("params %d, condition %q", len(q.Params), cond.Encode())
	}
	// Unknown parameters are errors in a condition, whatever the handling.
	v, _ = url.ParseQuery("nonsense=1")
	if _, _, err := ParseCondition("Patient", v, Options{Strict: false}); status(err) != 400 {
		t.Fatalf("unknown parameter in a condition: %v", err)
	}
}

func TestParseLimits(t *testing.T) {
	rep := func(kv string, n int) string { // n different values: kv, kvx, kvxx…
		var s []string
		for i := 0; i < n; i++ {
			s = append(s, kv+strings.Repeat("x", i))
		}
		return strings.Join(s, "&")
	}
	values := func(n int) string {
		vs := make([]string, n)
		for i := range vs {
			vs[i] = "v" + strings.Repeat("x", i%7)
		}
		return strings.Join(vs, ",")
	}
	ok := []string{
		rep("name=a", DefaultMaxAndPerParam),
		"name=" + values(DefaultMaxOrValues),
		"_sort=" + strings.TrimSuffix(strings.Repeat("name,", DefaultMaxSortKeys), ","),
		rep("name=a", 10) + "&" + rep("family=b", 10) + "&" + rep("given=c", 10) + "&" + rep("address=m", 10),
		strings.Repeat("name=same&", 500) + "name=same", // the same condition repeated is one condition
	}
	bad := []string{
		func() string { // 11 different values of one parameter
			var s []string
			for i := 0; i <= DefaultMaxAndPerParam; i++ {
				s = append(s, "name=a"+strings.Repeat("b", i))
			}
			return strings.Join(s, "&")
		}(),
		"name=" + values(DefaultMaxOrValues+1),
		"_sort=" + strings.TrimSuffix(strings.Repeat("name,", DefaultMaxSortKeys+1), ","),
		"_sort=name,family&_sort=" + strings.TrimSuffix(strings.Repeat("given,", DefaultMaxSortKeys-1), ","),
		rep("name=a", 10) + "&" + rep("family=b", 10) + "&" + rep("given=c", 10) + "&" + rep("address=m", 10) + "&birthdate=2000",
		rep("_include=Patient:organization", DefaultMaxIncludes+1),
		"name=" + values(DefaultMaxOrValues/2+1) + "&family=" + values(DefaultMaxOrValues/2), // too many values in all
	}
	for _, query := range ok {
		if _, err := parse(t, "Patient", query, false); err != nil {
			t.Errorf("%.80s…: %v", query, err)
		}
	}
	for _, query := range bad {
		if _, err := parse(t, "Patient", query, false); status(err) != 400 {
			t.Errorf("%.80s…: %v, want a 400", query, err)
		}
	}
	// Repeated identical conditions are parsed once.
	q, err := parse(t, "Patient", strings.Repeat("name=same&", 500)+"name=same", false)
	if err != nil || len(q.Params) != 1 {
		t.Fatalf("%v, %d params", err, len(q.Params))
	}
}

func TestUnsupportedModifiersAreRejectedEvenWhenLenient(t *testing.T) {
	for _, query := range []string{
		"name:bogus=x", "gender:below=male", "birthdate:exact=2000", "_id:exact=x", "_lastUpdated:missing2=x",
		"general-practitioner.name:bogus=x",
		"general-practitioner._has:Observation:patient:code=x", "general-practitioner:Practitioner._has:Observation:patient:code=x",
	} {
		for _, strict := range []bool{false, true} {
			if _, err := parse(t, "Patient", query, strict); status(err) != 400 {
				t.Errorf("%s (strict %v): %v, want a 400", query, strict, err)
			}
		}
	}
	if _, err := parse(t, "Observation", "code:below=x", false); status(err) != 400 {
		t.Errorf("code:below: %v", err)
	}
	// An unknown parameter stays ignorable under lenient handling.
	q, err := parse(t, "Patient", "nonsense=1&name=x", false)
	if err != nil || len(q.Ignored) != 1 || len(q.Params) != 1 {
		t.Fatalf("%v %v", err, q)
	}
}

func TestNumbersFollowTheFHIRDecimalGrammar(t *testing.T) {
	for _, v := range []string{"0x10", "0x1p4", "1_000", "+5", "05", ".5", "5.", "1e", "1e+", "Inf", "NaN", "1e200000", "1e-16384", "1e1001", strings.Repeat("9", 1001), "0." + strings.Repeat("0", 1001) + "1"} {
		for _, query := range []string{"value-quantity=" + url.QueryEscape(v), "value-quantity=gt" + url.QueryEscape(v)} {
			if _, err := parse(t, "Observation", query, false); status(err) != 400 {
				t.Errorf("%.60s: %v, want a 400", query, err)
			}
		}
		if _, err := parse(t, "RiskAssessment", "probability="+url.QueryEscape(v), false); status(err) != 400 {
			t.Errorf("probability=%.60s: %v, want a 400", v, err)
		}
	}
	for _, v := range []string{"0", "-0.5", "100", "1.5e1", "1E-3", "1e999", "ge5.4"} {
		if _, err := parse(t, "Observation", "value-quantity="+url.QueryEscape(v), false); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}

func TestTextThatPostgreSQLCannotHoldIsRejected(t *testing.T) {
	for _, query := range []string{"name=%00", "_id=%FF", "identifier=%C0%80", "name=a%00b", "na%00me=x", "_sort=%FF"} {
		v, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("Patient", v, Options{}); status(err) != 400 {
			t.Errorf("%s: %v, want a 400", query, err)
		}
	}
}
