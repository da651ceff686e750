package authserver

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	redirect = "http://app.example/cb"
	password = "correct horse battery"
)

// env is an authorization server on a test database, served over real HTTP
// at /auth with SMART discovery under /fhir, and seeded with patients,
// users and clients.
type env struct {
	t      testing.TB
	ts     *httptest.Server
	srv    *Server
	st     *store.Store
	url    string // database URL
	base   string // FHIR base
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
	jwks   *httptest.Server // serves the backend client's public keys
}

func newEnv(t testing.TB, mod ...func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e := &env{t: t, st: st, url: dbURL}
	var h http.Handler
	e.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.ts.Close)
	e.base = e.ts.URL + "/fhir"
	e.srv = e.newServer(mod...)
	mux := http.NewServeMux()
	mux.Handle("/auth/", e.srv.Handler())
	mux.Handle("/fhir/.well-known/smart-configuration", e.srv.SMARTConfigurationHandler())
	h = mux

	parser, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	for id, name := range map[string]string{"p1": `"family":"Smith","given":["Ann"]`, "p2": `"family":"Jones","given":["Bob"]`} {
		r, err := parser.Parse([]byte(`{"resourceType":"Patient","id":"`+id+`","name":[{`+name+`}]}`), "Patient")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Update(ctx, r, id, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []User{
		{Username: "doc", Password: password, Role: "doctor", FHIRUser: "Practitioner/d1"},
		{Username: "pharm", Password: password, Role: "pharmacist", FHIRUser: "Practitioner/ph1"},
		{Username: "ann", Password: password, Role: "patient", FHIRUser: "Patient/p1"},
		{Username: "root", Password: password, Role: "admin", FHIRUser: "Practitioner/a1"},
	} {
		if err := AddUser(ctx, e.st, u); err != nil {
			t.Fatal(err)
		}
	}
	userScopes := []string{"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
		"offline_access", "online_access", "patient/*.cruds", "user/*.cruds"}
	e.rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	e.ecKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &e.rsaKey.PublicKey, KeyID: "rsa1", Algorithm: "RS384"},
		{Key: &e.ecKey.PublicKey, KeyID: "ec1", Algorithm: "ES384"},
	}})
	e.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(pub)
	}))
	t.Cleanup(e.jwks.Close)
	for _, c := range []Client{
		{ID: "app", Type: Public, RedirectURIs: []string{redirect}, Scopes: userScopes, LaunchURI: "http://app.example/launch"},
		{ID: "conf", Type: Symmetric, Secret: "a-long-enough-secret", RedirectURIs: []string{redirect}, Scopes: userScopes,
			LaunchURI: "http://app.example/launch?x=1"},
		{ID: "backend", Type: Asymmetric, JWKS: pub, Scopes: []string{"system/*.rs", "system/Observation.cruds"}},
		{ID: "remote", Type: Asymmetric, JWKSURI: e.jwks.URL + "/jwks.json", Scopes: []string{"system/Patient.rs"}},
	} {
		if err := AddClient(ctx, e.st, c); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newServer starts another server on the same database (a replica).
func (e *env) newServer(mod ...func(*Config)) *Server {
	cfg := Config{Issuer: e.ts.URL + "/auth", FHIRBaseURL: e.base, AllowedOrigins: []string{"http://app.example"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AdminClients: []string{"app"}}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(context.Background(), cfg, e.st)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// browser is a user agent with cookies that stops at the app's redirect URI.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), "http://app.example/") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := randomToken(32)
	sum := sha256.Sum256([]byte(v))
	return pkce{v, base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authParams are a standard authorize request for client.
func (e *env) authParams(client, scopes string, p pkce) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "scope": {scopes},
		"state": {"st-" + randomToken(6)}, "aud": {e.base}, "code_challenge": {p.challenge}, "code_challenge_method": {"S256"}}
}

var (
	hiddenRE   = regexp.MustCompile(`name="(req|csrf)" value="([^"]+)"`)
	radioRE    = regexp.MustCompile(`type="radio" name="patient" value="([^"]+)"`)
	checkboxRE = regexp.MustCompile(`type="checkbox" name="scope" value="([^"]+)"`)
)

// page is an HTML page of the flow.
type page struct {
	status int
	url    string
	body   string
	header http.Header
}

func (p page) form() url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		v.Set(m[1], m[2])
	}
	return v
}

func (e *env) do(c *http.Client, req *http.Request) (page, *http.Response) {
	e.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL.String(), body: string(b), header: resp.Header}, resp
}

