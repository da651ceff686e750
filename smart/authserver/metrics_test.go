package authserver

import (
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestTokenMetrics: token requests counted by grant type and outcome on
// the registry given in Config.Metrics.
func TestTokenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Metrics = reg })
	e.addServices()
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
	for _, basic := range []string{"svc:" + svcSecret, "svc:" + svcSecret, "svc:wrong-secret"} {
		e.tokenReq("/auth/token", cc, basic)
	}
	e.tokenReq("/auth/token", url.Values{"grant_type": {"password"}}, "svc:"+svcSecret)
	e.tokenReq("/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nonsense"}}, "svc:"+svcSecret)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "ember_auth_token_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["grant_type"]+" "+l["outcome"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"client_credentials issued":         2,
		"client_credentials invalid_client": 1,
		"other unsupported_grant_type":      1,
		"refresh_token invalid_grant":       1,
	}
	if len(got) != len(want) {
		t.Errorf("token requests %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("token requests %q = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
