package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/importer"
	"github.com/emberfhir/ember/store"
)

const importUsage = `Usage: ember import [flags] PATH...

Loads FHIR resources into the database through the same validation and write
path as the REST API. PATH is a file or a directory (searched recursively for
*.ndjson, *.jsonl, *.json, optionally .gz), or a tar archive (.tar, .tar.gz,
.tar.zst) read as that directory would be: "ember import
testdata/synthea.tar.zst" loads the demo patients. ndjson holds one resource per line;
a .json file holds a resource or a Bundle. Resources are written under their
own id (re-importing updates them instead of duplicating) or created when they
have none; transaction and batch Bundles run as if POSTed to the server.
New resources are loaded with COPY; batches commit without waiting for the
disk, and the import waits once, at the end, until everything is durable.
Exits 1 if any resource was not imported.

Flags:
`

// importCmd runs `ember import`.
func importCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ember import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), importUsage)
		fs.PrintDefaults()
	}
	var db dbFlags
	db.register(fs)
	batch := fs.Int("batch", 200, "resources written per database transaction")
	workers := fs.Int("workers", 0, "validating goroutines; 0 = one per CPU")
	writers := fs.Int("writers", 3, "batches or Bundles written at once, each in its own transaction")
	baseURL := fs.String("base-url", env("EMBER_BASE_URL", "http://localhost:8080/fhir"),
		"the server's public FHIR base URL: absolute references under it in Bundles are local (env EMBER_BASE_URL)")
	lenient := fs.Bool("lenient", false,
		"drop elements R4 does not define (a Period.stop from a lenient server) instead of refusing the resource; each drop is listed in the summary (for migrations; off by default)")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		fs.Usage()
		return fmt.Errorf("import: no PATH given")
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
		return err
	}
	defer st.Close()
	// The installed implementation guides' search parameters are indexed,
	// and their profiles checked where a resource claims one, as serve does.
	ecfg := engine.Config{BaseURL: *baseURL, Logger: log}
	if loaded, err := loadInstalled(ctx, st, log); err != nil {
		return err
	} else if loaded != nil {
		ecfg.Profiles = loaded.Profiles
	}
	// The engine executes everything, Bundles as the REST API would:
	// nothing listens.
	eng, err := engine.New(ecfg, st)
	if err != nil {
		return err
	}
	// The import is mostly allocation-heavy validation with little live
	// memory (a few batches in flight): collecting less often buys about a
	// fifth of the CPU for a few tens of MB. GOGC, when set, decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	opts := importer.Options{BatchSize: *batch, Workers: *workers, Writers: *writers, Lenient: *lenient}
	live := isTerminal(stderr)
	if live {
		opts.Progress = func(s importer.Stats) {
			fmt.Fprintf(stderr, "\r%d resources, %.0f/s, %d errors, %d files done  ", s.Resources, s.Rate(), s.Failed, s.Files)
		}
	}
	paths, local, cleanup, err := unpackArchives(paths)
	if err != nil {
		return err
	}
	defer cleanup()
	res, err := importer.Import(ctx, eng, paths, opts)
	recordAdmin(ctx, st, "import", err, stderr)
	if live {
		fmt.Fprint(stderr, "\r"+strings.Repeat(" ", 72)+"\r")
	}
	fmt.Fprintf(stdout, "imported %d resources from %d files in %s (%.0f resources/s); %d errors\n",
		res.Resources, res.Files, res.Elapsed.Round(time.Millisecond), res.Rate(), res.Failed)
	for _, e := range res.Errors {
		e.File = local(e.File)
		fmt.Fprintf(stdout, "  %s\n", e.Error())
	}
	if n := res.Failed - int64(len(res.Errors)); n > 0 {
		fmt.Fprintf(stdout, "  … and %d more\n", n)
	}
	if res.DroppedCount > 0 {
		fmt.Fprintf(stdout, "lenient: dropped %d unknown elements\n", res.DroppedCount)
		for _, e := range res.Dropped {
			e.File = local(e.File)
			fmt.Fprintf(stdout, "  warning: %s\n", e.Error())
		}
		if n := res.DroppedCount - int64(len(res.Dropped)); n > 0 {
			fmt.Fprintf(stdout, "  … and %d more\n", n)
		}
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if res.Failed > 0 {
		return fmt.Errorf("import: %d resources not imported", res.Failed)
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments (the flag package stops at the first positional).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// isTerminal reports whether w is a terminal, where a live progress line
// helps; in logs and pipes it would be noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
