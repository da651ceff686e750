package authserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store/authdb"
)

// authRequestTTL bounds how long a user may take from /authorize to the
// code, and the code's own lifetime after that.
const authRequestTTL = 10 * time.Minute

// authReq is an authorization request in flight.
type authReq struct {
	id, csrf, clientID, redirectURI, state, nonce, challenge, launchID string
	scopes                                                             []string
	username                                                           string
	loginAt                                                            *time.Time
	patient, encounter                                                 string
	granted                                                            []string
}

// fromDBRequest is the authorization server's view of a stored request.
func fromDBRequest(r authdb.AuthRequest) *authReq {
	return &authReq{id: r.ID, csrf: r.CSRF, clientID: r.ClientID, redirectURI: r.RedirectURI, state: r.State,
		nonce: r.Nonce, challenge: r.CodeChallenge, launchID: r.LaunchID, scopes: r.Scopes, username: r.Username,
		loginAt: r.LoginAt, patient: r.Patient, encounter: r.Encounter, granted: r.Granted}
}

var challengeRE = regexp.MustCompile(`^[A-Za-z0-9\-._~]{43,128}$`)

// authorizeParams caps, in bytes, each parameter /authorize reads: ample
// for real clients (state and nonce are usually tens of bytes), and small
// enough that what is stored for a request nobody completes stays small.
// OAuth parameters may not repeat (RFC 6749 3.1).
var authorizeParams = map[string]int{
	"client_id": 256, "redirect_uri": 2048, "response_type": 64, "aud": 2048, "scope": 4096, "state": 2048,
	"nonce": 1024, "code_challenge": 128, "code_challenge_method": 16, "launch": 256,
}

// maxStoredRequest bounds what one stored authorization request holds.
const maxStoredRequest = 8 << 10

// paramProblem describes the first of names that repeats or is over its
// cap in f, or returns "".
func paramProblem(f url.Values, names ...string) string {
	for _, n := range names {
		switch vs := f[n]; {
		case len(vs) > 1:
			return n + " is repeated"
		case len(vs) == 1 && len(vs[0]) > authorizeParams[n]:
			return fmt.Sprintf("%s is longer than %d bytes", n, authorizeParams[n])
		}
	}
	return ""
}

// authorize starts an authorization request (GET or POST). Errors about the
// client or redirect URI are shown to the user; the others go back to the
// app's redirect URI, with no code.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	addr, now := guard.ClientIP(r, s.cfg.TrustedProxies), time.Now()
	if wait := s.starts.blocked(addr, now); wait > 0 {
		w.Header().Set("Retry-After", retryAfterValue(wait))
		s.errorPage(w, http.StatusTooManyRequests, "too many sign-in requests from your address; try again in "+
			retryAfterValue(wait)+" seconds")
		return
	}
	s.starts.hit(addr, now)
	if err := parseForm(w, r); err != nil {
		s.formError(w, err)
		return
	}
	f := r.Form
	if p := paramProblem(f, "client_id", "redirect_uri"); p != "" {
		s.errorPage(w, http.StatusBadRequest, p)
		return
	}
	client, err := getClient(r.Context(), s.db, f.Get("client_id"))
	if errors.Is(err, ErrNotFound) {
		s.errorPage(w, http.StatusBadRequest, "unknown client_id")
		return
	} else if err != nil {
		s.serverError(w, err)
		return
	}
	redirect := f.Get("redirect_uri")
	if !client.allowsRedirect(redirect) {
		s.errorPage(w, http.StatusBadRequest, "redirect_uri is not registered for this client")
		return
	}
	state := f.Get("state")
	if paramProblem(f, "state") != "" {
		state = "" // echoing it back is what the cap prevents
	}
	fail := func(code, desc string) { redirectError(w, r, redirect, state, code, desc) }
	if p := paramProblem(f, "state", "response_type", "aud", "scope", "nonce", "code_challenge", "code_challenge_method",
		"launch"); p != "" {
		fail("invalid_request", p)
		return
	}
	if f.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	if strings.TrimSuffix(f.Get("aud"), "/") != s.fhirBase {
		fail("invalid_request", "aud must be the FHIR base URL "+s.fhirBase)
		return
	}
	challenge, method := f.Get("code_challenge"), f.Get("code_challenge_method")
	switch {
	case challenge == "" && method == "" && client.Type != Public:
	case challenge == "":
		fail("invalid_request", "code_challenge is required (PKCE S256)")
		return
	case method != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !challengeRE.MatchString(challenge):
		fail("invalid_request", "malformed code_challenge")
		return
	}
	requested := splitScopes(f.Get("scope"))
	if len(requested) == 0 {
		fail("invalid_scope", "scope is required")
		return
	}
	if n := len(client.ID) + len(redirect) + len(f.Get("scope")) + len(state) + len(f.Get("nonce")) +
		len(challenge) + len(f.Get("launch")); n > maxStoredRequest {
		fail("invalid_request", fmt.Sprintf("the request's parameters are longer than %d bytes together", maxStoredRequest))
		return
	}
	s.purge(r.Context())
	if full, err := s.pendingFull(r.Context()); err != nil {
		s.serverError(w, err)
		return
	} else if full {
		fail("temporarily_unavailable", "too many authorization requests are in progress; try again later")
		return
	}
	req := authReq{id: randomToken(18), csrf: randomToken(18), clientID: client.ID, redirectURI: redirect,
		state: state, nonce: f.Get("nonce"), challenge: challenge, scopes: requested}
	if l := f.Get("launch"); l != "" {
		lc, err := getLaunch(r.Context(), s.db, l)
		if err != nil || lc.ClientID != client.ID {
			fail("invalid_request", "unknown or expired launch")
			return
		}
		req.launchID, req.patient, req.encounter = lc.ID, lc.Patient, lc.Encounter
	}
	err = s.db.AddAuthRequest(r.Context(), authdb.AuthRequest{ID: req.id, CSRF: req.csrf, ClientID: req.clientID,
		RedirectURI: req.redirectURI, Scopes: req.scopes, State: req.state, Nonce: req.nonce, CodeChallenge: req.challenge,
		LaunchID: req.launchID, Patient: req.patient, Encounter: req.encounter, ExpiresAt: time.Now().Add(authRequestTTL)})
	if err != nil {
		s.serverError(w, fmt.Errorf("store authorization request: %w", err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(req.id), Value: req.csrf, Path: s.prefix + "/", HttpOnly: true,
		Secure: strings.HasPrefix(s.issuer, "https:"), SameSite: http.SameSiteLaxMode, MaxAge: int(authRequestTTL / time.Second)})
	http.Redirect(w, r, s.prefix+"/login?req="+req.id, http.StatusSeeOther)
}

