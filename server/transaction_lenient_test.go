package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The bundle of issue 16: a Device whose base64Binary carries MIME line
// breaks (valid R4) and an Encounter with a Period.stop (not R4). By
// default the transaction is refused at the element; Prefer:
// handling=lenient drops it with a warning in the entry's outcome.
func TestTransactionLenientHandling(t *testing.T) {
	e := newEnv(t)
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Device","udiCarrier":[{"deviceIdentifier":"x","carrierAIDC":"QUJD\r\nREVG\r\nR0g="}]},"request":{"method":"POST","url":"Device"}},
		{"resource":{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"period":{"start":"2020-01-01","stop":"2020-01-02"}},"request":{"method":"POST","url":"Encounter"}}]}`)
	r := e.do("POST", "/", tx)
	expect(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(string(r.body), "Encounter.period") || !strings.Contains(string(r.body), `\"stop\"`) {
		t.Errorf("strict refusal does not name Period.stop: %s", r.body)
	}
	if countType(t, e, "Encounter") != 0 || countType(t, e, "Device") != 0 {
		t.Fatal("a refused transaction wrote something")
	}

	r = e.do("POST", "/", tx, "Prefer: handling=lenient")
	expect(t, r, http.StatusOK)
	var b struct {
		Entry []struct {
			Response struct {
				Status   string
				Location string
				Outcome  *struct {
					Issue []struct {
						Severity, Code, Diagnostics string
						Expression                  []string
					}
				}
			}
		}
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Entry) != 2 || b.Entry[0].Response.Outcome != nil {
		t.Fatalf("response %s", r.body)
	}
	o := b.Entry[1].Response.Outcome
	if o == nil || len(o.Issue) != 1 || o.Issue[0].Severity != "warning" || len(o.Issue[0].Expression) != 1 || o.Issue[0].Expression[0] != "Encounter.period.stop" {
		t.Fatalf("lenient entry outcome: %s", r.body)
	}
	got := e.do("GET", "/"+strings.Split(b.Entry[1].Response.Location, "/_history")[0], nil)
	expect(t, got, http.StatusOK)
	period := got.json(t)["period"].(map[string]any)
	if period["start"] != "2020-01-01" || period["stop"] != nil {
		t.Errorf("stored period %v", period)
	}

	// Batch too; and a resource with no unknown element carries no outcome.
	batch := strings.Replace(string(tx), `"transaction"`, `"batch"`, 1)
	r = e.do("POST", "/", []byte(batch), "Prefer: handling=lenient")
	expect(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "Encounter.period.stop") {
		t.Errorf("batch response lacks the warning: %s", r.body)
	}
}
