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
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/fhir"
)

// Client types: public apps (PKCE, no secret), confidential apps with a
// shared secret (HTTP Basic), and confidential apps that sign assertions
// (private_key_jwt: backend services and asymmetric apps).
const (
	Public     = "public"
	Symmetric  = "symmetric"
	Asymmetric = "asymmetric"
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

	secretHash string
}

// ErrNotFound is returned for an unknown client or user.
var ErrNotFound = errors.New("not found")

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
	if c.Type != Asymmetric && len(c.RedirectURIs) == 0 {
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

// AddClient registers c (its Secret is stored hashed).
func AddClient(ctx context.Context, db *pgxpool.Pool, c Client) error {
	if err := c.validate(); err != nil {
		return err
	}
	var hash *string
	if c.Secret != "" {
		h := hashPassword(c.Secret)
		hash = &h
	}
	var jwks []byte
	if len(c.JWKS) > 0 {
		jwks = c.JWKS
	}
	tag, err := db.Exec(ctx, `INSERT INTO smart_clients (id, type, secret_hash, redirect_uris, scopes, jwks, jwks_uri, launch_uri)
		VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), nullif($8, '')) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.Type, hash, nonNil(c.RedirectURIs), nonNil(c.Scopes), jwks, c.JWKSURI, c.LaunchURI)
	if err != nil {
		return fmt.Errorf("add client %s: %w", c.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("client %s already exists", c.ID)
	}
	return nil
}

const clientCols = `id, type, coalesce(secret_hash, ''), redirect_uris, scopes, jwks, coalesce(jwks_uri, ''), coalesce(launch_uri, '')`

func scanClient(row pgx.Row) (*Client, error) {
	var c Client
	var jwks []byte
	if err := row.Scan(&c.ID, &c.Type, &c.secretHash, &c.RedirectURIs, &c.Scopes, &jwks, &c.JWKSURI, &c.LaunchURI); err != nil {
		return nil, err
	}
	c.JWKS = jwks
	return &c, nil
}

// GetClient returns the client id (ErrNotFound when none).
func GetClient(ctx context.Context, db *pgxpool.Pool, id string) (*Client, error) {
	c, err := scanClient(db.QueryRow(ctx, `SELECT `+clientCols+` FROM smart_clients WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("client %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("client %s: %w", id, err)
	}
	return c, nil
}

// ListClients returns every client, by id.
func ListClients(ctx context.Context, db *pgxpool.Pool) ([]Client, error) {
	rows, err := db.Query(ctx, `SELECT `+clientCols+` FROM smart_clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	defer rows.Close()
	var out []Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// RemoveClient deletes a client with its launches, requests and refresh
// tokens (access tokens already issued run out on their own).
func RemoveClient(ctx context.Context, db *pgxpool.Pool, id string) error {
	tag, err := db.Exec(ctx, `DELETE FROM smart_clients WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("remove client %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("client %s: %w", id, ErrNotFound)
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// splitScopes splits a space-separated scope string.
func splitScopes(s string) []string { return strings.Fields(s) }

// NewSecret returns a random client secret.
func NewSecret() string { return randomToken(24) }
