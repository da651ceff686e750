package authserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emberfhir/ember/audit"
)

// events is an audit.Recorder that keeps what it is given.
type events struct {
	mu  sync.Mutex
	all []audit.Event
}

func (r *events) Record(e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, e)
}

// of returns the events of one subtype.
func (r *events) of(subtype string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.all {
		if e.Subtype == subtype {
			out = append(out, e)
		}
	}
	return out
}

// userToken signs an access token for a user, as the token endpoint would
// after a sign-in through the public client "app".
func (e *env) userToken(username, role, fhirUser string) string {
	e.t.Helper()
	tok, _, err := e.srv.issueAccessToken(&tokenInfo{clientID: "app", username: username, role: role, fhirUser: fhirUser,
		scopes: []string{"openid", "fhirUser", "user/*.rs"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) rootToken() string { return e.userToken("root", "admin", "Practitioner/a1") }

// apiResp is an admin API answer.
type apiResp struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

// desc is the error_description.
func (a apiResp) desc() string { return str(a.body, "error_description") }

// api calls the admin API at /auth/admin/path with bearer token tok ("":
// none); body is JSON text, or a value to encode (nil: no body).
func (e *env) api(tok, method, path string, body any) apiResp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = strings.NewReader(string(j))
	}
	req, _ := http.NewRequest(method, e.ts.URL+"/auth/admin/"+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiResp{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			e.t.Fatalf("%s %s: not a JSON object: %s", method, path, raw)
		}
	}
	return a
}

// listing returns the objects of a listing's key, by their field id.
func listing(t *testing.T, a apiResp, key, id string) map[string]map[string]any {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("listing %s: %d %s", key, a.status, a.raw)
	}
	out := map[string]map[string]any{}
	items, ok := a.body[key].([]any)
	if !ok {
		t.Fatalf("listing has no %s array: %s", key, a.raw)
	}
	for _, it := range items {
		m := it.(map[string]any)
		out[str(m, id)] = m
	}
	return out
}