// pendingFull reports whether MaxPendingAuthRequests unfinished requests
// are stored (counting at most that many rows).
func (s *Server) pendingFull(ctx context.Context) (bool, error) {
	n, err := s.db.CountPendingAuthRequests(ctx, s.cfg.MaxPendingAuthRequests)
	if err != nil {
		return false, err
	}
	return n >= s.cfg.MaxPendingAuthRequests, nil
}

func cookieName(reqID string) string { return "ember_auth_" + reqID }

// redirectError sends the user back to the app with an OAuth error.
func redirectError(w http.ResponseWriter, r *http.Request, redirect, state, code, desc string) {
	q := url.Values{"error": {code}, "error_description": {desc}}
	if state != "" {
		q.Set("state", state)
	}
	http.Redirect(w, r, addQuery(redirect, q), http.StatusFound)
}

func addQuery(u string, q url.Values) string {
	if strings.Contains(u, "?") {
		return u + "&" + q.Encode()
	}
	return u + "?" + q.Encode()
}

// loadReq returns the request a page or form is for, checking that the
// browser holds its cookie and, for a form, that it carries its CSRF token.
func (s *Server) loadReq(w http.ResponseWriter, r *http.Request) (*authReq, bool) {
	if err := parseForm(w, r); err != nil {
		s.formError(w, err)
		return nil, false
	}
	id := r.Form.Get("req")
	rec, err := s.db.PendingAuthRequest(r.Context(), id)
	if errors.Is(err, authdb.ErrNotFound) {
		s.errorPage(w, http.StatusBadRequest, "this authorization request is unknown or has expired; start again from the app")
		return nil, false
	}
	if err != nil {
		s.serverError(w, err)
		return nil, false
	}
	q := fromDBRequest(rec)
	c, err := r.Cookie(cookieName(id))
	ok := err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(q.csrf)) == 1
	if r.Method == http.MethodPost {
		ok = ok && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(q.csrf)) == 1
	}
	if !ok {
		s.errorPage(w, http.StatusForbidden, "this form does not belong to this browser session; start again from the app")
		return nil, false
	}
	return q, true
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	q, ok := s.loadReq(w, r)
	if !ok {
		return
	}
	s.render(w, http.StatusOK, loginTmpl, pageData{Req: q.id, CSRF: q.csrf, Action: s.prefix + "/login", Client: q.clientID})
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	q, ok := s.loadReq(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	u, err := s.login(r, r.PostForm.Get("username"), r.PostForm.Get("password"))
	s.auditLogin(r, q.clientID, r.PostForm.Get("username"), u, err)
	var oe *oauthErr
	switch {
	case errors.Is(err, errLogin):
		s.render(w, http.StatusUnauthorized, loginTmpl, pageData{Req: q.id, CSRF: q.csrf, Action: s.prefix + "/login",
			Client: q.clientID, Error: "Wrong username or password, or the account is locked after too many failures."})
		return
	case errors.As(err, &oe): // over a limit
		w.Header().Set("Retry-After", retryAfterValue(oe.retryAfter))
		s.render(w, oe.status, loginTmpl, pageData{Req: q.id, CSRF: q.csrf, Action: s.prefix + "/login",
			Client: q.clientID, Error: "Not signed in: " + oe.msg + "."})
		return
	case err != nil:
		s.serverError(w, err)
		return
	}
	if q.launchID != "" {
		lc, err := getLaunch(ctx, s.db, q.launchID)
		if err != nil || (lc.Username != "" && lc.Username != u.Username) {
			redirectError(w, r, q.redirectURI, q.state, "access_denied", "the launch was for another user")
			return
		}
	}
	patient := q.patient
	if patient == "" && u.Role == "patient" && !slices.Contains(q.scopes, "launch/patient") {
		patient = strings.TrimPrefix(u.FHIRUser, "Patient/") // a patient's patient/ scopes are their own
	}
	if err := s.db.SetLogin(ctx, q.id, u.Username, patient); err != nil {
		s.serverError(w, err)
		return
	}
	next := "/consent"
	if patient == "" && slices.Contains(q.scopes, "launch/patient") {
		next = "/patient"
	}
	http.Redirect(w, r, s.prefix+next+"?req="+q.id, http.StatusSeeOther)
}

