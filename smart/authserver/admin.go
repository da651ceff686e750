package authserver

// The admin API: JSON endpoints under <issuer>/admin/ through which an
// admin user manages SMART apps and users from a browser (Ember Console),
// as `ember client` and `ember user` do from the command line.
//
// The caller presents an access token of this server (Authorization:
// Bearer) whose user has role admin, both in the token and, at the time of
// the request, in the database: an admin demoted or removed loses the API
// at once, though their token stays valid for FHIR until it expires.
// Every request is recorded in the audit trail (Kind Admin, the CLI
// command's subtype, the token's user as agent), refused ones included.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/authdb"
)

// adminRole is the role the admin API requires.
const adminRole = "admin"

// adminHandler serves the admin API (every path under <prefix>/admin/),
// with the CORS of the other endpoints.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	p := s.prefix + "/admin"
	mux.Handle("GET "+p+"/clients", s.admin("client list", audit.Read, s.adminListClients))
	mux.Handle("POST "+p+"/clients", s.admin("client add", audit.Create, s.adminAddClient))
	mux.Handle("DELETE "+p+"/clients/{id}", s.admin("client remove", audit.Delete, s.adminRemoveClient))
	mux.Handle("POST "+p+"/clients/{id}/launch", s.admin("launch", audit.Create, s.adminLaunch))
	mux.Handle("GET "+p+"/users", s.admin("user list", audit.Read, s.adminListUsers))
	mux.Handle("POST "+p+"/users", s.admin("user add", audit.Create, s.adminAddUser))
	mux.Handle("DELETE "+p+"/users/{username}", s.admin("user remove", audit.Delete, s.adminRemoveUser))
	mux.Handle("POST "+p+"/users/{username}/password", s.admin("user password", audit.Update, s.adminSetPassword))
	mux.Handle("POST "+p+"/users/{username}/unlock", s.admin("user unlock", audit.Update, s.adminUnlock))
	mux.Handle("POST "+p+"/users/{username}/role", s.admin("user role", audit.Update, s.adminSetRole))
	return s.cors(mux)
}

// adminRun serves one request of an authenticated admin g: the status and
// JSON body of a success (a nil body sends none), or an error (an
// *apiError, else 500). It may add entities or the patient to ev.
type adminRun func(w http.ResponseWriter, r *http.Request, g *access.Grant, ev *audit.Event) (int, any, error)

// apiError is a refusal: {"error": code, "error_description": msg}.
type apiError struct {
	status    int
	code, msg string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

// fieldError is a 400 whose description starts with the JSON field (or
// "body") at fault.
func fieldError(field, format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", field + ": " + fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) *apiError {
	return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) *apiError {
	return &apiError{http.StatusConflict, "conflict", fmt.Sprintf(format, a...)}
}

// admin wraps run with authentication, the response and the audit record.
func (s *Server) admin(subtype string, action audit.Action, run adminRun) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev := audit.Event{Kind: audit.Admin, Subtype: subtype, Action: action}
		ev.Status = s.serveAdmin(w, r, &ev, run)
		ev.Outcome = audit.OutcomeOfStatus(ev.Status)
		if s.cfg.Audit != nil {
			ev.Agent.Address = guard.RemoteAddr(r, s.cfg.TrustedProxies)
			s.cfg.Audit.Record(ev)
		}
	})
}

// serveAdmin answers r and returns the status sent.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request, ev *audit.Event, run adminRun) int {
	g, err := s.adminGrant(r)
	if g != nil {
		ev.Agent = audit.Agent{User: g.FHIRUser, Subject: g.Subject, Client: g.ClientID, Role: g.Role}
	}
	status, body := 0, any(nil)
	if err == nil {
		status, body, err = run(w, r, g, ev)
	}
	if err != nil {
		return s.writeAdminErr(w, err)
	}
	if body == nil {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		return status
	}
	writeJSON(w, status, body, true)
	return status
}

// ConsoleClientID is the Ember console's OAuth client, the admin API's
// client by default (Config.AdminClients).
const ConsoleClientID = "ember-console"

func (s *Server) adminClients() []string {
	if len(s.cfg.AdminClients) > 0 {
		return s.cfg.AdminClients
	}
	return []string{ConsoleClientID}
}

