package runner

import (
	"net/http"
	"strings"
)

// core runs checks of base FHIR R4 REST behaviour every server needs.
func (r *run) core() {
	r.check("REST", "GET metadata answers an R4 CapabilityStatement", func() error {
		resp, err := r.get("metadata")
		if err != nil {
			return err
		}
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return err
		}
		var cs struct {
			ResourceType, FhirVersion, Kind string
			Format                          []string
			Rest                            []struct{ Mode string }
		}
		if err := resp.json(&cs); err != nil {
			return err
		}
		switch {
		case cs.ResourceType != "CapabilityStatement":
			return failf(resp.request, "answered a %s", cs.ResourceType)
		case cs.FhirVersion != "4.0.1":
			return failf(resp.request, "fhirVersion %q, want 4.0.1", cs.FhirVersion)
		case len(cs.Rest) == 0 || cs.Rest[0].Mode != "server":
			return failf(resp.request, "no rest entry in mode server")
		}
		for _, f := range cs.Format {
			if strings.Contains(f, "json") {
				return nil
			}
		}
		return failf(resp.request, "format %v lists no JSON", cs.Format)
	})
	r.check("REST", "a read of an unknown id is 404 with an OperationOutcome", func() error {
		resp, err := r.get("Patient/ember-conformance-no-such-id")
		if err != nil {
			return err
		}
		if err := expectStatus(resp, http.StatusNotFound); err != nil {
			return err
		}
		var oo struct{ ResourceType string }
		if err := resp.json(&oo); err != nil {
			return err
		}
		if oo.ResourceType != "OperationOutcome" {
			return failf(resp.request, "the 404 carries a %q", oo.ResourceType)
		}
		return nil
	})
	r.check("REST", "_count pages and the next link continues", func() error {
		res, err := r.get("Patient?_count=2")
		if err != nil {
			return err
		}
		if err := expectStatus(res, http.StatusOK); err != nil {
			return err
		}
		var b bundle
		if err := res.json(&b); err != nil {
			return err
		}
		if len(b.Entry) > 2 {
			return failf(res.request, "%d entries for _count=2", len(b.Entry))
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			if len(b.Entry) < 2 {
				return skipf("fewer than three Patients: no second page to follow")
			}
			return nil
		}
		page2, err := r.get(next)
		if err != nil {
			return err
		}
		if err := expectStatus(page2, http.StatusOK); err != nil {
			return err
		}
		var b2 bundle
		if err := page2.json(&b2); err != nil {
			return err
		}
		if len(b2.Entry) == 0 {
			return failf(page2.request, "the next page is empty")
		}
		first := map[string]bool{}
		for _, e := range b.Entry {
			first[e.FullURL] = true
		}
		for _, e := range b2.Entry {
			if first[e.FullURL] {
				return failf(page2.request, "the next page repeats %s", e.FullURL)
			}
		}
		return nil
	})
	r.check("REST", "an unknown search parameter with handling=strict is refused", func() error {
		req := "Patient?ember-conformance-unknown=1"
		resp, err := r.doPrefer(req, "handling=strict")
		if err != nil {
			return err
		}
		if resp.status != http.StatusBadRequest {
			return failf(resp.request, "status %d, want 400 (Prefer: handling=strict)", resp.status)
		}
		return nil
	})
}

// doPrefer GETs path with a Prefer header.
func (r *run) doPrefer(path, prefer string) (*response, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.base+"/"+path, nil)
	if err != nil {
		return nil, failf("GET "+path, "%v", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Prefer", prefer)
	if r.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.o.Token)
	}
	resp, err := r.o.Client.Do(req)
	if err != nil {
		return nil, failf("GET "+r.base+"/"+path, "%v", err)
	}
	defer resp.Body.Close()
	return &response{status: resp.StatusCode, header: resp.Header, request: "GET " + r.base + "/" + path + " (Prefer: " + prefer + ")"}, nil
}
