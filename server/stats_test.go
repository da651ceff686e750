package server_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/emberfhir/ember/server"
)

// TestStats: $stats reports the server's version, database size, queues
// and this minute's requests; an admin or a system reader may call it, a
// doctor or a patient app may not.
func TestStats(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	toks := tokens{
		"admin":   {Subject: "a", ClientID: "ember-console", Role: "admin", Scopes: []string{"user/*.rs"}, Expiry: exp},
		"monitor": {Subject: "m", ClientID: "prom", Scopes: []string{"system/*.rs"}, Expiry: exp},
		"doctor":  {Subject: "d", ClientID: "ember-console", Role: "doctor", Scopes: []string{"user/*.rs"}, Expiry: exp},
		"patient": {Subject: "p", ClientID: "app", Role: "patient", Scopes: []string{"patient/*.rs"}, Patient: "p1", Expiry: exp},
	}
	e := newEnv(t, func(c *server.Config) { c.Verifier = toks; c.Version = "v-test" })
	for range 5 {
		e.do(http.MethodGet, "/metadata", nil)
	}
	for who, want := range map[string]int{"admin": 200, "monitor": 200, "doctor": 403, "patient": 403} {
		r := e.do(http.MethodGet, "/$stats", nil, "Authorization: Bearer "+who)
		if r.status != want {
			t.Errorf("%s: $stats %d, want %d: %s", who, r.status, want, r.body)
		}
	}
	r := e.do(http.MethodGet, "/$stats", nil, "Authorization: Bearer admin")
	var p struct {
		Parameter []struct {
			Name         string  `json:"name"`
			ValueString  string  `json:"valueString"`
			ValueDecimal float64 `json:"valueDecimal"`
			Part         []struct {
				Name         string  `json:"name"`
				ValueInteger int64   `json:"valueInteger"`
				ValueDecimal float64 `json:"valueDecimal"`
			} `json:"part"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	var version string
	var size float64
	var requests int64
	for _, prm := range p.Parameter {
		switch prm.Name {
		case "version":
			version = prm.ValueString
		case "databaseSize":
			size = prm.ValueDecimal
		case "minute":
			for _, part := range prm.Part {
				if part.Name == "requests" {
					requests += part.ValueInteger
				}
			}
		}
	}
	if version != "v-test" || size <= 0 || requests < 9 {
		t.Errorf("$stats: version %q, database size %v, requests %d (want v-test, > 0, ≥ 9): %s", version, size, requests, r.body)
	}
}
