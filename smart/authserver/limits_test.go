package authserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/store/authdb/authdbtest"
)

// send is a request with extra headers; basic is "id:secret" for HTTP Basic.
func (e *env) send(c *http.Client, method, u string, form url.Values, hdr http.Header, basic string) (page, *http.Response) {
	e.t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	} else if len(form) > 0 {
		u += "?" + form.Encode()
	}
	req, _ := http.NewRequest(method, u, body)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if id, secret, ok := strings.Cut(basic, ":"); ok {
		req.SetBasicAuth(id, secret)
	}
	return e.do(c, req)
}

func from(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }

// startLogin opens the login page of a fresh authorization request from
// addr, returning the browser and the page's hidden fields.
func (e *env) startLogin(addr string) (*http.Client, url.Values) {
	e.t.Helper()
	c := e.browser()
	p, _ := e.send(c, http.MethodGet, e.ts.URL+"/auth/authorize", e.authParams("app", "openid", newPKCE()), from(addr), "")
	if p.status != 200 || !strings.Contains(p.url, "/auth/login") {
		e.t.Fatalf("authorize from %s: %d %s\n%s", addr, p.status, p.url, p.body)
	}
	return c, p.form()
}

func (e *env) loginAs(c *http.Client, form url.Values, addr, user, pw string) page {
	e.t.Helper()
	f := url.Values{"req": {form.Get("req")}, "csrf": {form.Get("csrf")}, "username": {user}, "password": {pw}}
	p, _ := e.send(c, http.MethodPost, e.ts.URL+"/auth/login", f, from(addr), "")
	return p
}

func retryAfter(t *testing.T, what string, h http.Header) int {
	t.Helper()
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Errorf("%s: Retry-After %q", what, h.Get("Retry-After"))
	}
	return n
}

// Finding 7 (issue 11): logins are rate-limited by default, per account
// (failures) and per client address (attempts), before any password is
// hashed; so are client secrets. Other accounts and addresses go on.
func TestLoginRateLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedProxies = 1 })
	ctx := context.Background()

	// Per account: 5 failures, then even the right password is refused.
	c, form := e.startLogin("198.51.100.1")
	for i := range 5 {
		if p := e.loginAs(c, form, "198.51.100.1", "doc", "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, p.status)
		}
	}
	p := e.loginAs(c, form, "198.51.100.1", "doc", password)
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "too many failed attempts for this account") ||
		!strings.Contains(p.body, `name="password"`) {
		t.Fatalf("6th attempt on doc: %d\n%s", p.status, p.body)
	}
	if n := retryAfter(t, "account limit", p.header); n > 60 {
		t.Errorf("first block of %d s, want at most a window", n)
	}
	checkPageHeaders(t, p)
	// The refused attempt was not checked: the database saw 5 failures.
	if fails, err := authdbtest.FailedLogins(ctx, e.st, "doc"); err != nil || fails != 5 {
		t.Errorf("failed_logins = %d (%v), want 5", fails, err)
	}
	c2, form2 := e.startLogin("198.51.100.2")
	if p := e.loginAs(c2, form2, "198.51.100.2", "doc", password); p.status != http.StatusTooManyRequests {
		t.Errorf("doc from another address: %d", p.status)
	}
	// Another user signs in from the same address.
	if p := e.loginAs(c, form, "198.51.100.1", "pharm", password); p.status != 200 || !strings.Contains(p.url, "/auth/consent") {
		t.Errorf("pharm after doc's failures: %d %s", p.status, p.url)
	}

	// Per address: 20 attempts (random usernames), then nobody from there.
	c3, form3 := e.startLogin("203.0.113.7")
	for i := range 20 {
		if p := e.loginAs(c3, form3, "203.0.113.7", "nobody-"+randomToken(6), "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, p.status)
		}
	}
	p = e.loginAs(c3, form3, "203.0.113.7", "root", password)
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "from your address") {
		t.Fatalf("21st attempt from one address: %d\n%s", p.status, p.body)
	}
	retryAfter(t, "address limit", p.header)
	c4, form4 := e.startLogin("203.0.113.8")
	if p := e.loginAs(c4, form4, "203.0.113.8", "root", password); p.status != 200 || !strings.Contains(p.url, "/auth/consent") {
		t.Errorf("root from another address: %d %s", p.status, p.url)
	}
	// The admin Basic credentials of /auth/launch count as sign-ins.
	if p, _ := e.send(http.DefaultClient, http.MethodPost, e.ts.URL+"/auth/launch", url.Values{"client": {"conf"}, "patient": {"p1"}},
		from("203.0.113.7"), "root:"+password); p.status != http.StatusTooManyRequests {
		t.Errorf("launch from a blocked address: %d %s", p.status, p.body)
	}

	// Client secrets: 5 failures lock the client out; another client is fine.
	if err := AddClient(ctx, e.st, Client{ID: "conf2", Type: Symmetric, Secret: "another-long-secret", RedirectURIs: []string{redirect}}); err != nil {
		t.Fatal(err)
	}
	intro := func(basic string) (page, map[string]any) {
		p, _ := e.send(http.DefaultClient, http.MethodPost, e.ts.URL+"/auth/introspect", url.Values{"token": {"junk"}},
			from("192.0.2.9"), basic)
		var b map[string]any
		json.Unmarshal([]byte(p.body), &b)
		return p, b
	}
	for i := range 5 {
		if p, _ := intro("conf:wrong-secret-" + strconv.Itoa(i)); p.status != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %d", i, p.status)
		}
	}
	p, b := intro("conf:a-long-enough-secret")
	if p.status != http.StatusTooManyRequests || str(b, "error") != "temporarily_unavailable" {
		t.Errorf("conf after 5 wrong secrets: %d %s", p.status, p.body)
	}
	retryAfter(t, "client limit", p.header)
	if p, b := intro("conf2:another-long-secret"); p.status != 200 || b["active"] != false {
		t.Errorf("conf2: %d %s", p.status, p.body)
	}
	// A busy confidential client is not throttled by its successes.
	for i := range 30 {
		if p, _ := intro("conf2:another-long-secret"); p.status != 200 {
			t.Fatalf("conf2 request %d: %d", i, p.status)
		}
	}
}