// adminGrant authenticates r: its bearer token's grant when its user is an
// admin now; else a 401 (no or invalid token) or a 403 with the grant.
func (s *Server) adminGrant(r *http.Request) (*access.Grant, error) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, &apiError{http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <access token of an admin user>"}
	}
	g, err := s.verifier.Verify(r.Context(), tok)
	if errors.Is(err, access.ErrInvalidToken) {
		return nil, &apiError{http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked"}
	}
	if err != nil {
		return nil, fmt.Errorf("admin: verify token: %w", err)
	}
	denied := &apiError{http.StatusForbidden, "access_denied", "the admin API is for users with role admin"}
	if g.Role != adminRole {
		return g, denied
	}
	if !slices.Contains(s.adminClients(), g.ClientID) {
		return g, &apiError{http.StatusForbidden, "access_denied",
			"the admin API answers tokens issued to " + strings.Join(s.adminClients(), ", ") + " only: another app an admin signs into gets no admin power"}
	}
	// The role in the token is the one at sign-in; the database's is now.
	u, err := s.db.User(r.Context(), g.Subject)
	if errors.Is(err, authdb.ErrNotFound) || (err == nil && u.Role != adminRole) {
		return g, denied
	}
	if err != nil {
		return g, fmt.Errorf("admin: user %s: %w", g.Subject, err)
	}
	return g, nil
}

// writeAdminErr sends err and returns its status.
func (s *Server) writeAdminErr(w http.ResponseWriter, err error) int {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("admin API", "err", err)
		ae = &apiError{http.StatusInternalServerError, "server_error", "internal error"}
	}
	if ae.status == http.StatusUnauthorized {
		challenge := `Bearer realm="ember"`
		if ae.code == "invalid_token" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSON(w, ae.status, map[string]string{"error": ae.code, "error_description": ae.msg}, true)
	return ae.status
}

// decodeBody reads r's JSON object (at most maxFormBytes) into v, naming
// the field at fault when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return nil
		}
		if err == nil {
			return fieldError("body", "one JSON object, with nothing after it")
		}
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{http.StatusRequestEntityTooLarge, "invalid_request", "body: larger than 64 KiB"}
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fieldError(typeErr.Field, "want a JSON %s", jsonKind(typeErr.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if uerr != nil {
			name = "body"
		}
		return fieldError(name, "unknown field")
	case err == io.EOF:
		return fieldError("body", "a JSON object is required")
	}
	return fieldError("body", "not a JSON object (%v)", err)
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "array of strings"
		}
		return "value"
	case reflect.Struct:
		return "object"
	}
	return t.String()
}

// textField refuses a value PostgreSQL cannot store or compare (a NUL byte;
// JSON decoding already replaced invalid UTF-8).
func textField(field string, values ...string) error {
	for _, v := range values {
		if !fhir.StorableText(v) {
			return fieldError(field, "holds a NUL character")
		}
	}
	return nil
}

// pathValue is the path wildcard name, or ok=false when it cannot name a
// stored row.
func pathValue(r *http.Request, name string) (string, bool) {
	v := r.PathValue(name)
	return v, v != "" && fhir.StorableText(v)
}

// Clients.

// clientJSON is a client as the API shows it: never a secret or its hash,
// except Secret in the answer to the POST that generated it.
type clientJSON struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	RedirectURIs []string        `json:"redirect_uris"`
	Scope        string          `json:"scope"`
	GrantTypes   []string        `json:"grant_types"`
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	JWKSURI      string          `json:"jwks_uri,omitempty"`
	LaunchURI    string          `json:"launch_uri,omitempty"`
	Secret       string          `json:"secret,omitempty"`
}

// clientRequest is the body of POST clients: `ember client add`'s flags,
// without the secret, which the server generates.
type clientRequest struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	RedirectURIs []string        `json:"redirect_uris"`
	Scope        string          `json:"scope"`
	GrantTypes   []string        `json:"grant_types"`
	JWKS         json.RawMessage `json:"jwks"`
	JWKSURI      string          `json:"jwks_uri"`
	LaunchURI    string          `json:"launch_uri"`
}

