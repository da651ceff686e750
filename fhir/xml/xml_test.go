package xml

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emberfhir/ember/internal/testenv"
)

const ns = ` xmlns="http://hl7.org/fhir"`

func TestMarshal(t *testing.T) {
	for name, tc := range map[string]struct{ json, xml string }{
		"order from the definitions": {
			`{"gender":"male","resourceType":"Patient","active":true,"id":"p"}`,
			`<Patient` + ns + `><id value="p"/><active value="true"/><gender value="male"/></Patient>`,
		},
		"decimals as written": {
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50e+3}}`,
			`<Observation` + ns + `><status value="final"/><code><text value="x"/></code><valueQuantity><value value="1.50e+3"/></valueQuantity></Observation>`,
		},
		"primitive arrays with nulls": {
			`{"resourceType":"Patient","name":[{"given":["a",null,"c"],"_given":[null,{"id":"b"},{"extension":[{"url":"u","valueInteger":-0}]}]}]}`,
			`<Patient` + ns + `><name><given value="a"/><given id="b"/><given value="c"><extension url="u"><valueInteger value="-0"/></extension></given></name></Patient>`,
		},
		"element id and Extension.url as attributes": {
			`{"resourceType":"Patient","name":[{"id":"n","family":"F"}],"extension":[{"url":"http://e","valueString":"v"}]}`,
			`<Patient` + ns + `><extension url="http://e"><valueString value="v"/></extension><name id="n"><family value="F"/></name></Patient>`,
		},
		"escaping": {
			`{"resourceType":"Patient","name":[{"family":"a\"b<c>&d\n\te\r'é"}]}`,
			`<Patient` + ns + `><name><family value="a&quot;b&lt;c&gt;&amp;d&#10;&#9;e&#13;'é"/></name></Patient>`,
		},
		"contained and narrative": {
			`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &amp; b<br/></p></div>"},"contained":[{"resourceType":"Organization","id":"o"}]}`,
			`<Patient` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>a &amp; b<br/></p></div></text><contained><Organization><id value="o"/></Organization></contained></Patient>`,
		},
		"narrative without its namespace or with an HTML entity": {
			`{"resourceType":"Patient","text":{"status":"generated","div":"<div><p class='x'>a&nbsp;b</p></div>"}}`,
			`<Patient` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p class="x">a` + "\u00a0" + `b</p></div></text></Patient>`,
		},
		"Parameters.parameter.resource": {
			`{"resourceType":"Parameters","parameter":[{"name":"r","resource":{"resourceType":"Basic","code":{"text":"t"}}}]}`,
			`<Parameters` + ns + `><parameter><name value="r"/><resource><Basic><code><text value="t"/></code></Basic></resource></parameter></Parameters>`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(nil, []byte(tc.json), false)
			if err != nil {
				t.Fatal(err)
			}
			want := `<?xml version="1.0" encoding="UTF-8"?>` + tc.xml
			if string(got) != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			if err := checkRules(got); err != nil {
				t.Fatalf("R4 XML rules: %v", err)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown member":         `{"resourceType":"Patient","colour":"blue"}`,
		"unknown resource":       `{"resourceType":"Colour"}`,
		"control character":      `{"resourceType":"Patient","name":[{"family":"a\u0001b"}]}`,
		"narrative with a tail":  `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">a</div><script/>"}}`,
		"narrative not XML":      `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a</div>"}}`,
		"narrative with a DTD":   `{"resourceType":"Patient","text":{"status":"generated","div":"<!DOCTYPE x><div xmlns=\"http://www.w3.org/1999/xhtml\">a</div>"}}`,
		"narrative, other space": `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><svg xmlns=\"http://www.w3.org/2000/svg\"/></div>"}}`,
	} {
		if out, err := Marshal(nil, []byte(doc), false); err == nil {
			t.Errorf("%s: Marshal wrote %s", name, out)
		}
	}
}

