package validate

import (
	"encoding/base64"
	"encoding/json"
	"math/rand"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emberfhir/ember/internal/testenv"
)

// specRegexes reads each R4 primitive's regex from the official
// StructureDefinitions (Bundle-types.json: the regex extension on the type
// of the primitive's value element), so this test checks the validator
// against the specification's text, not a copy of it.
func specRegexes(t *testing.T) map[string]*regexp.Regexp {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.FHIRPackage(t), "Bundle-types.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ID       string `json:"id"`
				Kind     string `json:"kind"`
				Snapshot struct {
					Element []struct {
						Path string `json:"path"`
						Type []struct {
							Extension []struct {
								URL         string `json:"url"`
								ValueString string `json:"valueString"`
							} `json:"extension"`
						} `json:"type"`
					} `json:"element"`
				} `json:"snapshot"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	out := map[string]*regexp.Regexp{}
	for _, e := range b.Entry {
		r := e.Resource
		if r.Kind != "primitive-type" {
			continue
		}
		for _, el := range r.Snapshot.Element {
			if el.Path != r.ID+".value" {
				continue
			}
			for _, ty := range el.Type {
				for _, x := range ty.Extension {
					if strings.HasSuffix(x.URL, "/regex") {
						out[r.ID] = regexp.MustCompile(`^(?:` + x.ValueString + `)$`)
					}
				}
			}
		}
	}
	return out
}

// beyondRegex is what R4 says about each primitive besides its regex, and
// Ember checks too; a value is valid exactly when it matches the regex and
// passes this. Each rule is from the spec's prose (datatypes.html) or from
// what the storage needs, never a departure from the regex in the
// accepting direction.
var beyondRegex = map[string]func(s string) bool{
	// "Strings SHALL NOT contain Unicode character points below 32, except
	// for u0009, u000D and u000A" and are at most 1 MB. (markdown: the
	// regex alone, as google/fhir, the differential oracle, has it.)
	"string": noControl,
	// A uri is a URI reference (RFC 3986): the regex \S* alone admits
	// "%zz", which no URI parser takes.
	"uri":       uriRef,
	"url":       uriRef,
	"canonical": uriRef,
	// Real calendar days; no leap second (a stored instant is a PostgreSQL
	// timestamp, which has none).
	"date":     func(s string) bool { return refDate(s) },
	"dateTime": func(s string) bool { return refDateTime(s) },
	"instant":  func(s string) bool { return refInstant(s) },
	"time":     func(s string) bool { return refTime(s) },
	// 32-bit: "integer ... -2,147,483,648..2,147,483,647".
	"integer":     int32Range,
	"positiveInt": int32Range,
	"unsignedInt": int32Range,
	// The groups of four must decode as padded base64 (RFC 4648).
	"base64Binary": func(s string) bool {
		_, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
			if strings.ContainsRune(" \t\n\f\r", r) {
				return -1
			}
			return r
		}, s))
		return err == nil
	},
	// (decimal: the regex is JSON's number grammar; the exponent limit that
	// PostgreSQL's numeric needs is fhir's strict scan's, before this.)
}

func noControl(s string) bool { return len(s) <= maxStringSize && badStringChar([]byte(s)) < 0 }

func uriRef(s string) bool {
	_, err := url.Parse(s)
	return err == nil
}

func int32Range(s string) bool {
	_, err := strconv.ParseInt(s, 10, 32)
	return err == nil
}

// primitiveInputs are written to exercise each regex's edges; random
// strings over the characters that matter are added below.
var primitiveInputs = []string{
	"a", "a b", "a  b", " a", "a ", "a\tb", "a\nb", "a\r\nb", "a\fb", "a\vb", "a\x01b", "a\x7fb", "é", "日本",
	"true", "false", "True", "0", "-0", "00", "01", "1", "+1", "-1", "1.0", "1.", ".5", "1e5", "1E+5", "1e-5", "1e1001", "2147483647", "2147483648", "-2147483648", "-2147483649",
	"QUJD", "QUJDRA==", "QUJDRA=", "QUJ", "QU JD", "QUJD\r\nREVG", " QUJD ", "QUJD\nREVG\n", "Q=JD", "A===", "QUJD\fREVG", "QUJD\vREVG", "QU/+", "QU_-",
	"urn:oid:1.2.3", "urn:oid:1", "urn:oid:3.1", "urn:oid:1.02", "urn:oid:0.0", "urn:oid:1.2.", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
	"http://x.org/a?b=c#d", "http://x.org/a b", "a/b", "%zz", "http://[::1]/", "http://h:port/", ":x", "urn:x:%41", "mailto:a@b",
	"abc-DEF.12", strings.Repeat("a", 64), strings.Repeat("a", 65), "a_b",
	"2020", "2020-02-29", "2021-02-29", "0000", "2020-01-01T10:00:00Z", "2020-01-01T10:00:00", "2020-01-01T10:00:00+14:00", "2016-12-31T23:59:60Z", "10:00:00", "24:00:00", "10:00:00.5",
}

// TestPrimitivesMatchR4Regexes holds every primitive's check to R4's regex
// plus beyondRegex, through the validator itself (an extension's value[x]
// takes every primitive type).
func TestPrimitivesMatchR4Regexes(t *testing.T) {
	res := specRegexes(t)
	names := []string{"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant", "integer",
		"markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid"}
	inputs := append([]string(nil), primitiveInputs...)
	rng := rand.New(rand.NewSource(16))
	const alphabet = "aZ09+/= \t\n\r\f\v\x01.-:%TZé"
	for range 3000 {
		n := 1 + rng.Intn(10)
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[rng.Intn(len(alphabet)-1)]) // é is two bytes: not cut
		}
		inputs = append(inputs, b.String())
	}
	for _, name := range names {
		re := res[name]
		if re == nil {
			t.Fatalf("no regex for %s in the R4 package", name)
		}
		member := "value" + strings.ToUpper(name[:1]) + name[1:]
		for _, s := range inputs {
			var jsonValue string
			switch name {
			case "boolean", "integer", "decimal", "positiveInt", "unsignedInt":
				if !jsonNumberOrBool(s) {
					continue // not expressible as the JSON type: the scanner's business
				}
				jsonValue = s
			default:
				q, _ := json.Marshal(s)
				jsonValue = string(q)
				if s == "" {
					continue // empty strings are the strict scan's
				}
			}
			want := re.MatchString(s)
			if f := beyondRegex[name]; want && f != nil {
				want = f(s)
			}
			body := `{"resourceType":"Patient","extension":[{"url":"http://example.org/x","` + member + `":` + jsonValue + `}]}`
			got := len(Resource([]byte(body))) == 0
			if got != want {
				t.Errorf("%s %q: valid=%v, R4 says %v", name, s, got, want)
			}
		}
	}
}

// jsonNumberOrBool reports whether s is a JSON number or literal, the only
// forms the numeric and boolean primitives take.
func jsonNumberOrBool(s string) bool {
	if s == "true" || s == "false" {
		return true
	}
	var n json.Number
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&n); err != nil || d.More() {
		return false
	}
	return string(n) == s
}