// Finding 7: argon2id checks run at most MaxConcurrentHashes at once;
// beyond the queue and wait, 503 with Retry-After, and nothing is hashed.
func TestLoginHashGate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConcurrentHashes = 1; c.HashWait = 200 * time.Millisecond })
	release, ok := e.srv.creds.gate.acquire(context.Background()) // the only slot
	if !ok {
		t.Fatal("no slot")
	}
	c, form := e.startLogin("127.0.0.1")
	p := e.loginAs(c, form, "", "doc", "wrong")
	if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "busy") {
		t.Errorf("login while the slot is taken: %d\n%s", p.status, p.body)
	}
	retryAfter(t, "busy login", p.header)
	s, b, h := e.tokenReq("/auth/introspect", url.Values{"token": {"junk"}}, "conf:a-long-enough-secret")
	if s != http.StatusServiceUnavailable || str(b, "error") != "temporarily_unavailable" {
		t.Errorf("client secret while the slot is taken: %d %v", s, b)
	}
	retryAfter(t, "busy token endpoint", h)
	if fails, err := authdbtest.FailedLogins(context.Background(), e.st, "doc"); err != nil || fails != 0 {
		t.Errorf("failed_logins = %d (%v): a refused login was checked", fails, err)
	}
	release()
	if p := e.loginAs(c, form, "", "doc", password); p.status != 200 || !strings.Contains(p.url, "/auth/consent") {
		t.Errorf("login after the slot is free: %d %s", p.status, p.url)
	}

	// The gate itself: one running, one waiting, the next refused at once.
	g := newHashGate(1, 1, time.Hour)
	r1, ok := g.acquire(context.Background())
	if !ok {
		t.Fatal("first acquire")
	}
	got := make(chan bool)
	go func() {
		r2, ok := g.acquire(context.Background())
		if ok {
			r2()
		}
		got <- ok
	}()
	for deadline := time.Now().Add(time.Minute); len(g.admit) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second acquire never queued")
		}
	}
	start := time.Now()
	if _, ok := g.acquire(context.Background()); ok || time.Since(start) > 10*time.Second {
		t.Errorf("third acquire with a full queue: %v after %v", ok, time.Since(start))
	}
	r1()
	if !<-got {
		t.Error("the waiting acquire failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r1, _ = g.acquire(context.Background())
	if _, ok := g.acquire(ctx); ok {
		t.Error("acquire with a cancelled context")
	}
	r1()
	if len(g.admit) != 0 || len(g.run) != 0 {
		t.Errorf("slots leaked: %d admitted, %d running", len(g.admit), len(g.run))
	}
}

// Finding 7: the limit tables stay bounded whatever the keys, and an
// account's blocks double up to the cap.
func TestStrikeTable(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tb := newStrikeTable(3, time.Minute, 15*time.Minute, 100)
	for i := range 100_000 {
		tb.hit(fmt.Sprintf("user:random-%d", i), now)
	}
	if n := tb.len(); n != 100 {
		t.Errorf("%d keys kept, want 100", n)
	}
	// Blocks: 1, 2, 4, 8, 15, 15 minutes.
	for i, want := range []time.Duration{1, 2, 4, 8, 15, 15} {
		for range 3 {
			if tb.blocked("user:doc", now) > 0 {
				t.Fatalf("round %d: blocked early", i)
			}
			tb.hit("user:doc", now)
		}
		if got := tb.blocked("user:doc", now); got != want*time.Minute {
			t.Errorf("block %d: %v, want %v", i, got, want*time.Minute)
		}
		now = now.Add(want * time.Minute)
	}
	// After a quiet spell the next block is short again.
	now = now.Add(15 * time.Minute)
	for range 3 {
		tb.hit("user:doc", now)
	}
	if got := tb.blocked("user:doc", now); got != time.Minute {
		t.Errorf("block after a quiet spell: %v", got)
	}
	// Without backoff (maxBlock = window), and events spread over windows.
	addr := newStrikeTable(3, time.Minute, time.Minute, 10)
	for i := range 10 {
		addr.hit("a", now.Add(time.Duration(i)*30*time.Second))
		if addr.blocked("a", now.Add(time.Duration(i)*30*time.Second)) > 0 {
			t.Fatalf("blocked after %d spread events", i+1)
		}
	}
	if newStrikeTable(-1, time.Minute, time.Minute, 10) != nil {
		t.Error("a negative limit should disable the table")
	}
}

// Finding 9: /authorize caps each parameter, the form and the stored
// request; beyond, invalid_request (on the app's redirect URI when that is
// registered, else an error page), and nothing is stored.
func TestAuthorizeLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	longCB := "http://app.example/cb?pad=" + strings.Repeat("x", 1990)
	if err := AddClient(ctx, e.st, Client{ID: "longcb", Type: Public, RedirectURIs: []string{longCB}, Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	stored := func() int {
		n, err := authdbtest.AuthRequests(ctx, e.st)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A body over 64 KiB (the report sent 9 MB of state).
	params := e.authParams("app", "openid", newPKCE())
	params.Set("state", strings.Repeat("s", 200<<10))
	p, _ := e.send(noFollow, http.MethodPost, e.ts.URL+"/auth/authorize", params, nil, "")
	if p.status != http.StatusRequestEntityTooLarge {
		t.Errorf("200 KiB form: %d %s", p.status, p.header.Get("Location"))
	}

	for name, edit := range map[string]func(url.Values){
		"long state":  func(v url.Values) { v.Set("state", strings.Repeat("s", 2049)) },
		"long nonce":  func(v url.Values) { v.Set("nonce", strings.Repeat("n", 1025)) },
		"long scope":  func(v url.Values) { v.Set("scope", "openid "+strings.Repeat("patient/Observation.rs ", 200)) },
		"long launch": func(v url.Values) { v.Set("launch", strings.Repeat("l", 257)) },
		"repeated":    func(v url.Values) { v.Add("scope", "user/*.cruds") },
		"long aud":    func(v url.Values) { v.Set("aud", e.base+"?"+strings.Repeat("a", 2048)) },
		"long pkce":   func(v url.Values) { v.Set("code_challenge_method", strings.Repeat("S", 17)) },
		"both too big": func(v url.Values) {
			v.Set("state", strings.Repeat("s", 4000))
			v.Set("nonce", strings.Repeat("n", 4000))
		},
	} {
		params := e.authParams("app", "openid", newPKCE())
		edit(params)
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			_, resp := e.send(noFollow, method, e.ts.URL+"/auth/authorize", params, nil, "")
			loc, _ := url.Parse(resp.Header.Get("Location"))
			q := loc.Query()
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), redirect) || q.Get("error") != "invalid_request" ||
				q.Get("code") != "" {
				t.Errorf("%s %s: %d %.200s", method, name, resp.StatusCode, loc)
			}
			if len(params.Get("state")) > 2048 && q.Has("state") {
				t.Errorf("%s %s: an over-long state was echoed", method, name)
			}
		}
	}
	// Over-long client_id or redirect_uri: an error page.
	for name, edit := range map[string]func(url.Values){
		"long client_id":    func(v url.Values) { v.Set("client_id", strings.Repeat("c", 300)) },
		"long redirect_uri": func(v url.Values) { v.Set("redirect_uri", redirect+"?"+strings.Repeat("r", 2048)) },
		"two client_ids":    func(v url.Values) { v.Add("client_id", "conf") },
	} {
		params := e.authParams("app", "openid", newPKCE())
		edit(params)
		if p, _ := e.send(noFollow, http.MethodGet, e.ts.URL+"/auth/authorize", params, nil, ""); p.status != 400 {
			t.Errorf("%s: %d", name, p.status)
		}
	}
	// Each parameter within its cap, but too much together.
	params = e.authParams("longcb", "openid", newPKCE())
	params.Set("redirect_uri", longCB)
	params.Set("state", strings.Repeat("s", 2048))
	params.Set("nonce", strings.Repeat("n", 1024))
	params.Set("scope", "openid"+strings.Repeat(" openid", 580))
	_, resp := e.send(noFollow, http.MethodGet, e.ts.URL+"/auth/authorize", params, nil, "")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, longCB+"&error=invalid_request") {
		t.Errorf("request too big together: %d %.300s", resp.StatusCode, loc)
	}
	if n := stored(); n != 0 {
		t.Errorf("%d refused requests stored", n)
	}
	// At the caps, a real request is fine.
	params = e.authParams("app", "openid", newPKCE())
	params.Set("state", strings.Repeat("s", 2048))
	params.Set("nonce", strings.Repeat("n", 1024))
	if p, _ := e.send(e.browser(), http.MethodPost, e.ts.URL+"/auth/authorize", params, nil, ""); p.status != 200 || !strings.Contains(p.url, "/auth/login") {
		t.Errorf("request at the caps: %d %s", p.status, p.url)
	}
	if n := stored(); n != 1 {
		t.Errorf("%d requests stored, want 1", n)
	}
	// A registered redirect URI longer than the cap is refused at registration.
	if err := AddClient(ctx, e.st, Client{ID: "toolong", Type: Public, RedirectURIs: []string{longCB + strings.Repeat("y", 100)}}); err == nil {
		t.Error("a 2 KiB+ redirect URI was registered")
	}
}

