package fhir

import (
	"fmt"
	"regexp"
	"time"
)

var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// ParseDateRange parses a FHIR date, dateTime or instant (as used by search
// and history parameters) and returns the half-open interval [start, end)
// that its precision covers: "2024" covers the whole year. A time without a
// zone is taken as UTC.
func ParseDateRange(s string) (start, end time.Time, err error) {
	m := dateRE.FindStringSubmatch(s)
	if m == nil {
		return start, end, fmt.Errorf("invalid date/time %q: expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]", s)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		t, err := time.Parse("-07:00", z)
		if err != nil {
			return start, end, fmt.Errorf("invalid time zone in %q", s)
		}
		loc = t.Location()
	}
	num := func(i int, def int) int {
		if m[i] == "" {
			return def
		}
		var n int
		fmt.Sscanf(m[i], "%d", &n)
		return n
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

func pow10(n int) int {
	p := 1
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}
