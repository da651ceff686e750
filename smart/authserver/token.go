package authserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store/authdb"
)

func badRequest(code, msg string) *oauthErr {
	return &oauthErr{status: http.StatusBadRequest, code: code, msg: msg}
}

// token is the token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	resp, err := s.tokenResponse(w, r)
	s.metrics.token(r.PostForm.Get("grant_type"), err)
	s.auditToken(r, resp, err)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp, true)
}

func (s *Server) tokenResponse(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	if err := parseForm(w, r); err != nil {
		return nil, err
	}
	gt := r.PostForm.Get("grant_type")
	switch gt {
	case "authorization_code", "refresh_token", "client_credentials":
	case "":
		return nil, badRequest("invalid_request", "grant_type is required")
	default:
		return nil, badRequest("unsupported_grant_type", "grant_type "+gt+" is not supported")
	}
	c, err := s.authClient(r)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, invalidClient("client authentication or client_id is required")
	}
	switch gt {
	case "authorization_code":
		return s.codeGrant(r, c)
	case "refresh_token":
		return s.refreshGrant(r, c)
	default:
		return s.clientCredentials(r, c)
	}
}

func (s *Server) codeGrant(r *http.Request, c *Client) (map[string]any, error) {
	ctx := r.Context()
	f := r.PostForm
	code := f.Get("code")
	if code == "" {
		return nil, badRequest("invalid_request", "code is required")
	}
	rec, err := s.db.AuthRequestByCode(ctx, tokenHash(code))
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, badRequest("invalid_grant", "unknown or expired code")
	}
	if err != nil {
		return nil, err
	}
	q := fromDBRequest(rec)
	switch {
	case rec.CodeUsed:
		// A replayed code may have been stolen: what it bought is revoked
		// (RFC 6749 4.1.2).
		if err := s.revokeCodeGrant(ctx, q.id); err != nil {
			return nil, err
		}
		return nil, badRequest("invalid_grant", "code already used")
	case q.clientID != c.ID:
		return nil, badRequest("invalid_grant", "code was issued to another client")
	case f.Get("redirect_uri") != q.redirectURI:
		return nil, badRequest("invalid_grant", "redirect_uri does not match the authorization request")
	}
	// A failed verifier check leaves the code usable: the verifier is the
	// secret, and guessing one is hopeless.
	verifier := f.Get("code_verifier")
	if q.challenge != "" {
		if verifier == "" {
			return nil, badRequest("invalid_grant", "code_verifier is required")
		}
		sum := sha256.Sum256([]byte(verifier))
		if !challengeRE.MatchString(verifier) ||
			subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(q.challenge)) != 1 {
			return nil, badRequest("invalid_grant", "code_verifier does not match the code_challenge")
		}
	} else if verifier != "" {
		return nil, badRequest("invalid_grant", "no code_challenge was sent for this code")
	}
	first, err := s.db.UseCode(ctx, q.id)
	if err != nil {
		return nil, err
	}
	if !first {
		return nil, badRequest("invalid_grant", "code already used")
	}
	u, err := getUser(ctx, s.db, q.username)
	if err != nil {
		return nil, badRequest("invalid_grant", "the user no longer exists")
	}
	t := &tokenInfo{clientID: c.ID, username: u.Username, role: u.Role, fhirUser: u.FHIRUser, scopes: q.granted,
		patient: q.patient, encounter: q.encounter, nonce: q.nonce, authReq: q.id}
	if q.loginAt != nil {
		t.loginAt = *q.loginAt
	}
	return s.respond(ctx, t, true)
}

