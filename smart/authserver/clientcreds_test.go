package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/smart/access"
)

const svcSecret = "service-secret-0123456789"

// addServices registers the symmetric service clients of these tests: svc
// (client_credentials, system/*.rs and system/Observation.cruds) and labsvc
// (client_credentials, one constrained scope).
func (e *env) addServices() {
	e.t.Helper()
	for _, c := range []Client{
		{ID: "svc", Type: Symmetric, Secret: svcSecret, Grants: []string{GrantClientCredentials},
			Scopes: []string{"system/*.rs", "system/Observation.cruds"}},
		{ID: "labsvc", Type: Symmetric, Secret: svcSecret, Grants: []string{GrantClientCredentials},
			Scopes: []string{"system/Observation.rs?category=laboratory"}},
	} {
		if err := AddClient(context.Background(), e.st, c); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestClientCredentialsSymmetric: RFC 6749 §4.4 for a symmetric client
// registered for it, by client_secret_basic and client_secret_post, and
// every way it is refused. Requested scopes beyond the registration are
// narrowed to it (the policy of the Backend Services grant and of
// authorize), never exceeded; nothing left is invalid_scope.
func TestClientCredentialsSymmetric(t *testing.T) {
	e := newEnv(t)
	e.addServices()
	ctx := context.Background()
	cc := func(scope, basic string, form url.Values) (int, map[string]any) {
		t.Helper()
		f := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
		for k, v := range form {
			f[k] = v
		}
		s, b, _ := e.tokenReq("/auth/token", f, basic)
		return s, b
	}
	post := func(id, secret string) url.Values { return url.Values{"client_id": {id}, "client_secret": {secret}} }

	for name, got := range map[string]func() (int, map[string]any){
		"basic": func() (int, map[string]any) { return cc("system/Patient.rs", "svc:"+svcSecret, nil) },
		"post":  func() (int, map[string]any) { return cc("system/Patient.rs", "", post("svc", svcSecret)) },
	} {
		s, b := got()
		if s != 200 || str(b, "scope") != "system/Patient.rs" || str(b, "token_type") != "Bearer" ||
			b["refresh_token"] != nil || b["id_token"] != nil || b["patient"] != nil {
			t.Errorf("%s: %d %v", name, s, b)
			continue
		}
		g, err := e.srv.Verifier().Verify(ctx, str(b, "access_token"))
		if err != nil || g.ClientID != "svc" || g.Subject != "svc" || g.Role != "" || g.FHIRUser != "" ||
			!slices.Equal(g.Scopes, []string{"system/Patient.rs"}) {
			t.Errorf("%s: grant %+v %v", name, g, err)
		}
	}

	// Beyond the registration: narrowed, never more.
	for req, want := range map[string]string{
		"system/*.cruds":                           "system/*.rs system/Observation.cruds",
		"system/Patient.cruds":                     "system/Patient.rs",
		"system/Patient.rs system/Encounter.cruds": "system/Patient.rs system/Encounter.rs",
	} {
		if s, b := cc(req, "svc:"+svcSecret, nil); s != 200 || str(b, "scope") != want {
			t.Errorf("svc asking %q: %d %v, want scope %q", req, s, b, want)
		}
	}
	// A registered search constraint stays: asking without it is narrowed
	// to it (never the whole type), asking with it gets it, asking with
	// another constraint gets nothing.
	if s, b := cc("system/Observation.rs", "labsvc:"+svcSecret, nil); s != 200 ||
		str(b, "scope") != "system/Observation.rs?category=laboratory" {
		t.Errorf("constrained registration, unconstrained request: %d %v, want the registered constraint", s, b)
	}
	s, b := cc("system/Observation.rs?category=vital-signs", "labsvc:"+svcSecret, nil)
	wantOAuthError(t, "constrained registration, another constraint", s, b, []int{400}, "invalid_scope")
	if s, b := cc("system/Observation.rs?category=laboratory", "", post("labsvc", svcSecret)); s != 200 ||
		str(b, "scope") != "system/Observation.rs?category=laboratory" {
		t.Errorf("constrained request: %d %v", s, b)
	}

	for _, c := range []struct {
		name   string
		scope  string
		basic  string
		form   url.Values
		status int
		code   string
	}{
		{"symmetric without the grant (basic)", "system/*.rs", "conf:a-long-enough-secret", nil, 400, "unauthorized_client"},
		{"symmetric without the grant (post)", "system/*.rs", "", post("conf", "a-long-enough-secret"), 400, "unauthorized_client"},
		{"public client", "system/*.rs", "", url.Values{"client_id": {"app"}}, 400, "unauthorized_client"},
		{"wrong secret (basic)", "system/*.rs", "svc:not-the-secret-at-all", nil, 401, "invalid_client"},
		{"wrong secret (post)", "system/*.rs", "", post("svc", "not-the-secret-at-all"), 401, "invalid_client"},
		{"empty secret (post)", "system/*.rs", "", post("svc", ""), 401, "invalid_client"},
		{"unknown client (post)", "system/*.rs", "", post("ghost", svcSecret), 401, "invalid_client"},
		{"secret without client_id", "system/*.rs", "", url.Values{"client_secret": {svcSecret}}, 401, "invalid_client"},
		{"basic and post at once", "system/*.rs", "svc:" + svcSecret, post("svc", svcSecret), 400, "invalid_request"},
		{"user scope", "user/*.rs", "svc:" + svcSecret, nil, 400, "invalid_scope"},
		{"patient scope among system ones", "system/*.rs patient/*.rs", "svc:" + svcSecret, nil, 400, "invalid_scope"},
		{"openid", "openid system/*.rs", "svc:" + svcSecret, nil, 400, "invalid_scope"},
		{"no scope", "", "svc:" + svcSecret, nil, 400, "invalid_scope"},
		{"unregistered type", "system/Patient.rs", "labsvc:" + svcSecret, nil, 400, "invalid_scope"},
	} {
		s, b := cc(c.scope, c.basic, c.form)
		wantOAuthError(t, c.name, s, b, []int{c.status}, c.code)
	}

	// client_secret_post authenticates introspection and revocation too.
	_, b = cc("system/*.rs", "svc:"+svcSecret, nil)
	tok := str(b, "access_token")
	s, b, _ = e.tokenReq("/auth/introspect", url.Values{"token": {tok}, "client_id": {"svc"}, "client_secret": {svcSecret}}, "")
	if s != 200 || b["active"] != true || str(b, "client_id") != "svc" || str(b, "scope") != "system/*.rs" {
		t.Errorf("introspect by client_secret_post: %d %v", s, b)
	}
	if s, _, _ := e.tokenReq("/auth/revoke", url.Values{"token": {tok}, "client_id": {"svc"}, "client_secret": {svcSecret}}, ""); s != 200 {
		t.Errorf("revoke by client_secret_post: %d", s)
	}
	if _, err := e.srv.Verifier().Verify(ctx, tok); !errors.Is(err, access.ErrInvalidToken) {
		t.Errorf("revoked service token still verifies: %v", err)
	}
}

// TestClientGrantRegistration: who may choose grant types, and what a
// service registration needs and may not have.
func TestClientGrantRegistration(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sys := []string{"system/*.rs"}
	for name, c := range map[string]Client{
		"public with a grant":         {ID: "x", Type: Public, RedirectURIs: []string{redirect}, Grants: []string{GrantClientCredentials}, Scopes: sys},
		"asymmetric with a grant":     {ID: "x", Type: Asymmetric, JWKSURI: "https://k.example/jwks", Grants: []string{GrantClientCredentials}, Scopes: sys},
		"unknown grant":               {ID: "x", Type: Symmetric, Secret: svcSecret, Grants: []string{"password"}, Scopes: sys},
		"service without system/":     {ID: "x", Type: Symmetric, Secret: svcSecret, Grants: []string{GrantClientCredentials}, Scopes: []string{"user/*.rs"}},
		"service with redirect":       {ID: "x", Type: Symmetric, Secret: svcSecret, Grants: []string{GrantClientCredentials}, Scopes: sys, RedirectURIs: []string{redirect}},
		"service with launch":         {ID: "x", Type: Symmetric, Secret: svcSecret, Grants: []string{GrantClientCredentials}, Scopes: sys, LaunchURI: "http://app.example/launch"},
		"app without redirect":        {ID: "x", Type: Symmetric, Secret: svcSecret, Scopes: []string{"user/*.rs"}},
		"both grants, no redirect":    {ID: "x", Type: Symmetric, Secret: svcSecret, Grants: []string{GrantAuthorizationCode, GrantClientCredentials}, Scopes: sys},
		"service with a short secret": {ID: "x", Type: Symmetric, Secret: "short", Grants: []string{GrantClientCredentials}, Scopes: sys},
	} {
		if err := AddClient(ctx, e.st, c); err == nil {
			t.Errorf("%s: registered", name)
		}
	}
	both := Client{ID: "both", Type: Symmetric, Secret: svcSecret, RedirectURIs: []string{redirect},
		Grants: []string{GrantClientCredentials, GrantAuthorizationCode, GrantClientCredentials}, Scopes: []string{"user/*.rs", "system/*.rs"}}
	if err := AddClient(ctx, e.st, both); err != nil {
		t.Fatal(err)
	}
	c, err := GetClient(ctx, e.st, "both")
	if err != nil || !slices.Equal(c.Grants, []string{GrantClientCredentials, GrantAuthorizationCode}) ||
		!slices.Equal(c.GrantTypes(), []string{GrantAuthorizationCode, GrantClientCredentials}) {
		t.Fatalf("both: %+v %v", c, err)
	}
	for id, want := range map[string][]string{
		"app": {GrantAuthorizationCode}, "conf": {GrantAuthorizationCode},
		"backend": {GrantAuthorizationCode, GrantClientCredentials},
	} {
		if c, err := GetClient(ctx, e.st, id); err != nil || !slices.Equal(c.GrantTypes(), want) {
			t.Errorf("%s grant types %v %v, want %v", id, c.GrantTypes(), err, want)
		}
	}
	// Both grants: a service token and still the code flow.
	s, b, _ := e.tokenReq("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs user/*.rs"}}, "both:"+svcSecret)
	wantOAuthError(t, "user scope by client_credentials", s, b, []int{400}, "invalid_scope")
	if s, b, _ := e.tokenReq("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, "both:"+svcSecret); s != 200 {
		t.Errorf("both, client_credentials: %d %v", s, b)
	}
	p := newPKCE()
	code := e.authorize(e.authParams("both", "user/*.rs", p), flow{user: "doc"}).Get("code")
	s, b, _ = e.tokenReq("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"code_verifier": {p.verifier}}, "both:"+svcSecret)
	if s != 200 || str(b, "scope") != "user/*.rs" {
		t.Errorf("both, code: %d %v", s, b)
	}
}

// TestDiscoveryAuthMethods: both discovery documents name every client
// authentication method the token endpoint accepts, and the grants.
func TestDiscoveryAuthMethods(t *testing.T) {
	e := newEnv(t)
	for _, u := range []string{e.base + "/.well-known/smart-configuration", e.ts.URL + "/auth/.well-known/openid-configuration"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Methods []string `json:"token_endpoint_auth_methods_supported"`
			Grants  []string `json:"grant_types_supported"`
		}
		err = jsonDecode(resp, &doc)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(doc.Methods, []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}) ||
			!slices.Equal(doc.Grants, []string{"authorization_code", "refresh_token", "client_credentials"}) {
			t.Errorf("%s: methods %v, grants %v", u, doc.Methods, doc.Grants)
		}
	}
}

