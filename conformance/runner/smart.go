package runner

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// smart runs the SMART App Launch discovery checks (SMART App Launch 2.0,
// "Conformance"): .well-known/smart-configuration and the
// CapabilityStatement's oauth-uris agree, with PKCE S256.
func (r *run) smart() {
	var cfg map[string]any
	var answered bool
	r.check("discovery", "GET .well-known/smart-configuration answers JSON", func() error {
		resp, err := r.do(http.MethodGet, ".well-known/smart-configuration", "", nil, "application/json")
		if err != nil {
			return err
		}
		if resp.status == http.StatusNotFound {
			return skipf("the server answers 404: it does not advertise SMART App Launch (an open server, --auth none, has nothing to discover)")
		}
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return err
		}
		if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return failf(resp.request, "Content-Type %q, want application/json", ct)
		}
		if err := json.Unmarshal(resp.body, &cfg); err != nil {
			return failf(resp.request, "not a JSON object: %v", err)
		}
		answered = true
		return nil
	})
	if !answered {
		return
	}
	str := func(k string) string { s, _ := cfg[k].(string); return s }
	list := func(k string) []string {
		var out []string
		a, _ := cfg[k].([]any)
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	for _, k := range []string{"authorization_endpoint", "token_endpoint"} {
		r.check("discovery", k+" is an absolute URL", func() error {
			u, err := url.Parse(str(k))
			if err != nil || !u.IsAbs() || u.Host == "" {
				return failf("GET .well-known/smart-configuration", "%s is %q", k, str(k))
			}
			return nil
		})
	}
	r.check("discovery", "grant_types_supported lists authorization_code", func() error {
		if !contains(list("grant_types_supported"), "authorization_code") {
			return failf("GET .well-known/smart-configuration", "grant_types_supported is %v", list("grant_types_supported"))
		}
		return nil
	})
	r.check("discovery", "code_challenge_methods_supported has S256 and not plain", func() error {
		m := list("code_challenge_methods_supported")
		if !contains(m, "S256") || contains(m, "plain") {
			return failf("GET .well-known/smart-configuration", "code_challenge_methods_supported is %v", m)
		}
		return nil
	})
	r.check("discovery", "capabilities list a launch mode and a client type", func() error {
		c := list("capabilities")
		launch := contains(c, "launch-ehr") || contains(c, "launch-standalone")
		client := contains(c, "client-public") || contains(c, "client-confidential-symmetric") || contains(c, "client-confidential-asymmetric")
		if !launch || !client {
			return failf("GET .well-known/smart-configuration", "capabilities are %v", c)
		}
		return nil
	})
	r.check("discovery", "CapabilityStatement oauth-uris match smart-configuration", func() error {
		resp, err := r.get("metadata")
		if err != nil {
			return err
		}
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return err
		}
		var cs struct {
			Rest []struct {
				Security struct {
					Extension []struct {
						URL       string
						Extension []struct{ URL, ValueURI string }
					}
				}
			}
		}
		if err := resp.json(&cs); err != nil {
			return err
		}
		uris := map[string]string{}
		for _, rest := range cs.Rest {
			for _, e := range rest.Security.Extension {
				if e.URL == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
					for _, x := range e.Extension {
						uris[x.URL] = x.ValueURI
					}
				}
			}
		}
		if len(uris) == 0 {
			return failf(resp.request, "rest.security has no oauth-uris extension")
		}
		for ext, k := range map[string]string{"authorize": "authorization_endpoint", "token": "token_endpoint"} {
			if uris[ext] != str(k) {
				return failf(resp.request, "oauth-uris %s is %q, smart-configuration %s is %q", ext, uris[ext], k, str(k))
			}
		}
		return nil
	})
}
