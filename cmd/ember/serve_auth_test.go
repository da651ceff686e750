package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
)

// insecureClient trusts the self-signed certificates of these tests.
var insecureClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
}

// TestServeAuthDefault: with no --auth, serve runs the SMART authorization
// server and refuses FHIR requests without a token; discovery, the
// CapabilityStatement and the security headers are in place.
func TestServeAuthDefault(t *testing.T) {
	addr := freeAddr(t)
	s := startServe(t, []string{"EMBER_AUTH="}, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t))
	get := func(path string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	r := get("/fhir/Patient")
	if r.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("GET /fhir/Patient without a token: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("no X-Content-Type-Options on a FHIR response")
	}
	if r.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("HSTS over plain HTTP")
	}
	if r := get("/dicomweb/studies"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("DICOMweb without a token: %d", r.StatusCode)
	}
	r = get("/fhir/.well-known/smart-configuration")
	var conf map[string]any
	if err := json.NewDecoder(r.Body).Decode(&conf); err != nil || r.StatusCode != 200 {
		t.Fatalf("smart-configuration: %d %v", r.StatusCode, err)
	}
	if conf["issuer"] != "http://"+addr+"/auth" || conf["token_endpoint"] != "http://"+addr+"/auth/token" {
		t.Errorf("smart-configuration endpoints: %v", conf)
	}
	r = get("/auth/.well-known/openid-configuration")
	if r.StatusCode != 200 {
		t.Errorf("openid-configuration: %d", r.StatusCode)
	}
	r = get("/fhir/metadata", "Origin: https://app.example.org")
	var cs map[string]any
	if err := json.NewDecoder(r.Body).Decode(&cs); err != nil || r.StatusCode != 200 {
		t.Fatalf("metadata: %d %v", r.StatusCode, err)
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	sec, _ := json.Marshal(rest["security"])
	if !strings.Contains(string(sec), "http://"+addr+"/auth/authorize") || !strings.Contains(string(sec), "SMART-on-FHIR") {
		t.Errorf("CapabilityStatement security: %s", sec)
	}
	if r.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("no CORS header on metadata for a browser origin")
	}
	// A browser app's preflight for an authenticated FHIR call.
	req, _ := http.NewRequest(http.MethodOptions, "http://"+addr+"/fhir/Patient/1", nil)
	req.Header.Set("Origin", "https://app.example.org")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode/100 != 2 || !strings.Contains(strings.ToLower(pre.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	s.stop(t)
}

// TestServeAuthNoneWarns: --auth none serves without tokens and says so.
func TestServeAuthNoneWarns(t *testing.T) {
	addr := freeAddr(t)
	s := startServe(t, nil, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t), "--auth", "none")
	resp, err := http.Get("http://" + addr + "/fhir/Patient")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("--auth none: GET /fhir/Patient = %d", resp.StatusCode)
	}
	if !strings.Contains(s.out.String(), "authorisation is OFF") {
		t.Errorf("no warning for --auth none:\n%s", s.out.String())
	}
	if out, code := ember(t, nil, "serve", "--auth", "maybe"); code == 0 || !strings.Contains(out, "smart or none") {
		t.Errorf("--auth maybe: %d %s", code, out)
	}
}

// TestServeTLS: --tls-cert/--tls-key serve HTTPS, TLS 1.2 or later, with HSTS.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	addr := freeAddr(t)
	startServe(t, nil, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t), "--tls-cert", cert, "--tls-key", key)
	resp, err := insecureClient.Get("https://" + addr + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("https metadata: %d", resp.StatusCode)
	}
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS under TLS: %v", resp.Header)
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get("https://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("a TLS 1.1 client was served")
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
