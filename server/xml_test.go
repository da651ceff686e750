package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	fhirxml "github.com/emberfhir/ember/fhir/xml"
)

const (
	ctXML     = "Content-Type: application/fhir+xml"
	acceptXML = "Accept: application/fhir+xml"
)

// xmlJSON checks r is a FHIR XML answer and returns it decoded (through
// fhir/xml's Unmarshal, whose own tests hold it to the R4 rules).
func xmlJSON(t testing.TB, r response) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+xml") {
		t.Fatalf("Content-Type %q, want application/fhir+xml (%d): %s", ct, r.status, r.body)
	}
	j, err := fhirxml.Unmarshal(nil, r.body)
	if err != nil {
		t.Fatalf("answer is not FHIR XML: %v: %s", err, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// expectXMLOutcome checks r is an error OperationOutcome in XML with the
// status, and returns its first diagnostics.
func expectXMLOutcome(t testing.TB, r response, status int) string {
	t.Helper()
	expect(t, r, status)
	m := xmlJSON(t, r)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %s", r.body)
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.body)
	}
	d, _ := issues[0].(map[string]any)["diagnostics"].(string)
	if d == "" {
		t.Fatalf("OperationOutcome without diagnostics: %s", r.body)
	}
	return d
}

const xmlPatient = `<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <id value="x1"/>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Ann <b>Lee</b> &amp; co</p></div>
  </text>
  <active value="true"/>
  <name>
    <family value="Lee"/>
    <given value="Ann"/>
    <given id="g2"><extension url="http://example.org/x"><valueString value="no value"/></extension></given>
  </name>
  <birthDate value="1970-01-02"/>
</Patient>`

