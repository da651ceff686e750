package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/internal/pgtest"
)

// TestClientUserLaunchCommands: ember client/user/launch against a
// database URL, with their errors.
func TestClientUserLaunchCommands(t *testing.T) {
	db := []string{"EMBER_DATABASE_URL=" + pgtest.NewDatabase(t)}
	run := func(want int, args ...string) string {
		t.Helper()
		out, code := ember(t, db, args...)
		if code != want {
			t.Fatalf("ember %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}
	run(0, "client", "add", "--id", "growth", "--type", "public", "--redirect-uri", "http://app.example/cb",
		"--redirect-uri", "http://app.example/cb2", "--scope", "openid fhirUser launch launch/patient patient/*.rs",
		"--launch-uri", "http://app.example/launch")
	out := run(0, "client", "add", "--id", "conf", "--type", "symmetric", "--redirect-uri", "http://app.example/cb", "--scope", "user/*.rs")
	if !strings.Contains(out, "secret: ") {
		t.Errorf("no generated secret printed: %s", out)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384"}}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(file, jwks, 0o600)
	run(0, "client", "add", "--id", "bulk", "--type", "asymmetric", "--jwks", file, "--scope", "system/*.rs")
	priv, _ := json.Marshal(jose.JSONWebKey{Key: key, KeyID: "k1"})
	os.WriteFile(file, []byte(`{"keys":[`+string(priv)+`]}`), 0o600)
	for name, args := range map[string][]string{
		"duplicate":       {"--id", "growth", "--type", "public", "--redirect-uri", "http://app.example/cb"},
		"bad type":        {"--id", "x", "--type", "magic", "--redirect-uri", "http://app.example/cb"},
		"no redirect":     {"--id", "x", "--type", "public"},
		"relative uri":    {"--id", "x", "--type", "public", "--redirect-uri", "/cb"},
		"no keys":         {"--id", "x", "--type", "asymmetric"},
		"private jwks":    {"--id", "x", "--type", "asymmetric", "--jwks", file},
		"short secret":    {"--id", "x", "--type", "symmetric", "--secret", "short", "--redirect-uri", "http://a.example/cb"},
		"public + secret": {"--id", "x", "--type", "public", "--secret", "0123456789abcdefgh", "--redirect-uri", "http://a.example/cb"},
	} {
		if out, code := ember(t, db, append([]string{"client", "add"}, args...)...); code != 1 {
			t.Errorf("%s: exit %d\n%s", name, code, out)
		}
	}
	out = run(0, "client", "list")
	for _, want := range []string{"growth", "public", "http://app.example/cb,http://app.example/cb2", "conf", "symmetric", "bulk", "asymmetric"} {
		if !strings.Contains(out, want) {
			t.Errorf("client list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nx ") {
		t.Errorf("a rejected client was stored:\n%s", out)
	}

	run(0, "user", "add", "--username", "drwho", "--password", "s3cret-password", "--role", "doctor", "--fhir-user", "Practitioner/d1")
	for name, args := range map[string][]string{
		"bad role":      {"--username", "u", "--password", "s3cret-password", "--role", "janitor", "--fhir-user", "Practitioner/1"},
		"bad fhir user": {"--username", "u", "--password", "s3cret-password", "--role", "nurse", "--fhir-user", "Observation/1"},
		"patient role":  {"--username", "u", "--password", "s3cret-password", "--role", "patient", "--fhir-user", "Practitioner/1"},
		"short pw":      {"--username", "u", "--password", "short", "--role", "nurse", "--fhir-user", "Practitioner/1"},
		"duplicate":     {"--username", "drwho", "--password", "s3cret-password", "--role", "nurse", "--fhir-user", "Practitioner/1"},
	} {
		if out, code := ember(t, db, append([]string{"user", "add"}, args...)...); code != 1 {
			t.Errorf("user %s: exit %d\n%s", name, code, out)
		}
	}
	if out := run(0, "user", "list"); !strings.Contains(out, "drwho") || !strings.Contains(out, "Practitioner/d1") ||
		strings.Contains(out, "argon2") {
		t.Errorf("user list:\n%s", out)
	}

	out = run(0, "launch", "--client", "growth", "--patient", "p1", "--encounter", "e1", "--user", "drwho",
		"--base-url", "https://ehr.example/fhir")
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil || !strings.HasPrefix(u.String(), "http://app.example/launch?") || u.Query().Get("iss") != "https://ehr.example/fhir" ||
		len(u.Query().Get("launch")) < 20 {
		t.Errorf("launch URL %q", out)
	}
	run(1, "launch", "--client", "conf", "--patient", "p1") // no launch URI
	run(1, "launch", "--client", "growth")                  // no patient
	run(1, "launch", "--client", "growth", "--patient", "p1", "--user", "nobody")
	run(1, "launch", "--client", "ghost", "--patient", "p1")

	run(0, "client", "remove", "--id", "growth")
	run(1, "client", "remove", "--id", "growth")
	if out := run(0, "client", "list"); strings.Contains(out, "growth") {
		t.Errorf("removed client listed:\n%s", out)
	}
	run(0, "user", "remove", "--username", "drwho")
	run(2, "client")
	run(2, "user", "frob")
	if out := run(0, "client", "add", "--help"); !strings.Contains(out, "-database-url") || !strings.Contains(out, "-launch-uri") {
		t.Errorf("client add --help:\n%s", out)
	}
}

// TestClientAddWhileServing: the admin commands reach the embedded cluster
// of a server running on the same data dir.
func TestClientAddWhileServing(t *testing.T) {
	dataDir := filepath.Join(traversableTempDir(t), "data")
	addr := freeAddr(t)
	env := []string{"EMBER_DATA_DIR=" + dataDir, "EMBER_DATABASE_URL="}
	startServe(t, env, addr, "--addr", addr)
	if out, code := ember(t, env, "client", "add", "--id", "live", "--type", "public", "--redirect-uri", "http://a.example/cb"); code != 0 {
		t.Fatalf("client add while serving: %d\n%s", code, out)
	}
	if out, code := ember(t, env, "client", "list"); code != 0 || !strings.Contains(out, "live") {
		t.Fatalf("client list while serving: %d\n%s", code, out)
	}
}
