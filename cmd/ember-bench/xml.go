package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	fhirxml "github.com/emberfhir/ember/fhir/xml"
)

// xmlReadScenario measures read-by-id answered in FHIR XML (_format=xml):
// the same 2,000 Patients, clients and load as read_c32, on the same
// server. JSON reads serve the stored bytes; XML reads convert them, so
// read_xml_cost_vs_json (read_c32's throughput over this one's: an XML
// read's cost as a percentage of a JSON read's) holds the conversion to its
// budget, at most 300 %. xml_marshal_patient_us is the conversion alone,
// in process, for one seeded Patient.
func xmlReadScenario() scenario {
	const name = "read_xml_c32"
	return scenario{name: name, requires: []string{"read_c32"}, run: func(ctx context.Context, e *env) ([]figure, error) {
		if e.seeded == 0 {
			return nil, fmt.Errorf("%s: no seeded Patients", name)
		}
		urls := make([]string, e.seeded)
		for i := range urls {
			urls[i] = fmt.Sprintf("%s/Patient/bench-%d?_format=xml", e.fhirBase, i)
		}
		if err := expectXML(ctx, e, urls[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		reqs := make([]request, 32)
		for c := range reqs {
			r := rand.New(rand.NewPCG(uint64(c), 42))
			reqs[c] = func(ctx context.Context) error {
				return e.do(ctx, http.MethodGet, urls[r.IntN(len(urls))], nil, http.StatusOK)
			}
		}
		figs, err := timed(ctx, e, name, "req/s", reqs)
		if len(figs) > 0 && figs[0].value > 0 && e.readRate > 0 {
			figs = append(figs, figure{"read_xml_cost_vs_json", 100 * e.readRate / figs[0].value, "%"})
		}
		if us, merr := marshalCost(); merr == nil {
			figs = append(figs, figure{"xml_marshal_patient_us", us, "µs"})
		} else {
			err = fmt.Errorf("%s: %w", name, merr)
		}
		return figs, err
	}}
}

// expectXML checks the server answers url in FHIR XML, or the scenario
// would measure JSON reads under another name.
func expectXML(ctx context.Context, e *env, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "application/fhir+xml") {
		return fmt.Errorf("GET %s: %d %s: %.200s", url, resp.StatusCode, ct, body)
	}
	if _, err := fhirxml.Unmarshal(nil, body); err != nil {
		return fmt.Errorf("GET %s: the answer does not read back: %w", url, err)
	}
	return nil
}

// marshalCost is the mean time fhir/xml takes to write one seeded Patient
// (as generated, not as stored: the same members) as XML.
func marshalCost() (float64, error) {
	const n = 2000
	bodies := make([][]byte, 100)
	for i := range bodies {
		b, err := patientJSON(i, fmt.Sprintf("bench-%d", i))
		if err != nil {
			return 0, err
		}
		bodies[i] = b
	}
	var buf []byte
	start := time.Now()
	for i := range n {
		var err error
		if buf, err = fhirxml.Marshal(buf[:0], bodies[i%len(bodies)], false); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(start).Microseconds()) / n, nil
}
