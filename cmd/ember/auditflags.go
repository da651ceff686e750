package main

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/audit/trail"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/auditdb"
	"github.com/emberfhir/ember/store/authdb"
)

// auditFlags are serve's flags for the audit trail.
type auditFlags struct {
	mode      string
	retention string
}

// defaultRetention is six years: HIPAA's retention for documentation of
// compliance (45 CFR 164.316(b)(2)).
const defaultRetention = "6y"

func (a *auditFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.mode, "audit", env("EMBER_AUDIT", "on"),
		"record every access (FHIR REST, DICOMweb, DIMSE, SMART sign-ins and tokens, admin commands) as a hash-chained AuditEvent: on or off (env EMBER_AUDIT)")
	fs.StringVar(&a.retention, "audit-retention", env("EMBER_AUDIT_RETENTION", defaultRetention),
		"how long AuditEvents are kept before a sweep deletes them: a Go duration or Nd / Ny (days, 365-day years); 0 keeps them for ever (env EMBER_AUDIT_RETENTION)")
}

// on reports whether the trail is on, refusing values other than on/off.
func (a *auditFlags) on() (bool, error) {
	switch a.mode {
	case "on", "":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("--audit %q: use on or off", a.mode)
}

// parseRetention reads a retention: a Go duration, or a whole number of
// days (Nd) or 365-day years (Ny).
func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return 0, nil
	}
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "y": 365 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.Atoi(n)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("--audit-retention %q: want a Go duration, Nd or Ny", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--audit-retention %q: want a Go duration, Nd or Ny", s)
	}
	return d, nil
}

// trail builds the audit trail for serve, nil when --audit off. It signs
// checkpoints with the server's signing key (the SMART key, kept in the
// database in every auth mode).
func (a *auditFlags) newTrail(ctx context.Context, st *store.Store, base string, reg prometheus.Registerer, log *slog.Logger) (*trail.Trail, error) {
	on, err := a.on()
	if err != nil || !on {
		return nil, err
	}
	retention, err := parseRetention(a.retention)
	if err != nil {
		return nil, err
	}
	return newTrail(ctx, st, base, retention, reg, log)
}

func newTrail(ctx context.Context, st *store.Store, base string, retention time.Duration, reg prometheus.Registerer, log *slog.Logger) (*trail.Trail, error) {
	kid, key, err := authserver.SigningKey(ctx, authdb.New(st))
	if err != nil {
		return nil, fmt.Errorf("audit: signing key: %w", err)
	}
	site := base
	if i := strings.Index(site, "://"); i >= 0 {
		site = site[i+3:]
	}
	site, _, _ = strings.Cut(site, "/")
	return trail.New(trail.Config{Store: st, Site: site, Retention: retention,
		Signer: trail.RSASigner{KeyID: kid, Key: key}, Registry: reg, Logger: log})
}

// recordAdmin records an admin command in the audit trail (unless
// EMBER_AUDIT is off): who ran it (the operating-system user), where, and
// whether it succeeded. Failing to record is reported, not fatal: the
// command's own outcome stands.
func recordAdmin(ctx context.Context, st *store.Store, command string, cmdErr error, stderr io.Writer) {
	if env("EMBER_AUDIT", "on") == "off" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	en, err := engine.New(engine.Config{BaseURL: defaultBaseURL, Logger: quiet}, st)
	if err == nil {
		var t *trail.Trail
		if t, err = newTrail(ctx, st, defaultBaseURL, 0, nil, quiet); err == nil {
			out := audit.Success
			if cmdErr != nil {
				out = audit.MinorFailure
			}
			who := "unknown"
			if u, uerr := user.Current(); uerr == nil {
				who = u.Username
			}
			host, _ := os.Hostname()
			t.Record(audit.Event{Kind: audit.Admin, Subtype: command, Action: audit.Execute, Outcome: out,
				Agent: audit.Agent{Subject: who, Address: host}})
			t.Start(ctx, en)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err = t.Flush(cctx); err == nil {
				err = t.Close(cctx)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "warning: the audit trail did not record this command: %v\n", err)
	}
}

// auditKeys resolves checkpoint signing keys from the database.
func auditKeys(ctx context.Context, st *store.Store) trail.Keys {
	db := authdb.New(st)
	return func(kid string) (crypto.PublicKey, error) {
		return authserver.PublicKey(ctx, db, kid)
	}
}

// jwksKeys resolves checkpoint keys from a JWK Set file: someone who can
// write the database can also replace the key stored there, not a copy
// kept elsewhere.
func jwksKeys(path string) (trail.Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWK Set: %w", path, err)
	}
	return func(kid string) (crypto.PublicKey, error) {
		for _, k := range set.Key(kid) {
			if k.Use == "" || k.Use == "sig" {
				return k.Key, nil
			}
		}
		return nil, fmt.Errorf("no key %s in %s", kid, path)
	}, nil
}

// auditCmd is `ember audit verify [--since T] [--jwks FILE]`.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: ember audit verify [--since TIME] [--jwks FILE] [database flags]")
		return errUsage
	}
	var since, jwksFile string
	var rep trail.Report
	err := withStore(ctx, "audit verify", args[1:], stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&since, "since", "", "verify from the first event recorded at or after this time (RFC 3339 or YYYY-MM-DD); default the whole chain")
		fs.StringVar(&jwksFile, "jwks", "", "check checkpoint signatures with the public keys in this JWK Set file (a copy of /auth/jwks kept outside the database) instead of the database's")
	}, func(ctx context.Context, st *store.Store) error {
		var from time.Time
		if since != "" {
			var err error
			if from, err = time.Parse(time.RFC3339, since); err != nil {
				if from, err = time.Parse(time.DateOnly, since); err != nil {
					return fmt.Errorf("audit verify: --since %q: want RFC 3339 or YYYY-MM-DD", since)
				}
			}
		}
		keys := auditKeys(ctx, st)
		if jwksFile != "" {
			var err error
			if keys, err = jwksKeys(jwksFile); err != nil {
				return fmt.Errorf("audit verify: --jwks: %w", err)
			}
		}
		var err error
		rep, err = trail.Verify(ctx, auditDB(st), trail.VerifyOptions{Since: from, Keys: keys})
		return err
	})
	if err != nil {
		return err
	}
	if rep.Broken != nil {
		fmt.Fprintf(stdout, "audit trail BROKEN at %s\n", rep.Broken)
		fmt.Fprintf(stdout, "%d events verified before it (from link %d)\n", rep.Events, rep.From)
		return errAuditBroken
	}
	fmt.Fprintf(stdout, "audit trail intact: %d events from link %d, %d signed checkpoints verified\n", rep.Events, rep.From, rep.Checkpoints)
	return nil
}

// errAuditBroken: verify found a break (exit 1, the report already printed).
var errAuditBroken = errors.New("the audit trail is broken")

func auditDB(st *store.Store) *auditdb.DB { return auditdb.New(st) }
