package server_test

// An independent model of FHIR R4 search semantics
// (https://hl7.org/fhir/R4/search.html), used by the acceptance tests to
// compute expected results straight from the decoded Synthea resources. It
// shares no code with the server's search implementation: each test states
// its expectation as a Go predicate over the resources, built from the
// small matchers below (string, token, reference, date, number, quantity).

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/emberfhir/ember/internal/bundleoracle"
)

// res is a decoded resource.
type res = map[string]any

// oracle holds the resources of a set of Synthea bundles as the store holds
// them after synthea.Load: references resolved to "Type/id", and a resource
// repeated in several bundles keeps its last copy. It reads the bundle JSON
// itself (internal/bundleoracle), not through synthea.Loader, so a Loader
// bug shows up as a difference instead of cancelling out.
type oracle struct {
	all    map[string]res   // "Type/id" → resource
	byType map[string][]res // in first-load order
}

func newOracle(files []string) (*oracle, error) {
	entries, err := bundleoracle.Read(files)
	if err != nil {
		return nil, err
	}
	ix := bundleoracle.NewIndex(entries)
	o := &oracle{all: map[string]res{}, byType: map[string][]res{}}
	pos := map[string]int{} // "Type/id" → index in byType[Type]
	for _, en := range entries {
		m, err := ix.Resolved(en.Resource)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", en.File, en.Key(), err)
		}
		key := en.Key()
		if i, seen := pos[key]; seen {
			o.byType[en.Type][i] = m
		} else {
			pos[key] = len(o.byType[en.Type])
			o.byType[en.Type] = append(o.byType[en.Type], m)
		}
		o.all[key] = m
	}
	return o, nil
}

// where returns the ids ("Type/id") of typ's resources that satisfy pred, sorted.
func (o *oracle) where(typ string, pred func(res) bool) []string {
	var out []string
	for _, r := range o.byType[typ] {
		if pred(r) {
			out = append(out, typ+"/"+r["id"].(string))
		}
	}
	sort.Strings(out)
	return out
}

// resolve returns the resource a literal reference ("Type/id") names, or nil.
func (o *oracle) resolve(ref string) res { return o.all[ref] }

// first returns the first resource of typ satisfying pred.
func (o *oracle) first(t testing.TB, typ string, pred func(res) bool) res {
	t.Helper()
	for _, r := range o.byType[typ] {
		if pred(r) {
			return r
		}
	}
	t.Fatalf("test data: no %s satisfies the predicate", typ)
	return nil
}

// ---- navigation ----

// vals walks path from v, flattening arrays at every step.
func vals(v any, path ...string) []any {
	cur := []any{v}
	for _, step := range path {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			switch x := m[step].(type) {
			case nil:
			case []any:
				next = append(next, x...)
			default:
				next = append(next, x)
			}
		}
		cur = next
	}
	var out []any
	for _, c := range cur {
		if a, ok := c.([]any); ok {
			out = append(out, a...)
		} else {
			out = append(out, c)
		}
	}
	return out
}