func (e *env) get(c *http.Client, u string) (page, *http.Response) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return e.do(c, req)
}

func (e *env) post(c *http.Client, u string, form url.Values) (page, *http.Response) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(c, req)
}

// flow is how a test drives the pages.
type flow struct {
	user     string
	password string
	patient  string   // picked on the patient picker ("" = first)
	uncheck  []string // scopes deselected on the consent page
}

// authorize drives a browser from /authorize through login, picker and
// consent, and returns the query the app's redirect URI received.
func (e *env) authorize(params url.Values, f flow) url.Values {
	e.t.Helper()
	c := e.browser()
	p, resp := e.get(c, e.ts.URL+"/auth/authorize?"+params.Encode())
	for step := 0; step < 5; step++ {
		if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusFound && strings.HasPrefix(loc, redirect) {
			u, err := url.Parse(loc)
			if err != nil {
				e.t.Fatal(err)
			}
			return u.Query()
		}
		if p.status != http.StatusOK {
			e.t.Fatalf("%s: status %d\n%s", p.url, p.status, p.body)
		}
		checkPageHeaders(e.t, p)
		form := p.form()
		switch {
		case strings.Contains(p.url, "/auth/login"):
			pw := f.password
			if pw == "" {
				pw = password
			}
			form.Set("username", f.user)
			form.Set("password", pw)
			p, resp = e.post(c, e.ts.URL+"/auth/login", form)
		case strings.Contains(p.url, "/auth/patient"):
			m := radioRE.FindAllStringSubmatch(p.body, -1)
			if len(m) == 0 {
				e.t.Fatalf("picker lists no patients:\n%s", p.body)
			}
			pick := f.patient
			if pick == "" {
				pick = m[0][1]
			}
			form.Set("patient", pick)
			p, resp = e.post(c, e.ts.URL+"/auth/patient", form)
		case strings.Contains(p.url, "/auth/consent"):
			for _, m := range checkboxRE.FindAllStringSubmatch(p.body, -1) {
				keep := true
				for _, u := range f.uncheck {
					keep = keep && u != m[1]
				}
				if keep {
					form.Add("scope", m[1])
				}
			}
			form.Set("allow", "1")
			p, resp = e.post(c, e.ts.URL+"/auth/consent", form)
		default:
			e.t.Fatalf("unexpected page %s", p.url)
		}
	}
	e.t.Fatal("flow did not finish")
	return nil
}

func checkPageHeaders(t testing.TB, p page) {
	t.Helper()
	if !strings.Contains(p.header.Get("Content-Security-Policy"), "default-src 'none'") ||
		p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: page lacks security headers: %v", p.url, p.header)
	}
}

// tokenReq posts a token-endpoint style request; basic is "id:secret".
func (e *env) tokenReq(path string, form url.Values, basic string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id, secret, ok := strings.Cut(basic, ":"); ok {
		req.SetBasicAuth(id, secret)
	} else if basic != "" {
		req.Header.Set("Authorization", "Bearer "+basic)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &body); err != nil {
			e.t.Fatalf("%s: not JSON: %s", path, b)
		}
	}
	return resp.StatusCode, body, resp.Header
}

// exchange trades a code for tokens as the public client "app".
func (e *env) exchange(code, verifier string) (int, map[string]any, http.Header) {
	return e.tokenReq("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {"app"}, "code_verifier": {verifier}}, "")
}

// assertion signs a client assertion; mod edits the claims.
func (e *env) assertion(client string, key crypto.Signer, alg jose.SignatureAlgorithm, kid string, mod func(map[string]any), hdr map[jose.HeaderKey]any) string {
	e.t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range hdr {
		opts = opts.WithHeader(k, v)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	claims := map[string]any{"iss": client, "sub": client, "aud": e.ts.URL + "/auth/token",
		"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": randomToken(12)}
	if mod != nil {
		mod(claims)
	}
	b, _ := json.Marshal(claims)
	jws, err := sig.Sign(b)
	if err != nil {
		e.t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func (e *env) backendToken(a, scopes string) (int, map[string]any) {
	status, body, _ := e.tokenReq("/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scopes},
		"client_assertion_type": {assertionType}, "client_assertion": {a}}, "")
	return status, body
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func wantOAuthError(t *testing.T, what string, status int, body map[string]any, wantStatus []int, code string) {
	t.Helper()
	ok := false
	for _, s := range wantStatus {
		ok = ok || s == status
	}
	if !ok || (code != "" && str(body, "error") != code) {
		t.Errorf("%s: got %d %v, want %v %s", what, status, body, wantStatus, code)
	}
}
