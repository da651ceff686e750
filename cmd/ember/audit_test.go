package main_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
)

// TestAuditTrailEndToEnd runs a SMART-protected serve with DIMSE, makes one
// access of every kind — an admin command, token issued and refused, a
// FHIR search, C-ECHO and C-STORE, a DICOMweb query — and finds each in the
// audit trail once serve has stopped; then `ember audit verify` passes, and
// fails naming the event after an UPDATE and after a DELETE done behind
// Ember's back.
func TestAuditTrailEndToEnd(t *testing.T) {
	testenv.DCMTKTools(t, "echoscu", "storescu")
	file, err := dicomsamples.Pydicom(context.Background(), "CT_small.dcm")
	if err != nil {
		t.Fatal(err)
	}
	dbURL := pgtest.NewDatabase(t)
	db := []string{"EMBER_DATABASE_URL=" + dbURL}
	out, code := ember(t, db, "client", "add", "--id", "svc", "--type", "symmetric", "--grant", "client_credentials", "--scope", "system/*.rs")
	m := secretRE.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("client add: %d\n%s", code, out)
	}
	if out, code := ember(t, db, "user", "add", "--username", "boss", "--password", "s3cret-password", "--role", "admin", "--fhir-user", "Practitioner/boss"); code != 0 {
		t.Fatalf("user add: %d\n%s", code, out)
	}
	addr, dimseAddr := freeAddr(t), freeAddr(t)
	s := startServe(t, []string{"EMBER_AUTH=smart", "EMBER_DIMSE_ADDR=" + dimseAddr}, addr, "--addr", addr, "--database-url", dbURL,
		"--data-dir", t.TempDir(), "--ae-title", "EMBERTEST")
	code, tok := postForm(t, "http://"+addr+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, "svc", m[1])
	if code != 200 {
		t.Fatalf("token: %d %v", code, tok)
	}
	if code, _ := postForm(t, "http://"+addr+"/auth/token", url.Values{"grant_type": {"client_credentials"}}, "svc", "wrong"); code != 401 {
		t.Fatalf("token with a wrong secret: %d", code)
	}
	bearer := tok["access_token"].(string)
	if code, body := bearerGet(t, "http://"+addr+"/fhir/Patient?gender=female", bearer); code != 200 {
		t.Fatalf("search: %d %s", code, body)
	}
	host, port, _ := net.SplitHostPort(dimseAddr)
	if out, err := exec.Command("echoscu", "-aet", "MODALITY1", "-aec", "EMBERTEST", host, port).CombinedOutput(); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
	if out, err := exec.Command("storescu", "-aet", "MODALITY1", "-aec", "EMBERTEST", host, port, file).CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	if code, body := bearerGet(t, "http://"+addr+"/dicomweb/studies?PatientName=Some*", bearer); code != 200 {
		t.Fatalf("QIDO: %d %s", code, body)
	}
	// An EHR launch asked for by an admin, for a patient that does not exist.
	if code, body := postForm(t, "http://"+addr+"/auth/launch", url.Values{"client": {"svc"}, "patient": {"nobody"}}, "boss", "s3cret-password"); code != 400 {
		t.Fatalf("launch: %d %v", code, body)
	}
	// A copy of the signing key's public half, kept outside the database.
	jwksCode, jwks := httpDo(t, "GET", "http://"+addr+"/auth/jwks", "")
	if jwksCode != 200 {
		t.Fatalf("jwks: %d", jwksCode)
	}
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	s.stop(t) // the trail's last write happens on the way out

	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT r.id, r.content::text FROM audit_chain c JOIN resources r ON r.type = 'AuditEvent' AND r.id = c.event_id ORDER BY c.seq`)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		ID      string `json:"id"`
		Subtype []struct {
			Code string `json:"code"`
		} `json:"subtype"`
		Outcome string `json:"outcome"`
		Agent   []struct {
			Name    string `json:"name"`
			AltID   string `json:"altId"`
			Network *struct {
				Address string `json:"address"`
			} `json:"network"`
		} `json:"agent"`
	}
	var events []event
	var all strings.Builder
	for rows.Next() {
		var id, content string
		if err := rows.Scan(&id, &content); err != nil {
			t.Fatal(err)
		}
		all.WriteString(content)
		var e event
		if err := json.Unmarshal([]byte(content), &e); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	has := func(subtype, outcome, agentName string) bool {
		for _, e := range events {
			if len(e.Subtype) == 0 || e.Subtype[0].Code != subtype || e.Outcome != outcome {
				continue
			}
			for _, a := range e.Agent {
				if agentName == "" || a.Name == agentName || a.AltID == agentName {
					return true
				}
			}
		}
		return false
	}
	for _, w := range []struct{ subtype, outcome, agent string }{
		{"client add", "0", ""},
		{"token", "0", "svc"},
		{"token-refused", "4", "svc"},
		{"search-type", "0", "svc"},
		{"association", "0", "MODALITY1"},
		{"C-STORE", "0", "MODALITY1"},
		{"QIDO-RS", "0", "svc"},
		{"user add", "0", ""},
		{"launch", "4", "boss"},
	} {
		if !has(w.subtype, w.outcome, w.agent) {
			t.Errorf("no AuditEvent for %s (outcome %s, agent %q)", w.subtype, w.outcome, w.agent)
		}
	}
	if strings.Contains(all.String(), "Some*") || strings.Contains(all.String(), m[1]) {
		t.Error("the trail holds a DICOM query value or a client secret")
	}

	if out, code := ember(t, db, "audit", "verify"); code != 0 || !strings.Contains(out, "audit trail intact") {
		t.Fatalf("verify on an untouched database: exit %d\n%s", code, out)
	}
	if out, code := ember(t, db, "audit", "verify", "--jwks", jwksFile); code != 0 || !strings.Contains(out, "audit trail intact") || strings.Contains(out, " 0 signed checkpoints") {
		t.Fatalf("verify --jwks with the server's key: exit %d\n%s", code, out)
	}
	// A key set whose key under that id is another: the checkpoints fail.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(jwks), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v %s", err, jwks)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &other.PublicKey, KeyID: set.Keys[0].KeyID, Algorithm: "RS256", Use: "sig"}}})
	forgedFile := filepath.Join(t.TempDir(), "forged.json")
	if err := os.WriteFile(forgedFile, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := ember(t, db, "audit", "verify", "--jwks", forgedFile); code != 1 || !strings.Contains(out, "signature does not verify") {
		t.Fatalf("verify --jwks with another key: exit %d, want 1\n%s", code, out)
	}
	victim := events[2].ID
	var original string
	if err := conn.QueryRow(t.Context(), `SELECT content::text FROM resources WHERE type = 'AuditEvent' AND id = $1`, victim).Scan(&original); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), `UPDATE resources SET content = jsonb_set(content, '{outcome}', '"12"') WHERE type = 'AuditEvent' AND id = $1`, victim); err != nil {
		t.Fatal(err)
	}
	out, code = ember(t, db, "audit", "verify")
	if code != 1 || !strings.Contains(out, "AuditEvent/"+victim) || !strings.Contains(out, "changed") {
		t.Fatalf("verify after an UPDATE: exit %d, want 1 naming AuditEvent/%s\n%s", code, victim, out)
	}
	// Put it back: the chain holds again (the verify runs themselves were
	// recorded, and extend it).
	if _, err := conn.Exec(t.Context(), `UPDATE resources SET content = $2::jsonb WHERE type = 'AuditEvent' AND id = $1`, victim, original); err != nil {
		t.Fatal(err)
	}
	if out, code := ember(t, db, "audit", "verify"); code != 0 {
		t.Fatalf("verify after restoring the event: exit %d\n%s", code, out)
	}
	if out, code := ember(t, db, "audit", "verify", "--since", time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify --since: exit %d\n%s", code, out)
	}
	victim2 := events[len(events)-1].ID
	if _, err := conn.Exec(t.Context(), `DELETE FROM resources WHERE type = 'AuditEvent' AND id = $1`, victim2); err != nil {
		t.Fatal(err)
	}
	out, code = ember(t, db, "audit", "verify")
	if code != 1 || !strings.Contains(out, "AuditEvent/"+victim2) || !strings.Contains(out, "deleted") {
		t.Fatalf("verify after a DELETE: exit %d, want 1 naming AuditEvent/%s\n%s", code, victim2, out)
	}
}
