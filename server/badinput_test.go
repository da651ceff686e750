package server_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/emberfhir/ember/server"
)

const testMaxBody = 64 << 10

// TestBadInputIsRejectedAndNothingStored feeds hostile and malformed input to
// every write interaction and checks for a 4xx OperationOutcome each time,
// with the database unchanged afterwards.
func TestBadInputIsRejectedAndNothingStored(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxBody = testMaxBody })
	expect(t, e.do("PUT", "/Patient/keep", patient("keep", "Original")), http.StatusCreated)

	valid := string(patient("keep", "Changed"))
	deep := `{"resourceType":"Patient","id":"keep","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 200) +
		`{"url":"http://x","valueString":"x"}` + strings.Repeat(`]}`, 200) + `]}`
	oversized := `{"resourceType":"Patient","id":"keep","name":[{"family":"` + strings.Repeat("x", testMaxBody) + `"}]}`

	cases := []struct {
		name        string
		body        string
		contentType string
		status      int  // 0: any 4xx
		put         bool // applies to PUT only (POST ignores the body id)
	}{
		{name: "malformed JSON", body: `{"resourceType":"Patient",}`, status: 400},
		{name: "truncated body", body: valid[:len(valid)/2], status: 400},
		{name: "trailing garbage", body: valid + `}`, status: 400},
		{name: "top-level array", body: `[` + valid + `]`, status: 400},
		{name: "top-level null", body: `null`, status: 400},
		{name: "empty body", body: ``, status: 400},
		{name: "whitespace body", body: "  \n ", status: 400},
		{name: "missing resourceType", body: `{"id":"keep","gender":"male"}`, status: 400},
		{name: "unknown resourceType", body: `{"resourceType":"Unicorn","id":"keep"}`, status: 400},
		{name: "wrong resourceType for URL", body: `{"resourceType":"Observation","id":"keep","status":"final","code":{"text":"x"}}`, status: 400},
		{name: "id mismatch", body: string(patient("other", "X")), status: 400, put: true},
		{name: "missing id", body: string(patient("", "X")), status: 400, put: true},
		{name: "invalid id", body: `{"resourceType":"Patient","id":"no spaces allowed"}`, status: 422, put: true},
		{name: "unknown element", body: `{"resourceType":"Patient","id":"keep","favouriteColour":"blue"}`, status: 422},
		{name: "bad date", body: `{"resourceType":"Patient","id":"keep","birthDate":"1970-02-30"}`, status: 422},
		{name: "bad date format", body: `{"resourceType":"Patient","id":"keep","birthDate":"01/02/1970"}`, status: 422},
		{name: "bad code", body: `{"resourceType":"Patient","id":"keep","gender":"mail"}`, status: 422},
		{name: "wrong primitive type", body: `{"resourceType":"Patient","id":"keep","active":"yes"}`, status: 422},
		{name: "empty string", body: `{"resourceType":"Patient","id":"keep","name":[{"family":""}]}`, status: 422},
		{name: "empty object", body: `{"resourceType":"Patient","id":"keep","name":[{}]}`, status: 422},
		{name: "empty array", body: `{"resourceType":"Patient","id":"keep","name":[]}`, status: 422},
		{name: "null member", body: `{"resourceType":"Patient","id":"keep","gender":null}`, status: 422},
		{name: "duplicate key", body: `{"resourceType":"Patient","id":"keep","gender":"male","gender":"female"}`, status: 422},
		{name: "NUL character", body: `{"resourceType":"Patient","id":"keep","name":[{"family":"a\u0000b"}]}`, status: 422},
		{name: "deeply nested JSON", body: deep},
		{name: "invalid UTF-8", body: "{\"resourceType\":\"Patient\",\"id\":\"keep\",\"name\":[{\"family\":\"\xff\xfe\"}]}", status: 400},
		{name: "lone surrogate escape", body: `{"resourceType":"Patient","id":"keep","name":[{"family":"\ud800"}]}`, status: 400},
		{name: "oversized body", body: oversized, status: 413},
		{name: "wrong content type", body: valid, contentType: "text/plain", status: 415},
		{name: "Turtle content type", body: `@prefix fhir: <http://hl7.org/fhir/> .`, contentType: "application/fhir+turtle", status: 415},
		{name: "non-UTF-8 charset", body: valid, contentType: "application/fhir+json; charset=latin1", status: 415},
	}
	for _, tc := range cases {
		for _, method := range []string{"POST", "PUT"} {
			if tc.put && method == "POST" {
				continue
			}
			t.Run(method+" "+tc.name, func(t *testing.T) {
				path := "/Patient"
				if method == "PUT" {
					path = "/Patient/keep"
				}
				ct := tc.contentType
				if ct == "" {
					ct = "application/fhir+json"
				}
				r := e.do(method, path, []byte(tc.body), "Content-Type: "+ct)
				if tc.status != 0 {
					expectOutcome(t, r, tc.status)
				} else if r.status < 400 || r.status > 499 {
					t.Fatalf("status %d, want 4xx: %s", r.status, r.body)
				} else {
					expectOutcome(t, r, r.status)
				}
			})
		}
	}

	// A missing required element (Observation.code, 1..1) is invalid content.
	expectOutcome(t, e.do("POST", "/Observation", []byte(`{"resourceType":"Observation","status":"final"}`)), 422)

	// Validation errors carry a FHIRPath location.
	r := e.do("PUT", "/Patient/keep", []byte(`{"resourceType":"Patient","id":"keep","name":[{"given":["a",""]}]}`))
	issue := expectOutcome(t, r, 422)["issue"].([]any)[0].(map[string]any)
	if expr, _ := issue["expression"].([]any); len(expr) != 1 || expr[0] != "Patient.name[0].given[1]" {
		t.Fatalf("expression %v, want [Patient.name[0].given[1]]", issue["expression"])
	}
	r = e.do("PUT", "/Patient/keep", []byte(`{"resourceType":"Patient","id":"keep","birthDate":"1970-02-30"}`))
	issue = expectOutcome(t, r, 422)["issue"].([]any)[0].(map[string]any)
	if expr, _ := issue["expression"].([]any); len(expr) != 1 || expr[0] != "Patient.birthDate" {
		t.Fatalf("expression %v, want [Patient.birthDate]", issue["expression"])
	}

	// Bad input to the read side, URL and header grammar.
	for _, tc := range []struct {
		method, path, header string
		status               int
	}{
		{"GET", "/Patient/bad$id", "", 400},
		{"GET", "/Patient/keep/_history/zero", "", 400},
		{"GET", "/Patient/keep/_history/-1", "", 400},
		{"GET", "/Patient/keep/_history?_count=x", "", 400},
		{"GET", "/Patient/keep/_history?_at=2020-13", "", 400},
		{"GET", "/Patient/keep/extra/segments/here/too", "", 404},
		{"GET", "/NotAType", "", 404},
		{"PATCH", "/Patient/keep", "", 415}, // no patch document type
		{"DELETE", "/Patient", "", 405},
		{"PUT", "/Patient/keep", `If-Match: "garbage"`, 400},
		{"DELETE", "/Patient/keep", `If-Match: W/"9"`, 412},
		{"DELETE", "/Patient/keep", `If-Match: nonsense`, 400},
	} {
		var body []byte
		if tc.method == "PUT" {
			body = []byte(valid)
		}
		var hs []string
		if tc.header != "" {
			hs = append(hs, tc.header)
		}
		expectOutcome(t, e.do(tc.method, tc.path, body, hs...), tc.status)
	}

	// Nothing was stored: the one resource is still at version 1, alone.
	r = e.do("GET", "/_history", nil)
	expect(t, r, http.StatusOK)
	if n := len(r.json(t)["entry"].([]any)); n != 1 {
		t.Fatalf("system history has %d entries after bad input, want 1: %s", n, r.body)
	}
	r = e.do("GET", "/Patient/keep", nil)
	expect(t, r, http.StatusOK)
	if !bytes.Contains(r.body, []byte("Original")) || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("resource changed: %s", r.body)
	}
}
