package main_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
)

// emberSplit runs the binary with stdout and stderr apart: `ember token`
// prints the token alone on stdout.
func emberSplit(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(emberBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// bearerGet answers GET url with the token.
func bearerGet(t *testing.T, u, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// postForm posts an OAuth form, with HTTP Basic when id is set.
func postForm(t *testing.T, u string, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

var secretRE = regexp.MustCompile(`secret: (\S+)`)

// TestTokenCommand: `ember token` against a running server (SMART on): the
// token works on the FHIR API, introspection says active, revocation (by
// its client at /auth/revoke, or `ember token revoke`) makes the API refuse
// it; scopes beyond the client's registration or the user's role are
// refused; a client_credentials service registered by `client add --grant`
// or `token --register` gets tokens over HTTP with its secret.
func TestTokenCommand(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	db := []string{"EMBER_DATABASE_URL=" + dbURL}
	addr := freeAddr(t)
	s := startServe(t, []string{"EMBER_AUTH=smart"}, addr, "--addr", addr, "--database-url", dbURL,
		"--data-dir", t.TempDir())
	base := "http://" + addr + "/fhir"
	env := append(db, "EMBER_BASE_URL="+base)
	if !strings.Contains(s.out.String(), "token --client quickstart --register --scope 'system/*.rs'") ||
		!strings.Contains(s.out.String(), `curl -H "Authorization: Bearer $TOKEN" '`+base+`/Patient?_count=5'`) {
		t.Errorf("serve does not print the token and search commands:\n%s", s.out.String())
	}

	out, code := ember(t, db, "client", "add", "--id", "svc", "--type", "symmetric", "--grant", "client_credentials",
		"--scope", "system/*.rs")
	m := secretRE.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("client add --grant client_credentials: %d\n%s", code, out)
	}
	secret := m[1]
	for name, args := range map[string][]string{
		"grant for a public client": {"--id", "x", "--type", "public", "--redirect-uri", "http://a.example/cb", "--grant", "client_credentials", "--scope", "system/*.rs"},
		"service without system/":   {"--id", "x", "--type", "symmetric", "--grant", "client_credentials", "--scope", "user/*.rs"},
		"service with a redirect":   {"--id", "x", "--type", "symmetric", "--grant", "client_credentials", "--scope", "system/*.rs", "--redirect-uri", "http://a.example/cb"},
		"unknown grant":             {"--id", "x", "--type", "symmetric", "--grant", "implicit", "--redirect-uri", "http://a.example/cb", "--scope", "user/*.rs"},
	} {
		if out, code := ember(t, db, append([]string{"client", "add"}, args...)...); code != 1 {
			t.Errorf("client add, %s: exit %d\n%s", name, code, out)
		}
	}
	if out, _ := ember(t, db, "client", "list"); !strings.Contains(out, "client_credentials") || strings.Contains(out, "\nx ") {
		t.Errorf("client list:\n%s", out)
	}
	ember(t, db, "user", "add", "--username", "doc", "--password", "s3cret-password", "--role", "doctor", "--fhir-user", "Practitioner/d1")
	ember(t, db, "user", "add", "--username", "pharm", "--password", "s3cret-password", "--role", "pharmacist", "--fhir-user", "Practitioner/ph1")

	token := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := emberSplit(t, env, append([]string{"token"}, args...)...)
		if code != 0 || strings.Count(stdout, "\n") != 1 || strings.Count(stdout, ".") != 2 {
			t.Fatalf("ember token %s: exit %d\nstdout: %q\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
		}
		return strings.TrimSpace(stdout)
	}

	// A client's token: API, introspection, revocation by the client.
	tok := token("--client", "svc", "--scope", "system/*.rs", "--ttl", "10m")
	if code, body := bearerGet(t, base+"/Patient", tok); code != 200 || !strings.Contains(body, `"searchset"`) {
		t.Fatalf("API with the token: %d %s", code, body)
	}
	code, intro := postForm(t, "http://"+addr+"/auth/introspect", url.Values{"token": {tok}}, "svc", secret)
	if exp, _ := intro["exp"].(float64); code != 200 || intro["active"] != true || intro["client_id"] != "svc" ||
		intro["scope"] != "system/*.rs" || time.Until(time.Unix(int64(exp), 0)) > 10*time.Minute {
		t.Errorf("introspection: %d %v", code, intro)
	}
	if code, _ := postForm(t, "http://"+addr+"/auth/revoke", url.Values{"token": {tok}}, "svc", secret); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ := bearerGet(t, base+"/Patient", tok); code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", code)
	}
	if _, intro := postForm(t, "http://"+addr+"/auth/introspect", url.Values{"token": {tok}}, "svc", secret); intro["active"] != false {
		t.Errorf("revoked token introspected: %v", intro)
	}

	// A user's token, revoked by the administrator.
	utok := token("--user", "doc", "--scope", "user/Patient.rs")
	if code, body := bearerGet(t, base+"/Patient", utok); code != 200 {
		t.Fatalf("user token: %d %s", code, body)
	}
	if code, _ := bearerGet(t, base+"/Observation", utok); code != http.StatusForbidden {
		t.Errorf("user token beyond its scope: %d, want 403", code)
	}
	if out, code := ember(t, env, "token", "revoke", "--token", utok); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %d %s", code, out)
	}
	deadline := time.Now().Add(10 * time.Second) // the server polls revocations every second
	for code, _ := bearerGet(t, base+"/Patient", utok); code != http.StatusUnauthorized; code, _ = bearerGet(t, base+"/Patient", utok) {
		if time.Now().After(deadline) {
			t.Fatalf("token revoked by ember token revoke: still %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Refused, with the reason; nothing on stdout.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--client", "svc", "--scope", "system/*.cruds"}, "beyond client svc's registered scopes"},
		{[]string{"--client", "svc", "--scope", "user/*.rs"}, "needs a user"},
		{[]string{"--user", "pharm", "--scope", "user/*.rs"}, "beyond role pharmacist's ceiling"},
		{[]string{"--user", "doc", "--scope", "system/*.rs"}, "for services"},
		{[]string{"--client", "ghost", "--scope", "system/*.rs"}, "not registered"},
		{[]string{"--client", "svc"}, "at least one scope"},
		{[]string{"--client", "svc", "--scope", "system/*.rs", "--ttl", "48h"}, "lifetime"},
		{[]string{"--scope", "system/*.rs"}, "name a client or a user"},
		{[]string{"--client", "svc", "--scope", "system/*.rs", "--base-url", "http://elsewhere.example/fhir"}, "https"},
	} {
		stdout, stderr, code := emberSplit(t, env, append([]string{"token"}, c.args...)...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("ember token %s: exit %d, stdout %q, stderr %q; want 1 and %q", strings.Join(c.args, " "), code, stdout, stderr, c.want)
		}
	}

	// --register: a service on first use (secret on stderr), reused after.
	stdout, stderr, code := emberSplit(t, env, "token", "--client", "reg", "--register", "--scope", "system/Patient.rs")
	m = secretRE.FindStringSubmatch(stderr)
	if code != 0 || m == nil || !strings.Contains(stderr, "client reg registered") {
		t.Fatalf("token --register: %d\n%s%s", code, stdout, stderr)
	}
	if c, _ := bearerGet(t, base+"/Patient", strings.TrimSpace(stdout)); c != 200 {
		t.Errorf("registered client's token: %d", c)
	}
	if _, stderr, code := emberSplit(t, env, "token", "--client", "reg", "--register", "--scope", "system/Patient.rs"); code != 0 ||
		strings.Contains(stderr, "registered") {
		t.Errorf("second --register: %d %s", code, stderr)
	}
	if _, stderr, code := emberSplit(t, env, "token", "--client", "reg", "--register", "--scope", "system/*.rs"); code != 1 ||
		!strings.Contains(stderr, "beyond client reg's registered scopes") {
		t.Errorf("--register does not widen a registration: %d %s", code, stderr)
	}
	code, body := postForm(t, "http://"+addr+"/auth/token", url.Values{"grant_type": {"client_credentials"},
		"scope": {"system/Patient.rs"}, "client_id": {"reg"}, "client_secret": {m[1]}}, "", "")
	if at, _ := body["access_token"].(string); code != 200 || at == "" {
		t.Fatalf("client_credentials with the registered secret: %d %v", code, body)
	} else if c, _ := bearerGet(t, base+"/Patient", at); c != 200 {
		t.Errorf("client_credentials token: %d", c)
	}
	// A symmetric client without the grant.
	ember(t, db, "client", "add", "--id", "portal", "--type", "symmetric", "--secret", "portal-secret-0123456789",
		"--redirect-uri", "http://a.example/cb", "--scope", "user/*.rs system/*.rs")
	code, body = postForm(t, "http://"+addr+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}},
		"portal", "portal-secret-0123456789")
	if code != 400 || body["error"] != "unauthorized_client" {
		t.Errorf("symmetric client without the grant: %d %v", code, body)
	}

	if out, code := ember(t, nil, "token", "--help"); code != 0 || !strings.Contains(out, "-ttl") || !strings.Contains(out, "-register") ||
		!strings.Contains(out, "EMBER_BASE_URL") || !strings.Contains(out, "-database-url") {
		t.Errorf("token --help: %d\n%s", code, out)
	}
}