// The admin API refuses callers without a valid token (401 with a Bearer
// challenge), with a token of a non-admin, of a service, or of an admin no
// longer admin in the database (403); every request is audited with who
// asked; browsers of allowed origins may preflight DELETE.
func TestAdminAuthorization(t *testing.T) {
	rec := &events{}
	e := newEnv(t, func(c *Config) { c.Audit = rec })
	for name, tok := range map[string]string{"none": "", "garbage": "not-a-token"} {
		a := e.api(tok, http.MethodGet, "users", nil)
		if a.status != http.StatusUnauthorized || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") ||
			str(a.body, "error") == "" {
			t.Errorf("%s token: %d %v %s", name, a.status, a.header, a.raw)
		}
		if name == "garbage" && !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("invalid token challenge: %q", a.header.Get("WWW-Authenticate"))
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/auth/admin/users", nil)
	req.SetBasicAuth("root", password)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTP Basic of an admin: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}

	doc := e.userToken("doc", "doctor", "Practitioner/d1")
	svc := e.assertion("backend", e.rsaKey, "RS384", "rsa1", nil, nil)
	s, b := e.backendToken(svc, "system/*.rs")
	if s != 200 {
		t.Fatalf("backend token: %d %v", s, b)
	}
	// A token that says admin for a user who is a doctor in the database.
	stale := e.userToken("doc", "admin", "Practitioner/d1")
	for name, tok := range map[string]string{"doctor": doc, "service": str(b, "access_token"), "stale admin claim": stale} {
		for _, call := range []struct{ method, path string }{
			{http.MethodGet, "users"}, {http.MethodGet, "clients"}, {http.MethodDelete, "clients/conf"},
			{http.MethodPost, "users/pharm/unlock"},
		} {
			if a := e.api(tok, call.method, call.path, nil); a.status != http.StatusForbidden || str(a.body, "error") != "access_denied" {
				t.Errorf("%s: %s %s: %d %s", name, call.method, call.path, a.status, a.raw)
			}
		}
	}
	if _, err := GetClient(context.Background(), e.st, "conf"); err != nil {
		t.Errorf("a refused DELETE removed the client: %v", err)
	}

	// An admin's token works until the admin is demoted, at once.
	root := e.rootToken()
	if a := e.api(root, http.MethodPost, "users", map[string]string{"username": "boss", "password": "boss-password",
		"role": "admin", "fhir_user": "Practitioner/b1"}); a.status != http.StatusCreated {
		t.Fatalf("add admin: %d %s", a.status, a.raw)
	}
	boss := e.userToken("boss", "admin", "Practitioner/b1")
	if a := e.api(boss, http.MethodGet, "users", nil); a.status != http.StatusOK {
		t.Fatalf("second admin: %d %s", a.status, a.raw)
	}
	if a := e.api(root, http.MethodPost, "users/boss/role", map[string]string{"role": "doctor"}); a.status != http.StatusOK {
		t.Fatalf("demote: %d %s", a.status, a.raw)
	}
	if a := e.api(boss, http.MethodGet, "users", nil); a.status != http.StatusForbidden {
		t.Errorf("demoted admin's token: %d %s", a.status, a.raw)
	}

	// Audited: who, what, the outcome; refusals too.
	adds := rec.of("user add")
	if len(adds) != 1 || adds[0].Kind != audit.Admin || adds[0].Action != audit.Create || adds[0].Outcome != audit.Success ||
		adds[0].Agent.Subject != "root" || adds[0].Agent.Role != "admin" || adds[0].Agent.User != "Practitioner/a1" ||
		adds[0].Agent.Client != "app" || adds[0].Agent.Address == "" || !slices.Equal(adds[0].Entities, []string{"Practitioner/b1"}) {
		t.Errorf("user add audited as %+v", adds)
	}
	var refused, anonymous int
	for _, ev := range rec.of("user list") {
		if ev.Status == http.StatusForbidden && ev.Outcome == audit.MinorFailure && ev.Agent.Subject != "" {
			refused++
		}
		if ev.Status == http.StatusUnauthorized && ev.Agent.Subject == "" {
			anonymous++
		}
	}
	if refused != 4 || anonymous != 3 {
		t.Errorf("refused listings audited: %d with a subject (want 4), %d anonymous (want 3)", refused, anonymous)
	}
	if rm := rec.of("client remove"); len(rm) != 3 || rm[0].Action != audit.Delete || rm[0].Status != http.StatusForbidden {
		t.Errorf("refused removals audited as %+v", rm)
	}

	// CORS preflight of a DELETE.
	req, _ = http.NewRequest(http.MethodOptions, e.ts.URL+"/auth/admin/clients/conf", nil)
	req.Header.Set("Origin", "http://app.example")
	req.Header.Set("Access-Control-Request-Method", "DELETE")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "DELETE") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// Clients: listed without secrets; added (a symmetric one's secret shown
