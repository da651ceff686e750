package shape_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir/shape"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/internal/testenv"
)

// patientExample and observationExample are Patient-example.json and
// Observation-example.json from hl7.fhir.r4.examples@4.0.1, byte for byte
// (pretty-printed, which makes "nested bytes untouched" observable). They
// are inlined so that these tests need neither the package nor npm.
const patientExample = `{
  "resourceType": "Patient",
  "id": "example",
  "text": {
    "status": "generated",
    "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n\t\t\t<table>\n\t\t\t\t<tbody>\n\t\t\t\t\t<tr>\n\t\t\t\t\t\t<td>Name</td>\n\t\t\t\t\t\t<td>Peter James \n              <b>Chalmers</b> (&quot;Jim&quot;)\n            </td>\n\t\t\t\t\t</tr>\n\t\t\t\t\t<tr>\n\t\t\t\t\t\t<td>Address</td>\n\t\t\t\t\t\t<td>534 Erewhon, Pleasantville, Vic, 3999</td>\n\t\t\t\t\t</tr>\n\t\t\t\t\t<tr>\n\t\t\t\t\t\t<td>Contacts</td>\n\t\t\t\t\t\t<td>Home: unknown. Work: (03) 5555 6473</td>\n\t\t\t\t\t</tr>\n\t\t\t\t\t<tr>\n\t\t\t\t\t\t<td>Id</td>\n\t\t\t\t\t\t<td>MRN: 12345 (Acme Healthcare)</td>\n\t\t\t\t\t</tr>\n\t\t\t\t</tbody>\n\t\t\t</table>\n\t\t</div>"
  },
  "identifier": [
    {
      "use": "usual",
      "type": {
        "coding": [
          {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": "MR"
          }
        ]
      },
      "system": "urn:oid:1.2.36.146.595.217.0.1",
      "value": "12345",
      "period": {
        "start": "2001-05-06"
      },
      "assigner": {
        "display": "Acme Healthcare"
      }
    }
  ],
  "active": true,
  "name": [
    {
      "use": "official",
      "family": "Chalmers",
      "given": [
        "Peter",
        "James"
      ]
    },
    {
      "use": "usual",
      "given": [
        "Jim"
      ]
    },
    {
      "use": "maiden",
      "family": "Windsor",
      "given": [
        "Peter",
        "James"
      ],
      "period": {
        "end": "2002"
      }
    }
  ],
  "telecom": [
    {
      "use": "home"
    },
    {
      "system": "phone",
      "value": "(03) 5555 6473",
      "use": "work",
      "rank": 1
    },
    {
      "system": "phone",
      "value": "(03) 3410 5613",
      "use": "mobile",
      "rank": 2
    },
    {
      "system": "phone",
      "value": "(03) 5555 8834",
      "use": "old",
      "period": {
        "end": "2014"
      }
    }
  ],
  "gender": "male",
  "birthDate": "1974-12-25",
  "_birthDate": {
    "extension": [
      {
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
        "valueDateTime": "1974-12-25T14:35:45-05:00"
      }
    ]
  },
  "deceasedBoolean": false,
  "address": [
    {
      "use": "home",
      "type": "both",
      "text": "534 Erewhon St PeasantVille, Rainbow, Vic  3999",
      "line": [
        "534 Erewhon St"
      ],
      "city": "PleasantVille",
      "district": "Rainbow",
      "state": "Vic",
      "postalCode": "3999",
      "period": {
        "start": "1974-12-25"
      }
    }
  ],
  "contact": [
    {
      "relationship": [
        {
          "coding": [
            {
              "system": "http://terminology.hl7.org/CodeSystem/v2-0131",
              "code": "N"
            }
          ]
        }
      ],
      "name": {
        "family": "du Marché",
        "_family": {
          "extension": [
            {
              "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
              "valueString": "VV"
            }
          ]
        },
        "given": [
          "Bénédicte"
        ]
      },
      "telecom": [
        {
          "system": "phone",
          "value": "+33 (237) 998327"
        }
      ],
      "address": {
        "use": "home",
        "type": "both",
        "line": [
          "534 Erewhon St"
        ],
        "city": "PleasantVille",
        "district": "Rainbow",
        "state": "Vic",
        "postalCode": "3999",
        "period": {
          "start": "1974-12-25"
        }
      },
      "gender": "female",
      "period": {
        "start": "2012"
      }
    }
  ],
  "managingOrganization": {
    "reference": "Organization/1"
  }
}`