// Finding 9: unfinished authorization requests are bounded in number and
// per client address.
func TestAuthorizeFlood(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedProxies = 1; c.MaxPendingAuthRequests = 3; c.AuthorizePerAddress = 5 })
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start := func(addr string) *http.Response {
		_, resp := e.send(noFollow, http.MethodGet, e.ts.URL+"/auth/authorize", e.authParams("app", "openid", newPKCE()), from(addr), "")
		return resp
	}
	for i := range 3 {
		if resp := start("198.51.100.1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp := start("198.51.100.2")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "temporarily_unavailable" {
		t.Errorf("4th pending request: %d %s", resp.StatusCode, loc)
	}
	if n, err := authdbtest.AuthRequests(context.Background(), e.st); err != nil || n != 3 {
		t.Errorf("%d requests stored (%v), want 3", n, err)
	}
	// Per address: the 6th within a minute is refused before anything else.
	for range 2 {
		start("198.51.100.1")
	}
	resp = start("198.51.100.1")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("6th request from one address: %d", resp.StatusCode)
	}
	retryAfter(t, "authorize flood", resp.Header)
}

// Finding 15 (issue 11): a public client names itself and proves nothing,
// so it (or a bearer token's client) may introspect only its own tokens;
// a confidential client may introspect any.
func TestIntrospectionPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	issue := func(client string) (string, string) {
		resp, err := e.srv.respond(ctx, &tokenInfo{clientID: client, username: "doc", role: "doctor", fhirUser: "Practitioner/d1",
			scopes: []string{"offline_access", "user/*.rs"}}, true)
		if err != nil {
			t.Fatal(err)
		}
		return resp["access_token"].(string), resp["refresh_token"].(string)
	}
	appAT, appRT := issue("app")
	confAT, confRT := issue("conf")
	intro := func(form url.Values, basic string) (int, map[string]any) {
		t.Helper()
		s, b, _ := e.tokenReq("/auth/introspect", form, basic)
		return s, b
	}
	backend := func() url.Values {
		return url.Values{"client_assertion_type": {assertionType},
			"client_assertion": {e.assertion("backend", e.rsaKey, jose.RS384, "rsa1", nil, nil)}}
	}
	for _, c := range []struct {
		name   string
		form   url.Values
		basic  string
		token  string
		active bool
	}{
		{"public, own access token", url.Values{"client_id": {"app"}}, "", appAT, true},
		{"public, own refresh token", url.Values{"client_id": {"app"}}, "", appRT, true},
		{"public, another's access token", url.Values{"client_id": {"app"}}, "", confAT, false},
		{"public, another's refresh token", url.Values{"client_id": {"app"}}, "", confRT, false},
		{"bearer, own token", url.Values{}, appAT, appAT, true},
		{"bearer, another's token", url.Values{}, appAT, confAT, false},
		{"bearer, another's refresh token", url.Values{}, appAT, confRT, false},
		{"symmetric, another's token", url.Values{}, "conf:a-long-enough-secret", appAT, true},
		{"symmetric, another's refresh token", url.Values{}, "conf:a-long-enough-secret", appRT, true},
		{"private_key_jwt, another's token", backend(), "", appAT, true},
		{"private_key_jwt, another's refresh token", backend(), "", confRT, true},
	} {
		c.form.Set("token", c.token)
		s, b := intro(c.form, c.basic)
		if s != 200 || b["active"] != c.active {
			t.Errorf("%s: %d %v, want active %v", c.name, s, b, c.active)
		}
		if !c.active && len(b) != 1 {
			t.Errorf("%s: an inactive answer tells more: %v", c.name, b)
		}
	}
	for name, basic := range map[string]string{"no caller": "", "wrong secret": "conf:wrong-secret-wrong", "public as Basic": "app:"} {
		s, b := intro(url.Values{"token": {appAT}}, basic)
		wantOAuthError(t, name, s, b, []int{401}, "invalid_client")
	}
}

