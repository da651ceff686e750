package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

func TestPrecisionRange(t *testing.T) {
	for _, tc := range []struct{ in, lo, hi string }{
		{"100", "99.5", "100.5"},
		{"100.00", "99.995", "100.005"},
		{"0.5", "0.45", "0.55"},
		{"-2", "-2.5", "-1.5"},
		{"1e2", "50", "150"},
		{"1.5e1", "14.5", "15.5"},
	} {
		lo, hi, err := precisionRange(tc.in)
		if err != nil || lo != tc.lo || hi != tc.hi {
			t.Errorf("%s: [%s, %s) %v, want [%s, %s)", tc.in, lo, hi, err, tc.lo, tc.hi)
		}
	}
	if _, _, err := precisionRange("ten"); err == nil {
		t.Error("a non-number must be an error")
	}
}

func TestSplitEscapes(t *testing.T) {
	if got := splitValues(`a\,b,c`); len(got) != 2 || got[0] != `a\,b` {
		t.Fatalf("splitValues: %q", got)
	}
	sys, code, has := splitToken(`http://x|a\|b`)
	if sys != "http://x" || code != "a|b" || !has {
		t.Fatalf("splitToken: %q %q %v", sys, code, has)
	}
	if _, code, has := splitToken("|c"); code != "c" || !has {
		t.Fatalf("|c: %q %v", code, has)
	}
	if _, _, has := splitToken("c"); has {
		t.Fatal("a bare code has no system")
	}
}

func parse(t *testing.T, typ, query string, strict bool) (*Query, error) {
	t.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(typ, v, Options{Strict: strict, Base: "http://ember.test/fhir"})
}

func TestParseValuesAndModifiers(t *testing.T) {
	q, err := parse(t, "Observation", "date=ge2020-01&value-quantity=lt5.4|http://unitsofmeasure.org|mg&code:text=Blood&patient=http://ember.test/fhir/Patient/p1&_count=5000", false)
	if err != nil {
		t.Fatal(err)
	}
	if q.Count != 1000 {
		t.Errorf("_count is capped at the maximum: %d", q.Count)
	}
	byName := map[string]Param{}
	for _, p := range q.Params {
		byName[p.Name] = p
	}
	if d := byName["date"].Values[0]; d.Prefix != "ge" || d.Lo.Month() != 1 || d.Hi.Month() != 2 {
		t.Errorf("date: %+v", d)
	}
	if v := byName["value-quantity"].Values[0]; v.Prefix != "lt" || v.Number != "5.4" || v.QCode != "mg" {
		t.Errorf("quantity: %+v", v)
	}
	if byName["code:text"].Modifier != "text" {
		t.Error("code:text modifier")
	}
	if v := byName["patient"].Values[0]; v.RefType != "Patient" || v.RefID != "p1" || v.RefURL != "" {
		t.Errorf("a reference under the server's base is local: %+v", v)
	}
}

func TestParseLenientAndStrict(t *testing.T) {
	q, err := parse(t, "Patient", "nonsense=1&name=x", false)
	if err != nil || len(q.Ignored) != 1 || len(q.Dropped) != 1 || q.Dropped[0] != "nonsense" || len(q.Params) != 1 {
		t.Fatalf("lenient: %v %+v", err, q)
	}
	_, err = parse(t, "Patient", "nonsense=1", true)
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Kind != fhir.BadRequest {
		t.Fatalf("strict: %v", err)
	}
	for _, bad := range []string{"birthdate=yesterday", "_count=-1", "_total=maybe", "_sort=nonsense", "identifier:missing=perhaps", "_summary=all"} {
		if _, err := parse(t, "Patient", bad, false); !errors.As(err, &fe) || fe.Kind != fhir.BadRequest {
			t.Errorf("%s: want 400, got %v", bad, err)
		}
	}
}

func TestParseChainsAndHas(t *testing.T) {
	q, err := parse(t, "Observation", "subject:Patient.name=smith", true)
	if err != nil || len(q.Params[0].Chains) != 1 || q.Params[0].Chains[0].Type != "Patient" {
		t.Fatalf("typed chain: %v %+v", err, q)
	}
	// Untyped: every target type with a "name" parameter is tried.
	q, err = parse(t, "Observation", "subject.name=smith", true)
	if err != nil || len(q.Params[0].Chains) < 2 {
		t.Fatalf("untyped chain: %v", err)
	}
	q, err = parse(t, "Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent=x", true)
	if err != nil || q.Params[0].Has == nil || q.Params[0].Has.Has == nil {
		t.Fatalf("nested _has: %v", err)
	}
	if _, err := parse(t, "Patient", "_has:Observation:nonsense:code=x", true); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("_has with an unknown reference: %v", err)
	}
	if _, err := parse(t, "Observation", "code.name=x", true); err == nil {
		t.Fatal("chaining a non-reference must fail")
	}
}
