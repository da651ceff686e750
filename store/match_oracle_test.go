package store_test

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
	"github.com/emberfhir/ember/store"
)

// The differential oracle of search.Match: for each query, the resources the
// store's SQL search returns must be exactly those Match accepts among every
// current resource of the searched types, on real (Synthea) data.

const (
	oracleBase     = "http://ember.test/fhir"
	oraclePatients = 6
)

// The first patients of the committed data set, in file name order.
const (
	pKoepp     = "018f428e-34f6-4707-8009-5ad742f901e7" // male, 1956-08-03, Peabody
	pArmstrong = "59bc5dbb-1957-47ef-b6b5-25952e6bfdab" // male, 2002-12-16
	pRice      = "b541fe39-8ec3-4f50-ac3c-9109374a1609" // female, 1983-10-09, Boston
	pHarris    = "3cb52497-3f07-4323-897b-aed5fe681d6b" // male, 1963-10-29
	pBuckridge = "b3679343-2f2d-4b44-84a9-31fc259bfef1" // female, 2009-12-11
)

// oracleQuery is one search. By default its result must hold some but not
// all of the searched resources, so a query cannot agree vacuously; empty
// and all allow those outcomes where the data gives them.
type oracleQuery struct {
	typ, q     string
	empty, all bool
}