func viewClient(c *Client) clientJSON {
	return clientJSON{ID: c.ID, Type: c.Type, RedirectURIs: orEmpty(c.RedirectURIs), Scope: strings.Join(c.Scopes, " "),
		GrantTypes: orEmpty(c.GrantTypes()), JWKS: c.JWKS, JWKSURI: c.JWKSURI, LaunchURI: c.LaunchURI}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// adminListClients is GET clients: {"clients": [client…]} by id.
func (s *Server) adminListClients(_ http.ResponseWriter, r *http.Request, _ *access.Grant, _ *audit.Event) (int, any, error) {
	rs, err := s.db.Clients(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]clientJSON, 0, len(rs))
	for _, rec := range rs {
		c := fromDBClient(rec)
		out = append(out, viewClient(&c))
	}
	return http.StatusOK, map[string]any{"clients": out}, nil
}

// adminAddClient is POST clients: 201 with the client, and the generated
// secret of a symmetric one (shown this once); 409 when the id is taken.
func (s *Server) adminAddClient(w http.ResponseWriter, r *http.Request, _ *access.Grant, _ *audit.Event) (int, any, error) {
	var in clientRequest
	if err := decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	c, err := in.client()
	if err != nil {
		return 0, nil, err
	}
	if c.Type == Symmetric {
		c.Secret = NewSecret()
	}
	if err := c.validate(); err != nil {
		return 0, nil, fieldError(clientField(c, err), "%v", err)
	}
	rec := authdb.Client{ID: c.ID, Type: c.Type, RedirectURIs: c.RedirectURIs, Scopes: c.Scopes, JWKS: c.JWKS,
		JWKSURI: c.JWKSURI, LaunchURI: c.LaunchURI, Grants: c.Grants}
	if c.Secret != "" {
		rec.SecretHash = hashPassword(c.Secret)
	}
	err = s.db.AddClient(r.Context(), rec)
	if errors.Is(err, authdb.ErrExists) {
		return 0, nil, conflict("id: client %s already exists", c.ID)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("admin: add client %s: %w", c.ID, err)
	}
	out := viewClient(c)
	out.Secret = c.Secret
	return http.StatusCreated, out, nil
}

// client is the Client in, checked for what Client.validate leaves to
// the command line (text, keys only on asymmetric clients).
func (in *clientRequest) client() (*Client, error) {
	for _, f := range []struct {
		name string
		v    []string
	}{{"id", []string{in.ID}}, {"type", []string{in.Type}}, {"redirect_uris", in.RedirectURIs}, {"scope", []string{in.Scope}},
		{"grant_types", in.GrantTypes}, {"jwks_uri", []string{in.JWKSURI}}, {"launch_uri", []string{in.LaunchURI}}} {
		if err := textField(f.name, f.v...); err != nil {
			return nil, err
		}
	}
	c := &Client{ID: in.ID, Type: in.Type, RedirectURIs: in.RedirectURIs, Scopes: strings.Fields(in.Scope),
		Grants: in.GrantTypes, JWKSURI: in.JWKSURI, LaunchURI: in.LaunchURI}
	if len(in.JWKS) > 0 && string(in.JWKS) != "null" {
		jwks, err := storableJSON(in.JWKS)
		if err != nil {
			return nil, fieldError("jwks", "%v", err)
		}
		c.JWKS = jwks
	}
	if c.Type == Asymmetric && len(c.JWKS) == 0 && c.JWKSURI == "" {
		return nil, fieldError("jwks", "an asymmetric client needs jwks or jwks_uri")
	}
	if c.Type != Asymmetric && len(c.JWKS) > 0 {
		return nil, fieldError("jwks", "only an asymmetric client has keys")
	}
	if c.Type != Asymmetric && c.JWKSURI != "" {
		return nil, fieldError("jwks_uri", "only an asymmetric client has keys")
	}
	return c, nil
}

// storableJSON re-encodes raw as PostgreSQL's jsonb takes it: Go replaces
// lone surrogates, which jsonb refuses, and a NUL (\u0000, which jsonb
// refuses too) is refused here.
func storableJSON(raw json.RawMessage) (json.RawMessage, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(out), `\u0000`) {
		return nil, errors.New("holds a NUL character")
	}
	return out, nil
}

