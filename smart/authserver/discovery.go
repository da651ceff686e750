package authserver

import (
	"encoding/json"
	"net/http"
)

// capabilities are the SMART capabilities Ember supports.
var capabilities = []string{
	"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
	"client-confidential-asymmetric", "sso-openid-connect", "context-banner", "context-style",
	"context-ehr-patient", "context-ehr-encounter", "context-standalone-patient", "permission-offline",
	"permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2",
	"authorize-post",
}

var scopesSupported = []string{
	"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access",
	"patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
	"patient/*.read", "patient/*.write", "patient/*.*", "user/*.read", "user/*.write", "user/*.*",
	"system/*.read", "system/*.write", "system/*.*",
}

// authMethods are the token endpoint's client authentication methods:
// symmetric clients send their secret by HTTP Basic or in the form,
// asymmetric ones sign an assertion, public ones only name themselves.
var authMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}

func (s *Server) smartConfiguration(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.issuer,
		"jwks_uri":                              s.JWKSURL(),
		"authorization_endpoint":                s.AuthorizeURL(),
		"token_endpoint":                        s.TokenURL(),
		"introspection_endpoint":                s.IntrospectURL(),
		"revocation_endpoint":                   s.RevokeURL(),
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": authMethods,
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"scopes_supported":         scopesSupported,
		"response_types_supported": []string{"code"},
		"capabilities":             capabilities,
	}, false)
}

func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.issuer,
		"jwks_uri":                              s.JWKSURL(),
		"authorization_endpoint":                s.AuthorizeURL(),
		"token_endpoint":                        s.TokenURL(),
		"introspection_endpoint":                s.IntrospectURL(),
		"revocation_endpoint":                   s.RevokeURL(),
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported": authMethods,
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      scopesSupported,
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "name"},
	}, false)
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(s.jwks)
}

func (s *Server) style(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"color_background": "#edeae3", "color_error": "#9e2d2d", "color_highlight": "#69b5ce",
		"color_modal_backdrop": "", "color_success": "#498e49", "color_text": "#303030",
		"dim_border_radius": "6px", "dim_font_size": "13px", "dim_spacing_size": "20px",
		"font_family_body":    "Georgia, Times, 'Times New Roman', serif",
		"font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif;",
	}, false)
}

// writeJSON writes v; noStore adds the headers token responses need.
func writeJSON(w http.ResponseWriter, status int, v any, noStore bool) {
	w.Header().Set("Content-Type", "application/json")
	if noStore {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// oauthError writes an OAuth error body (RFC 6749 5.2).
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="ember"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc}, true)
}