// TestXMLInteractions runs create, read, update, search, transaction, PATCH
// and $validate in XML against a real database.
func TestXMLInteractions(t *testing.T) {
	e := newEnv(t)

	// Update as create, read back in JSON: XML input is stored as JSON.
	r := e.do("PUT", "/Patient/x1", []byte(xmlPatient), ctXML, acceptXML)
	expect(t, r, http.StatusCreated)
	if m := xmlJSON(t, r); m["id"] != "x1" {
		t.Fatalf("create answered %s", r.body)
	}
	r = e.do("GET", "/Patient/x1", nil)
	expect(t, r, http.StatusOK)
	m := r.json(t)
	name := m["name"].([]any)[0].(map[string]any)
	if given := name["given"].([]any); len(given) != 2 || given[0] != "Ann" || given[1] != nil {
		t.Fatalf("given %v: %s", given, r.body)
	}
	if ext := name["_given"].([]any); ext[0] != nil || ext[1].(map[string]any)["id"] != "g2" {
		t.Fatalf("_given %v", ext)
	}
	if div := m["text"].(map[string]any)["div"]; div != `<div xmlns="http://www.w3.org/1999/xhtml"><p>Ann <b>Lee</b> &amp; co</p></div>` {
		t.Fatalf("div %q", div)
	}

	// Read in XML, by Accept and by _format; the stored JSON is untouched.
	for _, h := range [][]string{{acceptXML}, {"Accept: application/xml"}} {
		r = e.do("GET", "/Patient/x1", nil, h...)
		expect(t, r, http.StatusOK)
		if got := xmlJSON(t, r); got["birthDate"] != "1970-01-02" || r.header.Get("ETag") != `W/"1"` {
			t.Fatalf("read: %v %s", r.header, r.body)
		}
	}
	r = e.do("GET", "/Patient/x1?_format=xml", nil)
	expect(t, r, http.StatusOK)
	xmlJSON(t, r)
	if !strings.Contains(string(r.body), `<Patient xmlns="http://hl7.org/fhir"><id value="x1"/><meta>`) {
		t.Fatalf("not compact XML in definition order: %s", r.body)
	}

	// Update in XML.
	upd := strings.Replace(xmlPatient, `<active value="true"/>`, `<active value="false"/>`, 1)
	r = e.do("PUT", "/Patient/x1", []byte(upd), ctXML)
	expect(t, r, http.StatusOK)
	if got := xmlJSON(t, r); got["active"] != false { // no stated preference: answered like the body
		t.Fatalf("update answered %s", r.body)
	}

	// Create by POST.
	post := strings.Replace(strings.Replace(xmlPatient, `<id value="x1"/>`, "", 1), "Lee", "Moe", -1)
	r = e.do("POST", "/Patient", []byte(post), ctXML, acceptXML)
	expect(t, r, http.StatusCreated)

	// Search answers a Bundle in XML, resources wrapped in <resource>.
	r = e.do("GET", "/Patient?family=Moe&_format=application/fhir%2Bxml", nil)
	expect(t, r, http.StatusOK)
	b := xmlJSON(t, r)
	if b["resourceType"] != "Bundle" || len(b["entry"].([]any)) != 1 || !strings.Contains(string(r.body), "<resource><Patient>") {
		t.Fatalf("search: %s", r.body)
	}

	// A transaction in XML.
	tx := `<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
  <entry><fullUrl value="urn:uuid:6d3a3c9a-0f6e-4d5c-9d3e-1a2b3c4d5e6f"/>
    <resource><Patient><name><family value="Tx"/></name></Patient></resource>
    <request><method value="POST"/><url value="Patient"/></request></entry>
  <entry><resource><Observation><status value="final"/><code><text value="weight"/></code>
      <subject><reference value="urn:uuid:6d3a3c9a-0f6e-4d5c-9d3e-1a2b3c4d5e6f"/></subject>
      <valueQuantity><value value="70.50"/><unit value="kg"/></valueQuantity></Observation></resource>
    <request><method value="POST"/><url value="Observation"/></request></entry>
</Bundle>`
	r = e.do("POST", "", []byte(tx), ctXML, acceptXML)
	expect(t, r, http.StatusOK)
	resp := xmlJSON(t, r)
	if resp["type"] != "transaction-response" {
		t.Fatalf("transaction: %s", r.body)
	}
	r = e.do("GET", "/Observation?subject:Patient.family=Tx", nil)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "70.50") {
		t.Fatalf("the decimal lost its written form: %s", r.body)
	}

	// FHIRPath Patch as XML Parameters.
	patch := `<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>
  <part><name value="type"/><valueCode value="replace"/></part>
  <part><name value="path"/><valueString value="Patient.birthDate"/></part>
  <part><name value="value"/><valueDate value="1971-03-04"/></part></parameter></Parameters>`
	r = e.do("PATCH", "/Patient/x1", []byte(patch), ctXML, acceptXML)
	expect(t, r, http.StatusOK)
	if got := xmlJSON(t, r); got["birthDate"] != "1971-03-04" {
		t.Fatalf("patch: %s", r.body)
	}

	// $validate of an XML resource, the outcome in XML.
	r = e.do("POST", "/Patient/$validate", []byte(xmlPatient), ctXML, acceptXML)
	expect(t, r, http.StatusOK)
	if got := xmlJSON(t, r); got["resourceType"] != "OperationOutcome" {
		t.Fatalf("$validate: %s", r.body)
	}
	bad := strings.Replace(xmlPatient, `<birthDate value="1970-01-02"/>`, `<birthDate value="1970-13-45"/>`, 1)
	r = e.do("POST", "/Patient/$validate", []byte(bad), ctXML, acceptXML)
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `<severity value="error"/>`) {
		t.Fatalf("$validate of an invalid resource: %s", r.body)
	}

	// Errors are OperationOutcomes in XML; the same validation as JSON.
	expectXMLOutcome(t, e.do("GET", "/Patient/nobody", nil, acceptXML), http.StatusNotFound)
	expectXMLOutcome(t, e.do("PUT", "/Patient/x1", []byte(bad), ctXML, acceptXML), http.StatusUnprocessableEntity)

	// _pretty indents XML.
	r = e.do("GET", "/Patient/x1?_format=xml&_pretty=true", nil)
	expect(t, r, http.StatusOK)
	xmlJSON(t, r)
	if !strings.Contains(string(r.body), "\n  <id value=\"x1\"/>") {
		t.Fatalf("not indented: %s", r.body)
	}

	// History in XML.
	r = e.do("GET", "/Patient/x1/_history", nil, acceptXML)
	expect(t, r, http.StatusOK)
	if h := xmlJSON(t, r); len(h["entry"].([]any)) != 3 {
		t.Fatalf("history: %s", r.body)
	}
}

