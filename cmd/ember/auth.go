package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/store"
)

// The SMART authorization server's administration: `ember client`,
// `ember user` and `ember launch`. They take serve's database flags and
// attach to a running server's embedded cluster, or start it themselves.

const clientUsage = `Usage:
  ember client add --id ID --type public|symmetric|asymmetric [--redirect-uri URL]... --scope "SCOPES"
                   [--secret S] [--jwks FILE | --jwks-uri URL] [--launch-uri URL]
                   [--grant authorization_code|client_credentials]...
  ember client add --id ID --type symmetric --grant client_credentials --scope "system/*.rs"   (a service)
  ember client list
  ember client remove --id ID
`

const userUsage = `Usage:
  ember user add --username NAME --password PW --role ROLE --fhir-user Practitioner/ID|Patient/ID
  ember user list
  ember user remove --username NAME
`

func clientCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, clientUsage)
		return errUsage
	}
	switch args[0] {
	case "add":
		return clientAdd(ctx, args[1:], stdout, stderr)
	case "list":
		return withStore(ctx, "client list", args[1:], stderr, nil, func(ctx context.Context, st *store.Store) error {
			cs, err := authserver.ListClients(ctx, st)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tGRANTS\tREDIRECT URIS\tSCOPES\tLAUNCH URI")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Type, strings.Join(c.GrantTypes(), ","),
					strings.Join(c.RedirectURIs, ","), strings.Join(c.Scopes, " "), c.LaunchURI)
			}
			return tw.Flush()
		})
	case "remove":
		var id string
		return withStore(ctx, "client remove", args[1:], stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&id, "id", "", "client id")
		}, func(ctx context.Context, st *store.Store) error {
			if err := authserver.RemoveClient(ctx, st, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "client %s removed\n", id)
			return nil
		})
	case "-h", "--help", "help":
		fmt.Fprint(stdout, clientUsage)
		return nil
	}
	fmt.Fprintf(stderr, "ember client: unknown subcommand %q\n\n%s", args[0], clientUsage)
	return errUsage
}

func clientAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c authserver.Client
	var redirects, grants stringList
	var scopes, jwksFile string
	return withStore(ctx, "client add", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&c.ID, "id", "", "client id")
		fs.StringVar(&c.Type, "type", "", "public (PKCE), symmetric (secret: client_secret_basic or client_secret_post) or asymmetric (private_key_jwt)")
		fs.Var(&redirects, "redirect-uri", "registered redirect URI (repeat or comma-separate for several); not for a client_credentials-only service")
		fs.Var(&grants, "grant", "a symmetric client's grant types: authorization_code (the default) and/or client_credentials (system/ scopes, no redirect URI); repeat or comma-separate")
		fs.StringVar(&scopes, "scope", "", `scopes the client may be granted, space-separated (e.g. "openid fhirUser launch/patient offline_access patient/*.rs")`)
		fs.StringVar(&c.Secret, "secret", "", "client secret for a symmetric client (generated and printed when empty)")
		fs.StringVar(&jwksFile, "jwks", "", "file holding the asymmetric client's public JWKS")
		fs.StringVar(&c.JWKSURI, "jwks-uri", "", "URL of the asymmetric client's JWKS (also the only jku it may use)")
		fs.StringVar(&c.LaunchURI, "launch-uri", "", "the app's EHR launch URL (for ember launch)")
	}, func(ctx context.Context, st *store.Store) error {
		c.RedirectURIs = redirects
		c.Grants = grants
		c.Scopes = strings.Fields(scopes)
		if jwksFile != "" {
			b, err := os.ReadFile(jwksFile)
			if err != nil {
				return fmt.Errorf("client add: %w", err)
			}
			if !json.Valid(b) {
				return fmt.Errorf("client add: %s is not JSON", jwksFile)
			}
			c.JWKS = b
		}
		generated := c.Type == authserver.Symmetric && c.Secret == ""
		if generated {
			c.Secret = authserver.NewSecret()
		}
		if err := authserver.AddClient(ctx, st, c); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "client %s added (%s)\n", c.ID, c.Type)
		if generated {
			fmt.Fprintf(stdout, "secret: %s\n", c.Secret)
		}
		return nil
	})
}

func userCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return errUsage
	}
	switch args[0] {
	case "add":
		var u authserver.User
		return withStore(ctx, "user add", args[1:], stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&u.Username, "username", "", "login name")
			fs.StringVar(&u.Password, "password", env("EMBER_USER_PASSWORD", ""), `password (env EMBER_USER_PASSWORD; "-" reads a line from stdin)`)
			fs.StringVar(&u.Role, "role", "", "admin, doctor, nurse, pharmacist, receptionist or patient")
			fs.StringVar(&u.FHIRUser, "fhir-user", "", "the user's FHIR resource: Practitioner/ID or Patient/ID")
		}, func(ctx context.Context, st *store.Store) error {
			if u.Password == "-" {
				var line string
				if _, err := fmt.Fscanln(os.Stdin, &line); err != nil {
					return fmt.Errorf("user add: reading the password: %w", err)
				}
				u.Password = line
			}
			if err := authserver.AddUser(ctx, st, u); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s added (%s, %s)\n", u.Username, u.Role, u.FHIRUser)
			return nil
		})
	case "list":
		return withStore(ctx, "user list", args[1:], stderr, nil, func(ctx context.Context, st *store.Store) error {
			us, err := authserver.ListUsers(ctx, st)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USERNAME\tROLE\tFHIR USER")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, u.Role, u.FHIRUser)
			}
			return tw.Flush()
		})
	case "remove":
		var name string
		return withStore(ctx, "user remove", args[1:], stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&name, "username", "", "login name")
		}, func(ctx context.Context, st *store.Store) error {
			if err := authserver.RemoveUser(ctx, st, name); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s removed\n", name)
			return nil
		})
	case "-h", "--help", "help":
		fmt.Fprint(stdout, userUsage)
		return nil
	}
	fmt.Fprintf(stderr, "ember user: unknown subcommand %q\n\n%s", args[0], userUsage)
	return errUsage
}

// launchCmd creates an EHR launch context and prints the app launch URL.
func launchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var l authserver.Launch
	var base string
	return withStore(ctx, "launch", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&l.ClientID, "client", "", "client id (registered with --launch-uri)")
		fs.StringVar(&l.Patient, "patient", "", "patient id")
		fs.StringVar(&l.Encounter, "encounter", "", "encounter id (optional)")
		fs.StringVar(&l.Username, "user", "", "the only user who may complete the launch (optional)")
		fs.StringVar(&base, "base-url", env("EMBER_BASE_URL", "http://127.0.0.1:8080/fhir"), "public FHIR base URL, the launch's iss (env EMBER_BASE_URL)")
	}, func(ctx context.Context, st *store.Store) error {
		_, u, err := authserver.CreateLaunch(ctx, st, base, l)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, u)
		return nil
	})
}

// errUsage: the usage was printed; exit 2.
var errUsage = errors.New("usage")

// withStore parses a command's flags (serve's database flags plus those
// flags adds), opens and migrates the database and runs fn on the store.
func withStore(ctx context.Context, name string, args []string, stderr io.Writer, flags func(*flag.FlagSet),
	fn func(context.Context, *store.Store) error) error {
	fs := flag.NewFlagSet("ember "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var db dbFlags
	db.register(fs)
	if flags != nil {
		flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	url, stop, err := db.openMigrated(ctx, log)
	if err != nil {
		return err
	}
	defer stop()
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer st.Close()
	err = fn(ctx, st)
	recordAdmin(ctx, st, name, err, stderr)
	return err
}

// stringList is a flag that may be repeated or comma-separated.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
