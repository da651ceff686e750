package authserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/emberfhir/ember/smart/scope"
)

// validateGrants checks (and dedupes) a client's chosen grant types. Only a
// symmetric client chooses: the choice is what makes a secret-holding
// client a service (client_credentials, no redirect URI) rather than an
// app, and OAuth 2.0 leaves that to registration (RFC 6749 §4.4 is for
// confidential clients the server has allowed it).
func (c *Client) validateGrants() error {
	var out []string
	for _, g := range c.Grants {
		switch g {
		case GrantAuthorizationCode, GrantClientCredentials:
		default:
			return fmt.Errorf("grant %q: want %s or %s", g, GrantAuthorizationCode, GrantClientCredentials)
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	c.Grants = out
	if len(out) == 0 {
		return nil
	}
	if c.Type != Symmetric {
		return errors.New("grant types are chosen for symmetric clients only: an asymmetric client has " +
			"authorization_code and client_credentials, a public client authorization_code")
	}
	if c.may(GrantClientCredentials) && !slices.ContainsFunc(c.Scopes, isSystemScope) {
		return errors.New("a client_credentials client needs system/ scopes (--scope \"system/*.rs\")")
	}
	if !c.may(GrantAuthorizationCode) && (len(c.RedirectURIs) > 0 || c.LaunchURI != "") {
		return errors.New("redirect and launch URIs are for the authorization_code grant: add --grant authorization_code, or leave them out for a service")
	}
	return nil
}

// may reports whether the client may use grant type g at the token
// endpoint (refresh_token goes with the authorization code).
func (c *Client) may(g string) bool {
	switch c.Type {
	case Asymmetric:
		return g == GrantAuthorizationCode || g == GrantClientCredentials
	case Symmetric:
		if len(c.Grants) == 0 {
			return g == GrantAuthorizationCode
		}
		return slices.Contains(c.Grants, g)
	}
	return g == GrantAuthorizationCode
}

// GrantTypes lists the grant types the client may use, as `ember client
// list` shows them.
func (c *Client) GrantTypes() []string {
	var out []string
	for _, g := range []string{GrantAuthorizationCode, GrantClientCredentials} {
		if c.may(g) {
			out = append(out, g)
		}
	}
	return out
}

func isSystemScope(s string) bool { return strings.HasPrefix(s, "system/") }

// clientCredentials is RFC 6749 §4.4 for a client registered for it: SMART
// Backend Services (an asymmetric client, private_key_jwt) or a symmetric
// service client (client_secret_basic or client_secret_post). Only system/
// scopes; the requested ones are narrowed to the registration (the same
// policy as authorize), and refused when nothing is left.
func (s *Server) clientCredentials(r *http.Request, c *Client) (map[string]any, error) {
	if !c.may(GrantClientCredentials) {
		if c.Type == Symmetric {
			return nil, badRequest("unauthorized_client", "client "+c.ID+" is not registered for client_credentials "+
				"(ember client add --grant client_credentials)")
		}
		return nil, badRequest("unauthorized_client", "client_credentials needs a confidential client registered for it")
	}
	var req []string
	for _, sc := range splitScopes(r.PostForm.Get("scope")) {
		if !isSystemScope(sc) {
			return nil, badRequest("invalid_scope", "client_credentials may ask only for system/ scopes, not "+sc)
		}
		req = append(req, sc)
	}
	granted := registeredSystemScopes(c, req)
	if len(granted) == 0 {
		return nil, badRequest("invalid_scope", "none of the requested scopes is registered for this client")
	}
	return s.respond(r.Context(), &tokenInfo{clientID: c.ID, scopes: granted}, false)
}

// registeredSystemScopes narrows req to the client's registered system/
// scopes: scope.Narrow never goes beyond them (a registered search
// constraint stays on), the same policy as authorize.
func registeredSystemScopes(c *Client, req []string) []string {
	var out []string
	for _, sc := range scope.Narrow(scope.ParseSet(c.Scopes), req) {
		if isSystemScope(sc) {
			out = append(out, sc)
		}
	}
	return out
}