const observationExample = `{
  "resourceType": "Observation",
  "id": "example",
  "text": {
    "status": "generated",
    "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Generated Narrative with Details</b></p><p><b>id</b>: example</p><p><b>status</b>: final</p><p><b>category</b>: Vital Signs <span>(Details : {http://terminology.hl7.org/CodeSystem/observation-category code 'vital-signs' = 'Vital Signs', given as 'Vital Signs'})</span></p><p><b>code</b>: Body Weight <span>(Details : {LOINC code '29463-7' = 'Body weight', given as 'Body Weight'}; {LOINC code '3141-9' = 'Body weight Measured', given as 'Body weight Measured'}; {SNOMED CT code '27113001' = 'Body weight', given as 'Body weight'}; {http://acme.org/devices/clinical-codes code 'body-weight' = 'body-weight', given as 'Body Weight'})</span></p><p><b>subject</b>: <a>Patient/example</a></p><p><b>encounter</b>: <a>Encounter/example</a></p><p><b>effective</b>: 28/03/2016</p><p><b>value</b>: 185 lbs<span> (Details: UCUM code [lb_av] = 'lb_av')</span></p></div>"
  },
  "status": "final",
  "category": [
    {
      "coding": [
        {
          "system": "http://terminology.hl7.org/CodeSystem/observation-category",
          "code": "vital-signs",
          "display": "Vital Signs"
        }
      ]
    }
  ],
  "code": {
    "coding": [
      {
        "system": "http://loinc.org",
        "code": "29463-7",
        "display": "Body Weight"
      },
      {
        "system": "http://loinc.org",
        "code": "3141-9",
        "display": "Body weight Measured"
      },
      {
        "system": "http://snomed.info/sct",
        "code": "27113001",
        "display": "Body weight"
      },
      {
        "system": "http://acme.org/devices/clinical-codes",
        "code": "body-weight",
        "display": "Body Weight"
      }
    ]
  },
  "subject": {
    "reference": "Patient/example"
  },
  "encounter": {
    "reference": "Encounter/example"
  },
  "effectiveDateTime": "2016-03-28",
  "valueQuantity": {
    "value": 185,
    "unit": "lbs",
    "system": "http://unitsofmeasure.org",
    "code": "[lb_av]"
  }
}`

const subsetted = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}`

// decodeTop splits an object into its top-level properties.
func decodeTop(t testing.TB, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, b)
	}
	return m
}

func keysOf(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// topOrder lists the top-level keys in the order they appear.
func topOrder(t testing.TB, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// tags returns meta.tag of a shaped resource as compact JSON strings.
func tags(t testing.TB, out []byte) []string {
	t.Helper()
	var r struct {
		Meta struct {
			Tag []json.RawMessage `json:"tag"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, tag := range r.Meta.Tag {
		var b bytes.Buffer
		if err := json.Compact(&b, tag); err != nil {
			t.Fatal(err)
		}
		s = append(s, b.String())
	}
	return s
}

// hasSubsetted reports whether meta.tag holds the SUBSETTED coding in any
// spelling (key order, whitespace, extra properties).
func hasSubsetted(out []byte) bool {
	var r struct {
		Meta map[string]json.RawMessage
	}
	var tags []map[string]json.RawMessage
	if json.Unmarshal(out, &r) != nil || json.Unmarshal(r.Meta["tag"], &tags) != nil {
		return false
	}
	for _, tag := range tags {
		var system, code string
		if json.Unmarshal(tag["system"], &system) == nil && json.Unmarshal(tag["code"], &code) == nil &&
			system == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" && code == "SUBSETTED" {
			return true
		}
	}
	return false
}