// clientField is the JSON field a Client.validate error is about (its
// messages name the command line's flags).
func clientField(c *Client, err error) string {
	msg := err.Error()
	for _, f := range []struct {
		name string
		urls []string
	}{{"redirect_uris", c.RedirectURIs}, {"jwks_uri", []string{c.JWKSURI}}, {"launch_uri", []string{c.LaunchURI}}} {
		for _, u := range f.urls {
			if u != "" && (strings.HasPrefix(msg, strconv.Quote(u)+" ") || strings.HasPrefix(msg, fmt.Sprintf("%.40q…", u))) {
				return f.name
			}
		}
	}
	switch {
	case strings.HasPrefix(msg, "client id"):
		return "id"
	case strings.HasPrefix(msg, "client type"):
		return "type"
	case strings.Contains(msg, "jwks"):
		return "jwks"
	case strings.Contains(msg, "system/ scopes"):
		return "scope"
	case strings.HasPrefix(msg, "grant"):
		return "grant_types"
	case strings.HasPrefix(msg, "redirect and launch URIs") && len(c.RedirectURIs) == 0:
		return "launch_uri"
	case strings.HasPrefix(msg, "redirect and launch URIs"), strings.Contains(msg, "redirect URI"):
		return "redirect_uris"
	}
	return "body"
}

// adminRemoveClient is DELETE clients/{id}: 204, with the client's
// launches, authorization requests and refresh tokens. The client the
// caller's own token was issued to is not removed (409): the console
// would cut the branch it sits on.
func (s *Server) adminRemoveClient(_ http.ResponseWriter, r *http.Request, g *access.Grant, _ *audit.Event) (int, any, error) {
	id, ok := pathValue(r, "id")
	if !ok {
		return 0, nil, notFound("no such client")
	}
	if id == g.ClientID {
		return 0, nil, conflict("id: your access token was issued to client %s; remove it from another client or with ember client remove", id)
	}
	err := s.db.RemoveClient(r.Context(), id)
	if errors.Is(err, authdb.ErrNotFound) {
		return 0, nil, notFound("client %s not found", id)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("admin: remove client %s: %w", id, err)
	}
	return http.StatusNoContent, nil, nil
}

// launchRequest is the body of POST clients/{id}/launch.
type launchRequest struct {
	Patient   string `json:"patient"`
	Encounter string `json:"encounter"`
	User      string `json:"user"`
}

// adminLaunch is POST clients/{id}/launch, `ember launch` over HTTP: 201
// {"launch": id, "url": the app's launch URL with iss and launch}.
func (s *Server) adminLaunch(w http.ResponseWriter, r *http.Request, _ *access.Grant, ev *audit.Event) (int, any, error) {
	ctx := r.Context()
	id, ok := pathValue(r, "id")
	if !ok {
		return 0, nil, notFound("no such client")
	}
	var in launchRequest
	if err := decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	c, err := getClient(ctx, s.db, id)
	if errors.Is(err, authdb.ErrNotFound) {
		return 0, nil, notFound("client %s not found", id)
	}
	if err != nil {
		return 0, nil, err
	}
	if c.LaunchURI == "" {
		return 0, nil, conflict("launch_uri: client %s has no launch URI", id)
	}
	in.Patient = strings.TrimPrefix(in.Patient, "Patient/")
	in.Encounter = strings.TrimPrefix(in.Encounter, "Encounter/")
	if err := s.resourceExists(r, "patient", "Patient", in.Patient); err != nil {
		return 0, nil, err
	}
	if in.Encounter != "" {
		if err := s.resourceExists(r, "encounter", "Encounter", in.Encounter); err != nil {
			return 0, nil, err
		}
	}
	if in.User != "" {
		if err := textField("user", in.User); err != nil {
			return 0, nil, err
		}
		if _, err := s.db.User(ctx, in.User); errors.Is(err, authdb.ErrNotFound) {
			return 0, nil, fieldError("user", "no such user")
		} else if err != nil {
			return 0, nil, err
		}
	}
	l, launchURL, err := createLaunch(ctx, s.db, s.fhirBase, Launch{ClientID: id, Patient: in.Patient, Encounter: in.Encounter,
		Username: in.User})
	if err != nil {
		return 0, nil, fmt.Errorf("admin: launch: %w", err)
	}
	ev.Patient = "Patient/" + in.Patient
	return http.StatusCreated, map[string]string{"launch": l.ID, "url": launchURL}, nil
}

