package search

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/fhir"
)

// Limits bound the work one search may ask of the database. Each ANDed
// parameter becomes a join or a probe, each ORed value a branch, each sort
// key a correlated lookup per candidate: unbounded, a single request could
// hold a PostgreSQL backend for minutes (100 ANDed name terms once took
// 44 s to plan). Beyond a limit Parse answers 400. A zero field takes the
// default below.
type Limits struct {
	// Params bounds the search parameters of one request, every
	// occurrence counted (name=a&name=b is two).
	Params int
	// AndPerParam bounds the occurrences of one parameter (ANDed values).
	AndPerParam int
	// OrValues bounds the comma-separated values of one occurrence, and
	// of all occurrences of all parameters together.
	OrValues int
	// SortKeys bounds the keys of _sort.
	SortKeys int
	// Includes bounds the _include and _revinclude values together.
	Includes int
}

// The default limits: well above what real clients send (Inferno's US Core
// searches use at most four parameters, two sort keys; a client resolving a
// code list may OR a few hundred codes) and well below what hurts the
// database (10 × 1,000 ORed name prefixes took 3.8 s on 53k resources).
const (
	DefaultMaxParams      = 40
	DefaultMaxAndPerParam = 10
	DefaultMaxOrValues    = 1000
	DefaultMaxSortKeys    = 8
	DefaultMaxIncludes    = 16
)

func (l Limits) withDefaults() Limits {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.Params, DefaultMaxParams)
	set(&l.AndPerParam, DefaultMaxAndPerParam)
	set(&l.OrValues, DefaultMaxOrValues)
	set(&l.SortKeys, DefaultMaxSortKeys)
	set(&l.Includes, DefaultMaxIncludes)
	return l
}

func tooCostly(format string, args ...any) *fhir.Error {
	return fhir.NewError(fhir.BadRequest, "too-costly", fmt.Sprintf(format, args...))
}

// checkLimits rejects a request that asks for more work than l allows,
// before any value is parsed.
func checkLimits(params url.Values, l Limits) error {
	total, values, includes := 0, 0, 0
	for name, vals := range params {
		switch {
		case isPaging(name):
			continue
		case name == "_sort":
			n := 0
			for _, v := range vals {
				n += len(splitValues(v))
			}
			if n > l.SortKeys {
				return tooCostly("_sort has %d keys; at most %d are allowed", n, l.SortKeys)
			}
			continue
		case isInclude(name):
			includes += len(vals)
			continue
		}
		// The same condition repeated is parsed once, so it counts once.
		vals = distinct(vals)
		for _, v := range vals {
			n := len(splitValues(v))
			if n > l.OrValues {
				return tooCostly("search parameter %q has %d comma-separated values; at most %d are allowed", name, n, l.OrValues)
			}
			values += n
		}
		if len(vals) > l.AndPerParam {
			return tooCostly("search parameter %q is repeated %d times; at most %d are allowed", name, len(vals), l.AndPerParam)
		}
		total += len(vals)
	}
	if total > l.Params {
		return tooCostly("the search has %d parameters; at most %d are allowed", total, l.Params)
	}
	if values > l.OrValues {
		return tooCostly("the search has %d values in all; at most %d are allowed", values, l.OrValues)
	}
	if includes > l.Includes {
		return tooCostly("the search has %d _include/_revinclude values; at most %d are allowed", includes, l.Includes)
	}
	return nil
}