// respond issues the access token (and refresh and id tokens) for t.
// newRefresh: a refresh token is issued when offline or online access was
// granted. A refresh grant passes false and hands back the one it used.
func (s *Server) respond(ctx context.Context, t *tokenInfo, newRefresh bool) (map[string]any, error) {
	at, claims, err := s.issueAccessToken(t)
	if err != nil {
		return nil, err
	}
	if t.authReq != "" {
		if err := s.db.SetCodeAccessToken(ctx, t.authReq, claims.ID, time.Unix(claims.Expiry, 0)); err != nil {
			return nil, err
		}
	}
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": claims.Expiry - claims.IssuedAt,
		"scope": strings.Join(t.scopes, " ")}
	if t.username != "" && slices.Contains(t.scopes, "openid") {
		idt, err := s.issueIDToken(t)
		if err != nil {
			return nil, err
		}
		resp["id_token"] = idt
	}
	if t.patient != "" {
		resp["patient"] = t.patient
		resp["need_patient_banner"] = true
	}
	if t.encounter != "" {
		resp["encounter"] = t.encounter
		resp["fhirContext"] = []map[string]string{{"reference": "Encounter/" + t.encounter}}
	}
	if t.username != "" {
		resp["smart_style_url"] = s.issuer + "/smart-style.json"
	}
	offline, online := slices.Contains(t.scopes, "offline_access"), slices.Contains(t.scopes, "online_access")
	if newRefresh && t.username != "" && (offline || online) {
		// offline_access lasts OfflineLifetime; online_access ends with the
		// login session, SessionLifetime after the user signed in.
		exp := time.Now().Add(s.cfg.OfflineLifetime)
		if !offline {
			login := t.loginAt
			if login.IsZero() {
				login = time.Now()
			}
			exp = login.Add(s.cfg.SessionLifetime)
		}
		rt := randomToken(32)
		if err := s.db.AddRefreshToken(ctx, authdb.RefreshToken{Hash: tokenHash(rt), ClientID: t.clientID, Username: t.username,
			Role: t.role, FHIRUser: t.fhirUser, Scopes: t.scopes, Patient: t.patient, Encounter: t.encounter, ExpiresAt: exp,
			AuthRequest: t.authReq}); err != nil {
			return nil, err
		}
		resp["refresh_token"] = rt
	}
	return resp, nil
}

func (s *Server) refreshGrant(r *http.Request, c *Client) (map[string]any, error) {
	ctx := r.Context()
	rt := r.PostForm.Get("refresh_token")
	if rt == "" {
		return nil, badRequest("invalid_request", "refresh_token is required")
	}
	rec, err := s.db.RefreshToken(ctx, tokenHash(rt))
	if errors.Is(err, authdb.ErrNotFound) {
		return nil, badRequest("invalid_grant", "unknown, expired or revoked refresh token")
	}
	if err != nil {
		return nil, err
	}
	t := tokenInfo{clientID: rec.ClientID, username: rec.Username, role: rec.Role, fhirUser: rec.FHIRUser, scopes: rec.Scopes,
		patient: rec.Patient, encounter: rec.Encounter}
	if t.clientID != c.ID {
		return nil, badRequest("invalid_grant", "refresh token was issued to another client")
	}
	if sc := r.PostForm.Get("scope"); sc != "" {
		req := splitScopes(sc)
		if !scope.Subset(req, t.scopes) {
			return nil, badRequest("invalid_scope", "a refresh may only narrow the granted scopes")
		}
		t.scopes = req
	}
	resp, err := s.respond(ctx, &t, false)
	if err != nil {
		return nil, err
	}
	resp["refresh_token"] = rt
	return resp, nil
}

