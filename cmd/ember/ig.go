package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/emberfhir/ember/conformance/ig"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/igdb"
)

const igUsage = `Usage:
  ember ig install [flags] PACKAGE.tgz...   install implementation guide packages
  ember ig list [flags]                     list the installed packages

install stores the npm-format package (as FHIR guides publish it, e.g.
hl7.fhir.us.core-6.1.0.tgz) in the database, so every replica of ember serve
loads it at start (a running serve at its next start): its search parameters
are indexed on every write from then on, its profiles checked. Its
conformance resources (StructureDefinition, SearchParameter, ValueSet,
CodeSystem, CapabilityStatement…) are written as ordinary resources, each
once (a conditional create on url and version): installing again changes
nothing. When resources of the types its new search parameters apply to are
stored already, run ember reindex to index them.

Flags:
`

// igCmd runs `ember ig`.
func igCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, igUsage)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	sub := args[0]
	fs := flag.NewFlagSet("ember ig "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), igUsage); fs.PrintDefaults() }
	var db dbFlags
	db.register(fs)
	baseURL := fs.String("base-url", env("EMBER_BASE_URL", "http://localhost:8080/fhir"), "the server's public FHIR base URL (env EMBER_BASE_URL)")
	paths, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	switch sub {
	case "install":
		if len(paths) == 0 {
			fs.Usage()
			return errUsage
		}
	case "list":
		if len(paths) > 0 {
			return fmt.Errorf("ig list: unexpected arguments %q", paths)
		}
	default:
		fmt.Fprintf(stderr, "ember ig: unknown command %q\n\n%s", sub, igUsage)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	url, stop, err := db.openMigrated(ctx, log)
	if err != nil {
		return err
	}
	defer stop()
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	idb := igdb.New(st)
	if sub == "list" {
		rows, err := idb.List(ctx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			state := ""
			if r.ReindexPending {
				state = "  (search parameters not yet indexed for older resources: run ember reindex)"
			}
			fmt.Fprintf(stdout, "%s#%s  installed %s  sha256 %s%s\n", r.Name, r.Version, r.InstalledAt.UTC().Format("2006-01-02 15:04:05Z"), r.SHA256[:12], state)
		}
		return nil
	}
	eng, err := engine.New(engine.Config{BaseURL: *baseURL, Logger: log}, st)
	if err != nil {
		return err
	}
	for _, p := range paths {
		rep, err := installFile(ctx, eng, idb, p)
		if err != nil {
			return fmt.Errorf("ig install %s: %w", p, err)
		}
		printInstall(stdout, rep)
	}
	return nil
}

func printInstall(w io.Writer, rep ig.Report) {
	what := "installed"
	if !rep.Changed {
		what = "already installed"
	}
	fmt.Fprintf(w, "%s %s: %d conformance resources written, %d present already; %d new search parameters\n",
		what, rep.Package, rep.Created, rep.Existing, len(rep.NewParams))
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if rep.Pending {
		fmt.Fprintln(w, "  resources of their types are stored already: run `ember reindex` to index them")
	}
}