// distinct returns vals without repeats, in first-seen order (a map past
// a handful, so a URL of 100,000 repeats costs linear time).
func distinct(vals []string) []string {
	if len(vals) < 2 {
		return vals
	}
	out := make([]string, 0, min(len(vals), 16))
	if len(vals) <= 16 {
		for _, v := range vals {
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	seen := make(map[string]bool, len(vals))
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// isPaging reports the parameters that shape a page and cost nothing per value.
func isPaging(name string) bool {
	switch name {
	case "_count", "_total", "_summary", "_elements", "_cursor", "_format", "_pretty", "_type":
		return true
	}
	return false
}

func isInclude(name string) bool {
	base, _, _ := strings.Cut(name, ":")
	return base == "_include" || base == "_revinclude"
}

// checkText rejects names and values PostgreSQL cannot hold as text (NUL,
// invalid UTF-8): they could never match, and reaching the database they
// would be an error there instead of the client's.
func checkText(params url.Values) error {
	for name, vals := range params {
		if !fhir.StorableText(name) {
			return badRequest("search parameter name %q is not valid UTF-8 text", name)
		}
		for _, v := range vals {
			if !fhir.StorableText(v) {
				return badRequest("the value of search parameter %q is not valid UTF-8 text (NUL or invalid bytes)", name)
			}
		}
	}
	return nil
}

// resultParameter reports the search result parameters (R4 §3.1.1.5): they
// shape what a search returns and select nothing.
func resultParameter(name string) bool {
	base, _, _ := strings.Cut(name, ":")
	switch base {
	case "_count", "_sort", "_elements", "_summary", "_total", "_include", "_revinclude",
		"_contained", "_containedType", "_cursor", "_type", "_page", "_offset":
		return true
	}
	return false
}

// ParseCondition parses the criteria of a conditional interaction
// (If-None-Exist, conditional update, patch and delete, a transaction's
// conditional references). A condition is search parameters only: a result
// parameter would change which of several matches is seen (_count=1 picks
// one, _count=0 none), so it is a 400, as is a condition that selects
// nothing (it would match every resource). Unknown or unsupported
// parameters are errors too: ignoring one would widen the match.
// _format and _pretty are transport parameters and are dropped; the
// returned values are the condition as parsed, for a lock key.
func ParseCondition(typ string, params url.Values, opts Options) (*Query, url.Values, error) {
	cond := url.Values{}
	for name, vals := range params {
		switch {
		case name == "_format" || name == "_pretty":
			continue
		case resultParameter(name):
			return nil, nil, badRequest("%s is a result parameter, not a search criterion: a condition takes search parameters only", name)
		}
		cond[name] = vals
	}
	if len(cond) == 0 {
		return nil, nil, badRequest("a conditional interaction needs search criteria: without them it would match every %s", typ)
	}
	opts.Strict = true
	q, err := Parse(typ, cond, opts)
	if err != nil {
		return nil, nil, err
	}
	if len(q.Params) == 0 {
		return nil, nil, badRequest("a conditional interaction needs search criteria: without them it would match every %s", typ)
	}
	return q, cond, nil
}

// decimalRE is FHIR's decimal grammar (R4 datatypes, decimal): Go's own
// number parsers also take 0x10, 0x1p4 and 1_000.
var decimalRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// maxDecimalExponent bounds a search number's magnitude and precision: a
// value such as 1e200000 or 1e-16384 is grammatical but out of what
// PostgreSQL's numeric holds, and would be a database error instead of the
// client's. Stored decimals have the same bound, so no value past it can
// match anything.
const maxDecimalExponent = fhir.MaxDecimalExponent

// checkDecimal checks s against the grammar and returns its exponent and
// the digits before and after its point.
func checkDecimal(s string) (exp, intDigits, fracDigits int, err error) {
	if len(s) > 2*maxDecimalExponent || !decimalRE.MatchString(s) {
		return 0, 0, 0, errors.New("not a FHIR decimal (-?digits[.digits][e[+-]digits])")
	}
	mant := s
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > maxDecimalExponent || e < -maxDecimalExponent {
			return 0, 0, 0, fmt.Errorf("exponent out of range (at most %d either way)", maxDecimalExponent)
		}
		exp = e
	}
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	intDigits, fracDigits = len(intPart), len(frac)
	if intDigits+exp > maxDecimalExponent || fracDigits-exp > maxDecimalExponent {
		return 0, 0, 0, fmt.Errorf("out of range (at most %d digits either side of the point)", maxDecimalExponent)
	}
	return exp, intDigits, fracDigits, nil
}