// TestIssueToken: the administrator's tokens (ember token) are the token
// endpoint's: verified, introspected and revoked like them; their scopes
// never exceed the client's registration or the user's role ceiling.
func TestIssueToken(t *testing.T) {
	e := newEnv(t)
	e.addServices()
	ctx := context.Background()
	ok := func(req TokenRequest) *access.Grant {
		t.Helper()
		it, err := e.srv.IssueToken(ctx, req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		g, err := e.srv.Verifier().Verify(ctx, it.AccessToken)
		if err != nil || !slices.Equal(g.Scopes, req.Scopes) || !g.Expiry.Equal(it.ExpiresAt) {
			t.Fatalf("%+v: grant %+v %v", req, g, err)
		}
		return g
	}
	g := ok(TokenRequest{ClientID: "svc", Scopes: []string{"system/Patient.rs", "system/Observation.cu"}})
	if g.ClientID != "svc" || g.Subject != "svc" || g.Role != "" || time.Until(g.Expiry) < 59*time.Minute || time.Until(g.Expiry) > time.Hour {
		t.Errorf("service grant %+v", g)
	}
	if g := ok(TokenRequest{ClientID: "svc", Scopes: []string{"system/*.rs"}, TTL: 5 * time.Minute}); time.Until(g.Expiry) > 5*time.Minute {
		t.Errorf("ttl: expires %s", g.Expiry)
	}
	if g := ok(TokenRequest{ClientID: "labsvc", Scopes: []string{"system/Observation.rs?category=laboratory"}}); g.ClientID != "labsvc" {
		t.Errorf("constrained: %+v", g)
	}
	if g := ok(TokenRequest{Username: "doc", Scopes: []string{"user/*.cruds"}}); g.Subject != "doc" || g.ClientID != "" ||
		g.Role != "doctor" || g.FHIRUser != "Practitioner/d1" || g.Patient != "" {
		t.Errorf("user grant %+v", g)
	}
	if g := ok(TokenRequest{Username: "doc", ClientID: "conf", Scopes: []string{"user/*.rs"}}); g.ClientID != "conf" || g.Subject != "doc" {
		t.Errorf("user and client grant %+v", g)
	}
	if g := ok(TokenRequest{Username: "pharm", Scopes: []string{"user/MedicationRequest.rs", "user/Patient.r"}}); g.Role != "pharmacist" {
		t.Errorf("pharmacist grant %+v", g)
	}
	if g := ok(TokenRequest{Username: "ann", Scopes: []string{"patient/*.rs"}}); g.Patient != "p1" {
		t.Errorf("a patient's own context: %+v", g)
	}
	if g := ok(TokenRequest{Username: "doc", Patient: "p2", Scopes: []string{"patient/Observation.rs"}}); g.Patient != "p2" {
		t.Errorf("doctor with patient context: %+v", g)
	}

	for name, req := range map[string]TokenRequest{
		"beyond the client's registration": {ClientID: "svc", Scopes: []string{"system/*.cruds"}},
		"beyond the constraint":            {ClientID: "labsvc", Scopes: []string{"system/Observation.rs"}},
		"user scope without a user":        {ClientID: "svc", Scopes: []string{"user/*.rs"}},
		"system scope for a user":          {Username: "doc", Scopes: []string{"system/*.rs"}},
		"beyond the role ceiling":          {Username: "pharm", Scopes: []string{"user/*.rs"}},
		"beyond the role (patient)":        {Username: "ann", Scopes: []string{"user/*.rs"}},
		"another patient's record":         {Username: "ann", Patient: "p2", Scopes: []string{"patient/*.rs"}},
		"beyond the client, within role":   {Username: "doc", ClientID: "backend", Scopes: []string{"user/*.rs"}},
	} {
		if _, err := e.srv.IssueToken(ctx, req); !errors.Is(err, ErrNotPermitted) {
			t.Errorf("%s: %v, want ErrNotPermitted", name, err)
		}
	}
	for name, req := range map[string]TokenRequest{
		"nobody":                     {Scopes: []string{"system/*.rs"}},
		"no scope":                   {ClientID: "svc"},
		"non-resource scope":         {ClientID: "svc", Scopes: []string{"openid"}},
		"malformed scope":            {ClientID: "svc", Scopes: []string{"system/*.xyz"}},
		"unknown client":             {ClientID: "ghost", Scopes: []string{"system/*.rs"}},
		"unknown user":               {Username: "ghost", Scopes: []string{"user/*.rs"}},
		"patient scope, no patient":  {Username: "doc", Scopes: []string{"patient/*.rs"}},
		"patient without scope":      {Username: "doc", Patient: "p1", Scopes: []string{"user/*.rs"}},
		"patient for a client alone": {ClientID: "svc", Patient: "p1", Scopes: []string{"system/*.rs"}},
		"bad patient id":             {Username: "doc", Patient: "a/b", Scopes: []string{"patient/*.rs"}},
		"too long":                   {ClientID: "svc", Scopes: []string{"system/*.rs"}, TTL: 25 * time.Hour},
		"negative":                   {ClientID: "svc", Scopes: []string{"system/*.rs"}, TTL: -time.Minute},
	} {
		if it, err := e.srv.IssueToken(ctx, req); err == nil {
			t.Errorf("%s: issued %+v", name, it)
		}
	}

	// Introspected by a confidential client; revoked by its client at
	// /auth/revoke, or by RevokeToken whoever holds it.
	it, err := e.srv.IssueToken(ctx, TokenRequest{ClientID: "svc", Scopes: []string{"system/*.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	s, b, _ := e.tokenReq("/auth/introspect", url.Values{"token": {it.AccessToken}}, "conf:a-long-enough-secret")
	if s != 200 || b["active"] != true || str(b, "client_id") != "svc" || str(b, "jti") != it.ID {
		t.Errorf("introspect: %d %v", s, b)
	}
	if s, _, _ := e.tokenReq("/auth/revoke", url.Values{"token": {it.AccessToken}}, "svc:"+svcSecret); s != 200 {
		t.Errorf("revoke: %d", s)
	}
	if _, err := e.srv.Verifier().Verify(ctx, it.AccessToken); !errors.Is(err, access.ErrInvalidToken) {
		t.Errorf("revoked: %v", err)
	}
	user, err := e.srv.IssueToken(ctx, TokenRequest{Username: "doc", Scopes: []string{"user/*.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	// A token without a client, as a bearer, introspects no other token
	// (no client id is not every client id).
	for _, req := range []TokenRequest{
		{ClientID: "svc", Scopes: []string{"system/*.rs"}},
		{Username: "pharm", Scopes: []string{"user/Patient.rs"}},
	} {
		other, err := e.srv.IssueToken(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if s, b, _ := e.tokenReq("/auth/introspect", url.Values{"token": {other.AccessToken}}, user.AccessToken); s != 200 || len(b) != 1 || b["active"] != false {
			t.Errorf("bearer without a client introspecting %+v: %d %v", req, s, b)
		}
	}
	// Another server on the database (ember token revoke) revokes it here.
	jti, _, err := e.newServer().RevokeToken(ctx, user.AccessToken)
	if err != nil || jti != user.ID {
		t.Fatalf("RevokeToken: %q %v", jti, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, err := e.srv.Verifier().Verify(ctx, user.AccessToken); err == nil; _, err = e.srv.Verifier().Verify(ctx, user.AccessToken) {
		if time.Now().After(deadline) {
			t.Fatal("a token revoked by another server still verifies")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := e.srv.RevokeToken(ctx, "not.a.token"); err == nil || !strings.Contains(err.Error(), "base-url") {
		t.Errorf("revoking garbage: %v", err)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