func TestUnmarshal(t *testing.T) {
	doc := `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Patient xmlns="http://hl7.org/fhir" xmlns:f="http://hl7.org/fhir">
  <f:id value="p"/>
  <text><status value="generated"/><h:div xmlns:h="http://www.w3.org/1999/xhtml"><h:p>x</h:p></h:div></text>
  <name><given value="a"/><given id="g"/><given value="c"/></name>
  <name><family value="F&#10;G"/></name>
  <multipleBirthInteger value="2"/>
</Patient>`
	got, err := Unmarshal(nil, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"p","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"},` +
		`"name":[{"given":["a",null,"c"],"_given":[null,{"id":"g"},null]},{"family":"F\nG"}],"multipleBirthInteger":2}`
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	deep := `<Patient` + ns + `>` + strings.Repeat(`<extension url="u">`, MaxDepth) + strings.Repeat(`</extension>`, MaxDepth) + `</Patient>`
	for name, tc := range map[string]struct{ doc, want string }{
		"DOCTYPE":             {`<!DOCTYPE Patient><Patient` + ns + `/>`, "DTD"},
		"XXE":                 {`<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient` + ns + `><id value="&x;"/></Patient>`, "DTD"},
		"undeclared entity":   {`<Patient` + ns + `><id value="&x;"/></Patient>`, "entity"},
		"deep":                {deep, "deeper than"},
		"deep narrative":      {`<Patient` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">` + strings.Repeat("<b>", MaxDepth) + strings.Repeat("</b>", MaxDepth) + `</div></text></Patient>`, "deeper than"},
		"unknown element":     {`<Patient` + ns + `><colour value="x"/></Patient>`, "<colour>"},
		"unknown attribute":   {`<Patient` + ns + `><id value="x" colour="y"/></Patient>`, "colour"},
		"id attribute":        {`<Patient` + ns + ` id="x"/>`, "unknown attribute"},
		"attribute element":   {`<Patient` + ns + `><extension><url value="u"/></extension></Patient>`, "<url>"},
		"boolean":             {`<Patient` + ns + `><active value="yes"/></Patient>`, "not a boolean"},
		"number":              {`<Patient` + ns + `><multipleBirthInteger value="01"/></Patient>`, "not a number"},
		"injection":           {`<Patient` + ns + `><multipleBirthInteger value="1}"/></Patient>`, "not a number"},
		"empty primitive":     {`<Patient` + ns + `><active/></Patient>`, "needs a value"},
		"two resources":       {`<Patient` + ns + `><contained><Basic/><Basic/></contained></Patient>`, "more than one"},
		"empty container":     {`<Patient` + ns + `><contained/></Patient>`, "no resource"},
		"narrative namespace": {`<Patient` + ns + `><text><status value="generated"/><div><p/></div></text></Patient>`, "namespace"},
		"script namespace":    {`<Patient` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><s:x xmlns:s="urn:s"/></div></text></Patient>`, "not XHTML"},
		"text":                {`<Patient` + ns + `>x</Patient>`, "text"},
		"not UTF-8":           {`<?xml version="1.0" encoding="UTF-16"?><Patient` + ns + `/>`, "UTF-16"},
		"no root":             {`<!-- nothing -->`, "no root"},
	} {
		_, err := Unmarshal(nil, []byte(tc.doc))
		var xe *Error
		if !errors.As(err, &xe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want an *Error mentioning %q", name, err, tc.want)
		}
	}
}

// TestPretty: the indented form reads back the same.
func TestPretty(t *testing.T) {
	src := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a","name":[{"given":["x","y"]}]}}]}`
	x, err := Marshal(nil, []byte(src), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(x), "\n  <entry>\n    <resource>\n      <Patient>\n        <id value=\"a\"/>") {
		t.Fatalf("not indented:\n%s", x)
	}
	back, err := Unmarshal(nil, x)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(decodeJSON(t, back), decodeJSON(t, []byte(src))) {
		t.Fatalf("%s", back)
	}
}

// TestTablesCoverValidate: every resource type of fhir/validate has its
// element order (build fails otherwise) and the tables are not empty.
func TestTablesCoverValidate(t *testing.T) {
	if _, err := index(); err != nil {
		t.Fatal(err)
	}
	if n := len(resourceTypes()); n < 145 {
		t.Fatalf("%d resource types", n)
	}
}

// FuzzUnmarshal: no input panics; what Unmarshal accepts is JSON that
// Marshal writes back as XML reading back to the same JSON.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`<Patient` + ns + `><id value="p"/><name><given value="a"/><given id="g"/></name></Patient>`))
	f.Add([]byte(`<Patient` + ns + `><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>x &amp; y</p></div></text></Patient>`))
	f.Add([]byte(`<Bundle` + ns + `><entry><resource><Observation><valueQuantity><value value="1.50"/></valueQuantity></Observation></resource></entry></Bundle>`))
	f.Add([]byte(`<!DOCTYPE p [<!ENTITY x "y">]><Patient` + ns + `/>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		j, err := Unmarshal(nil, doc)
		if err != nil {
			return
		}
		if !json.Valid(j) {
			t.Fatalf("invalid JSON %s from %q", j, doc)
		}
		x, err := Marshal(nil, j, false)
		if err != nil {
			// The JSON may hold what no XML writer may write back (a
			// narrative rewritten from odd tokens): a refusal, not a crash.
			return
		}
		j2, err := Unmarshal(nil, x)
		if err != nil {
			t.Fatalf("Marshal wrote XML Unmarshal refuses: %v\n%s", err, x)
		}
		if !bytes.Equal(j, j2) {
			t.Fatalf("not stable:\n%s\n%s", j, j2)
		}
	})
}

// FuzzMarshal: no JSON document panics Marshal (it expects checked JSON,
// but must fail, not crash, on anything else that is JSON), and what it
// writes keeps the R4 XML rules and reads back.
func FuzzMarshal(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"g"}]}]}`))
	f.Add([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}`))
	f.Add([]byte(`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">a</div>"},"contained":[{"resourceType":"Basic"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			return
		}
		x, err := Marshal(nil, doc, false)
		if err != nil {
			return
		}
		if err := checkRules(x); err != nil && !strings.Contains(err.Error(), "empty") {
			t.Fatalf("%v\n%s", err, x)
		}
		if _, err := Unmarshal(nil, x); err != nil && !strings.Contains(err.Error(), "needs a value") && !strings.Contains(err.Error(), "holds no resource") {
			t.Fatalf("Marshal wrote XML Unmarshal refuses: %v\n%s", err, x)
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	for _, name := range []string{"Patient-example.json", "Observation-example.json"} {
		raw, err := os.ReadFile(filepath.Join(testenv.FHIRPackage(b), name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = Marshal(buf[:0], raw, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
