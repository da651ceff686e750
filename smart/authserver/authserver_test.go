package authserver

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/store/authdb/authdbtest"
)

// Inferno: SMART discovery (well-known fields, S256 only, capabilities),
// OpenID configuration and a JWKS with an RSA key; CORS for allowed origins.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.base+"/.well-known/smart-configuration", nil)
	req.Header.Set("Origin", "http://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("smart-configuration: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("no CORS for an allowed origin: %v", resp.Header)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	iss := e.ts.URL + "/auth"
	for k, want := range map[string]string{"issuer": iss, "jwks_uri": iss + "/jwks", "authorization_endpoint": iss + "/authorize",
		"token_endpoint": iss + "/token", "introspection_endpoint": iss + "/introspect", "revocation_endpoint": iss + "/revoke"} {
		if str(doc, k) != want {
			t.Errorf("%s = %v, want %s", k, doc[k], want)
		}
	}
	list := func(k string) []string {
		var out []string
		for _, v := range doc[k].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := list("code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v", got)
	}
	for _, g := range []string{"authorization_code", "refresh_token", "client_credentials"} {
		if !slices.Contains(list("grant_types_supported"), g) {
			t.Errorf("grant_types_supported lacks %s", g)
		}
	}
	for _, c := range capabilities {
		if !slices.Contains(list("capabilities"), c) {
			t.Errorf("capabilities lacks %s", c)
		}
	}
	for _, k := range []string{"token_endpoint_auth_methods_supported", "scopes_supported", "response_types_supported"} {
		if len(list(k)) == 0 {
			t.Errorf("%s is empty", k)
		}
	}

	// Preflight from an allowed origin; none for another.
	req, _ = http.NewRequest(http.MethodOptions, iss+"/token", nil)
	req.Header.Set("Origin", "http://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	req.Header.Set("Origin", "http://evil.example")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS granted to another origin")
	}

	var oidc map[string]any
	resp, err = http.Get(iss + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&oidc)
	resp.Body.Close()
	if str(oidc, "issuer") != iss || str(oidc, "jwks_uri") != iss+"/jwks" {
		t.Errorf("openid-configuration: %v", oidc)
	}
	set := fetchJWKS(t, iss+"/jwks")
	if len(set.Keys) != 1 || set.Keys[0].Algorithm != "RS256" || set.Keys[0].KeyID == "" || !set.Keys[0].IsPublic() {
		t.Fatalf("jwks: %+v", set)
	}
	if n := set.Keys[0].Key.(interface{ Size() int }).Size(); n < 256 {
		t.Errorf("RSA key of %d bytes", n)
	}
	// A restart (or replica) uses the same key.
	if e.newServer().kid != e.srv.kid {
		t.Error("second server generated another key")
	}
}

func fetchJWKS(t *testing.T, u string) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