// strs is vals keeping strings.
func strs(v any, path ...string) []string {
	var out []string
	for _, x := range vals(v, path...) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// choice returns the values of a choice element (effective[x]) with the
// type suffix of each, e.g. ("DateTime", "2020-01-01").
func choice(r res, name string) (typ string, v any) {
	for k, x := range r {
		if strings.HasPrefix(k, name) && len(k) > len(name) && unicode.IsUpper(rune(k[len(name)])) {
			return k[len(name):], x
		}
	}
	return "", nil
}

// refs returns the reference strings at path (path ends at a Reference).
func refs(v any, path ...string) []string {
	return strs(v, append(append([]string{}, path...), "reference")...)
}

func hasRef(v any, want string, path ...string) bool {
	for _, r := range refs(v, path...) {
		if r == want {
			return true
		}
	}
	return false
}

// ---- string search ----

// accentFold maps letters that Unicode NFD decomposes into a base letter plus
// combining marks to that base letter (lower case).
var accentFold = func() map[rune]rune {
	m := map[rune]rune{}
	add := func(base rune, accented string) {
		for _, r := range accented {
			m[r] = base
		}
	}
	add('a', "àáâãäåāăąÀÁÂÃÄÅĀĂĄ")
	add('c', "çćĉċčÇĆĈĊČ")
	add('d', "ďĎ")
	add('e', "èéêëēĕėęěÈÉÊËĒĔĖĘĚ")
	add('g', "ĝğġģĜĞĠĢ")
	add('h', "ĥĤ")
	add('i', "ìíîïĩīĭįÌÍÎÏĨĪĬĮİ")
	add('j', "ĵĴ")
	add('k', "ķĶ")
	add('l', "ĺļľĹĻĽ")
	add('n', "ñńņňÑŃŅŇ")
	add('o', "òóôõöōŏőÒÓÔÕÖŌŎŐ")
	add('r', "ŕŗřŔŖŘ")
	add('s', "śŝşšŚŜŞŠ")
	add('t', "ţťŢŤ")
	add('u', "ùúûüũūŭůűųÙÚÛÜŨŪŬŮŰŲ")
	add('w', "ŵŴ")
	add('y', "ýÿŷÝŸŶ")
	add('z', "źżžŹŻŽ")
	return m
}()

// fold is the normalisation of the default string search: case- and
// accent-insensitive.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		if base, ok := accentFold[r]; ok {
			r = base
		}
		if unicode.Is(unicode.Mn, r) { // combining marks of decomposed input
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// strMatch applies a string parameter with modifier ("", "exact",
// "contains") to the values.
func strMatch(values []string, mod, q string) bool {
	for _, v := range values {
		switch mod {
		case "":
			if strings.HasPrefix(fold(v), fold(q)) {
				return true
			}
		case "exact":
			if v == q {
				return true
			}
		case "contains":
			if strings.Contains(fold(v), fold(q)) {
				return true
			}
		default:
			panic("oracle: string modifier " + mod)
		}
	}
	return false
}

// humanNameStrings are the strings a HumanName string search covers.
func humanNameStrings(r res, path string) []string {
	var out []string
	for _, f := range []string{"family", "given", "prefix", "suffix", "text"} {
		out = append(out, strs(r, path, f)...)
	}
	return out
}

// ---- tokens ----

type coding struct {
	system, code, display string
	hasSystem             bool
}

// codingsOf reads a CodeableConcept, Coding, Identifier, or plain code.
func codingsOf(vs []any) []coding {
	var out []coding
	for _, v := range vs {
		switch x := v.(type) {
		case string:
			out = append(out, coding{code: x})
		case bool:
			out = append(out, coding{code: strconv.FormatBool(x)})
		case map[string]any:
			if cs, ok := x["coding"].([]any); ok { // CodeableConcept
				out = append(out, codingsOf(cs)...)
				continue
			}
			if x["code"] == nil && x["value"] == nil && x["system"] == nil {
				continue // a CodeableConcept with text only
			}
			sys, hasSys := x["system"].(string)
			code, _ := x["code"].(string)
			if val, ok := x["value"].(string); ok { // Identifier
				code = val
			}
			disp, _ := x["display"].(string)
			out = append(out, coding{system: sys, code: code, display: disp, hasSystem: hasSys})
		}
	}
	return out
}

// tokenMatch applies one token value (code, system|code, |code, system|).
func tokenMatch(cs []coding, q string) bool {
	sys, code, hasBar := strings.Cut(q, "|")
	if !hasBar {
		code = sys
	}
	for _, c := range cs {
		switch {
		case !hasBar:
			if c.code == code {
				return true
			}
		case sys == "":
			if !c.hasSystem && c.code == code {
				return true
			}
		case code == "":
			if c.system == sys {
				return true
			}
		default:
			if c.system == sys && c.code == code {
				return true
			}
		}
	}
	return false
}

// tokenAny is tokenMatch over comma-separated alternatives (OR).
func tokenAny(cs []coding, q string) bool {
	for _, alt := range strings.Split(q, ",") {
		if tokenMatch(cs, alt) {
			return true
		}
	}
	return false
}

// conceptTexts are the texts :text searches: CodeableConcept.text and
// Coding.display.
func conceptTexts(vs []any) []string {
	var out []string
	for _, v := range vs {
		m, _ := v.(map[string]any)
		if s, ok := m["text"].(string); ok {
			out = append(out, s)
		}
		out = append(out, strs(m, "coding", "display")...)
	}
	return out
}

// ---- dates ----

// span is a half-open instant range [lo, hi); the zero lo means -∞ and the
// zero hi +∞.
type span struct{ lo, hi time.Time }

var fhirDateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// parseSpan turns a FHIR date, dateTime or instant into the range its
// precision implies. Values without a time zone are read as UTC.
func parseSpan(s string) (span, error) {
	m := fhirDateRE.FindStringSubmatch(s)
	if m == nil {
		return span{}, fmt.Errorf("oracle: bad date %q", s)
	}
	atoi := func(s string, def int) int {
		if s == "" {
			return def
		}
		n, _ := strconv.Atoi(s)
		return n
	}
	loc := time.UTC
	if tz := m[8]; tz != "" && tz != "Z" {
		h, _ := strconv.Atoi(tz[1:3])
		mi, _ := strconv.Atoi(tz[4:6])
		off := h*3600 + mi*60
		if tz[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(tz, off)
	}
	nanos := 0
	if m[7] != "" {
		f, _ := strconv.ParseFloat("0"+m[7], 64)
		nanos = int(math.Round(f * 1e9))
	}
	lo := time.Date(atoi(m[1], 0), time.Month(atoi(m[2], 1)), atoi(m[3], 1), atoi(m[4], 0), atoi(m[5], 0), atoi(m[6], 0), nanos, loc)
	var hi time.Time
	switch {
	case m[2] == "":
		hi = lo.AddDate(1, 0, 0)
	case m[3] == "":
		hi = lo.AddDate(0, 1, 0)
	case m[4] == "":
		hi = lo.AddDate(0, 0, 1)
	case m[6] == "":
		hi = lo.Add(time.Minute)
	case m[7] == "":
		hi = lo.Add(time.Second)
	default:
		hi = lo.Add(time.Duration(math.Pow10(9 - (len(m[7]) - 1))))
	}
	return span{lo.UTC(), hi.UTC()}, nil
}

func mustSpan(s string) span {
	sp, err := parseSpan(s)
	if err != nil {
		panic(err)
	}
	return sp
}

// valueSpan reads a date/dateTime/instant string or a Period.
func valueSpan(v any) (span, bool) {
	switch x := v.(type) {
	case string:
		sp, err := parseSpan(x)
		return sp, err == nil
	case map[string]any:
		_, hasStart := x["start"]
		_, hasEnd := x["end"]
		if !hasStart && !hasEnd {
			return span{}, false
		}
		var sp span
		if s, ok := x["start"].(string); ok {
			sp.lo = mustSpan(s).lo
		}
		if s, ok := x["end"].(string); ok {
			sp.hi = mustSpan(s).hi // the end includes its whole precision
		}
		return sp, true
	}
	return span{}, false
}

var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

func (s span) bounds() (lo, hi time.Time) {
	lo, hi = s.lo, s.hi
	if lo.IsZero() {
		lo = minTime
	}
	if hi.IsZero() {
		hi = maxTime
	}
	return lo, hi
}

// datePrefixMatch applies the R4 prefix table (search.html#prefix) to a
// target range r and a search value range q. "ap" is implementation-defined
// and is not modelled.
func datePrefixMatch(prefix string, q, r span) bool {
	qlo, qhi := q.bounds()
	rlo, rhi := r.bounds()
	contains := !rlo.Before(qlo) && !rhi.After(qhi)
	switch prefix {
	case "eq":
		return contains
	case "ne":
		return !contains
	case "gt":
		return rhi.After(qhi)
	case "lt":
		return rlo.Before(qlo)
	case "ge":
		return rhi.After(qhi) || contains
	case "le":
		return rlo.Before(qlo) || contains
	case "sa":
		return !rlo.Before(qhi)
	case "eb":
		return !rhi.After(qlo)
	}
	panic("oracle: date prefix " + prefix)
}

// splitPrefix separates an R4 comparison prefix from a value.
func splitPrefix(v string) (prefix, rest string) {
	if len(v) > 2 {
		switch v[:2] {
		case "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap":
			return v[:2], v[2:]
		}
	}
	return "eq", v
}

// dateMatch applies one date parameter value ("ge2015-01", or
// comma-separated alternatives) to the values (strings or Periods); any
// value matching any alternative is enough.
func dateMatch(values []any, q string) bool {
	for _, alt := range strings.Split(q, ",") {
		prefix, v := splitPrefix(alt)
		qs := mustSpan(v)
		for _, x := range values {
			if sp, ok := valueSpan(x); ok && datePrefixMatch(prefix, qs, sp) {
				return true
			}
		}
	}
	return false
}

// requireDateSafe fails the test when the expected result of the date
// search q over values would depend on a choice the spec leaves open:
//   - a value with a time of day within 14 hours of a boundary of q (a
//     date-only search value is read in the server's time zone);
//   - a value for which the literal R4 reading of ge/le ("the range above the
//     search value intersects the target, or the search range contains it")
//     and the common lenient one ("the target reaches the search range or
//     above") disagree: a range that straddles q's start (ge) or end (le).
func requireDateSafe(t testing.TB, values []any, q string) {
	t.Helper()
	prefix, v := splitPrefix(q)
	qs := mustSpan(v)
	near := func(a, b time.Time) bool {
		if a.IsZero() || b.IsZero() {
			return false
		}
		d := a.Sub(b)
		return d > -14*time.Hour && d < 14*time.Hour
	}
	for _, x := range values {
		var ends []string
		switch y := x.(type) {
		case string:
			ends = []string{y}
		case map[string]any:
			ends = strs(y, "start")
			ends = append(ends, strs(y, "end")...)
		}
		for _, e := range ends {
			if !strings.Contains(e, "T") {
				continue // date-only values shift with the search value
			}
			sp := mustSpan(e)
			for _, edge := range []time.Time{sp.lo, sp.hi} {
				if near(edge, qs.lo) || near(edge, qs.hi) {
					t.Fatalf("test data: value %s is too close to a boundary of %s to be time-zone independent; pick another date", e, q)
				}
			}
		}
		sp, ok := valueSpan(x)
		if !ok {
			continue
		}
		if lenient, ok := lenientDateMatch(prefix, qs, sp); ok && lenient != datePrefixMatch(prefix, qs, sp) {
			t.Fatalf("test data: %v straddles a boundary of %s, where readings of %s differ; pick another date", x, q, prefix)
		}
	}
}

// lenientDateMatch is the reading of ge/le many servers use; ok is false
// for other prefixes.
func lenientDateMatch(prefix string, q, r span) (match, ok bool) {
	qlo, qhi := q.bounds()
	rlo, rhi := r.bounds()
	switch prefix {
	case "ge":
		return rhi.After(qlo), true
	case "le":
		return rlo.Before(qhi), true
	}
	return false, false
}

// ---- numbers and quantities ----

// numberSpan is the range a number search value's precision implies:
// 100 → [99.5, 100.5), 100.00 → [99.995, 100.005).
func numberSpan(s string) (lo, hi float64, err error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, err
	}
	decimals := 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		decimals = len(s) - i - 1
	}
	half := 0.5 * math.Pow10(-decimals)
	return f - half, f + half, nil
}