// loggedIn loads the request and its user, or answers.
func (s *Server) loggedIn(w http.ResponseWriter, r *http.Request) (*authReq, *User, bool) {
	q, ok := s.loadReq(w, r)
	if !ok {
		return nil, nil, false
	}
	if q.username == "" {
		http.Redirect(w, r, s.prefix+"/login?req="+q.id, http.StatusSeeOther)
		return nil, nil, false
	}
	u, err := getUser(r.Context(), s.db, q.username)
	if err != nil {
		s.errorPage(w, http.StatusForbidden, "the user no longer exists")
		return nil, nil, false
	}
	return q, u, true
}

// patientChoice is one row of the patient picker.
type patientChoice struct{ ID, Name string }

func (s *Server) pickerPage(w http.ResponseWriter, r *http.Request) {
	q, u, ok := s.loggedIn(w, r)
	if !ok {
		return
	}
	list, err := s.patients(r.Context(), u, r.Form.Get("name"))
	if err != nil {
		s.serverError(w, err)
		return
	}
	s.render(w, http.StatusOK, pickerTmpl, pageData{Req: q.id, CSRF: q.csrf, Action: s.prefix + "/patient",
		Client: q.clientID, Patients: list, Search: r.Form.Get("name"), SearchAction: s.prefix + "/patient"})
}

// patients lists what the picker offers: a patient user only themselves,
// others up to 50 patients (by name when searched).
func (s *Server) patients(ctx context.Context, u *User, name string) ([]patientChoice, error) {
	if id, ok := strings.CutPrefix(u.FHIRUser, "Patient/"); ok {
		return []patientChoice{{ID: id, Name: s.patientName(ctx, id)}}, nil
	}
	params := url.Values{"_count": {"50"}}
	if name != "" {
		params.Set("name", name)
	}
	sq, err := search.Parse("Patient", params, search.Options{Base: s.fhirBase, DefaultCount: 50, MaxCount: 50})
	if err != nil {
		return nil, nil // an unusable search string lists nobody
	}
	res, err := s.st.Search(ctx, sq)
	if err != nil {
		return nil, fmt.Errorf("patient picker: %w", err)
	}
	out := make([]patientChoice, 0, len(res.Matches))
	for _, m := range res.Matches {
		out = append(out, patientChoice{ID: m.ID, Name: humanName(m.Content)})
	}
	return out, nil
}

func (s *Server) patientName(ctx context.Context, id string) string {
	v, err := s.st.Read(ctx, "Patient", id)
	if err != nil {
		return "Patient/" + id
	}
	return humanName(v.Content)
}