// Inferno standalone launch: PKCE, state, patient picker, token response
// fields and headers, id_token, refresh, introspection and revocation.
func TestStandaloneLaunch(t *testing.T) {
	e := newEnv(t)
	p := newPKCE()
	params := e.authParams("app", "launch/patient openid fhirUser offline_access patient/*.rs", p)
	got := e.authorize(params, flow{user: "doc", patient: "p2"})
	if got.Get("state") != params.Get("state") || got.Get("code") == "" {
		t.Fatalf("redirect: %v", got)
	}
	code := got.Get("code")
	status, tok, hdr := e.exchange(code, p.verifier)
	if status != 200 {
		t.Fatalf("token: %d %v", status, tok)
	}
	if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Pragma") != "no-cache" ||
		!strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("token headers: %v", hdr)
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token", "smart_style_url"} {
		if str(tok, k) == "" {
			t.Errorf("token response lacks %s: %v", k, tok)
		}
	}
	if str(tok, "token_type") != "Bearer" || tok["expires_in"].(float64) != 3600 || str(tok, "patient") != "p2" ||
		tok["need_patient_banner"] != true {
		t.Errorf("token response: %v", tok)
	}
	if str(tok, "scope") != "launch/patient openid fhirUser offline_access patient/*.rs" {
		t.Errorf("scope = %q", str(tok, "scope"))
	}

	// The id_token verifies against the published JWKS.
	set := fetchJWKS(t, e.ts.URL+"/auth/jwks")
	jws, err := jose.ParseSigned(str(tok, "id_token"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("id_token kid %q not in JWKS", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("id_token signature: %v", err)
	}
	var idt map[string]any
	json.Unmarshal(payload, &idt)
	now := float64(time.Now().Unix())
	if str(idt, "iss") != e.ts.URL+"/auth" || str(idt, "sub") != "doc" || str(idt, "aud") != "app" ||
		idt["exp"].(float64) <= now || idt["iat"].(float64) > now+1 || str(idt, "fhirUser") != e.base+"/Practitioner/d1" {
		t.Errorf("id_token claims: %v", idt)
	}

	// The access token's grant.
	g, err := e.srv.Verifier().Verify(context.Background(), str(tok, "access_token"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Subject != "doc" || g.ClientID != "app" || g.Patient != "p2" || g.FHIRUser != "Practitioner/d1" ||
		g.Role != "doctor" || !slices.Contains(g.Scopes, "patient/*.rs") || g.Issuer != e.ts.URL+"/auth" {
		t.Errorf("grant: %+v", g)
	}

	// Refresh: narrowing is fine, widening is not, a random token is not.
	rt := str(tok, "refresh_token")
	refresh := func(scope, rt string) (int, map[string]any) {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}
		if scope != "" {
			f.Set("scope", scope)
		}
		s, b, h := e.tokenReq("/auth/token", f, "")
		if s == 200 && (h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache") {
			t.Errorf("refresh headers: %v", h)
		}
		return s, b
	}
	status, body := refresh("", rt)
	if status != 200 || str(body, "access_token") == "" || str(body, "patient") != "p2" || str(body, "refresh_token") == "" {
		t.Fatalf("refresh: %d %v", status, body)
	}
	status, body = refresh("openid patient/Patient.rs", rt)
	if status != 200 || str(body, "scope") != "openid patient/Patient.rs" {
		t.Errorf("narrowing refresh: %d %v", status, body)
	}
	status, body = refresh("patient/*.cruds", rt)
	wantOAuthError(t, "widening refresh", status, body, []int{400}, "invalid_scope")
	status, body = refresh("", randomToken(32))
	wantOAuthError(t, "random refresh token", status, body, []int{400}, "invalid_grant")

	// Introspection: active with every field, then inactive for junk.
	at := str(tok, "access_token")
	intro := func(token string) map[string]any {
		s, b, _ := e.tokenReq("/auth/introspect", url.Values{"token": {token}}, "conf:a-long-enough-secret")
		if s != 200 {
			t.Fatalf("introspect: %d %v", s, b)
		}
		return b
	}
	in := intro(at)
	if in["active"] != true || str(in, "scope") != str(tok, "scope") || str(in, "client_id") != "app" ||
		str(in, "patient") != "p2" || str(in, "fhirUser") != e.base+"/Practitioner/d1" || str(in, "sub") != "doc" ||
		str(in, "iss") != e.ts.URL+"/auth" || in["exp"] == nil {
		t.Errorf("introspect active: %v", in)
	}
	if in := intro(rt); in["active"] != true || str(in, "client_id") != "app" {
		t.Errorf("introspect refresh token: %v", in)
	}
	if in := intro("random-" + randomToken(10)); in["active"] != false || len(in) != 1 {
		t.Errorf("introspect random: %v", in)
	}
	// Introspection needs a caller.
	s, _, _ := e.tokenReq("/auth/introspect", url.Values{"token": {at}}, "")
	if s != http.StatusUnauthorized {
		t.Errorf("unauthenticated introspection: %d", s)
	}
	if s, b, _ := e.tokenReq("/auth/introspect", url.Values{"token": {at}}, at); s != 200 || b["active"] != true {
		t.Errorf("introspection with a bearer token: %d %v", s, b)
	}

	// Revocation: the access token, then the refresh token.
	if s, _, _ := e.tokenReq("/auth/revoke", url.Values{"token": {at}, "client_id": {"app"}}, ""); s != 200 {
		t.Fatalf("revoke access token: %d", s)
	}
	if in := intro(at); in["active"] != false {
		t.Errorf("revoked access token still active: %v", in)
	}
	if _, err := e.srv.Verifier().Verify(context.Background(), at); !errors.Is(err, access.ErrInvalidToken) {
		t.Errorf("verifier accepts a token revoked here: %v", err)
	}
	if s, _, _ := e.tokenReq("/auth/revoke", url.Values{"token": {rt}, "client_id": {"app"}, "token_type_hint": {"refresh_token"}}, ""); s != 200 {
		t.Fatalf("revoke refresh token: %d", s)
	}
	status, body = refresh("", rt)
	wantOAuthError(t, "revoked refresh token", status, body, []int{400}, "invalid_grant")
	if in := intro(rt); in["active"] != false {
		t.Errorf("revoked refresh token active: %v", in)
	}
	// Unknown tokens revoke fine (RFC 7009).
	if s, _, _ := e.tokenReq("/auth/revoke", url.Values{"token": {"junk"}, "client_id": {"app"}}, ""); s != 200 {
		t.Errorf("revoke junk: %d", s)
	}
}

// Inferno EHR launch: a launch context from POST /auth/launch binds
// patient and encounter; a confidential client authenticates by Basic.
func TestEHRLaunch(t *testing.T) {
	e := newEnv(t)
	form := url.Values{"client": {"conf"}, "patient": {"p1"}, "encounter": {"e9"}, "user": {"doc"}}
	if s, b, _ := e.tokenReq("/auth/launch", form, "doc:"+password); s != http.StatusForbidden {
		t.Errorf("launch by a non-admin: %d %v", s, b)
	}
	if s, _, _ := e.tokenReq("/auth/launch", form, "root:wrong-password"); s != http.StatusUnauthorized {
		t.Errorf("launch with a bad password: %d", s)
	}
	if s, b, _ := e.tokenReq("/auth/launch", url.Values{"client": {"conf"}, "patient": {"nobody"}}, "root:"+password); s != 400 {
		t.Errorf("launch for an unknown patient: %d %v", s, b)
	}
	s, b, _ := e.tokenReq("/auth/launch", form, "root:"+password)
	if s != http.StatusCreated {
		t.Fatalf("launch: %d %v", s, b)
	}
	lu, err := url.Parse(str(b, "url"))
	if err != nil || lu.Query().Get("iss") != e.base || lu.Query().Get("launch") != str(b, "launch") ||
		lu.Query().Get("x") != "1" || !strings.HasPrefix(str(b, "url"), "http://app.example/launch?") {
		t.Fatalf("launch url %q", str(b, "url"))
	}

	params := e.authParams("conf", "launch openid fhirUser online_access user/*.rs patient/*.rs", newPKCE())
	params.Del("code_challenge")
	params.Del("code_challenge_method") // PKCE is optional for confidential clients
	params.Set("launch", lu.Query().Get("launch"))
	// Another user cannot complete a launch made for doc.
	if got := e.authorize(params, flow{user: "pharm"}); got.Get("error") != "access_denied" || got.Get("code") != "" {
		t.Errorf("launch completed by another user: %v", got)
	}
	got := e.authorize(params, flow{user: "doc"})
	if got.Get("code") == "" {
		t.Fatalf("redirect: %v", got)
	}
	exch := url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")}, "redirect_uri": {redirect}}
	if s, b, _ := e.tokenReq("/auth/token", exch, "conf:wrong-secret-wrong"); s != 401 || str(b, "error") != "invalid_client" {
		t.Errorf("wrong secret: %d %v", s, b)
	}
	if s, b, _ := e.tokenReq("/auth/token", exch, "app:"); s != 401 {
		t.Errorf("public client id as Basic: %d %v", s, b)
	}
	exch.Set("client_id", "conf")
	if s, b, _ := e.tokenReq("/auth/token", exch, ""); s != 401 || str(b, "error") != "invalid_client" {
		t.Errorf("confidential client without credentials: %d %v", s, b)
	}
	exch.Del("client_id")
	s, tok, _ := e.tokenReq("/auth/token", exch, "conf:a-long-enough-secret")
	if s != 200 {
		t.Fatalf("token: %d %v", s, tok)
	}
	ctx, _ := tok["fhirContext"].([]any)
	if str(tok, "patient") != "p1" || str(tok, "encounter") != "e9" || tok["need_patient_banner"] != true || len(ctx) != 1 ||
		str(ctx[0].(map[string]any), "reference") != "Encounter/e9" || str(tok, "refresh_token") == "" {
		t.Errorf("token response: %v", tok)
	}
	// online_access ends with the session.
	exps, err := authdbtest.RefreshTokenExpiries(context.Background(), e.st)
	if err == nil && len(exps) == 0 {
		err = errors.New("no refresh token stored")
	}
	if err != nil || exps[len(exps)-1].After(time.Now().Add(12*time.Hour+time.Minute)) {
		t.Errorf("online refresh token expires %v (%v)", exps, err)
	}
	g, err := e.srv.Verifier().Verify(context.Background(), str(tok, "access_token"))
	if err != nil || g.Patient != "p1" || g.Encounter != "e9" {
		t.Errorf("grant %+v %v", g, err)
	}
	// An unknown launch gives no code.
	params.Set("launch", "nope")
	if got := e.authorize(params, flow{user: "doc"}); got.Get("error") != "invalid_request" || got.Get("code") != "" {
		t.Errorf("unknown launch: %v", got)
	}
}

// Inferno negative authorize cases: no code is issued.
func TestAuthorizeRejects(t *testing.T) {
	e := newEnv(t)
	c := e.browser()
	for name, edit := range map[string]func(url.Values){
		"wrong aud":        func(v url.Values) { v.Set("aud", "http://elsewhere.example/fhir") },
		"no aud":           func(v url.Values) { v.Del("aud") },
		"plain pkce":       func(v url.Values) { v.Set("code_challenge_method", "plain") },
		"no pkce (public)": func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") },
		"no method":        func(v url.Values) { v.Del("code_challenge_method") },
		"response_type":    func(v url.Values) { v.Set("response_type", "token") },
		"bad challenge":    func(v url.Values) { v.Set("code_challenge", "short") },
	} {
		params := e.authParams("app", "openid patient/*.rs", newPKCE())
		edit(params)
		_, resp := e.get(c, e.ts.URL+"/auth/authorize?"+params.Encode())
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), redirect) ||
			loc.Query().Get("error") == "" || loc.Query().Get("code") != "" || loc.Query().Get("state") != params.Get("state") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, loc)
		}
	}
	// Errors about the client or redirect URI stay on the server.
	for name, edit := range map[string]func(url.Values){
		"unknown client":   func(v url.Values) { v.Set("client_id", "nobody") },
		"unregistered uri": func(v url.Values) { v.Set("redirect_uri", "http://evil.example/cb") },
	} {
		params := e.authParams("app", "openid", newPKCE())
		edit(params)
		p, _ := e.get(c, e.ts.URL+"/auth/authorize?"+params.Encode())
		if p.status != 400 {
			t.Errorf("%s: %d", name, p.status)
		}
	}
	// POST authorize works like GET.
	p, _ := e.post(c, e.ts.URL+"/auth/authorize", e.authParams("app", "openid", newPKCE()))
	if p.status != 200 || !strings.Contains(p.url, "/auth/login") || !strings.Contains(p.body, `name="username"`) {
		t.Errorf("POST authorize: %d %s", p.status, p.url)
	}
	// A form without the request's CSRF token is refused.
	form := p.form()
	form.Set("csrf", "forged")
	form.Set("username", "doc")
	form.Set("password", password)
	if p, _ := e.post(c, e.ts.URL+"/auth/login", form); p.status != http.StatusForbidden {
		t.Errorf("forged csrf: %d", p.status)
	}
	// Nor from another browser (no cookie) even with the token.
	form = p.form()
	if p, _ := e.post(e.browser(), e.ts.URL+"/auth/login", form); p.status != http.StatusForbidden {
		t.Errorf("other browser: %d", p.status)
	}
}