// TestXMLNegotiation holds the precedence: _format over Accept, q-values
// within Accept, a named type over a wildcard; 406 for what neither JSON
// nor XML can satisfy.
func TestXMLNegotiation(t *testing.T) {
	e := newEnv(t)
	expect(t, e.do("PUT", "/Patient/n1", patient("n1", "A")), http.StatusCreated)
	for _, tc := range []struct {
		path    string
		headers []string
		want    string // "json", "xml" or "406"
	}{
		{"/Patient/n1", nil, "json"},
		{"/Patient/n1", []string{"Accept: */*"}, "json"},
		{"/Patient/n1", []string{acceptXML}, "xml"},
		{"/Patient/n1", []string{"Accept: text/xml"}, "xml"},
		{"/Patient/n1", []string{"Accept: application/xml+fhir"}, "xml"},
		{"/Patient/n1?_format=xml", []string{"Accept: application/fhir+json"}, "xml"},
		{"/Patient/n1?_format=json", []string{acceptXML}, "json"},
		{"/Patient/n1?_format=text/xml", nil, "xml"},
		{"/Patient/n1?_format=application/fhir+xml", nil, "xml"}, // the + decodes to a space
		{"/Patient/n1", []string{"Accept: application/fhir+json;q=0.5, application/fhir+xml"}, "xml"},
		{"/Patient/n1", []string{"Accept: application/fhir+xml;q=0.4, application/fhir+json;q=0.9"}, "json"},
		{"/Patient/n1", []string{"Accept: */*, application/fhir+xml"}, "xml"},
		{"/Patient/n1", []string{"Accept: text/html, application/xhtml+xml, */*;q=0.8"}, "json"},
		{"/Patient/n1", []string{"Accept: application/fhir+xml;q=0, */*;q=0.1"}, "json"},
		{"/Patient/n1", []string{"Accept: text/turtle"}, "406"},
		{"/Patient/n1?_format=ttl", nil, "406"},
		{"/Patient/n1?_format=turtle", []string{acceptXML}, "406"},
		{"/metadata?_format=text/turtle", nil, "406"},
		{"/$export", []string{acceptXML, "Prefer: respond-async"}, "406"}, // Bulk Data: JSON only
	} {
		r := e.do("GET", tc.path, nil, tc.headers...)
		switch tc.want {
		case "json":
			expect(t, r, http.StatusOK)
			r.json(t)
		case "xml":
			expect(t, r, http.StatusOK)
			xmlJSON(t, r)
		default:
			expectOutcome(t, r, http.StatusNotAcceptable)
		}
	}

	// An XML body without a stated preference is answered in XML; with
	// one, as asked.
	x := []byte(`<Patient xmlns="http://hl7.org/fhir"><id value="n2"/><active value="true"/></Patient>`)
	xmlJSON(t, e.do("PUT", "/Patient/n2", x, ctXML))
	r := e.do("PUT", "/Patient/n2", x, ctXML, "Accept: application/fhir+json")
	expect(t, r, http.StatusOK)
	r.json(t)
	r = e.do("PUT", "/Patient/n2", x, "Content-Type: application/xml; charset=utf-8", "Accept: application/json")
	expect(t, r, http.StatusOK)
	r.json(t)
	expectOutcome(t, e.do("PUT", "/Patient/n2", x, "Content-Type: application/fhir+xml; charset=iso-8859-1", "Accept: application/json"), http.StatusUnsupportedMediaType)
}