// humanName renders a Patient's first name for the picker.
func humanName(content []byte) string {
	var p struct {
		ID   string `json:"id"`
		Name []struct {
			Text   string   `json:"text"`
			Family string   `json:"family"`
			Given  []string `json:"given"`
		} `json:"name"`
		BirthDate string `json:"birthDate"`
	}
	if json.Unmarshal(content, &p) != nil || len(p.Name) == 0 {
		return "Patient/" + p.ID
	}
	n := p.Name[0]
	s := n.Text
	if s == "" {
		s = strings.TrimSpace(strings.Join(n.Given, " ") + " " + n.Family)
	}
	if p.BirthDate != "" {
		s += " (born " + p.BirthDate + ")"
	}
	return s
}

func (s *Server) pickerSubmit(w http.ResponseWriter, r *http.Request) {
	q, u, ok := s.loggedIn(w, r)
	if !ok {
		return
	}
	id := r.PostForm.Get("patient")
	if own, isPatient := strings.CutPrefix(u.FHIRUser, "Patient/"); isPatient && id != own {
		s.errorPage(w, http.StatusForbidden, "you may only choose yourself")
		return
	}
	if _, err := s.st.Read(r.Context(), "Patient", id); err != nil || id == "" {
		s.errorPage(w, http.StatusBadRequest, "no such patient")
		return
	}
	if err := s.db.SetPatient(r.Context(), q.id, id); err != nil {
		s.serverError(w, err)
		return
	}
	http.Redirect(w, r, s.prefix+"/consent?req="+q.id, http.StatusSeeOther)
}

// offered is what the consent page offers: the requested scopes within the
// client's registration and the user's role ceiling.
func (s *Server) offered(ctx context.Context, q *authReq, u *User) ([]string, error) {
	c, err := getClient(ctx, s.db, q.clientID)
	if err != nil {
		return nil, err
	}
	return scope.Allowed(u.Role, clientScopes(c, q.scopes)), nil
}

// clientScopes narrows requested to what the client registered, in the
// requested order: resource scopes by intersection, the others (openid,
// launch/patient, …) by name.
func clientScopes(c *Client, requested []string) []string {
	registered := scope.ParseSet(c.Scopes)
	var out []string
	for _, s := range requested {
		switch {
		case !scope.IsResourceScope(s):
			if slices.Contains(c.Scopes, s) && !slices.Contains(out, s) {
				out = append(out, s)
			}
		default:
			for _, n := range scope.Narrow(registered, []string{s}) {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	q, u, ok := s.loggedIn(w, r)
	if !ok {
		return
	}
	if q.patient == "" && slices.Contains(q.scopes, "launch/patient") {
		http.Redirect(w, r, s.prefix+"/patient?req="+q.id, http.StatusSeeOther)
		return
	}
	offered, err := s.offered(r.Context(), q, u)
	if err != nil {
		s.serverError(w, err)
		return
	}
	s.render(w, http.StatusOK, consentTmpl, pageData{Req: q.id, CSRF: q.csrf, Action: s.prefix + "/consent",
		Client: q.clientID, Scopes: offered, User: u.Username, Patient: q.patient})
}

func (s *Server) consentSubmit(w http.ResponseWriter, r *http.Request) {
	q, u, ok := s.loggedIn(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if r.PostForm.Get("deny") != "" {
		_ = s.db.DeleteAuthRequest(ctx, q.id)
		redirectError(w, r, q.redirectURI, q.state, "access_denied", "the user denied access")
		return
	}
	if q.patient == "" && slices.Contains(q.scopes, "launch/patient") {
		http.Redirect(w, r, s.prefix+"/patient?req="+q.id, http.StatusSeeOther)
		return
	}
	offered, err := s.offered(ctx, q, u)
	if err != nil {
		s.serverError(w, err)
		return
	}
	var granted []string
	for _, sc := range offered {
		if slices.Contains(r.PostForm["scope"], sc) {
			granted = append(granted, sc)
		}
	}
	code := randomToken(32)
	// The code lives authRequestTTL from now.
	issued, err := s.db.IssueCode(ctx, q.id, granted, tokenHash(code), time.Now().Add(authRequestTTL))
	if err != nil {
		s.serverError(w, fmt.Errorf("issue code: %w", err))
		return
	}
	if !issued { // a concurrent submit got the code
		s.errorPage(w, http.StatusBadRequest, "this authorization request was already completed")
		return
	}
	v := url.Values{"code": {code}}
	if q.state != "" {
		v.Set("state", q.state)
	}
	http.Redirect(w, r, addQuery(q.redirectURI, v), http.StatusFound)
}

func (s *Server) serverError(w http.ResponseWriter, err error) {
	s.log.Error("authorization server", "err", err)
	s.errorPage(w, http.StatusInternalServerError, "internal error")
}
