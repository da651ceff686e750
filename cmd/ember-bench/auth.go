package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// authRead measures read-by-id with SMART authorisation on: a second server
// with --auth smart, a backend-services client (private_key_jwt, RS384)
// holding a system/*.cruds token, the same 2,000 Patients and load as
// read_c32. The ratio compares it with read_c32 on the unauthenticated
// server of this run.
func authRead(ctx context.Context, e *env) ([]figure, error) {
	srv, err := startEmber(ctx, e.bin, e.profileDir != "", func(error) {}, "--auth", "smart")
	if srv != nil {
		defer func() { _ = shutdown(srv, false, err != nil, io.Discard) }()
	}
	if err != nil {
		return nil, fmt.Errorf("read_auth: %w", err)
	}
	token, err := backendToken(ctx, e.bin, srv)
	if err != nil {
		return nil, fmt.Errorf("read_auth: %w", err)
	}
	ae := *e
	ae.fhirBase, ae.client, ae.token, ae.debugAddr = srv.baseURL+"/fhir", newClient(), token, srv.debugAddr
	// Without the token the server must refuse, or this measures nothing.
	if err := (&env{client: ae.client}).do(ctx, http.MethodGet, ae.fhirBase+"/Patient", nil, http.StatusUnauthorized); err != nil {
		return nil, fmt.Errorf("read_auth: %w", err)
	}
	if _, err := seed(ctx, &ae); err != nil {
		return nil, fmt.Errorf("read_auth seed: %w", err)
	}
	figs, err := namedRead("read_auth_c32", 32).run(ctx, &ae)
	if len(figs) > 0 && e.readRate > 0 {
		figs = append(figs, figure{"read_auth_vs_unauth", 100 * figs[0].value / e.readRate, "%"})
	}
	return figs, err
}

// backendToken registers an asymmetric client with `ember client add` and
// gets a client_credentials token with a signed assertion.
func backendToken(ctx context.Context, bin string, srv *emberServer) (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	jwk := jose.JSONWebKey{Key: key.Public(), KeyID: "bench", Algorithm: string(jose.RS384), Use: "sig"}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return "", err
	}
	jwksFile := filepath.Join(srv.dir, "bench-jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, "client", "add", "--data-dir", filepath.Join(srv.dir, "data"),
		"--id", "bench", "--type", "asymmetric", "--scope", "system/*.cruds", "--jwks", jwksFile)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ember client add: %w: %s", err, out)
	}
	tokenURL := srv.baseURL + "/auth/token"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS384, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return "", err
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	now := time.Now()
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: "bench", Subject: "bench", Audience: jwt.Audience{tokenURL},
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: hex.EncodeToString(jti),
	}).Serialize()
	if err != nil {
		return "", err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {"system/*.cruds"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("token: %d %s %s %v", resp.StatusCode, tr.Error, tr.Description, err)
	}
	return tr.AccessToken, nil
}