// numberMatch applies one prefixed number value to v. The prefixes compare
// v with the search value's precision range: eq/ne test membership, gt/lt/ge/le
// compare with the plain value (requireSafeThreshold keeps the data away
// from the region where the two readings differ).
func numberMatch(v float64, q string) bool {
	prefix, s := splitPrefix(q)
	lo, hi, err := numberSpan(s)
	if err != nil {
		panic(err)
	}
	f, _ := strconv.ParseFloat(s, 64)
	switch prefix {
	case "eq":
		return v >= lo && v < hi
	case "ne":
		return !(v >= lo && v < hi)
	case "gt":
		return v > f
	case "lt":
		return v < f
	case "ge":
		return v >= f
	case "le":
		return v <= f
	}
	panic("oracle: number prefix " + prefix)
}

// requireSafeThreshold fails when a value lies inside the precision range of
// the prefixed number q, where "greater than 100" and "above 100's range
// [99.5, 100.5)" would disagree.
func requireSafeThreshold(t testing.TB, values []float64, q string) {
	t.Helper()
	_, s := splitPrefix(q)
	lo, hi, err := numberSpan(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if v >= lo && v <= hi {
			t.Fatalf("test data: value %v lies within the precision of %s; pick another threshold", v, q)
		}
	}
}

type quantity struct {
	value              float64
	system, code, unit string
}