// once, and it works); removed (and then gets no token); EHR launch.
func TestAdminClients(t *testing.T) {
	e := newEnv(t)
	root := e.rootToken()
	ctx := context.Background()

	a := e.api(root, http.MethodGet, "clients", nil)
	cs := listing(t, a, "clients", "id")
	if len(cs) != 4 || str(cs["app"], "type") != Public || str(cs["conf"], "launch_uri") != "http://app.example/launch?x=1" ||
		!strings.Contains(str(cs["app"], "scope"), "patient/*.cruds") || str(cs["remote"], "jwks_uri") == "" ||
		cs["backend"]["jwks"] == nil || !slices.Equal(strs(cs["backend"]["grant_types"]), []string{GrantAuthorizationCode, GrantClientCredentials}) ||
		!slices.Equal(strs(cs["app"]["redirect_uris"]), []string{redirect}) {
		t.Errorf("clients: %s", a.raw)
	}
	if strings.Contains(a.raw, "a-long-enough-secret") || strings.Contains(a.raw, "argon2") || strings.Contains(a.raw, "secret") {
		t.Errorf("listing shows secret material: %s", a.raw)
	}

	// A symmetric service: its secret comes back once and authenticates.
	a = e.api(root, http.MethodPost, "clients", map[string]any{"id": "etl", "type": Symmetric,
		"grant_types": []string{GrantClientCredentials}, "scope": "system/Patient.rs"})
	secret := str(a.body, "secret")
	if a.status != http.StatusCreated || len(secret) < 16 || str(a.body, "id") != "etl" ||
		!slices.Equal(strs(a.body["grant_types"]), []string{GrantClientCredentials}) {
		t.Fatalf("add etl: %d %s", a.status, a.raw)
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
	if s, b, _ := e.tokenReq("/auth/token", cc, "etl:"+secret); s != http.StatusOK {
		t.Fatalf("etl token: %d %v", s, b)
	}
	if a := e.api(root, http.MethodGet, "clients", nil); strings.Contains(a.raw, secret) || strings.Contains(a.raw, "argon2") ||
		len(listing(t, a, "clients", "id")) != 5 {
		t.Errorf("listing after add: %s", a.raw)
	}
	if a := e.api(root, http.MethodPost, "clients", map[string]any{"id": "etl", "type": Public, "redirect_uris": []string{redirect}}); a.status != http.StatusConflict ||
		!strings.HasPrefix(a.desc(), "id:") {
		t.Errorf("duplicate: %d %s", a.status, a.raw)
	}

	// A public app and an asymmetric one.
	a = e.api(root, http.MethodPost, "clients", map[string]any{"id": "my/app", "type": Public, "redirect_uris": []string{redirect},
		"scope": "openid launch patient/*.rs", "launch_uri": "https://my.example/launch"})
	if a.status != http.StatusCreated || a.body["secret"] != nil || str(a.body, "scope") != "openid launch patient/*.rs" {
		t.Errorf("add public: %d %s", a.status, a.raw)
	}
	k, err := jwkOf(e)
	if err != nil {
		t.Fatal(err)
	}
	a = e.api(root, http.MethodPost, "clients", map[string]any{"id": "bulk", "type": Asymmetric, "scope": "system/*.rs", "jwks": k})
	if a.status != http.StatusCreated || a.body["jwks"] == nil {
		t.Fatalf("add asymmetric: %d %s", a.status, a.raw)
	}
	if c, err := GetClient(ctx, e.st, "bulk"); err != nil || !c.may(GrantClientCredentials) || len(c.JWKS) == 0 {
		t.Errorf("stored asymmetric client: %+v %v", c, err)
	}
	if s, b := e.backendToken(e.assertion("bulk", e.rsaKey, "RS384", "rsa1", nil, nil), "system/*.rs"); s != http.StatusOK {
		t.Errorf("asymmetric client added through the API gets no token: %d %v", s, b)
	}

	// EHR launch for a patient.
	a = e.api(root, http.MethodPost, "clients/conf/launch", map[string]string{"patient": "Patient/p1", "user": "doc"})
	lu, err := url.Parse(str(a.body, "url"))
	if a.status != http.StatusCreated || err != nil || lu.Query().Get("iss") != e.base || lu.Query().Get("launch") != str(a.body, "launch") ||
		!strings.HasPrefix(str(a.body, "url"), "http://app.example/launch?") {
		t.Fatalf("launch: %d %s", a.status, a.raw)
	}
	if l, err := getLaunch(ctx, e.srv.db, str(a.body, "launch")); err != nil || l.Patient != "p1" || l.ClientID != "conf" || l.Username != "doc" {
		t.Errorf("stored launch %+v %v", l, err)
	}
	for name, want := range map[string]struct {
		path   string
		body   any
		status int
		prefix string
	}{
		"unknown patient": {"clients/conf/launch", map[string]string{"patient": "nobody"}, 400, "patient:"},
		"no patient":      {"clients/conf/launch", map[string]string{}, 400, "patient:"},
		"bad patient id":  {"clients/conf/launch", map[string]string{"patient": "a b"}, 400, "patient:"},
		"unknown enc":     {"clients/conf/launch", map[string]string{"patient": "p1", "encounter": "e404"}, 400, "encounter:"},
		"unknown user":    {"clients/conf/launch", map[string]string{"patient": "p1", "user": "nobody"}, 400, "user:"},
		"no launch URI":   {"clients/backend/launch", map[string]string{"patient": "p1"}, 409, "launch_uri:"},
		"unknown client":  {"clients/nope/launch", map[string]string{"patient": "p1"}, 404, ""},
	} {
		if a := e.api(root, http.MethodPost, want.path, want.body); a.status != want.status || !strings.HasPrefix(a.desc(), want.prefix) {
			t.Errorf("launch, %s: %d %s", name, a.status, a.raw)
		}
	}

	// Removal: gone from the list, no more tokens; then 404.
	if a := e.api(root, http.MethodDelete, "clients/etl", nil); a.status != http.StatusNoContent {
		t.Fatalf("remove etl: %d %s", a.status, a.raw)
	}
	if s, b, _ := e.tokenReq("/auth/token", cc, "etl:"+secret); s != http.StatusUnauthorized || str(b, "error") != "invalid_client" {
		t.Errorf("removed client got a token: %d %v", s, b)
	}
	if a := e.api(root, http.MethodDelete, "clients/etl", nil); a.status != http.StatusNotFound || str(a.body, "error") != "not_found" {
		t.Errorf("remove again: %d %s", a.status, a.raw)
	}
	if a := e.api(root, http.MethodDelete, "clients/"+url.PathEscape("my/app"), nil); a.status != http.StatusNoContent {
		t.Errorf("remove my/app: %d %s", a.status, a.raw)
	}
	if _, err := GetClient(ctx, e.st, "my/app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("my/app still there: %v", err)
	}
	// Not the client the caller's own token came from; nor a NUL.
	if a := e.api(root, http.MethodDelete, "clients/app", nil); a.status != http.StatusConflict {
		t.Errorf("remove own client: %d %s", a.status, a.raw)
	}
	if a := e.api(root, http.MethodDelete, "clients/%00", nil); a.status != http.StatusNotFound {
		t.Errorf("remove NUL: %d %s", a.status, a.raw)
	}
	if a := e.api(root, http.MethodGet, "clients", nil); len(listing(t, a, "clients", "id")) != 5 {
		t.Errorf("clients left: %s", a.raw)
	}
}

// jwkOf is the env's RSA public key as a JWKS object.
func jwkOf(e *env) (map[string]any, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	b, err := json.Marshal(map[string]any{"kty": "RSA", "kid": "rsa1", "alg": "RS384",
		"n": b64(e.rsaKey.PublicKey.N.Bytes()), "e": b64([]byte{1, 0, 1})})
	if err != nil {
		return nil, err
	}
	var k map[string]any
	err = json.Unmarshal(b, &k)
	return map[string]any{"keys": []any{k}}, err
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// Users: listed without password material; added (and can sign in);
// password reset (old one refused, new one accepted, sessions ended);
// unlock; role change; removal. Admins keep their own account and role.
func TestAdminUsers(t *testing.T) {
	e := newEnv(t)
	root := e.rootToken()
	ctx := context.Background()

	a := e.api(root, http.MethodGet, "users", nil)
	us := listing(t, a, "users", "username")
	if len(us) != 4 || str(us["doc"], "role") != "doctor" || str(us["ann"], "fhir_user") != "Patient/p1" || us["doc"]["locked"] != false {
		t.Errorf("users: %s", a.raw)
	}
	if strings.Contains(a.raw, "argon2") || strings.Contains(a.raw, "password") || strings.Contains(a.raw, password) {
		t.Errorf("listing shows password material: %s", a.raw)
	}

	a = e.api(root, http.MethodPost, "users", map[string]string{"username": "nina", "password": "first-password",
		"role": "nurse", "fhir_user": "Practitioner/n1"})
	if a.status != http.StatusCreated || str(a.body, "username") != "nina" || str(a.body, "role") != "nurse" || a.body["password"] != nil {
		t.Fatalf("add nina: %d %s", a.status, a.raw)
	}
	if a := e.api(root, http.MethodPost, "users", map[string]string{"username": "nina", "password": "other-password",
		"role": "doctor", "fhir_user": "Practitioner/n2"}); a.status != http.StatusConflict || !strings.HasPrefix(a.desc(), "username:") {
		t.Errorf("duplicate: %d %s", a.status, a.raw)
	}
	// nina signs in, with offline access.
	p := newPKCE()
	got := e.authorize(e.authParams("app", "openid offline_access user/*.rs", p), flow{user: "nina", password: "first-password"})
	s, tok, _ := e.exchange(got.Get("code"), p.verifier)
	if s != http.StatusOK || str(tok, "refresh_token") == "" {
		t.Fatalf("nina's tokens: %d %v", s, tok)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok, "refresh_token")}, "client_id": {"app"}}
	if s, b, _ := e.tokenReq("/auth/token", refresh, ""); s != http.StatusOK {
		t.Fatalf("refresh: %d %v", s, b)
	}

	// Password reset: the old password stops, the new one works, the
	// refresh token is revoked.
	if a := e.api(root, http.MethodPost, "users/nina/password", map[string]string{"password": "second-password"}); a.status != http.StatusOK ||
		str(a.body, "username") != "nina" {
		t.Fatalf("reset: %d %s", a.status, a.raw)
	}
	if _, err := authenticate(ctx, e.srv.db, "nina", "first-password"); !errors.Is(err, errLogin) {
		t.Errorf("old password after reset: %v", err)
	}
	if u, err := authenticate(ctx, e.srv.db, "nina", "second-password"); err != nil || u.Role != "nurse" {
		t.Errorf("new password: %+v %v", u, err)
	}
	if s, b, _ := e.tokenReq("/auth/token", refresh, ""); s != http.StatusBadRequest || str(b, "error") != "invalid_grant" {
		t.Errorf("refresh after a password reset: %d %v", s, b)
	}

	// Lockout by failed sign-ins at the login page, then unlock.
	c, form := e.startLogin("192.0.2.1")
	for i := 0; i < maxFailures; i++ {
		if pg := e.loginAs(c, form, "192.0.2.1", "nina", "wrong-password"); pg.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, pg.status)
		}
	}
	if pg := e.loginAs(c, form, "192.0.2.1", "nina", "second-password"); pg.status == http.StatusOK {
		t.Fatalf("locked account signed in: %s", pg.url)
	}
	if _, err := authenticate(ctx, e.srv.db, "nina", "second-password"); !errors.Is(err, errLogin) {
		t.Fatalf("not locked in the database: %v", err)
	}
	if u := listing(t, e.api(root, http.MethodGet, "users", nil), "users", "username")["nina"]; u["locked"] != true ||
		u["locked_until"] == nil || u["failed_logins"] != float64(maxFailures) {
		t.Errorf("locked user listed as %v", u)
	}
	if a := e.api(root, http.MethodPost, "users/nina/unlock", nil); a.status != http.StatusOK || a.body["locked"] != false ||
		a.body["failed_logins"] != float64(0) {
		t.Fatalf("unlock: %d %s", a.status, a.raw)
	}
	if pg := e.loginAs(c, form, "192.0.2.1", "nina", "second-password"); pg.status != http.StatusOK || !strings.Contains(pg.url, "/auth/consent") {
		t.Errorf("after unlock: %d %s", pg.status, pg.url)
	}

	// Role change: the new role signs in; no unknown role, no patient role
	// for a practitioner, no self-demotion.
	if a := e.api(root, http.MethodPost, "users/nina/role", map[string]string{"role": "pharmacist"}); a.status != http.StatusOK ||
		str(a.body, "role") != "pharmacist" {
		t.Fatalf("role: %d %s", a.status, a.raw)
	}
	if u, err := authenticate(ctx, e.srv.db, "nina", "second-password"); err != nil || u.Role != "pharmacist" {
		t.Errorf("after the role change: %+v %v", u, err)
	}
	for name, want := range map[string]struct {
		path, role string
		status     int
	}{
		"unknown role":  {"users/nina/role", "wizard", 400},
		"patient role":  {"users/nina/role", "patient", 400},
		"self-demotion": {"users/root/role", "doctor", 409},
		"unknown user":  {"users/nobody/role", "nurse", 404},
	} {
		if a := e.api(root, http.MethodPost, want.path, map[string]string{"role": want.role}); a.status != want.status ||
			(want.status == 400 && !strings.HasPrefix(a.desc(), "role:")) {
			t.Errorf("%s: %d %s", name, a.status, a.raw)
		}
	}

	// Removal: no more sign-in; then 404. Not oneself.
	if a := e.api(root, http.MethodDelete, "users/nina", nil); a.status != http.StatusNoContent {
		t.Fatalf("remove: %d %s", a.status, a.raw)
	}
	if _, err := authenticate(ctx, e.srv.db, "nina", "second-password"); !errors.Is(err, errLogin) {
		t.Errorf("removed user signs in: %v", err)
	}
	for path, want := range map[string]int{"users/nina": 404, "users/root": 409, "users/%00": 404} {
		if a := e.api(root, http.MethodDelete, path, nil); a.status != want {
			t.Errorf("DELETE %s: %d %s, want %d", path, a.status, a.raw, want)
		}
	}
	for _, path := range []string{"users/nobody/password", "users/nobody/unlock"} {
		if a := e.api(root, http.MethodPost, path, map[string]string{"password": "long-enough-pw"}); a.status != http.StatusNotFound {
			t.Errorf("POST %s: %d %s", path, a.status, a.raw)
		}
	}
}