var oracleQueries = []oracleQuery{
	// Patient: token, string, date prefixes, _id, identifier modifiers.
	{typ: "Patient", q: "gender=female"},
	{typ: "Patient", q: "gender:not=female"},
	{typ: "Patient", q: "gender=male,female", all: true},
	// Patient.gender is a code: indexed without a system, so a system|code
	// search finds nothing (the store's behaviour, mirrored).
	{typ: "Patient", q: "gender=http://hl7.org/fhir/administrative-gender|female", empty: true},
	{typ: "Patient", q: "birthdate=1956"},
	{typ: "Patient", q: "birthdate=1983-10"},
	{typ: "Patient", q: "birthdate=1963-10-29"},
	{typ: "Patient", q: "birthdate=ge1980-01-01"},
	{typ: "Patient", q: "birthdate=gt1983-10-09"},
	{typ: "Patient", q: "birthdate=lt1963-10-29"},
	{typ: "Patient", q: "birthdate=le1963-10-29"},
	{typ: "Patient", q: "birthdate=sa1983-10-09"},
	{typ: "Patient", q: "birthdate=eb1983-10-09"},
	{typ: "Patient", q: "birthdate=ne2002-12-16"},
	{typ: "Patient", q: "birthdate=ap1984"},
	{typ: "Patient", q: "birthdate=ge1960&birthdate=lt1990"},
	{typ: "Patient", q: "name=al"},
	{typ: "Patient", q: "name=rice,koepp"},
	{typ: "Patient", q: "family:exact=Harris"},
	{typ: "Patient", q: "family:exact=harris", empty: true},
	{typ: "Patient", q: "family:contains=AR"},
	{typ: "Patient", q: "given=ALI"},
	{typ: "Patient", q: "family=ris", empty: true}, // Harris: a substring, not a prefix
	{typ: "Patient", q: "address-city=boston"},
	{typ: "Patient", q: "_id=" + pKoepp + "," + pRice},
	{typ: "Patient", q: "_id:not=" + pKoepp},
	{typ: "Patient", q: "identifier=http://hl7.org/fhir/sid/us-ssn|999-22-1962"},
	{typ: "Patient", q: "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|e925b0f3-8006-43f6-aa31-94bd215e55e7"},
	{typ: "Patient", q: "identifier:text=passport"},
	{typ: "Patient", q: "telecom=phone|555-978-4581"},
	{typ: "Patient", q: "deceased=false", all: true},
	{typ: "Patient", q: "general-practitioner:missing=false", empty: true},
	{typ: "Patient", q: "link:missing=true", all: true},

	// Observation: tokens, quantities, dates, references, composites.
	{typ: "Observation", q: "code=http://loinc.org|8302-2"},
	{typ: "Observation", q: "code=29463-7,8302-2"},
	{typ: "Observation", q: "code=|8302-2", empty: true},
	{typ: "Observation", q: "code=http://loinc.org|", all: true},
	{typ: "Observation", q: "code:not=http://loinc.org|8302-2"},
	{typ: "Observation", q: "code:text=body"},
	{typ: "Observation", q: "category=vital-signs"},
	{typ: "Observation", q: "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"},
	{typ: "Observation", q: "category:in=http://hl7.org/fhir/ValueSet/observation-category", all: true},
	{typ: "Observation", q: "category:not-in=http://hl7.org/fhir/ValueSet/observation-category", empty: true},
	{typ: "Observation", q: "value-quantity=gt100"},
	{typ: "Observation", q: "value-quantity=ge80||kg"},
	{typ: "Observation", q: "value-quantity=le25|http://unitsofmeasure.org|kg/m2"},
	{typ: "Observation", q: "value-quantity=lt5"},
	{typ: "Observation", q: "value-quantity=ap170"},
	{typ: "Observation", q: "value-quantity=176.2"},
	{typ: "Observation", q: "value-quantity=176.17"},
	{typ: "Observation", q: "value-quantity=1.7617e2"},
	{typ: "Observation", q: "value-quantity=ne176.2|http://unitsofmeasure.org|cm"},
	{typ: "Observation", q: "value-quantity=sa190"},
	{typ: "Observation", q: "value-quantity=eb2"},
	{typ: "Observation", q: "value-quantity=2||{score}"},
	{typ: "Observation", q: "value-quantity=ge100|http://unitsofmeasure.org|"},
	{typ: "Observation", q: "value-quantity:missing=true"},
	{typ: "Observation", q: "value-concept=http://snomed.info/sct|266919005"},
	{typ: "Observation", q: "date=2011"},
	{typ: "Observation", q: "date=2011-10-14"},
	{typ: "Observation", q: "date=2011-10-14T23:37:54+00:00"},
	{typ: "Observation", q: "date=2011-10-14T23:37Z"},
	{typ: "Observation", q: "date=ge2018-01-01"},
	{typ: "Observation", q: "date=gt2019-12"},
	{typ: "Observation", q: "date=lt2012"},
	{typ: "Observation", q: "date=le2012-10-19T23:37:54Z"},
	{typ: "Observation", q: "date=sa2019-01-01T00:00:00Z"},
	{typ: "Observation", q: "date=eb2012"},
	{typ: "Observation", q: "date=ne2015"},
	{typ: "Observation", q: "date=ap2012-06"},
	{typ: "Observation", q: "patient=Patient/" + pKoepp},
	{typ: "Observation", q: "subject=" + pRice},
	{typ: "Observation", q: "subject:Patient=" + pHarris},
	{typ: "Observation", q: "patient=Patient/" + pKoepp + ",Patient/" + pArmstrong},
	{typ: "Observation", q: "subject=" + oracleBase + "/Patient/" + pBuckridge},
	{typ: "Observation", q: "subject=Group/" + pKoepp, empty: true},
	{typ: "Observation", q: "code-value-quantity=http://loinc.org|8302-2$gt170"},
	{typ: "Observation", q: "code-value-quantity=29463-7$lt50||kg"},
	{typ: "Observation", q: "code-value-quantity=http://snomed.info/sct|8302-2$gt0", empty: true},
	{typ: "Observation", q: "code-value-quantity=39156-5$ap30"},
	{typ: "Observation", q: "component-code-value-quantity=http://loinc.org|8480-6$ge120"},
	{typ: "Observation", q: "combo-code-value-quantity=8462-4$lt80|http://unitsofmeasure.org|mm[Hg]"},
	{typ: "Observation", q: "code-value-concept=72166-2$http://snomed.info/sct|266919005"},
	{typ: "Observation", q: "code-value-concept=72166-2$8517006"},
	{typ: "Observation", q: "status=final&code=8302-2&date=ge2015"},
	{typ: "Observation", q: "encounter:missing=true", empty: true},

	// Condition.
	{typ: "Condition", q: "code=http://snomed.info/sct|444814009"},
	{typ: "Condition", q: "code:text=viral"},
	{typ: "Condition", q: "clinical-status=resolved"},
	{typ: "Condition", q: "clinical-status=http://terminology.hl7.org/CodeSystem/condition-clinical|active"},
	{typ: "Condition", q: "onset-date=ge2015"},
	{typ: "Condition", q: "onset-date=lt1995"},
	{typ: "Condition", q: "abatement-date:missing=true"},
	{typ: "Condition", q: "abatement-date=gt2016"},
	{typ: "Condition", q: "recorded-date=le2010-06-30T12:00"},
	{typ: "Condition", q: "verification-status:not=confirmed", empty: true},
	{typ: "Condition", q: "patient=" + pRice},

	// Encounter: Period dates.
	{typ: "Encounter", q: "class=AMB"},
	{typ: "Encounter", q: "class=http://terminology.hl7.org/CodeSystem/v3-ActCode|EMER"},
	{typ: "Encounter", q: "type=185349003"},
	{typ: "Encounter", q: "type:text=encounter for check"},
	{typ: "Encounter", q: "date=2012"},
	{typ: "Encounter", q: "date=ge2015-06-01T00:00:00Z"},
	{typ: "Encounter", q: "date=lt1995"},
	{typ: "Encounter", q: "date=ap2010-01"},
	{typ: "Encounter", q: "date=sa2018-01-01"},
	{typ: "Encounter", q: "date=eb2000"},
	{typ: "Encounter", q: "date=ne2012"},
	// A point inside an encounter does not contain its period.
	{typ: "Encounter", q: "date=1991-06-07T23:40:00Z", empty: true},
	{typ: "Encounter", q: "date=le1991-06-07T23:40:00Z"},
	{typ: "Encounter", q: "date=ge1991-06-07T23:40:00Z"},
	{typ: "Encounter", q: "reason-code:missing=false"},
	{typ: "Encounter", q: "patient=Patient/" + pHarris},
	{typ: "Encounter", q: "status=finished", all: true},

	// MedicationRequest.
	{typ: "MedicationRequest", q: "status=active"},
	{typ: "MedicationRequest", q: "status:not=stopped"},
	{typ: "MedicationRequest", q: "intent=order", all: true},
	{typ: "MedicationRequest", q: "authoredon=ge2018"},
	{typ: "MedicationRequest", q: "authoredon=lt2010-01-01"},
	{typ: "MedicationRequest", q: "code=http://www.nlm.nih.gov/research/umls/rxnorm|310965"},
	{typ: "MedicationRequest", q: "code:text=ibuprofen"},
	{typ: "MedicationRequest", q: "patient=" + pKoepp},

	// DiagnosticReport.
	{typ: "DiagnosticReport", q: "code=http://loinc.org|57698-3"},
	{typ: "DiagnosticReport", q: "category=LAB", all: true},
	{typ: "DiagnosticReport", q: "date=ge2016"},
	{typ: "DiagnosticReport", q: "issued=lt2013"},
	{typ: "DiagnosticReport", q: "date=ne2012-10"},
	{typ: "DiagnosticReport", q: "code:text=lipid"},
	{typ: "DiagnosticReport", q: "result:missing=true", empty: true},

	// Procedure.
	{typ: "Procedure", q: "code=http://snomed.info/sct|73761001"},
	{typ: "Procedure", q: "code:text=colon"},
	{typ: "Procedure", q: "date=2012-11"},
	{typ: "Procedure", q: "date=2012-11-25", empty: true}, // the period runs past midnight
	{typ: "Procedure", q: "date=ge2018"},
	{typ: "Procedure", q: "date=ne2012"},
	{typ: "Procedure", q: "date=eb2012-11-26T00:19:54Z"},
	{typ: "Procedure", q: "status=completed", all: true},

	// Immunization.
	{typ: "Immunization", q: "vaccine-code=http://hl7.org/fhir/sid/cvx|140"},
	{typ: "Immunization", q: "vaccine-code=62,133"},
	{typ: "Immunization", q: "vaccine-code:text=influenza"},
	{typ: "Immunization", q: "date=ge2016-01-01"},
	{typ: "Immunization", q: "date=lt2014"},
	{typ: "Immunization", q: "date=ap2015"},
	{typ: "Immunization", q: "patient=" + pArmstrong},
	{typ: "Immunization", q: "status=completed", all: true},

	// System searches: parameters looked up on each searched type.
	{typ: "", q: "_type=Condition,Procedure&patient=Patient/" + pKoepp},
	{typ: "", q: "_type=Immunization,Observation&date=2015"},
}