// Inferno negative token cases.
func TestTokenRejects(t *testing.T) {
	e := newEnv(t)
	p := newPKCE()
	code := e.authorize(e.authParams("app", "openid patient/*.rs launch/patient offline_access", p), flow{user: "doc"}).Get("code")
	cases := []struct {
		name   string
		form   url.Values
		status int
		err    string
	}{
		{"bad code", url.Values{"code": {"nope"}, "code_verifier": {p.verifier}}, 400, "invalid_grant"},
		{"wrong verifier", url.Values{"code": {code}, "code_verifier": {newPKCE().verifier}}, 400, "invalid_grant"},
		{"missing verifier", url.Values{"code": {code}}, 400, "invalid_grant"},
		{"plain verifier", url.Values{"code": {code}, "code_verifier": {p.challenge}}, 400, "invalid_grant"},
		{"bad client", url.Values{"code": {code}, "code_verifier": {p.verifier}, "client_id": {"nobody"}}, 401, "invalid_client"},
		{"no client", url.Values{"code": {code}, "code_verifier": {p.verifier}, "client_id": {""}}, 401, "invalid_client"},
		{"wrong redirect", url.Values{"code": {code}, "code_verifier": {p.verifier}, "redirect_uri": {"http://app.example/x"}}, 400, "invalid_grant"},
		{"bad grant type", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
	}
	for _, c := range cases {
		f := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {redirect}, "client_id": {"app"}}
		for k, v := range c.form {
			f[k] = v
		}
		s, b, h := e.tokenReq("/auth/token", f, "")
		wantOAuthError(t, c.name, s, b, []int{c.status}, c.err)
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: error without no-store", c.name)
		}
	}
	// The failures did not spend the code.
	s, tok, _ := e.exchange(code, p.verifier)
	if s != 200 || str(tok, "refresh_token") == "" {
		t.Fatalf("good exchange after failures: %d %v", s, tok)
	}
	// A replayed code fails and revokes what the code bought.
	s, b, _ := e.exchange(code, p.verifier)
	wantOAuthError(t, "reused code", s, b, []int{400}, "invalid_grant")
	if _, err := e.srv.Verifier().Verify(context.Background(), str(tok, "access_token")); !errors.Is(err, access.ErrInvalidToken) {
		t.Errorf("access token of a replayed code still valid: %v", err)
	}
	s, b, _ = e.tokenReq("/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok, "refresh_token")},
		"client_id": {"app"}}, "")
	wantOAuthError(t, "refresh token of a replayed code", s, b, []int{400}, "invalid_grant")
	// Another client cannot redeem a code.
	p2 := newPKCE()
	code2 := e.authorize(e.authParams("app", "openid", p2), flow{user: "doc"}).Get("code")
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code2}, "redirect_uri": {redirect}, "code_verifier": {p2.verifier}}
	s, b, _ = e.tokenReq("/auth/token", f, "conf:a-long-enough-secret")
	wantOAuthError(t, "code of another client", s, b, []int{400}, "invalid_grant")
	if s, _, _ := e.tokenReq("/auth/token", url.Values{"grant_type": {"authorization_code"}}, ""); s != 401 && s != 400 {
		t.Errorf("empty request: %d", s)
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/auth/token", nil)
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET token: %d", resp.StatusCode)
	}
}

