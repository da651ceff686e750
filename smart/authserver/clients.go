package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/authdb"
)

// Client types: public apps (PKCE, no secret), confidential apps with a
// shared secret (client_secret_basic or client_secret_post), and
// confidential apps that sign assertions (private_key_jwt: backend services
// and asymmetric apps).
const (
	Public     = "public"
	Symmetric  = "symmetric"
	Asymmetric = "asymmetric"
)

// Grant types a symmetric client may choose at registration (Client.Grants).
// Without a choice it has the authorization code (with refresh tokens);
// asymmetric clients always have both, public clients only the code.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
)

// Client is a registered OAuth client.
type Client struct {
	ID           string
	Type         string
	Secret       string // plain secret on Add only; never read back
	RedirectURIs []string
	Scopes       []string
	JWKS         json.RawMessage // registered public key set (asymmetric)
	JWKSURI      string          // or where to fetch it; the only jku accepted
	LaunchURI    string          // the app's EHR launch URL
	// Grants are a symmetric client's grant types (GrantAuthorizationCode,
	// GrantClientCredentials); empty means the authorization code alone.
	Grants []string

	secretHash string
}

// ErrNotFound is returned for an unknown client or user. It is
// authdb.ErrNotFound, so errors.Is matches either.
var ErrNotFound = authdb.ErrNotFound

// validate checks a client before it is stored.
func (c *Client) validate() error {
	if c.ID == "" || len(c.ID) > authorizeParams["client_id"] || !fhir.StorableText(c.ID) ||
		strings.IndexFunc(c.ID, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("client id is required: at most %d bytes of UTF-8 without spaces or control characters",
			authorizeParams["client_id"])
	}
	switch c.Type {
	case Public:
		if c.Secret != "" {
			return errors.New("a public client has no secret")
		}
	case Symmetric:
		if len(c.Secret) < 16 {
			return errors.New("a symmetric client needs a secret of at least 16 characters")
		}
	case Asymmetric:
		if len(c.JWKS) == 0 && c.JWKSURI == "" {
			return errors.New("an asymmetric client needs --jwks or --jwks-uri")
		}
		if len(c.JWKS) > 0 {
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(c.JWKS, &set); err != nil || len(set.Keys) == 0 {
				return fmt.Errorf("jwks: not a JSON Web Key Set with keys: %v", err)
			}
			for _, k := range set.Keys {
				if !k.IsPublic() {
					return errors.New("jwks: holds a private key; register public keys only")
				}
			}
		}
	default:
		return fmt.Errorf("client type %q: want public, symmetric or asymmetric", c.Type)
	}
	if err := c.validateGrants(); err != nil {
		return err
	}
	if c.Type != Asymmetric && c.may(GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return errors.New("at least one redirect URI is required")
	}
	for _, u := range append(append([]string{}, c.RedirectURIs...), c.JWKSURI, c.LaunchURI) {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || !p.IsAbs() || p.Fragment != "" {
			return fmt.Errorf("%q is not an absolute URL without fragment", u)
		}
		if len(u) > authorizeParams["redirect_uri"] {
			return fmt.Errorf("%.40q…: a URL may be at most %d bytes", u, authorizeParams["redirect_uri"])
		}
	}
	return nil
}

// AddClient registers c in st (its Secret is stored hashed).
func AddClient(ctx context.Context, st *store.Store, c Client) error {
	if err := c.validate(); err != nil {
		return err
	}
	rec := authdb.Client{ID: c.ID, Type: c.Type, RedirectURIs: c.RedirectURIs, Scopes: c.Scopes, JWKS: c.JWKS,
		JWKSURI: c.JWKSURI, LaunchURI: c.LaunchURI, Grants: c.Grants}
	if c.Secret != "" {
		rec.SecretHash = hashPassword(c.Secret)
	}
	err := authdb.New(st).AddClient(ctx, rec)
	if errors.Is(err, authdb.ErrExists) {
		return fmt.Errorf("client %s already exists", c.ID)
	}
	if err != nil {
		return fmt.Errorf("add client %s: %w", c.ID, err)
	}
	return nil
}

func fromDBClient(r authdb.Client) Client {
	return Client{ID: r.ID, Type: r.Type, RedirectURIs: r.RedirectURIs, Scopes: r.Scopes, JWKS: r.JWKS, JWKSURI: r.JWKSURI,
		LaunchURI: r.LaunchURI, Grants: r.Grants, secretHash: r.SecretHash}
}

// GetClient returns the client id (ErrNotFound when none).
func GetClient(ctx context.Context, st *store.Store, id string) (*Client, error) {
	return getClient(ctx, authdb.New(st), id)
}

func getClient(ctx context.Context, db *authdb.DB, id string) (*Client, error) {
	r, err := db.Client(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("client %s: %w", id, err)
	}
	c := fromDBClient(r)
	return &c, nil
}

// ListClients returns every client, by id.
func ListClients(ctx context.Context, st *store.Store) ([]Client, error) {
	rs, err := authdb.New(st).Clients(ctx)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	var out []Client
	for _, r := range rs {
		out = append(out, fromDBClient(r))
	}
	return out, nil
}

// RemoveClient deletes a client with its launches, requests and refresh
// tokens (access tokens already issued run out on their own).
func RemoveClient(ctx context.Context, st *store.Store, id string) error {
	if err := authdb.New(st).RemoveClient(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("client %s: %w", id, err)
		}
		return fmt.Errorf("remove client %s: %w", id, err)
	}
	return nil
}

// checkSecret reports whether secret is the client's (constant time).
func (c *Client) checkSecret(secret string) bool {
	return c.Type == Symmetric && c.secretHash != "" && verifyPassword(c.secretHash, secret)
}

// allowsRedirect reports whether uri is registered (exact match).
func (c *Client) allowsRedirect(uri string) bool {
	for _, r := range c.RedirectURIs {
		if r == uri {
			return true
		}
	}
	return false
}

// splitScopes splits a space-separated scope string.
func splitScopes(s string) []string { return strings.Fields(s) }

// NewSecret returns a random client secret.
func NewSecret() string { return randomToken(24) }
