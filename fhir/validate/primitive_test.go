package validate

import (
	"regexp"
	"testing"
	"time"
)

// The date and time checks are hand-written for speed; these tests hold
// them to google/fhir's definition: its regexes, then Go's time.Parse.
var (
	dateRE     = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1]))?)?$`)
	dateTimeRE = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	instantRE  = regexp.MustCompile(`^-?[0-9]{4}-(0[1-9]|1[0-2])-(0[0-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
	timeRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?$`)
)

func parses(s string, layouts ...string) bool {
	for _, l := range layouts {
		if _, err := time.Parse(l, s); err == nil {
			return true
		}
	}
	return false
}

func googleDate(s string) bool {
	return dateRE.MatchString(s) && parses(s, "2006-01-02", "2006-01", "2006")
}
func googleDateTime(s string) bool {
	return dateTimeRE.MatchString(s) && parses(s, "2006-01-02T15:04:05-07:00", "2006-01-02T15:04:05Z", "2006-01-02", "2006-01", "2006")
}
func googleInstant(s string) bool {
	return instantRE.MatchString(s) && parses(s, "2006-01-02T15:04:05Z", "2006-01-02T15:04:05-07:00")
}
func googleTime(s string) bool { return timeRE.MatchString(s) && parses(s, "15:04:05") }

var dateInputs = []string{
	"2020", "0000", "-2020", "202", "20201", "2020-", "2020-00", "2020-01", "2020-12", "2020-13", "2020-1",
	"2020-02-29", "2021-02-29", "1900-02-29", "2000-02-29", "2020-02-30", "2020-04-31", "2020-01-00", "2020-01-31", "2020-01-32",
	"2020-01-01T", "2020-01-01T10:00", "2020-01-01T10:00Z", "2020-01-01T10:00:00", "2020-01-01T10:00:00Z", "2020-01-01T23:59:59.999999999999Z",
	"2020-01-01T24:00:00Z", "2020-01-01T10:60:00Z", "2020-01-01T10:00:60Z", "2020-01-01T10:00:00.Z", "2020-01-01T10:00:00+14:00",
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
			{"date", validDate(b), googleDate(s)},
			{"dateTime", validDateTime(b), googleDateTime(s)},
			{"instant", validInstant(b), googleInstant(s)},
			{"time", validTime(b), googleTime(s)},
		} {
			if c.ours != c.ref {
				t.Errorf("%s %q: ours %v, google/fhir %v", c.name, s, c.ours, c.ref)
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
		if validDate(b) != googleDate(s) || validDateTime(b) != googleDateTime(s) || validInstant(b) != googleInstant(s) || validTime(b) != googleTime(s) {
			t.Fatalf("%q: date %v/%v dateTime %v/%v instant %v/%v time %v/%v", s, validDate(b), googleDate(s),
				validDateTime(b), googleDateTime(s), validInstant(b), googleInstant(s), validTime(b), googleTime(s))
		}
	})
}