// oracleResource is one current resource with its index entries.
type oracleResource struct {
	id          string
	lastUpdated time.Time
	entries     *index.Entries
}

func TestMatchOracle(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := engine.New(engine.Config{BaseURL: oracleBase}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synthea.Load(ctx, eng, oracleFiles(t)); err != nil {
		t.Fatal(err)
	}
	byType := map[string][]oracleResource{}
	for _, typ := range []string{"Patient", "Observation", "Condition", "Encounter", "MedicationRequest", "DiagnosticReport", "Procedure", "Immunization"} {
		byType[typ] = listAll(ctx, t, st, typ)
		if len(byType[typ]) == 0 {
			t.Fatalf("no %s loaded", typ)
		}
	}
	queries := append(append([]oracleQuery(nil), oracleQueries...), lastUpdatedQueries(byType["Observation"])...)
	partial := 0
	for _, oq := range queries {
		inStore, inMatch, total := runOracle(ctx, t, st, byType, oq)
		name := oq.typ + "?" + oq.q
		if only, extra := setDiff(inStore, inMatch), setDiff(inMatch, inStore); len(only) > 0 || len(extra) > 0 {
			t.Errorf("%s: store and Match differ: %d only in the store %v, %d only in Match %v",
				name, len(only), head(only), len(extra), head(extra))
			continue
		}
		switch {
		case len(inStore) == 0 && !oq.empty:
			t.Errorf("%s: matches nothing of %d: the check is vacuous", name, total)
		case len(inStore) == total && !oq.all:
			t.Errorf("%s: matches all %d: the check is vacuous", name, total)
		case len(inStore) > 0 && len(inStore) < total:
			partial++
		}
	}
	if partial < 60 {
		t.Errorf("only %d of %d queries select some but not all resources; want at least 60", partial, len(queries))
	}
	t.Logf("%d queries, %d with a proper subset of their types' resources", len(queries), partial)
}

// oracleFiles is the hospital and practitioner bundles and the first
// oraclePatients patient bundles.
func oracleFiles(t *testing.T) []string {
	t.Helper()
	dir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := synthea.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	n := 0
	for _, f := range files {
		if !synthea.IsPatientBundle(f) {
			out = append(out, f)
		} else if n < oraclePatients {
			out = append(out, f)
			n++
		}
	}
	return out
}

// listAll reads every current resource of typ through the store's search
// (no parameters, paged) and extracts its index entries.
func listAll(ctx context.Context, t *testing.T, st *store.Store, typ string) []oracleResource {
	t.Helper()
	q, err := search.Parse(typ, url.Values{}, search.Options{DefaultCount: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []oracleResource
	err = pageAll(ctx, st, q, func(m store.Match) error {
		e, err := index.Extract(m.Type, m.Content)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", m.Type, m.ID, err)
		}
		out = append(out, oracleResource{id: m.ID, lastUpdated: m.LastUpdated, entries: e})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pageAll runs q and follows its next links to the end.
func pageAll(ctx context.Context, st *store.Store, q *search.Query, each func(store.Match) error) error {
	for page := 0; ; page++ {
		if page > 1000 {
			return fmt.Errorf("search did not end after %d pages", page)
		}
		res, err := st.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, m := range res.Matches {
			if err := each(m); err != nil {
				return err
			}
		}
		if res.Next == "" {
			return nil
		}
		q.Cursor = res.Next
	}
}

// runOracle returns the "Type/id"s the store finds for oq, those Match
// accepts, and how many resources were searched.
func runOracle(ctx context.Context, t *testing.T, st *store.Store, byType map[string][]oracleResource, oq oracleQuery) (fromStore, fromMatch map[string]bool, total int) {
	t.Helper()
	vals, err := url.ParseQuery(strings.ReplaceAll(oq.q, "+", "%2B"))
	if err != nil {
		t.Fatalf("%s: %v", oq.q, err)
	}
	parse := func() *search.Query {
		q, err := search.Parse(oq.typ, vals, search.Options{Base: oracleBase, Strict: true, DefaultCount: 1000})
		if err != nil {
			t.Fatalf("%s?%s: %v", oq.typ, oq.q, err)
		}
		return q
	}
	fromStore = map[string]bool{}
	if err := pageAll(ctx, st, parse(), func(m store.Match) error {
		fromStore[m.Type+"/"+m.ID] = true
		return nil
	}); err != nil {
		t.Fatalf("%s?%s: store: %v", oq.typ, oq.q, err)
	}
	q := parse()
	m, err := search.Compile(q)
	if err != nil {
		t.Fatalf("%s?%s: %v", oq.typ, oq.q, err)
	}
	types := q.Types
	if q.Type != "" {
		types = []string{q.Type}
	}
	fromMatch = map[string]bool{}
	for _, typ := range types {
		rs, ok := byType[typ]
		if !ok {
			t.Fatalf("%s?%s: %s was not listed", oq.typ, oq.q, typ)
		}
		for _, r := range rs {
			if m.Match(typ, r.id, r.lastUpdated, r.entries) {
				fromMatch[typ+"/"+r.id] = true
			}
		}
		total += len(rs)
	}
	return fromStore, fromMatch, total
}

// lastUpdatedQueries split the resources at the median of their
// lastUpdated, at microsecond and at second precision.
func lastUpdatedQueries(rs []oracleResource) []oracleQuery {
	times := make([]time.Time, len(rs))
	for i, r := range rs {
		times[i] = r.lastUpdated
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	mid := times[len(times)/2].UTC()
	micro := mid.Format("2006-01-02T15:04:05.000000Z07:00")
	sec := mid.Format("2006-01-02T15:04:05Z07:00")
	return []oracleQuery{
		{typ: "Observation", q: "_lastUpdated=lt" + micro},
		{typ: "Observation", q: "_lastUpdated=ge" + micro},
		{typ: "Observation", q: "_lastUpdated=" + micro},
		{typ: "Observation", q: "_lastUpdated=gt" + sec, empty: true},
		{typ: "Observation", q: "_lastUpdated=le" + sec, all: true},
		{typ: "Observation", q: "_lastUpdated=ap" + sec, all: true},
		{typ: "Observation", q: "_lastUpdated=ge" + micro + "&code=8302-2"},
	}
}

func setDiff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