func quantitiesOf(vs []any) []quantity {
	var out []quantity
	for _, v := range vs {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		f, ok := m["value"].(float64)
		if !ok {
			continue
		}
		q := quantity{value: f}
		q.system, _ = m["system"].(string)
		q.code, _ = m["code"].(string)
		q.unit, _ = m["unit"].(string)
		out = append(out, q)
	}
	return out
}

// quantityMatch applies [prefix]number|system|code: with a system, system
// and code must match; with no system, code or unit must; no unit: any.
func quantityMatch(qs []quantity, q string) bool {
	num, unit, _ := strings.Cut(q, "|")
	for _, x := range qs {
		if numberMatch(x.value, num) && unitMatch(x, unit) {
			return true
		}
	}
	return false
}

// unitMatch applies the "system|code" part of a quantity search value
// ("" matches any unit).
func unitMatch(x quantity, unit string) bool {
	if unit == "" {
		return true
	}
	sys, code, _ := strings.Cut(unit, "|")
	if sys != "" {
		return x.system == sys && x.code == code
	}
	return code == "" || x.code == code || x.unit == code
}

// ---- sets ----

func setOf(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// setDiff returns what want has and got lacks, and the reverse, sorted.
func setDiff(got, want []string) (missing, extra []string) {
	g, w := setOf(got), setOf(want)
	for id := range w {
		if !g[id] {
			missing = append(missing, id)
		}
	}
	for id := range g {
		if !w[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func clipList(ids []string) string {
	if len(ids) > 15 {
		return strings.Join(ids[:15], ", ") + fmt.Sprintf(", … (%d in all)", len(ids))
	}
	return strings.Join(ids, ", ")
}

// assertSameSet fails unless got and want hold the same ids (no duplicates in got).
func assertSameSet(t testing.TB, query string, got, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("%s: %s returned twice", query, id)
		}
		seen[id] = true
	}
	missing, extra := setDiff(got, want)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: got %d results, want %d\n  missing: [%s]\n  extra:   [%s]",
			query, len(got), len(want), clipList(missing), clipList(extra))
	}
}