// resourceExists refuses (400, naming field) an id that is not a current
// resource of type typ.
func (s *Server) resourceExists(r *http.Request, field, typ, id string) error {
	if !patientIDRE.MatchString(id) {
		return fieldError(field, "a %s id is required", typ)
	}
	_, err := s.st.Read(r.Context(), typ, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		return fieldError(field, "no such %s", typ)
	}
	if err != nil {
		return fmt.Errorf("admin: read %s/%s: %w", typ, id, err)
	}
	return nil
}

// Users.

// userJSON is a user as the API shows it (never the password hash).
type userJSON struct {
	Username     string     `json:"username"`
	Role         string     `json:"role"`
	FHIRUser     string     `json:"fhir_user"`
	FailedLogins int        `json:"failed_logins"`
	Locked       bool       `json:"locked"`
	LockedUntil  *time.Time `json:"locked_until,omitempty"`
}

func viewUser(a authdb.Account) userJSON {
	return userJSON{Username: a.Username, Role: a.Role, FHIRUser: a.FHIRUser, FailedLogins: a.FailedLogins,
		Locked: a.LockedUntil != nil, LockedUntil: a.LockedUntil}
}

// userRequest is the body of POST users, and (its password or role
// alone) of a password reset or role change.
type userRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
	FHIRUser string `json:"fhir_user"`
}

// adminListUsers is GET users: {"users": [user…]} by username.
func (s *Server) adminListUsers(_ http.ResponseWriter, r *http.Request, _ *access.Grant, _ *audit.Event) (int, any, error) {
	as, err := s.db.Accounts(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]userJSON, 0, len(as))
	for _, a := range as {
		out = append(out, viewUser(a))
	}
	return http.StatusOK, map[string]any{"users": out}, nil
}

// adminAddUser is POST users: 201 with the user; 409 when the name is
// taken. The rules are AddUser's (`ember user add`).
func (s *Server) adminAddUser(w http.ResponseWriter, r *http.Request, _ *access.Grant, ev *audit.Event) (int, any, error) {
	var in userRequest
	if err := decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	if err := checkUsername(in.Username); err != nil {
		return 0, nil, err
	}
	if err := checkPassword(in.Password); err != nil {
		return 0, nil, err
	}
	if err := checkRole(in.Role, in.FHIRUser); err != nil {
		return 0, nil, err
	}
	if !fhirUserRE.MatchString(in.FHIRUser) {
		return 0, nil, fieldError("fhir_user", "%q: want Practitioner/ID, PractitionerRole/ID, Patient/ID, RelatedPerson/ID or Person/ID",
			in.FHIRUser)
	}
	u := authdb.User{Username: in.Username, Role: in.Role, FHIRUser: in.FHIRUser}
	err := s.db.AddUser(r.Context(), u, hashPassword(in.Password))
	if errors.Is(err, authdb.ErrExists) {
		return 0, nil, conflict("username: user %s already exists", in.Username)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("admin: add user %s: %w", in.Username, err)
	}
	ev.Entities = []string{u.FHIRUser}
	return http.StatusCreated, viewUser(authdb.Account{User: u}), nil
}

func checkUsername(name string) error {
	if name == "" || len(name) > maxUsername || !utf8.ValidString(name) ||
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fieldError("username", "required: at most %d bytes of UTF-8 without spaces or control characters", maxUsername)
	}
	return nil
}

func checkPassword(pw string) error {
	if len(pw) < 8 {
		return fieldError("password", "at least 8 characters")
	}
	return textField("password", pw) // a NUL could never be typed at the login page
}