// The consent page lets the user drop scopes; the role ceiling and the
// client's registration bound what is offered.
func TestGrantedScopes(t *testing.T) {
	e := newEnv(t)
	p := newPKCE()
	// Pharmacists may not write Observations.
	code := e.authorize(e.authParams("app", "openid fhirUser user/Observation.cruds user/MedicationDispense.cruds user/Patient.rs system/*.rs", p),
		flow{user: "pharm"}).Get("code")
	_, tok, _ := e.exchange(code, p.verifier)
	if got := str(tok, "scope"); got != "openid fhirUser user/MedicationDispense.cruds user/Patient.rs" {
		t.Errorf("pharmacist granted %q", got)
	}
	// SMART v1 scopes pass as written.
	p = newPKCE()
	code = e.authorize(e.authParams("app", "openid patient/*.read user/Observation.read launch/patient", p), flow{user: "doc"}).Get("code")
	_, tok, _ = e.exchange(code, p.verifier)
	if got := str(tok, "scope"); got != "openid patient/*.read user/Observation.read launch/patient" {
		t.Errorf("v1 scopes granted %q", got)
	}
	// Deselected on the consent page.
	p = newPKCE()
	code = e.authorize(e.authParams("app", "openid fhirUser offline_access user/*.rs", p),
		flow{user: "doc", uncheck: []string{"offline_access"}}).Get("code")
	_, tok, _ = e.exchange(code, p.verifier)
	if str(tok, "scope") != "openid fhirUser user/*.rs" || tok["refresh_token"] != nil {
		t.Errorf("after deselecting offline_access: %v", tok)
	}
	// A patient user: the picker offers only themselves, scopes patient/ read.
	p = newPKCE()
	c := e.browser()
	pg, _ := e.get(c, e.ts.URL+"/auth/authorize?"+e.authParams("app", "launch/patient patient/*.cruds user/*.rs", p).Encode())
	form := pg.form()
	form.Set("username", "ann")
	form.Set("password", password)
	pg, _ = e.post(c, e.ts.URL+"/auth/login", form)
	if m := radioRE.FindAllStringSubmatch(pg.body, -1); len(m) != 1 || m[0][1] != "p1" {
		t.Fatalf("patient picker for a patient: %v\n%s", m, pg.body)
	}
	form = pg.form()
	form.Set("patient", "p2")
	if pg, _ := e.post(c, e.ts.URL+"/auth/patient", form); pg.status != http.StatusForbidden {
		t.Errorf("patient picked someone else: %d", pg.status)
	}
	got := e.authorize(e.authParams("app", "launch/patient patient/*.cruds user/*.rs", p), flow{user: "ann"})
	_, tok, _ = e.exchange(got.Get("code"), p.verifier)
	if str(tok, "scope") != "launch/patient patient/*.rs" || str(tok, "patient") != "p1" {
		t.Errorf("patient user granted %v", tok)
	}
	// A doctor's picker lists the store's patients, and searches by name.
	c = e.browser()
	pg, _ = e.get(c, e.ts.URL+"/auth/authorize?"+e.authParams("app", "launch/patient patient/*.rs", newPKCE()).Encode())
	form = pg.form()
	form.Set("username", "doc")
	form.Set("password", password)
	pg, _ = e.post(c, e.ts.URL+"/auth/login", form)
	if m := radioRE.FindAllStringSubmatch(pg.body, -1); len(m) != 2 || !strings.Contains(pg.body, "Ann Smith") {
		t.Errorf("picker: %v", m)
	}
	pg, _ = e.get(c, e.ts.URL+"/auth/patient?req="+form.Get("req")+"&name=Jones")
	if m := radioRE.FindAllStringSubmatch(pg.body, -1); len(m) != 1 || m[0][1] != "p2" {
		t.Errorf("picker search: %v", m)
	}
}

