package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/synthea"
)

// TestServeLogsNoPatientData (issue 15): a real `ember serve`, logging at
// debug level (one line per request besides the rest), is loaded with
// Synthea patients over REST transactions and then read and searched by
// their names and identifiers, well-formed and not (a bad modifier, a name
// where an id goes, a conditional write). None of the patients' family or
// given names and none of their identifier values may appear anywhere in
// the process's output; the request id a client sent comes back and is on
// the request's log line; the JSON log parses.
func TestServeLogsNoPatientData(t *testing.T) {
	dir, err := synthea.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := synthea.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The reference bundles first (patients refer to them), then the three
	// smallest patient bundles.
	var load, patients []string
	for _, f := range files {
		if synthea.IsPatientBundle(f) {
			patients = append(patients, f)
		} else {
			load = append(load, f)
		}
	}
	size := func(f string) int64 {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	slices.SortFunc(patients, func(a, b string) int { return int(size(a) - size(b)) })
	load = append(load, patients[:3]...)

	addr := freeAddr(t)
	s := startServe(t, []string{"EMBER_LOG_LEVEL=debug"}, addr,
		"--addr", addr, "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir())

	type patient struct {
		family, given string
		identifiers   [][2]string // system, value
	}
	var pats []patient
	for _, f := range load {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if code, out := httpDo(t, "POST", s.base, string(body)); code != http.StatusOK {
			t.Fatalf("POST %s: %d %.500s", f, code, out)
		}
		var b struct {
			Entry []struct{ Resource json.RawMessage }
		}
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			var r struct {
				ResourceType string
				Name         []struct {
					Family string
					Given  []string
				}
				Identifier []struct{ System, Value string }
			}
			var typ struct{ ResourceType string }
			if json.Unmarshal(e.Resource, &typ); typ.ResourceType != "Patient" {
				continue // other types' name is not a HumanName
			}
			if err := json.Unmarshal(e.Resource, &r); err != nil {
				t.Fatalf("a Patient of %s: %v", f, err)
			}
			p := patient{family: r.Name[0].Family, given: r.Name[0].Given[0]}
			for _, id := range r.Identifier {
				p.identifiers = append(p.identifiers, [2]string{id.System, id.Value})
			}
			pats = append(pats, p)
		}
	}
	if len(pats) != 3 {
		t.Fatalf("%d patients loaded, want 3", len(pats))
	}

	const requestID = "pii-check-1"
	get := func(path string, header ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", s.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(header) == 2 {
			req.Header.Set(header[0], header[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if len(header) == 2 && resp.Header.Get(header[0]) != header[1] {
			t.Errorf("X-Request-Id %q came back as %q", header[1], resp.Header.Get(header[0]))
		}
		return resp.StatusCode, string(b)
	}
	q := url.QueryEscape
	for i, p := range pats {
		code, body := get("/Patient?family="+q(p.family)+"&given="+q(p.given), "X-Request-Id", requestID)
		var bundle struct {
			Entry []struct{ Resource struct{ ID string } }
		}
		if json.Unmarshal([]byte(body), &bundle); code != http.StatusOK || len(bundle.Entry) == 0 {
			t.Fatalf("search %d by name: %d %.300s", i, code, body)
		}
		id := bundle.Entry[0].Resource.ID
		for _, path := range []string{
			"/Patient?name=" + q(p.family),
			"/Patient?name:exact=" + q(p.given),
			"/Patient?name:bogus=" + q(p.family), // 400, the value in the answer
			"/Patient?birthdate=" + q(p.family),  // 400
			"/Patient/" + q(p.family),            // 404: a name where the id goes
			"/Patient/" + id,
			"/Patient/" + id + "/$everything",
			"/Observation?subject.name=" + q(p.family) + "&_count=2",
			"/Patient/" + id + "/Observation?_count=2",
		} {
			if code, body := get(path); code >= 500 {
				t.Errorf("GET %s: %d %.300s", path, code, body)
			}
		}
		for _, ident := range p.identifiers {
			for _, path := range []string{"/Patient?identifier=" + q(ident[0]+"|"+ident[1]), "/Patient?identifier=" + q(ident[1])} {
				if code, body := get(path); code != http.StatusOK || !strings.Contains(body, id) {
					t.Errorf("GET %s: %d %.300s", path, code, body)
				}
			}
		}
		ident := p.identifiers[len(p.identifiers)-1]
		form := url.Values{"name": {p.family}, "identifier": {ident[1]}}
		resp, err := http.Post(s.base+"/Patient/_search", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("POST _search: %d", resp.StatusCode)
		}
		// A conditional create that finds the patient.
		req, _ := http.NewRequest("POST", s.base+"/Patient", strings.NewReader(`{"resourceType":"Patient"}`))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("If-None-Exist", "identifier="+q(ident[0]+"|"+ident[1]))
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("conditional create of an existing patient: %d", resp.StatusCode)
		}
	}
	s.stop(t)
	log := s.out.String()

	// The request's own line: JSON, with the id the client sent.
	var found bool
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, requestID) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		found = found || rec["request_id"] == requestID && rec["msg"] == "http request" && rec["params"] == "family,given"
	}
	if !found {
		t.Errorf("no access log line with request_id %s and the parameter names:\n%.3000s", requestID, log)
	}

	for _, p := range pats {
		for _, name := range []string{p.family, p.given} {
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).MatchString(log) {
				t.Errorf("the log holds the name %q", name)
			}
		}
		for _, ident := range p.identifiers {
			if strings.Contains(log, ident[1]) || strings.Contains(log, q(ident[1])) {
				t.Errorf("the log holds the identifier value %q (%s)", ident[1], ident[0])
			}
		}
	}
	if t.Failed() {
		t.Logf("log (%d bytes), start:\n%.4000s", len(log), log)
	}
}