// Finding 4 (issue 11): NUL bytes and invalid UTF-8 wherever a value enters
// the authorization server are a 400, never a 500 from PostgreSQL.
func TestNonTextInput(t *testing.T) {
	e := newEnv(t)
	// A doctor signed in, on the patient picker.
	c := e.browser()
	pg, _ := e.get(c, e.ts.URL+"/auth/authorize?"+e.authParams("app", "launch/patient patient/*.rs", newPKCE()).Encode())
	form := pg.form()
	form.Set("username", "doc")
	form.Set("password", password)
	if pg, _ = e.post(c, e.ts.URL+"/auth/login", form); !strings.Contains(pg.url, "/auth/patient") {
		t.Fatalf("not on the picker: %d %s", pg.status, pg.url)
	}
	req, csrf := form.Get("req"), form.Get("csrf")
	lc, login := e.startLogin("127.0.0.1") // another browser, on the login page
	good := e.authParams("app", "openid", newPKCE())
	with := func(v url.Values, k, val string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = append([]string(nil), vs...)
		}
		out.Set(k, val)
		return out
	}
	for _, bad := range []string{"\x00", "app\x00", "\xff", "\xc0\x80"} {
		for _, c2 := range []struct {
			name, method, path string
			form               url.Values
			basic              string
		}{
			{"authorize client_id", "GET", "/auth/authorize", with(good, "client_id", bad), ""},
			{"authorize state", "POST", "/auth/authorize", with(good, "state", bad), ""},
			{"authorize parameter name", "GET", "/auth/authorize", with(good, "x"+bad, "1"), ""},
			{"login req", "GET", "/auth/login", url.Values{"req": {bad}}, ""},
			{"login username", "POST", "/auth/login", url.Values{"req": {login.Get("req")}, "csrf": {login.Get("csrf")},
				"username": {"doc" + bad}, "password": {password}}, ""},
			{"login password", "POST", "/auth/login", url.Values{"req": {login.Get("req")}, "csrf": {login.Get("csrf")},
				"username": {"doc"}, "password": {bad}}, ""},
			{"picker search", "GET", "/auth/patient", url.Values{"req": {req}, "name": {bad}}, ""},
			{"picker choice", "POST", "/auth/patient", url.Values{"req": {req}, "csrf": {csrf}, "patient": {bad}}, ""},
			{"consent scope", "POST", "/auth/consent", url.Values{"req": {req}, "csrf": {csrf}, "scope": {bad}, "allow": {"1"}}, ""},
			{"login req (POST)", "POST", "/auth/login", url.Values{"req": {bad}, "csrf": {login.Get("csrf")}}, ""},
			{"token client_id", "POST", "/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
				"client_id": {bad}}, ""},
			{"token code", "POST", "/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {bad},
				"client_id": {"app"}}, ""},
			{"token Basic id", "POST", "/auth/token", url.Values{"grant_type": {"client_credentials"}}, "conf" + bad + ":a-long-enough-secret"},
			{"introspect token", "POST", "/auth/introspect", url.Values{"token": {bad}, "client_id": {"app"}}, ""},
			{"revoke client_id", "POST", "/auth/revoke", url.Values{"token": {"x"}, "client_id": {bad}}, ""},
			{"launch Basic user", "POST", "/auth/launch", url.Values{"client": {"conf"}, "patient": {"p1"}}, "root" + bad + ":" + password},
			{"launch patient", "POST", "/auth/launch", url.Values{"client": {"conf"}, "patient": {bad}}, "root:" + password},
		} {
			b := c
			if c2.method == http.MethodPost && c2.path == "/auth/login" {
				b = lc // the browser of the login page
			}
			p, _ := e.send(b, c2.method, e.ts.URL+c2.path, c2.form, nil, c2.basic)
			if p.status != http.StatusBadRequest {
				t.Errorf("%s %q: %d %.200s", c2.name, bad, p.status, p.body)
			}
		}
	}
	// The flow still completes afterwards.
	form = url.Values{"req": {req}, "csrf": {csrf}, "patient": {"p1"}}
	if pg, _ := e.post(c, e.ts.URL+"/auth/patient", form); pg.status != 200 || !strings.Contains(pg.url, "/auth/consent") {
		t.Errorf("picker after bad input: %d %s", pg.status, pg.url)
	}
	// Usernames and client ids that could not be typed into the forms are
	// refused at registration.
	for _, name := range []string{"doc\x00", "\xff", "tab\tname", strings.Repeat("u", maxUsername+1)} {
		if err := AddUser(context.Background(), e.st, User{Username: name, Password: password, Role: "doctor", FHIRUser: "Practitioner/x"}); err == nil {
			t.Errorf("user %q registered", name)
		}
		if err := AddClient(context.Background(), e.st, Client{ID: name, Type: Public, RedirectURIs: []string{redirect}}); err == nil {
			t.Errorf("client %q registered", name)
		}
	}
}
