package main_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testfiles"
)

// ember ig install stores US Core once; a Patient stored before makes its
// new search parameters wait for ember reindex, which clears that; serve
// --ig (the same package again: a no-op) then loads it: the
// CapabilityStatement instantiates US Core's server statement, race
// searches answer, and a claimed profile is enforced.
func TestIGInstallAndServe(t *testing.T) {
	pkg, err := testfiles.Path("ig/hl7.fhir.us.core-6.1.0.tgz")
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	writeFile(t, dir+"/p.ndjson", `{"resourceType":"Patient","id":"old","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3"}},{"url":"text","valueString":"White"}]}]}`+"\n")
	if out, code := ember(t, nil, "import", dir, "--database-url", db); code != 0 {
		t.Fatalf("import: %d\n%s", code, out)
	}
	out, code := ember(t, nil, "ig", "install", pkg, "--database-url", db)
	if code != 0 || !strings.Contains(out, "installed hl7.fhir.us.core#6.1.0") || !strings.Contains(out, "ember reindex") {
		t.Fatalf("ig install: %d\n%s", code, out)
	}
	out, code = ember(t, nil, "ig", "install", pkg, "--database-url", db)
	if code != 0 || !strings.Contains(out, "already installed hl7.fhir.us.core#6.1.0: 0 conformance resources written") {
		t.Fatalf("ig install again: %d\n%s", code, out)
	}
	if out, _ := ember(t, nil, "ig", "list", "--database-url", db); !strings.Contains(out, "hl7.fhir.us.core#6.1.0") || !strings.Contains(out, "not yet indexed") {
		t.Fatalf("ig list:\n%s", out)
	}
	if out, code := ember(t, nil, "reindex", "--database-url", db); code != 0 {
		t.Fatalf("reindex: %d\n%s", code, out)
	}
	if out, _ := ember(t, nil, "ig", "list", "--database-url", db); strings.Contains(out, "not yet indexed") {
		t.Fatalf("ig list after reindex:\n%s", out)
	}

	addr := freeAddr(t)
	s := startServe(t, []string{"EMBER_DATABASE_URL=" + db, "EMBER_ADDR=" + addr, "EMBER_DATA_DIR=" + t.TempDir()}, addr, "--ig", pkg)
	st, body := httpDo(t, "GET", s.base+"/metadata", "")
	if st != 200 || !strings.Contains(body, `"instantiates":["http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server",`) ||
		!strings.Contains(body, "us-core-patient") || strings.Contains(body, "ember reindex") {
		t.Fatalf("metadata: %d %.500s", st, body)
	}
	st, body = httpDo(t, "GET", s.base+"/Patient?race="+url.QueryEscape("urn:oid:2.16.840.1.113883.6.238|2106-3"), "")
	if st != 200 || !strings.Contains(body, `Patient/old"`) {
		t.Fatalf("race search: %d %s", st, body)
	}
	st, body = httpDo(t, "POST", s.base+"/Patient", `{"resourceType":"Patient","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},"gender":"male"}`)
	if st != 422 || !strings.Contains(body, "Patient.identifier") {
		t.Fatalf("non-conforming claim: %d %s", st, body)
	}
}

// A guide installed while a server runs (by `ember ig install` in another
// process) takes effect in it without a restart: its search parameters,
// its profiles and the CapabilityStatement.
func TestIGInstallWhileServing(t *testing.T) {
	pkg, err := testfiles.Path("ig/hl7.fhir.us.core-6.1.0.tgz")
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	addr := freeAddr(t)
	s := startServe(t, []string{"EMBER_DATABASE_URL=" + db, "EMBER_ADDR=" + addr, "EMBER_DATA_DIR=" + t.TempDir()}, addr)
	claim := `{"resourceType":"Patient","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},"gender":"male"}`
	if st, body := httpDo(t, "POST", s.base+"/Patient", claim); st != 201 {
		t.Fatalf("before the install, a claim of an unknown profile: %d %s", st, body)
	}
	if out, code := ember(t, nil, "ig", "install", pkg, "--database-url", db); code != 0 {
		t.Fatalf("ig install: %d\n%s", code, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, body := httpDo(t, "POST", s.base+"/Patient", claim)
		if st == 422 && strings.Contains(body, "Patient.identifier") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the install, a non-conforming claim still answers %d %s", st, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if st, body := httpDo(t, "GET", s.base+"/metadata", ""); st != 200 || !strings.Contains(body, "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server") ||
		!strings.Contains(body, "us-core-patient") {
		t.Fatalf("metadata after the install: %d %.300s", st, body)
	}
	race := `{"resourceType":"Patient","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3"}},{"url":"text","valueString":"White"}]}]}`
	if st, body := httpDo(t, "POST", s.base+"/Patient", race); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	st, body := httpDo(t, "GET", s.base+"/Patient?race="+url.QueryEscape("urn:oid:2.16.840.1.113883.6.238|2106-3"), "")
	if st != 200 || !strings.Contains(body, `"total":1`) && strings.Count(body, `"fullUrl"`) != 1 {
		t.Fatalf("race search after the install: %d %s", st, body)
	}
}