// Lockout after repeated failures, whatever the password afterwards: the
// database's lock, with the in-memory per-account limit (TestLoginRateLimits)
// off.
func TestLockout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LoginFailuresPerAccount = -1 })
	c := e.browser()
	pg, _ := e.get(c, e.ts.URL+"/auth/authorize?"+e.authParams("app", "openid", newPKCE()).Encode())
	form := pg.form()
	form.Set("username", "doc")
	for i := 0; i < maxFailures; i++ {
		form.Set("password", "wrong")
		if pg, _ := e.post(c, e.ts.URL+"/auth/login", form); pg.status != http.StatusUnauthorized || !strings.Contains(pg.body, `name="password"`) {
			t.Fatalf("failure %d: %d", i, pg.status)
		}
	}
	form.Set("password", password)
	if pg, _ := e.post(c, e.ts.URL+"/auth/login", form); pg.status != http.StatusUnauthorized {
		t.Fatalf("locked account logged in: %d %s", pg.status, pg.url)
	}
	// Another user is unaffected, and the lock lapses.
	form.Set("username", "pharm")
	if pg, _ := e.post(c, e.ts.URL+"/auth/login", form); pg.status != 200 || !strings.Contains(pg.url, "/auth/consent") {
		t.Fatalf("other user: %d %s", pg.status, pg.url)
	}
	if err := authdbtest.LapseLock(context.Background(), e.st, "doc"); err != nil {
		t.Fatal(err)
	}
	got := e.authorize(e.authParams("app", "openid", newPKCE()), flow{user: "doc"})
	if got.Get("code") == "" {
		t.Errorf("after the lockout: %v", got)
	}
}

