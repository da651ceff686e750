package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/store"
)

// `ember token`: an access token printed by whoever administers the server
// (it holds the database, and so the signing key), for curl, scripts and a
// first look; and `ember token revoke`.

const tokenUsage = `Usage:
  ember token (--client ID [--register] | --user NAME [--client ID] [--patient ID]) --scope "SCOPES" [--ttl 1h]
  ember token revoke --token TOKEN|-

Prints an access token for a registered client (system/ scopes) or user
(user/ and patient/ scopes within the role's ceiling), on stdout alone:
  TOKEN=$(ember token --client svc --scope 'system/*.rs')
Scopes beyond the client's registration or the user's role are refused.
The token is the token endpoint's kind: the FHIR API accepts it, /auth/introspect
describes it, and its client may revoke it at /auth/revoke; "ember token revoke"
revokes any. --base-url must be the server's (its issuer and audience).

Flags:
`

// defaultBaseURL is the FHIR base of `ember serve` with its default --addr.
const defaultBaseURL = "http://127.0.0.1:8080/fhir"

func tokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "revoke" {
		return tokenRevoke(ctx, args[1:], stdout, stderr)
	}
	var req authserver.TokenRequest
	var scopes, base string
	var register bool
	return withStore(ctx, "token", args, stderr, func(fs *flag.FlagSet) {
		fs.Usage = func() { fmt.Fprint(fs.Output(), tokenUsage); fs.PrintDefaults() }
		fs.StringVar(&req.ClientID, "client", "", "the registered client the token is issued to")
		fs.StringVar(&req.Username, "user", "", "the registered user the token acts for")
		fs.StringVar(&req.Patient, "patient", "", "patient id of patient/ scopes (a patient user's own by default)")
		fs.StringVar(&scopes, "scope", "", `scopes, space-separated (e.g. "system/*.rs")`)
		fs.DurationVar(&req.TTL, "ttl", time.Hour, fmt.Sprintf("lifetime, at most %s", authserver.MaxIssuedTokenTTL))
		fs.BoolVar(&register, "register", false,
			"register --client first when it is not: a symmetric service client (client_credentials) with --scope; its secret goes to stderr")
		fs.StringVar(&base, "base-url", env("EMBER_BASE_URL", defaultBaseURL), "the server's public FHIR base URL (env EMBER_BASE_URL)")
	}, func(ctx context.Context, st *store.Store) error {
		req.Scopes = strings.Fields(scopes)
		as, err := adminAuthServer(ctx, st, base)
		if err != nil {
			return err
		}
		if register {
			if err := registerService(ctx, st, req, stderr); err != nil {
				return err
			}
		}
		tok, err := as.IssueToken(ctx, req)
		if err != nil {
			return err
		}
		who := "client " + req.ClientID
		if req.Username != "" {
			who = "user " + req.Username
		}
		fmt.Fprintf(stderr, "token for %s, scope %s, expires %s\n", who, strings.Join(tok.Scopes, " "),
			tok.ExpiresAt.UTC().Format(time.RFC3339))
		fmt.Fprintln(stdout, tok.AccessToken)
		return nil
	})
}

// registerService registers req's client as a symmetric client_credentials
// service with req's scopes unless a client of that id exists (whatever it
// is: IssueToken then holds the request to its registration).
func registerService(ctx context.Context, st *store.Store, req authserver.TokenRequest, stderr io.Writer) error {
	if req.ClientID == "" || req.Username != "" {
		return errors.New("token: --register registers a service client: give --client and no --user")
	}
	if _, err := authserver.GetClient(ctx, st, req.ClientID); err == nil {
		return nil
	} else if !errors.Is(err, authserver.ErrNotFound) {
		return err
	}
	c := authserver.Client{ID: req.ClientID, Type: authserver.Symmetric, Secret: authserver.NewSecret(), Scopes: req.Scopes,
		Grants: []string{authserver.GrantClientCredentials}}
	if err := authserver.AddClient(ctx, st, c); err != nil {
		// Registered meanwhile by another `ember token --register`: use it.
		if _, gerr := authserver.GetClient(ctx, st, req.ClientID); gerr == nil {
			return nil
		}
		return fmt.Errorf("token: --register: %w", err)
	}
	fmt.Fprintf(stderr, "client %s registered (symmetric, client_credentials, scope %s); secret: %s\n",
		c.ID, strings.Join(c.Scopes, " "), c.Secret)
	return nil
}

func tokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var tok, base string
	return withStore(ctx, "token revoke", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&tok, "token", "", `the access token to revoke ("-" reads it from stdin)`)
		fs.StringVar(&base, "base-url", env("EMBER_BASE_URL", defaultBaseURL), "the server's public FHIR base URL (env EMBER_BASE_URL)")
	}, func(ctx context.Context, st *store.Store) error {
		if tok == "-" {
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("token revoke: reading the token: %w", err)
			}
			tok = line
		}
		if strings.TrimSpace(tok) == "" {
			return errors.New("token revoke: --token is required")
		}
		as, err := adminAuthServer(ctx, st, base)
		if err != nil {
			return err
		}
		jti, exp, err := as.RevokeToken(ctx, tok)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked (it would have expired %s)\n", jti, exp.UTC().Format(time.RFC3339))
		return nil
	})
}

// adminAuthServer is the authorization server as `ember serve` runs it for
// the FHIR base base, without serving: the same issuer, audience and
// signing key (from the database), so the tokens it signs are the server's.
func adminAuthServer(ctx context.Context, st *store.Store, base string) (*authserver.Server, error) {
	as, err := authserver.New(ctx, authserver.Config{
		Issuer:      authIssuer(base),
		FHIRBaseURL: base,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return as, nil
}

// authIssuer is the built-in authorization server's issuer for a FHIR base:
// <root>/auth beside <root>/fhir.
func authIssuer(base string) string {
	return strings.TrimSuffix(strings.TrimSuffix(base, "/"), "/fhir") + "/auth"
}

// quickStartLines are what `ember serve` prints under SMART authorisation
// after "FHIR base:": the commands that get a token and make a first
// search on this server (its data dir or database, its base URL), as
// README's quick start shows them for the defaults; and, from a checkout,
// the import of the demo data before them.
func quickStartLines(exe string, db dbFlags, base string) []string {
	var where string
	switch {
	case db.databaseURL != "":
		where = " --database-url " + shellQuote(redactURL(db.databaseURL))
	case db.dataDir != "./.ember":
		where = " --data-dir " + shellQuote(db.dataDir)
	}
	token := shellQuote(exe) + " token --client quickstart --register --scope 'system/*.rs'" + where
	if base != defaultBaseURL {
		token += " --base-url " + shellQuote(base)
	}
	lines := []string{"Get a token and search, from another shell in this directory:"}
	if _, err := os.Stat("testdata/synthea.tar.zst"); err == nil {
		lines = append(lines, "  "+shellQuote(exe)+" import testdata/synthea.tar.zst"+where+"   # demo data, once: 100 Synthea patients")
	}
	return append(lines,
		"  TOKEN=$("+token+")",
		`  curl -H "Authorization: Bearer $TOKEN" `+shellQuote(base+"/Patient?_count=5"))
}

// redactURL hides a database URL's password (the line is logged); a
// key=value connection string is not repeated at all.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "<serve's --database-url>"
	}
	return u.Redacted()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