// checkShaped asserts what every shaped resource satisfies: resourceType
// first then sorted keys, the SUBSETTED tag, and every kept property but
// meta byte-identical to the input's.
func checkShaped(t testing.TB, in, out []byte) map[string]json.RawMessage {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("invalid JSON:\n%s", out)
	}
	order := topOrder(t, out)
	if len(order) == 0 || order[0] != "resourceType" || !slices.IsSorted(order[1:]) {
		t.Errorf("key order %v: want resourceType first, then sorted", order)
	}
	if !slices.Contains(tags(t, out), subsetted) {
		t.Errorf("no SUBSETTED tag in %s", out)
	}
	src, got := decodeTop(t, in), decodeTop(t, out)
	for k, v := range got {
		if k == "meta" {
			continue
		}
		if !bytes.Equal(v, src[k]) {
			t.Errorf("%s changed:\n got %s\nwant %s", k, v, src[k])
		}
	}
	return got
}

func TestSummaryModes(t *testing.T) {
	for _, tc := range []struct {
		name, rt, resource, mode string
		want                     []string
	}{
		{"patient true", "Patient", patientExample, "true", []string{
			"_birthDate", "active", "address", "birthDate", "deceasedBoolean", "gender", "id",
			"identifier", "managingOrganization", "meta", "name", "resourceType", "telecom"}},
		{"patient text", "Patient", patientExample, "text", []string{"id", "meta", "resourceType", "text"}},
		{"patient data", "Patient", patientExample, "data", []string{
			"_birthDate", "active", "address", "birthDate", "contact", "deceasedBoolean", "gender", "id",
			"identifier", "managingOrganization", "meta", "name", "resourceType", "telecom"}},
		// category is not summary in R4; status and code are mandatory.
		{"observation true", "Observation", observationExample, "true", []string{
			"code", "effectiveDateTime", "encounter", "id", "meta", "resourceType", "status", "subject", "valueQuantity"}},
		{"observation text", "Observation", observationExample, "text", []string{
			"code", "id", "meta", "resourceType", "status", "text"}},
		{"observation data", "Observation", observationExample, "data", []string{
			"category", "code", "effectiveDateTime", "encounter", "id", "meta", "resourceType", "status", "subject", "valueQuantity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := shape.Summary([]byte(tc.resource), tc.rt, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			got := checkShaped(t, []byte(tc.resource), out)
			if keys := keysOf(got); !slices.Equal(keys, tc.want) {
				t.Errorf("keys = %v\nwant   %v", keys, tc.want)
			}
			if tags := tags(t, out); len(tags) != 1 {
				t.Errorf("meta.tag = %v, want only SUBSETTED", tags)
			}
		})
	}
}

func TestSummaryFalseIsIdentity(t *testing.T) {
	in := []byte(patientExample)
	out, err := shape.Summary(in, "Patient", "false")
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("_summary=false changed the resource (err %v)", err)
	}
}

func TestSummaryKeepsModifierExtension(t *testing.T) {
	in := []byte(`{"resourceType":"Patient","id":"m","modifierExtension":[{"url":"http://example.org/x","valueBoolean":true}],"extension":[{"url":"http://example.org/y","valueBoolean":true}],"photo":[]}`)
	out, err := shape.Summary(in, "Patient", "true")
	if err != nil {
		t.Fatal(err)
	}
	got := checkShaped(t, in, out)
	if want := []string{"id", "meta", "modifierExtension", "resourceType"}; !slices.Equal(keysOf(got), want) {
		t.Errorf("keys = %v, want %v", keysOf(got), want)
	}
}