// TestXMLHostileInput: DTDs (XXE, billion laughs), deep nesting, unknown
// elements, malformed XML and a wrong namespace get 400 naming the problem,
// and nothing is stored.
func TestXMLHostileInput(t *testing.T) {
	e := newEnv(t)
	deep := `<Patient xmlns="http://hl7.org/fhir"><id value="h1"/>` +
		strings.Repeat(`<extension url="http://e.org/x">`, 200) + strings.Repeat(`</extension>`, 200) + `</Patient>`
	laughs := `<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Patient xmlns="http://hl7.org/fhir"><id value="h1"/><name><family value="&lol3;"/></name></Patient>`
	for name, tc := range map[string]struct{ body, want string }{
		"XXE": {`<?xml version="1.0"?><!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><id value="h1"/><name><family value="&xxe;"/></name></Patient>`, "DTD"},
		"billion laughs":    {laughs, "DTD"},
		"entity, no DTD":    {`<Patient xmlns="http://hl7.org/fhir"><id value="h1"/><name><family value="&lol;"/></name></Patient>`, "entity"},
		"deep nesting":      {deep, "deeper than"},
		"unknown element":   {`<Patient xmlns="http://hl7.org/fhir"><id value="h1"/><colour value="blue"/></Patient>`, "colour"},
		"wrong namespace":   {`<Patient xmlns="urn:other"><id value="h1"/></Patient>`, "namespace"},
		"no namespace":      {`<Patient><id value="h1"/></Patient>`, "namespace"},
		"text content":      {`<Patient xmlns="http://hl7.org/fhir"><id>h1</id></Patient>`, "value attribute"},
		"not a number":      {`<Patient xmlns="http://hl7.org/fhir"><id value="h1"/><multipleBirthInteger value="1,&quot;x&quot;:2"/></Patient>`, "not a number"},
		"malformed":         {`<Patient xmlns="http://hl7.org/fhir"><id value="h1"></Patient>`, "invalid FHIR XML"},
		"latin-1":           {`<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"><id value="h1"/></Patient>`, "ISO-8859-1"},
		"two roots":         {`<Patient xmlns="http://hl7.org/fhir"><id value="h1"/></Patient><Patient xmlns="http://hl7.org/fhir"/>`, "after the resource"},
		"repeated singular": {`<Patient xmlns="http://hl7.org/fhir"><id value="h1"/><gender value="male"/><gender value="female"/></Patient>`, "repeats"},
		"processing instr.": {`<Patient xmlns="http://hl7.org/fhir"><?php x ?><id value="h1"/></Patient>`, "processing instruction"},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do("PUT", "/Patient/h1", []byte(tc.body), ctXML, "Accept: application/fhir+json")
			m := expectOutcome(t, r, http.StatusBadRequest)
			d, _ := m["issue"].([]any)[0].(map[string]any)["diagnostics"].(string)
			if !strings.Contains(d, tc.want) {
				t.Fatalf("diagnostics %q do not mention %q", d, tc.want)
			}
			if strings.Contains(d, "root:") {
				t.Fatalf("an entity was expanded: %s", d)
			}
			// In XML too, when asked.
			expectXMLOutcome(t, e.do("POST", "/Patient", []byte(tc.body), ctXML, acceptXML), http.StatusBadRequest)
		})
	}
	expectOutcome(t, e.do("GET", "/Patient/h1", nil), http.StatusNotFound)
	r := e.do("GET", "/Patient?_summary=count", nil)
	expect(t, r, http.StatusOK)
	if total := r.json(t)["total"]; total != float64(0) {
		t.Fatalf("%v Patients stored from hostile XML", total)
	}
}

// TestCapabilityStatementXML holds the CapabilityStatement's format list
// true: it names xml, and XML requests work, the statement itself included.
func TestCapabilityStatementXML(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/metadata", nil)
	expect(t, r, http.StatusOK)
	formats, _ := r.json(t)["format"].([]any)
	hasXML := false
	for _, f := range formats {
		hasXML = hasXML || f == "xml"
	}
	if !hasXML {
		t.Fatalf("format %v does not list xml", formats)
	}
	r = e.do("GET", "/metadata", nil, acceptXML)
	expect(t, r, http.StatusOK)
	if m := xmlJSON(t, r); m["resourceType"] != "CapabilityStatement" {
		t.Fatalf("metadata in XML: %s", r.body)
	}
	expect(t, e.do("POST", "/Patient", []byte(xmlPatient), ctXML, acceptXML), http.StatusCreated)
}