// introspect is RFC 7662. A confidential client (HTTP Basic secret or
// private_key_jwt) may introspect any token. A public client, which names
// itself by client_id and proves nothing, and a caller presenting an active
// bearer token, may introspect only tokens issued to that same client: for
// any other token the answer is {"active": false}, as for an unknown one
// (RFC 7662 2.2), so that it is no oracle for other clients' tokens.
// Without either: 401 invalid_client.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		s.writeErr(w, err)
		return
	}
	ctx := r.Context()
	c, err := s.authClient(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	seeAll := true // the caller may see any token, or only those of client only
	var only string
	switch {
	case c != nil && c.Type == Public:
		seeAll, only = false, c.ID
	case c == nil:
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "authenticate as a client or with a bearer token")
			return
		}
		g, err := s.verifier.Verify(ctx, strings.TrimSpace(bearer))
		if err != nil {
			oauthError(w, http.StatusUnauthorized, "invalid_token", "bearer token is not active")
			return
		}
		// A token without a client (ember token --user) sees none.
		seeAll, only = false, g.ClientID
	}
	maySee := func(clientID string) bool { return seeAll || (clientID == only && only != "") }
	tok := r.PostForm.Get("token")
	inactive := map[string]any{"active": false}
	if cl, err := s.parseAccessToken(tok); err == nil {
		revoked, err := s.db.IsRevoked(ctx, cl.ID)
		if err != nil {
			s.writeErr(w, err)
			return
		}
		if revoked || time.Now().Unix() >= cl.Expiry || !maySee(cl.ClientID) {
			writeJSON(w, http.StatusOK, inactive, true)
			return
		}
		resp := map[string]any{"active": true, "scope": cl.Scope, "client_id": cl.ClientID, "exp": cl.Expiry,
			"iat": cl.IssuedAt, "sub": cl.Subject, "iss": cl.Issuer, "aud": cl.Audience, "token_type": "Bearer", "jti": cl.ID}
		addContext(resp, s.fhirBase, cl.Patient, cl.Encounter, cl.FHIRUser)
		writeJSON(w, http.StatusOK, resp, true)
		return
	}
	t, err := s.db.RefreshToken(ctx, tokenHash(tok))
	if errors.Is(err, authdb.ErrNotFound) || (err == nil && !maySee(t.ClientID)) {
		writeJSON(w, http.StatusOK, inactive, true)
		return
	} else if err != nil {
		s.writeErr(w, err)
		return
	}
	resp := map[string]any{"active": true, "scope": strings.Join(t.Scopes, " "), "client_id": t.ClientID,
		"exp": t.ExpiresAt.Unix(), "sub": t.Username, "iss": s.issuer, "token_type": "refresh_token"}
	addContext(resp, s.fhirBase, t.Patient, t.Encounter, t.FHIRUser)
	writeJSON(w, http.StatusOK, resp, true)
}

func addContext(resp map[string]any, base, patient, encounter, fhirUser string) {
	if patient != "" {
		resp["patient"] = patient
	}
	if encounter != "" {
		resp["encounter"] = encounter
	}
	if fhirUser != "" {
		resp["fhirUser"] = base + "/" + fhirUser
	}
}

// revoke is RFC 7009: a refresh token is marked revoked, an access token's
// jti joins the revoked set. Unknown tokens are answered 200 as well.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		s.writeErr(w, err)
		return
	}
	ctx := r.Context()
	c, err := s.authClient(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if c == nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication or client_id is required")
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	if cl, err := s.parseAccessToken(tok); err == nil {
		if cl.ClientID == c.ID {
			exp := time.Unix(cl.Expiry, 0)
			if err := s.db.RevokeAccessToken(ctx, cl.ID, exp); err != nil {
				s.writeErr(w, err)
				return
			}
			s.verifier.markRevoked(cl.ID, exp)
		}
	} else if err := s.db.RevokeRefreshToken(ctx, tokenHash(tok), c.ID); err != nil {
		s.writeErr(w, err)
		return
	}
	s.auditEvent(r, "logout", audit.Execute, audit.Success, audit.Agent{Client: c.ID})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// revokeCodeGrant revokes the refresh tokens of a code grant and the
// access token its code bought (not those refreshed since: they run out
// within the access token lifetime, and no refresh can follow).
func (s *Server) revokeCodeGrant(ctx context.Context, reqID string) error {
	jti, exp, err := s.db.RevokeCodeGrant(ctx, reqID)
	if err != nil {
		return fmt.Errorf("revoke code grant: %w", err)
	}
	if jti != "" {
		s.verifier.markRevoked(jti, exp)
	}
	return nil
}

func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var oe *oauthErr
	if errors.As(err, &oe) {
		if oe.retryAfter > 0 {
			w.Header().Set("Retry-After", retryAfterValue(oe.retryAfter))
		}
		oauthError(w, oe.status, oe.code, oe.msg)
		return
	}
	s.log.Error("authorization server", "err", err)
	oauthError(w, http.StatusInternalServerError, "server_error", "internal error")
}

var _ access.Verifier = (*Verifier)(nil)