func TestSummaryKeepsMandatoryNonSummary(t *testing.T) {
	// AuditEvent.agent and .source are min 1 but not isSummary in R4.
	in := []byte(`{"resourceType":"AuditEvent","id":"a","type":{"code":"rest"},"recorded":"2020-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}},"entity":[{"what":{"display":"y"}}]}`)
	out, err := shape.Summary(in, "AuditEvent", "true")
	if err != nil {
		t.Fatal(err)
	}
	if keys, want := keysOf(checkShaped(t, in, out)), []string{"agent", "id", "meta", "recorded", "resourceType", "source", "type"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
}

func TestExistingTagsKept(t *testing.T) {
	const meta = `"meta": {
    "versionId": "3",
    "tag": [ {"system": "http://example.org/tags", "code": "vip", "display": "VIP"} ],
    "security": [{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]
  },`
	in := []byte(strings.Replace(patientExample, `"id": "example",`, `"id": "example",`+"\n  "+meta, 1))
	for _, mode := range []string{"true", "text", "data"} {
		out, err := shape.Summary(in, "Patient", mode)
		if err != nil {
			t.Fatal(err)
		}
		checkShaped(t, in, out)
		want := []string{`{"system":"http://example.org/tags","code":"vip","display":"VIP"}`, subsetted}
		if got := tags(t, out); !slices.Equal(got, want) {
			t.Errorf("%s: meta.tag = %v, want %v", mode, got, want)
		}
		m := decodeTop(t, decodeTop(t, out)["meta"])
		if string(m["versionId"]) != `"3"` || !bytes.Contains(m["security"], []byte(`"code":"R"`)) {
			t.Errorf("%s: meta lost its other properties: %s", mode, decodeTop(t, out)["meta"])
		}
		// Shaping a shaped resource adds no second SUBSETTED tag.
		again, err := shape.Summary(out, "Patient", mode)
		if err != nil || !bytes.Equal(again, out) {
			t.Errorf("%s: not idempotent (err %v):\n%s\n%s", mode, err, out, again)
		}
	}
}

func TestSubsettedNotDuplicated(t *testing.T) {
	// Already tagged, spelled differently: left as it is.
	in := []byte(`{"resourceType":"Patient","meta":{"tag":[{"code":"SUBSETTED","display":"subsetted","system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue"}]},"gender":"male"}`)
	out, err := shape.Summary(in, "Patient", "true")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","gender":"male","meta":{"tag":[{"code":"SUBSETTED","display":"subsetted","system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue"}]}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// A case variant of "system" is not the SUBSETTED coding.
	in = []byte(`{"resourceType":"Patient","meta":{"tag":[{"sYstem":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}]}}`)
	if out, err = shape.Summary(in, "Patient", "data"); err != nil || len(tags(t, out)) != 2 {
		t.Errorf("case variant: err %v, tags %v", err, tags(t, out))
	}
}

func TestSummaryErrors(t *testing.T) {
	for _, mode := range []string{"count", "", "TRUE", "bogus"} {
		if _, err := shape.Summary([]byte(patientExample), "Patient", mode); !errors.Is(err, shape.ErrMode) {
			t.Errorf("mode %q: err = %v, want ErrMode", mode, err)
		}
	}
	for _, tc := range []struct{ name, rt, in string }{
		{"wrong type", "Observation", patientExample},
		{"unknown type", "Nope", `{"resourceType":"Nope"}`},
		{"no resourceType", "Patient", `{"id":"x"}`},
		{"resourceType not a string", "Patient", `{"resourceType":1}`},
		{"not an object", "Patient", `["Patient"]`},
		{"null", "Patient", `null`},
		{"truncated", "Patient", patientExample[:100]},
		{"meta not an object", "Patient", `{"resourceType":"Patient","meta":[]}`},
		{"tag not an array", "Patient", `{"resourceType":"Patient","meta":{"tag":{}}}`},
		{"tag entry not an object", "Patient", `{"resourceType":"Patient","meta":{"tag":[1]}}`},
	} {
		if _, err := shape.Summary([]byte(tc.in), tc.rt, "true"); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestElements(t *testing.T) {
	for _, tc := range []struct {
		name, rt, resource string
		elements, want     []string
	}{
		// A choice is named by its prefix; status and code are mandatory.
		{"choice", "Observation", observationExample, []string{"value"},
			[]string{"code", "id", "meta", "resourceType", "status", "valueQuantity"}},
		{"effective", "Observation", observationExample, []string{"effective", "category"},
			[]string{"category", "code", "effectiveDateTime", "id", "meta", "resourceType", "status"}},
		// birthDate takes its _birthDate extension sibling; a dotted name
		// keeps its top-level element; unknown names match nothing.
		{"patient", "Patient", patientExample, []string{"birthDate", " name.given", "bogus", ""},
			[]string{"_birthDate", "birthDate", "id", "meta", "name", "resourceType"}},
		{"none", "Patient", patientExample, nil, []string{"id", "meta", "resourceType"}},
		// Listing the element behind a choice's JSON key does not work: only the prefix.
		{"json key", "Observation", observationExample, []string{"valueQuantity"},
			[]string{"code", "id", "meta", "resourceType", "status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := shape.Elements([]byte(tc.resource), tc.rt, tc.elements)
			if err != nil {
				t.Fatal(err)
			}
			got := checkShaped(t, []byte(tc.resource), out)
			if keys := keysOf(got); !slices.Equal(keys, tc.want) {
				t.Errorf("keys = %v\nwant   %v", keys, tc.want)
			}
		})
	}
	if _, err := shape.Elements([]byte(`{"resourceType":"Patient"`), "Patient", []string{"name"}); err == nil {
		t.Error("invalid JSON: no error")
	}
}

func TestNestedBytesUntouched(t *testing.T) {
	// The narrative keeps its escapes (\n, \t, \") exactly as stored, and
	// pretty-printing inside kept values survives.
	out, err := shape.Summary([]byte(patientExample), "Patient", "text")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(patientExample, `{`+"\n"+`    "status": "generated"`)
	j := strings.Index(patientExample, `</div>"`+"\n  }") + len(`</div>"`+"\n  }")
	if i < 0 || j < i || !bytes.Contains(out, []byte(patientExample[i:j])) {
		t.Errorf("text was re-encoded:\n%s", out)
	}
}

// TestOfficialExamples shapes every example resource of the R4 package in
// every mode and checks the invariants plus, for _summary=true, that only
// allowed elements remain.
func TestOfficialExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 5,300 examples")
	}
	dir := testenv.FHIRPackage(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(in) > 64<<10 {
			continue // 5,046 of 5,300 files; the big ones are definitions, slow and nothing new
		}
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(in, &head) != nil || !spec.IsResourceType(head.ResourceType) {
			continue
		}
		n++
		for _, mode := range []string{"true", "text", "data"} {
			out, err := shape.Summary(in, head.ResourceType, mode)
			if err != nil {
				t.Errorf("%s: %s: %v", filepath.Base(f), mode, err)
				continue
			}
			got := checkShaped(t, in, out)
			if mode != "true" {
				continue
			}
			for k := range got {
				e, ok := spec.ElementForKey(head.ResourceType, k)
				if k != "resourceType" && (!ok || !e.Summary && !e.Mandatory && e.Name != "modifierExtension") {
					t.Errorf("%s: _summary=true kept %s", filepath.Base(f), k)
				}
			}
		}
	}
	if n < 4000 {
		t.Errorf("only %d example resources found", n)
	}
}

func FuzzSummary(f *testing.F) {
	f.Add([]byte(patientExample), uint8(0))
	f.Add([]byte(observationExample), uint8(1))
	f.Add([]byte(`{"resourceType":"Patient","meta":{"tag":[`+subsetted+`]},"_gender":{},"valueX":1}`), uint8(2))
	f.Add([]byte(`{"resourceType":"Observation","meta":null,"valueString":"\u00e9","_valueString":{"id":"x"}}`), uint8(4))
	f.Add([]byte(`{"resourceType":"Patient","meta":{"tag":null},"":1,"_":2}`), uint8(5))
	modes := []string{"true", "text", "data", "false", "count", "elements"}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		rt := "Patient"
		if sel&0x80 != 0 {
			rt = "Observation"
		}
		mode := modes[int(sel&0x7f)%len(modes)]
		var out []byte
		var err error
		if mode == "elements" {
			out, err = shape.Elements(data, rt, []string{"value", "name", "birthDate.x"})
		} else {
			out, err = shape.Summary(data, rt, mode)
		}
		if err != nil || mode == "false" {
			return
		}
		if !json.Valid(out) || !bytes.HasPrefix(out, []byte(`{"resourceType":`)) || !hasSubsetted(out) {
			t.Fatalf("bad output for %q:\n%s", data, out)
		}
		// Shaping is idempotent: a second pass finds the tag and the same keys.
		var again []byte
		if mode == "elements" {
			again, err = shape.Elements(out, rt, []string{"value", "name", "birthDate.x"})
		} else {
			again, err = shape.Summary(out, rt, mode)
		}
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second pass differs (err %v):\n%s\n%s", err, out, again)
		}
	})
}