// Bad input: 400 whose description starts with the field at fault (413
// for a body too large); nothing is stored.
func TestAdminBadInput(t *testing.T) {
	e := newEnv(t)
	root := e.rootToken()
	ok := map[string]any{"id": "x", "type": Public, "redirect_uris": []string{redirect}, "scope": "openid"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	k, err := jwkOf(e)
	if err != nil {
		t.Fatal(err)
	}
	private := map[string]any{"keys": []any{map[string]any{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}}}
	sym := func(kv ...any) map[string]any { return with(append([]any{"type", Symmetric}, kv...)...) }
	for field, body := range map[string]any{
		"id":               with("id", ""),
		"id ":              with("id", "two words"),
		"type":             with("type", "confidential"),
		"redirect_uris":    with("redirect_uris", nil),
		"redirect_uris ":   with("redirect_uris", []string{"/relative"}),
		"redirect_uris  ":  with("redirect_uris", "http://not-an-array.example"),
		"launch_uri":       with("launch_uri", "http://x.example/#frag"),
		"scope":            with("scope", "openid\x00"),
		"jwks":             with("jwks", k),
		"jwks ":            with("type", Asymmetric, "redirect_uris", nil),
		"jwks  ":           with("type", Asymmetric, "jwks", map[string]any{"keys": []any{}}),
		"jwks   ":          with("type", Asymmetric, "jwks", private),
		"jwks    ":         with("type", Asymmetric, "jwks", map[string]any{"keys": []any{map[string]any{"kid": "a\x00"}}}),
		"jwks_uri":         with("type", Asymmetric, "jwks_uri", "not a url"),
		"jwks_uri ":        sym("jwks_uri", "https://keys.example/jwks"),
		"grant_types":      sym("grant_types", []string{"implicit"}),
		"grant_types ":     with("grant_types", []string{GrantAuthorizationCode}),
		"scope ":           sym("grant_types", []string{GrantClientCredentials}, "redirect_uris", nil),
		"redirect_uris   ": sym("grant_types", []string{GrantClientCredentials}, "scope", "system/*.rs"),
		"secret":           with("secret", "my-own-secret-of-some-length"),
		"body":             `{"id": "x",`,
		"body ":            `{"id": "x", "type": "public", "redirect_uris": ["` + redirect + `"]} {}`,
		"body  ":           "",
		"body   ":          `[1, 2]`,
	} {
		a := e.api(root, http.MethodPost, "clients", body)
		want := strings.TrimSpace(field) + ":"
		if a.status != http.StatusBadRequest || str(a.body, "error") != "invalid_request" || !strings.HasPrefix(a.desc(), want) {
			t.Errorf("client, bad %s: %d %s", want, a.status, a.raw)
		}
	}
	if a := e.api(root, http.MethodPost, "clients", ok); a.status != http.StatusCreated {
		t.Errorf("the good client: %d %s", a.status, a.raw)
	}
	big := `{"id": "big", "type": "public", "scope": "` + strings.Repeat("a ", maxFormBytes) + `"}`
	if a := e.api(root, http.MethodPost, "clients", big); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d %s", a.status, a.raw)
	}

	user := map[string]string{"username": "u1", "password": "long-enough", "role": "nurse", "fhir_user": "Practitioner/u1"}
	withU := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range user {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for field, body := range map[string]any{
		"username":   withU("username", ""),
		"username ":  withU("username", "a\tb"),
		"password":   withU("password", "short"),
		"password ":  withU("password", "long-enough\x00"),
		"role":       withU("role", "superuser"),
		"role ":      withU("role", "patient"),
		"fhir_user":  withU("fhir_user", "Observation/1"),
		"fhir_user ": withU("fhir_user", "Practitioner/"),
		"fhir_userx": map[string]string{"fhir_userx": "Practitioner/1"},
	} {
		a := e.api(root, http.MethodPost, "users", body)
		want := strings.TrimSpace(field) + ":"
		if field == "fhir_userx" {
			want = "fhir_userx: unknown field"
		}
		if a.status != http.StatusBadRequest || !strings.HasPrefix(a.desc(), want) {
			t.Errorf("user, bad %s: %d %s", want, a.status, a.raw)
		}
	}
	for path, body := range map[string]any{
		"users/doc/password": map[string]string{"password": "1234567"},
		"users/doc/role":     map[string]any{"role": 7},
	} {
		field := path[strings.LastIndex(path, "/")+1:]
		if a := e.api(root, http.MethodPost, path, body); a.status != http.StatusBadRequest || !strings.HasPrefix(a.desc(), field+":") {
			t.Errorf("POST %s: %d %s", path, a.status, a.raw)
		}
	}
	us := listing(t, e.api(root, http.MethodGet, "users", nil), "users", "username")
	cs := listing(t, e.api(root, http.MethodGet, "clients", nil), "clients", "id")
	if len(us) != 4 || len(cs) != 5 || str(us["doc"], "role") != "doctor" {
		t.Errorf("bad input stored something: %d users, %d clients", len(us), len(cs))
	}
	if _, err := authenticate(context.Background(), e.srv.db, "doc", password); err != nil {
		t.Errorf("doc's password changed: %v", err)
	}
}

// TestAdminOnlyForAdminClients: an admin signed into some other app gets
// a token the admin API refuses; only the admin clients' tokens work.
func TestAdminOnlyForAdminClients(t *testing.T) {
	e := newEnv(t)
	tok, _, err := e.srv.issueAccessToken(&tokenInfo{clientID: "some-other-app", username: "root", role: "admin", fhirUser: "Practitioner/a1",
		scopes: []string{"openid", "fhirUser", "user/*.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/auth/admin/users", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an admin's token of another app: %d, want 403", resp.StatusCode)
	}
}