// checkRole checks a role, and that a patient is a Patient.
func checkRole(role, fhirUser string) error {
	if !scope.IsRole(role) {
		return fieldError("role", "%q: want one of %s", role, strings.Join(scope.Roles(), ", "))
	}
	if role == "patient" && !strings.HasPrefix(fhirUser, "Patient/") {
		return fieldError("role", "a user with role patient must be a Patient, not %s", fhirUser)
	}
	return nil
}

// adminRemoveUser is DELETE users/{username}: 204, and the user's refresh
// tokens are revoked. Admins do not remove themselves (409), so one
// always remains.
func (s *Server) adminRemoveUser(_ http.ResponseWriter, r *http.Request, g *access.Grant, ev *audit.Event) (int, any, error) {
	name, ok := pathValue(r, "username")
	if !ok {
		return 0, nil, notFound("no such user")
	}
	if name == g.Subject {
		return 0, nil, conflict("username: you cannot remove your own account")
	}
	a, err := s.db.RemoveAccount(r.Context(), name)
	if err != nil {
		return 0, nil, userErr(name, err)
	}
	ev.Entities = []string{a.FHIRUser}
	return http.StatusNoContent, nil, nil
}

// adminSetPassword is POST users/{username}/password {"password": …}: 200
// with the user, whose lock is cleared and refresh tokens revoked.
func (s *Server) adminSetPassword(w http.ResponseWriter, r *http.Request, _ *access.Grant, ev *audit.Event) (int, any, error) {
	name, ok := pathValue(r, "username")
	if !ok {
		return 0, nil, notFound("no such user")
	}
	var in struct {
		Password string `json:"password"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	if err := checkPassword(in.Password); err != nil {
		return 0, nil, err
	}
	a, err := s.db.SetPassword(r.Context(), name, hashPassword(in.Password))
	if err != nil {
		return 0, nil, userErr(name, err)
	}
	s.creds.accounts.forget("user:" + name)
	ev.Entities = []string{a.FHIRUser}
	return http.StatusOK, viewUser(a), nil
}

// adminUnlock is POST users/{username}/unlock: 200 with the user, whose
// failed logins and lock are cleared (in the database, and in this
// replica's login limits; another replica's lapse within their backoff).
func (s *Server) adminUnlock(_ http.ResponseWriter, r *http.Request, _ *access.Grant, ev *audit.Event) (int, any, error) {
	name, ok := pathValue(r, "username")
	if !ok {
		return 0, nil, notFound("no such user")
	}
	a, err := s.db.Unlock(r.Context(), name)
	if err != nil {
		return 0, nil, userErr(name, err)
	}
	s.creds.accounts.forget("user:" + name)
	ev.Entities = []string{a.FHIRUser}
	return http.StatusOK, viewUser(a), nil
}

// adminSetRole is POST users/{username}/role {"role": …}: 200 with the
// user, whose refresh tokens (which carry the old role) are revoked.
// Admins do not demote themselves (409).
func (s *Server) adminSetRole(w http.ResponseWriter, r *http.Request, g *access.Grant, ev *audit.Event) (int, any, error) {
	ctx := r.Context()
	name, ok := pathValue(r, "username")
	if !ok {
		return 0, nil, notFound("no such user")
	}
	var in struct {
		Role string `json:"role"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	u, err := s.db.User(ctx, name)
	if err != nil {
		return 0, nil, userErr(name, err)
	}
	if err := checkRole(in.Role, u.FHIRUser); err != nil {
		return 0, nil, err
	}
	if name == g.Subject && in.Role != adminRole {
		return 0, nil, conflict("role: you cannot take the admin role from yourself")
	}
	a, err := s.db.SetRole(ctx, name, in.Role)
	if err != nil {
		return 0, nil, userErr(name, err)
	}
	ev.Entities = []string{a.FHIRUser}
	return http.StatusOK, viewUser(a), nil
}

// userErr is a 404 for an unknown user, else err wrapped.
func userErr(name string, err error) error {
	if errors.Is(err, authdb.ErrNotFound) {
		return notFound("user %s not found", name)
	}
	return fmt.Errorf("admin: user %s: %w", name, err)
}

// forget drops key's count and block: an admin unlocked the account.
func (t *strikeTable) forget(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[key]; ok {
		delete(t.m, key)
		t.lru.Remove(e)
	}
}