// Inferno backend services: RS384 and ES384 assertions; every bad
// assertion is refused.
func TestBackendServices(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		client string
		alg    jose.SignatureAlgorithm
		kid    string
		scope  string
		want   string
	}{
		{"backend", jose.RS384, "rsa1", "system/Observation.rs system/Patient.rs", "system/Observation.rs system/Patient.rs"},
		{"backend", jose.ES384, "ec1", "system/*.cruds", "system/*.rs system/Observation.cruds"},
		{"remote", jose.RS384, "rsa1", "system/Patient.rs system/Observation.rs", "system/Patient.rs"},
		{"remote", jose.ES384, "", "system/Patient.rs", "system/Patient.rs"},
	} {
		key := any(e.rsaKey)
		if c.alg == jose.ES384 {
			key = e.ecKey
		}
		var hdr map[jose.HeaderKey]any
		if c.client == "remote" {
			hdr = map[jose.HeaderKey]any{"jku": e.jwks.URL + "/jwks.json"}
		}
		s, b := e.backendToken(e.assertion(c.client, key.(interface {
			Public() crypto.PublicKey
			Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error)
		}), c.alg, c.kid, nil, hdr), c.scope)
		if s != 200 || str(b, "scope") != c.want || str(b, "token_type") != "Bearer" || b["refresh_token"] != nil || b["id_token"] != nil {
			t.Errorf("%s %s: %d %v", c.client, c.alg, s, b)
			continue
		}
		g, err := e.srv.Verifier().Verify(context.Background(), str(b, "access_token"))
		if err != nil || g.Subject != c.client || g.ClientID != c.client || g.Role != "" {
			t.Errorf("backend grant %+v %v", g, err)
		}
	}

	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	replayed := e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", nil, nil)
	if s, b := e.backendToken(replayed, "system/*.rs"); s != 200 {
		t.Fatalf("first use: %d %v", s, b)
	}
	bad := map[string]string{
		"replayed jti":   replayed,
		"wrong key":      e.assertion("backend", other, jose.RS384, "rsa1", nil, nil),
		"expired":        e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }, nil),
		"exp too far":    e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", func(c map[string]any) { c["exp"] = time.Now().Add(time.Hour).Unix() }, nil),
		"no exp":         e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", func(c map[string]any) { delete(c, "exp") }, nil),
		"no jti":         e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", func(c map[string]any) { delete(c, "jti") }, nil),
		"wrong aud":      e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", func(c map[string]any) { c["aud"] = e.base }, nil),
		"sub differs":    e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", func(c map[string]any) { c["sub"] = "app" }, nil),
		"unknown client": e.assertion("ghost", e.rsaKey, jose.RS384, "rsa1", nil, nil),
		"RS256":          e.assertion("backend", e.rsaKey, jose.RS256, "rsa1", nil, nil),
		"foreign jku":    e.assertion("remote", e.rsaKey, jose.RS384, "rsa1", nil, map[jose.HeaderKey]any{"jku": "http://evil.example/jwks"}),
		"garbage":        "not.a.jwt",
	}
	for name, a := range bad {
		s, b := e.backendToken(a, "system/*.rs")
		wantOAuthError(t, name, s, b, []int{400, 401}, "invalid_client")
	}
	// Tampered signature.
	good := e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", nil, nil)
	s, b := e.backendToken(good[:len(good)-4]+"AAAA", "system/*.rs")
	wantOAuthError(t, "tampered", s, b, []int{400, 401}, "invalid_client")

	s, b = e.backendToken(e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", nil, nil), "patient/*.rs")
	wantOAuthError(t, "user scope", s, b, []int{400}, "invalid_scope")
	s, b = e.backendToken(e.assertion("remote", e.rsaKey, jose.RS384, "rsa1", nil, nil), "system/Observation.rs")
	wantOAuthError(t, "unregistered scope", s, b, []int{400}, "invalid_scope")
	s, b, _ = e.tokenReq("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, "conf:a-long-enough-secret")
	wantOAuthError(t, "symmetric client_credentials", s, b, []int{400, 401}, "")
	s, b, _ = e.tokenReq("/auth/token", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"bogus"},
		"client_assertion": {good}}, "")
	wantOAuthError(t, "bad assertion type", s, b, []int{400, 401}, "invalid_client")
	s, b, _ = e.tokenReq("/auth/token", url.Values{"grant_type": {"urn:bogus"}, "client_assertion_type": {assertionType},
		"client_assertion": {good}}, "")
	wantOAuthError(t, "bad grant type", s, b, []int{400}, "unsupported_grant_type")
}

// The Verifier: valid, expired, tampered, revoked elsewhere within the
// poll window, wrong audience.
func TestVerifier(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RevocationPoll = 100 * time.Millisecond })
	ctx := context.Background()
	v := e.srv.Verifier()
	info := &tokenInfo{clientID: "app", username: "doc", role: "doctor", fhirUser: "Practitioner/d1",
		scopes: []string{"user/*.rs"}, patient: "p1"}
	tok, _, err := e.srv.issueAccessToken(info)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // second time from the cache
		g, err := v.Verify(ctx, tok)
		if err != nil || g.Subject != "doc" || g.Patient != "p1" || !slices.Equal(g.Scopes, []string{"user/*.rs"}) ||
			time.Until(g.Expiry) < 59*time.Minute {
			t.Fatalf("verify: %+v %v", g, err)
		}
		g.Scopes[0] = "changed" // the cache keeps its own copy
	}
	if g, _ := v.Verify(ctx, tok); g.Scopes[0] != "user/*.rs" {
		t.Errorf("caller changed the cached grant: %v", g.Scopes)
	}

	parts := strings.Split(tok, ".")
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(raw, &claims)
	claims["role"] = "admin"
	forged, _ := json.Marshal(claims)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	sign := func(mod func(map[string]any)) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		c["jti"] = randomToken(8)
		mod(c)
		s, err := e.srv.sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, bad := range map[string]string{
		"tampered":      tampered,
		"garbage":       "abc",
		"empty":         "",
		"expired":       sign(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Second).Unix() }),
		"wrong aud":     sign(func(c map[string]any) { c["aud"] = "http://other.example/fhir" }),
		"wrong issuer":  sign(func(c map[string]any) { c["iss"] = "http://other.example/auth" }),
		"no jti":        sign(func(c map[string]any) { delete(c, "jti") }),
		"not yet valid": sign(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() }),
	} {
		if g, err := v.Verify(ctx, bad); !errors.Is(err, access.ErrInvalidToken) {
			t.Errorf("%s: %+v %v", name, g, err)
		}
	}

	// nbf within the allowed clock skew, or past, is fine.
	for _, nbf := range []time.Duration{5 * time.Second, -time.Minute} {
		if _, err := v.Verify(ctx, sign(func(c map[string]any) { c["nbf"] = time.Now().Add(nbf).Unix() })); err != nil {
			t.Errorf("nbf now%+v: %v", nbf, err)
		}
	}

	// Revoked through another replica: honoured within the poll window.
	replica := e.newServer()
	if _, err := replica.Verifier().Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := e.tokenReq("/auth/revoke", url.Values{"token": {tok}, "client_id": {"app"}}, ""); s != 200 {
		t.Fatalf("revoke: %d", s)
	}
	if _, err := v.Verify(ctx, tok); !errors.Is(err, access.ErrInvalidToken) {
		t.Errorf("revoked here, still valid here: %v", err)
	}
	deadline := time.Now().Add(time.Second + 500*time.Millisecond)
	for {
		_, err := replica.Verifier().Verify(ctx, tok)
		if errors.Is(err, access.ErrInvalidToken) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica still accepts the revoked token: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A fresh server loads the revocations it missed.
	if _, err := e.newServer().Verifier().Verify(ctx, tok); !errors.Is(err, access.ErrInvalidToken) {
		t.Errorf("new server accepts a revoked token: %v", err)
	}
}

// BenchmarkVerify is the FHIR server's per-request cost of a token already
// seen: a cache hit and a revocation lookup.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	tok, _, err := e.srv.issueAccessToken(&tokenInfo{clientID: "app", username: "doc", role: "doctor",
		fhirUser: "Practitioner/d1", scopes: []string{"user/*.rs"}})
	if err != nil {
		b.Fatal(err)
	}
	v := e.srv.Verifier()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
