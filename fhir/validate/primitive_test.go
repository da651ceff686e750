package validate

import (
	"regexp"
	"testing"
	"time"
)

// The date and time checks are hand-written for speed; these tests hold
// them to R4's regexes (StructureDefinition-date.json etc. of the R4
// package: no year 0000), then to Go's time.Parse, which google/fhir used
// too: a real calendar day, and no leap second (the regexes allow :60, which
// Ember rejects: a stored instant is a PostgreSQL timestamp, which has none).
var (
	year       = `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)`
	zoneRE     = `(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`
	dateRE     = regexp.MustCompile(`^` + year + `(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$`)
	dateTimeRE = regexp.MustCompile(`^` + year + `(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?` + zoneRE + `)?)?)?$`)
	instantRE  = regexp.MustCompile(`^` + year + `-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?` + zoneRE + `$`)
	timeRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$`)
)

func parses(s string, layouts ...string) bool {
	for _, l := range layouts {
		if _, err := time.Parse(l, s); err == nil {
			return true
		}
	}
	return false
}

func refDate(s string) bool {
	return dateRE.MatchString(s) && parses(s, "2006-01-02", "2006-01", "2006")
}
func refDateTime(s string) bool {
	return dateTimeRE.MatchString(s) && parses(s, "2006-01-02T15:04:05-07:00", "2006-01-02T15:04:05Z", "2006-01-02", "2006-01", "2006")
}
func refInstant(s string) bool {
	return instantRE.MatchString(s) && parses(s, "2006-01-02T15:04:05Z", "2006-01-02T15:04:05-07:00")
}
func refTime(s string) bool { return timeRE.MatchString(s) && parses(s, "15:04:05") }

var dateInputs = []string{
	"2020", "0000", "0001", "0010", "0100", "1000", "0000-01-01", "0000-01-01T00:00:00Z", "-2020", "202", "20201", "2020-", "2020-00", "2020-01", "2020-12", "2020-13", "2020-1",
	"2020-02-29", "2021-02-29", "1900-02-29", "2000-02-29", "2020-02-30", "2020-04-31", "2020-01-00", "2020-01-31", "2020-01-32",
	"2020-01-01T", "2020-01-01T10:00", "2020-01-01T10:00Z", "2020-01-01T10:00:00", "2020-01-01T10:00:00Z", "2020-01-01T23:59:59.999999999999Z",
	"2020-01-01T24:00:00Z", "2020-01-01T10:60:00Z", "2020-01-01T10:00:60Z", "2016-12-31T23:59:60Z", "23:59:60", "2020-01-01T10:00:00.Z", "2020-01-01T10:00:00+14:00",
	"2020-01-01T10:00:00+14:01", "2020-01-01T10:00:00-13:59", "2020-01-01T10:00:00+1300", "2020-01-01T10:00:00+13:60", "2020-01-01T10:00:00z",
	"2020-01T10:00:00Z", "2020T10:00:00Z", "10:00:00", "23:59:59.5", "24:00:00", "9:00:00", "10:00", "10:00:00Z", "10:00:00.",
	"２０２０", "2020-01-01 10:00:00Z", "2020-01-01T10:00:00.123+05:30",
}

func TestDateTimeMatchGoogle(t *testing.T) {
	for _, s := range dateInputs {
		b := []byte(s)
		for _, c := range []struct {
			name      string
			ours, ref bool
		}{
			{"date", validDate(b), refDate(s)},
			{"dateTime", validDateTime(b), refDateTime(s)},
			{"instant", validInstant(b), refInstant(s)},
			{"time", validTime(b), refTime(s)},
		} {
			if c.ours != c.ref {
				t.Errorf("%s %q: ours %v, reference %v", c.name, s, c.ours, c.ref)
			}
		}
	}
}

func FuzzDateTime(f *testing.F) {
	for _, s := range dateInputs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		if validDate(b) != refDate(s) || validDateTime(b) != refDateTime(s) || validInstant(b) != refInstant(s) || validTime(b) != refTime(s) {
			t.Fatalf("%q: date %v/%v dateTime %v/%v instant %v/%v time %v/%v", s, validDate(b), refDate(s),
				validDateTime(b), refDateTime(s), validInstant(b), refInstant(s), validTime(b), refTime(s))
		}
	})
}
