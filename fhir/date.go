package fhir

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// ParseDateRange parses a FHIR date, dateTime or instant (as used by search
// and history parameters) and returns the half-open interval [start, end)
// that its precision covers: "2024" covers the whole year. A time without a
// zone is taken as UTC.
func ParseDateRange(s string) (start, end time.Time, err error) {
	var m dateParts
	if !m.match(s) {
		return start, end, fmt.Errorf("invalid date/time %q: expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]", s)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		if loc = zoneLocation(z); loc == nil {
			return start, end, fmt.Errorf("invalid time zone in %q", s)
		}
	}
	num := func(i int, def int) int {
		if m[i] == "" {
			return def
		}
		return atoi(m[i])
	}
	year, month, day := num(1, 0), num(2, 1), num(3, 1)
	hour, minute, sec := num(4, 0), num(5, 0), num(6, 0)
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return start, end, fmt.Errorf("invalid date/time %q: field out of range", s)
	}
	var nanos int
	if f := m[7]; f != "" {
		nanos = num(7, 0) * pow10(9-len(f))
	}
	start = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	if start.Day() != day {
		return start, end, fmt.Errorf("invalid date %q: no such day", s)
	}
	switch {
	case m[2] == "":
		end = start.AddDate(1, 0, 0)
	case m[3] == "":
		end = start.AddDate(0, 1, 0)
	case m[4] == "":
		end = start.AddDate(0, 0, 1)
	case m[6] == "":
		end = start.Add(time.Minute)
	case m[7] == "":
		end = start.Add(time.Second)
	default:
		end = start.Add(time.Duration(pow10(9 - len(m[7]))))
	}
	return start.UTC(), end.UTC(), nil
}

// dateParts are the submatches of the FHIR date/time grammar
//
//	^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$
//
// as regexp's FindStringSubmatch numbers them. Matched by hand: the regexp
// was a large share of indexing a resource.
type dateParts [9]string

func (m *dateParts) match(s string) bool {
	i := 0
	// digits takes n ASCII digits at i into m[g].
	digits := func(g, n int) bool {
		if i+n > len(s) {
			return false
		}
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return false
			}
		}
		m[g] = s[i : i+n]
		i += n
		return true
	}
	// lit takes byte c at i.
	lit := func(c byte) bool {
		if i < len(s) && s[i] == c {
			i++
			return true
		}
		return false
	}
	if !digits(1, 4) {
		return false
	}
	if i == len(s) {
		return true
	}
	if !lit('-') || !digits(2, 2) || i == len(s) {
		return i == len(s) && m[2] != ""
	}
	if !lit('-') || !digits(3, 2) || i == len(s) {
		return i == len(s) && m[3] != ""
	}
	if !lit('T') || !digits(4, 2) || !lit(':') || !digits(5, 2) {
		return false
	}
	if lit(':') {
		if !digits(6, 2) {
			return false
		}
		if lit('.') {
			j := i
			for i < len(s) && i-j < 9 && '0' <= s[i] && s[i] <= '9' {
				i++
			}
			if i == j {
				return false
			}
			m[7] = s[j:i]
		}
	}
	switch {
	case i == len(s):
		return true
	case s[i] == 'Z':
		m[8] = s[i : i+1]
		i++
	case s[i] == '+' || s[i] == '-':
		j := i
		i++
		if !digits(0, 2) || !lit(':') || !digits(0, 2) {
			return false
		}
		m[0], m[8] = "", s[j:i]
	}
	return i == len(s)
}

// atoi reads a string of ASCII digits (at most 9).
func atoi(s string) int {
	n := 0
	for _, c := range []byte(s) {
		n = n*10 + int(c-'0')
	}
	return n
}

// zoneCache maps a zone offset ("+05:00") to the Location time.Parse gives
// it, which is all ParseDateRange used time.Parse for. time.Parse allocates
// a Location per call; a few zones cover all data. It is valid while
// time.Local is the Location it was built with (Parse may return Local).
var zoneCache atomic.Pointer[zones]

type zones struct {
	local *time.Location
	m     map[string]*time.Location
}

// maxZones bounds zoneCache (copied on every addition).
const maxZones = 64

// zoneLocation returns time.Parse("-07:00", z)'s Location, nil if it fails.
func zoneLocation(z string) *time.Location {
	c := zoneCache.Load()
	if c != nil && c.local == time.Local {
		if loc, ok := c.m[z]; ok {
			return loc
		}
	}
	t, err := time.Parse("-07:00", z)
	if err != nil {
		return nil
	}
	loc := t.Location()
	if c == nil || c.local != time.Local {
		c = &zones{local: time.Local}
	}
	if len(c.m) < maxZones {
		m := make(map[string]*time.Location, len(c.m)+1)
		for k, v := range c.m {
			m[k] = v
		}
		m[strings.Clone(z)] = loc // z may be a slice of a large document
		zoneCache.Store(&zones{local: c.local, m: m})
	}
	return loc
}

func pow10(n int) int {
	p := 1
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}