// ---- Patient compartment (CompartmentDefinition-patient, R4) ----

// patientCompartment lists, for the resource types in Synthea, the
// reference elements that put a resource into a Patient's compartment
// (the compartment definition's parameters, resolved to their paths).
var patientCompartment = map[string][][]string{
	"AllergyIntolerance":   {{"patient"}, {"recorder"}, {"asserter"}},
	"CarePlan":             {{"subject"}, {"activity", "detail", "performer"}},
	"Claim":                {{"patient"}, {"payee", "party"}},
	"Condition":            {{"subject"}, {"asserter"}},
	"DiagnosticReport":     {{"subject"}},
	"Encounter":            {{"subject"}},
	"ExplanationOfBenefit": {{"patient"}, {"payee", "party"}},
	"Goal":                 {{"subject"}},
	"ImagingStudy":         {{"subject"}},
	"Immunization":         {{"patient"}},
	"MedicationRequest":    {{"subject"}},
	"Observation":          {{"subject"}, {"performer"}},
	"Procedure":            {{"subject"}, {"performer", "actor"}},
}

// inPatientCompartment reports whether r belongs to Patient/pid's compartment.
func inPatientCompartment(typ string, r res, pid string) bool {
	for _, path := range patientCompartment[typ] {
		if hasRef(r, "Patient/"+pid, path...) {
			return true
		}
	}
	return false
}
