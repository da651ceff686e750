// Command ember is the Ember FHIR R4 server: `ember serve`, `ember migrate`,
// `ember import`, `ember version`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/pgcluster"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `Ember — a FHIR R4 server on PostgreSQL.

Usage:
  ember serve     run the server
  ember migrate   apply database migrations and exit
  ember reindex   rebuild every search index row
  ember import    load ndjson files and Bundles
  ember ig        install implementation guide packages (US Core…) or list them
  ember client    add, list or remove SMART apps (OAuth clients)
  ember user      add, list or remove users who sign in to SMART apps
  ember launch    create an EHR launch and print the app's launch URL
  ember token     print an access token for a client or user (and revoke one)
  ember healthcheck  ask a running serve for /healthz (the container's HEALTHCHECK)
  ember conformance run  check a FHIR server against US Core 6.1 and SMART (conformance/runner)
  ember audit verify  check the audit trail's hash chain and signed checkpoints
  ember version   print the version

Run "ember <command> --help" for a command's flags.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "migrate":
		err = migrate(ctx, args[1:], stdout, stderr)
	case "reindex":
		err = reindex(ctx, args[1:], stdout, stderr)
	case "import":
		err = importCmd(ctx, args[1:], stdout, stderr)
	case "client":
		err = clientCmd(ctx, args[1:], stdout, stderr)
	case "user":
		err = userCmd(ctx, args[1:], stdout, stderr)
	case "launch":
		err = launchCmd(ctx, args[1:], stdout, stderr)
	case "token":
		err = tokenCmd(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		err = healthcheck(ctx, args[1:], stdout, stderr)
	case "conformance":
		err = conformanceCmd(ctx, args[1:], stdout, stderr)
	case "ig":
		err = igCmd(ctx, args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fs := flag.NewFlagSet("ember version", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err = fs.Parse(args[1:]); err == nil {
			fmt.Fprintf(stdout, "ember %s\n", version)
		}
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ember: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errAuditBroken):
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "ember: %v\n", err)
		return 1
	}
	return 0
}

// dbFlags are the database flags shared by every command that needs one.
type dbFlags struct {
	databaseURL string
	dataDir     string
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.databaseURL, "database-url", env("EMBER_DATABASE_URL", ""),
		"PostgreSQL URL (env EMBER_DATABASE_URL); when empty Ember runs its own cluster under --data-dir")
	fs.StringVar(&d.dataDir, "data-dir", env("EMBER_DATA_DIR", "./.ember"),
		"directory for Ember's own data: the embedded PostgreSQL cluster (env EMBER_DATA_DIR)")
}

// open returns a database URL, starting the embedded cluster when no URL was
// given. stop shuts down what open started.
func (d *dbFlags) open(ctx context.Context, log *slog.Logger) (url string, stop func(), err error) {
	if d.databaseURL != "" {
		return d.databaseURL, func() {}, nil
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: filepath.Join(d.dataDir, "postgres"), Logger: log})
	if err != nil {
		return "", nil, fmt.Errorf("embedded database: %w", err)
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cluster.Stop(sctx); err != nil {
			log.Error("stopping embedded PostgreSQL", "err", err)
		}
	}
	if err := cluster.EnsureDatabase(ctx, "ember"); err != nil {
		stop()
		return "", nil, fmt.Errorf("embedded database: %w", err)
	}
	log.Info("embedded PostgreSQL ready", "data_dir", d.dataDir, "owned", cluster.Owned())
	return cluster.DatabaseURL("ember"), stop, nil
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ember serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var db dbFlags
	db.register(fs)
	addr := fs.String("addr", env("EMBER_ADDR", "127.0.0.1:8080"), "listen address (env EMBER_ADDR)")
	baseURL := fs.String("base-url", env("EMBER_BASE_URL", ""),
		"public FHIR base URL used in fullUrl, Location and links (env EMBER_BASE_URL; default http://<addr>/fhir)")
	maxBody := fs.Int64("max-body", envInt("EMBER_MAX_BODY", server.DefaultMaxBody), "largest accepted request body in bytes (env EMBER_MAX_BODY)")
	stmtTimeout := fs.Duration("statement-timeout", envDuration("EMBER_STATEMENT_TIMEOUT", 30*time.Second),
		"longest a single database statement may run before PostgreSQL stops it (the request then gets 503); 0 = no limit (env EMBER_STATEMENT_TIMEOUT)")
	readURL := fs.String("database-read-url", env("EMBER_DATABASE_READ_URL", ""),
		"PostgreSQL URL of a streaming replica for searches, reads, history and export downloads; writes and this process's own writes' reads stay on the primary (env EMBER_DATABASE_READ_URL; off when empty)")
	maxConns := fs.Int("db-max-conns", int(envInt("EMBER_DB_MAX_CONNS", 0)), "database connection pool size; 0 = 4 per CPU (env EMBER_DB_MAX_CONNS)")
	debugAddr := fs.String("debug-addr", env("EMBER_DEBUG_ADDR", ""), "serve Go pprof profiles on this address (env EMBER_DEBUG_ADDR; off when empty)")
	grace := fs.Duration("shutdown-grace", envDuration("EMBER_SHUTDOWN_GRACE", 25*time.Second),
		"on SIGTERM/SIGINT, how long in-flight requests and background work may take before serve exits; keep it under the orchestrator's (Kubernetes: terminationGracePeriodSeconds, 30 s by default) (env EMBER_SHUTDOWN_GRACE)")
	exportWorkers := fs.Int("export-workers", int(envInt("EMBER_EXPORT_WORKERS", 1)),
		"Bulk Data exports this process runs at once; 0 = none, only accept them (env EMBER_EXPORT_WORKERS); the files are stored in the database")
	var hf httpFlags
	hf.register(fs)
	var df dicomFlags
	df.register(fs)
	var inf inferenceFlags
	inf.register(fs)
	var lf logFlags
	lf.register(fs)
	var af auditFlags
	af.register(fs)
	var igf igFlags
	igf.register(fs)
	var sf subscriptionFlags
	sf.register(fs)
	var cf consoleFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := sf.check(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := cf.check(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if _, err := af.on(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if _, err := parseRetention(af.retention); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := hf.check(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	if *grace <= 0 {
		return fmt.Errorf("serve: --shutdown-grace %s: use a positive duration", *grace)
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode) // gin's debug mode only prints its route table
	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	ir, err := inf.load(log) // before the database: a lying manifest stops serve at once
	if err != nil {
		return err
	}
	defer ir.close()

	url, stopDB, err := db.openMigrated(ctx, log)
	if err != nil {
		return err
	}
	defer stopDB()
	conns := int32(*maxConns)
	if conns == 0 {
		conns = int32(4 * max(1, numCPU()))
	}
	st, err := store.Open(ctx, url, store.Options{MaxConns: conns, StatementTimeout: *stmtTimeout, ReadURL: *readURL})
	if err != nil {
		return err
	}
	defer st.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	tlsCfg, err := hf.tlsConfig()
	if err != nil {
		ln.Close()
		return err
	}
	base := *baseURL
	if base == "" {
		scheme := "http"
		if tlsCfg != nil {
			scheme = "https"
		}
		base = scheme + "://" + ln.Addr().String() + "/fhir"
	}
	workers := *exportWorkers
	if workers <= 0 {
		workers = -1 // server.Config: negative means none
	}
	// One registry for /metrics, made before the server: DICOM and the
	// authorization server, built first, register on it too.
	reg := prometheus.NewRegistry()
	reg.MustRegister(store.NewPoolCollector(st), store.NewExportJobsCollector(st))
	cfg := server.Config{BaseURL: base, MaxBody: *maxBody, Version: version, Logger: log,
		BulkExport: true, ExportWorkers: workers, Metrics: hf.metricsAccess(), Registry: reg, TrustedProxies: hf.trustProxy}
	// One deadline for the whole shutdown, fixed when it starts: requests in
	// flight, then the background work, all within --shutdown-grace.
	var deadline time.Time
	stopBy := func() time.Time {
		if deadline.IsZero() {
			deadline = time.Now().Add(*grace)
		}
		return deadline
	}
	trail, err := af.newTrail(ctx, st, base, reg, log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("serve: %w", err)
	}
	if trail != nil {
		cfg.Audit = trail
		// Closed last but the store (deferred calls run last-first): the
		// HTTP server, DICOM and the background work record until they stop.
		defer func() {
			cctx, cancel := context.WithDeadline(context.Background(), stopBy())
			defer cancel()
			if err := trail.Close(cctx); err != nil {
				log.Error("audit trail close", "err", err)
			}
		}()
	}
	if err := igf.apply(ctx, &cfg, st, log); err != nil {
		ln.Close()
		return err
	}
	if err := hf.configureAuth(ctx, &cfg, st, log); err != nil {
		ln.Close()
		return err
	}
	if err := cf.mount(ctx, &cfg, st, log); err != nil {
		ln.Close()
		return err
	}
	df.onStudySynced = ir.studyChanged
	dr, err := df.start(ctx, &cfg, st, db.dataDir, log)
	if err != nil {
		ln.Close()
		return err
	}
	// Closed after the HTTP server and the DIMSE listener have stopped
	// (deferred calls run last-first): pending ImagingStudy rebuilds flush.
	defer dr.close(context.Background(), log)
	subMount := sf.mount(&cfg)
	srv, err := server.New(cfg, st)
	if err != nil {
		ln.Close()
		return err
	}
	// Before Start: the service admits Subscriptions and registers its
	// operations, which must be in place before the first request.
	stopSubs, err := sf.start(ctx, srv, subMount, reg, log)
	defer stopSubs() // before the store closes
	if err != nil {
		ln.Close()
		return err
	}
	go igf.watch(ctx, srv, st, log)
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	if trail != nil {
		trail.Start(ctx, srv.Engine())
	}
	// Stopped after the HTTP server (deferred calls run last-first) and
	// before the store closes: running exports checkpoint and resume on
	// the next start.
	defer func() {
		sctx, cancel := context.WithDeadline(context.Background(), stopBy())
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error("background work shutdown", "err", err)
		}
	}()
	if err := ir.start(ctx, srv, dr.svc, st); err != nil {
		ln.Close()
		return err
	}
	defer ir.stop(log) // before the store closes; jobs left run on the next start
	bodyLimit := *maxBody
	if bodyLimit <= 0 {
		bodyLimit = server.DefaultMaxBody
	}
	handler, err := hf.wrap(srv.Handler(), bodyLimit)
	if err != nil {
		ln.Close()
		return err
	}
	// No ReadTimeout or WriteTimeout: they would cut long uploads and
	// downloads (STOW, WADO, bulk export files). Heads are bounded by
	// ReadHeaderTimeout, bodies by guard.Body's rate-based deadlines.
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		TLSConfig:         tlsCfg,
		// OPTIONS * would be answered without the middleware.
		DisableGeneralOptionsHandler: true,
	}
	errc := make(chan error, 2)
	if tlsCfg != nil {
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		// Plain HTTP (also behind a TLS-terminating proxy, where request
		// smuggling matters): watch each connection's request framing.
		hs.ConnContext = guard.FramingConnContext
		go func() { errc <- hs.Serve(guard.FramingListener{Listener: ln}) }()
	}
	if hf.metricsAddr != "" {
		ms, err := serveMetrics(hf.metricsAddr, srv.MetricsHandler(), log, errc)
		if err != nil {
			hs.Close()
			return err
		}
		defer ms.Close()
	}
	if *debugAddr != "" {
		go serveDebug(*debugAddr, log)
	}
	dimseDone := make(chan struct{})
	go func() { dr.serveDIMSE(ctx, log); close(dimseDone) }()
	defer func() { cancel(); <-dimseDone }()
	log.Info("Ember serving FHIR R4", "base", base, "addr", ln.Addr().String(), "version", version)
	fmt.Fprintf(stderr, "FHIR base: %s\n", base)
	if hf.auth == "smart" {
		for _, l := range quickStartLines(os.Args[0], db, base) {
			fmt.Fprintln(stderr, l)
		}
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", grace.String())
	sctx, scancel := context.WithDeadline(context.Background(), stopBy())
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Error("http shutdown", "err", err)
	}
	return nil
}

// withDatabase parses a database-only command's flags, opens (and, for the
// embedded cluster, starts) the database, migrates it and runs fn.
func withDatabase(ctx context.Context, name string, args []string, stderr io.Writer, fn func(ctx context.Context, url string) error) error {
	fs := flag.NewFlagSet("ember "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var db dbFlags
	db.register(fs)
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	url, stop, err := db.openMigrated(ctx, log)
	if err != nil {
		return err
	}
	defer stop()
	err = fn(ctx, url)
	if st, serr := store.Open(ctx, url, store.Options{}); serr == nil {
		recordAdmin(ctx, st, name, err, stderr)
		st.Close()
	}
	return err
}

// openMigrated is open followed by every migration (Ember's schema and the
// job queue's), for every command that uses the database.
func (d *dbFlags) openMigrated(ctx context.Context, log *slog.Logger) (string, func(), error) {
	url, stop, err := d.open(ctx, log)
	if err != nil {
		return "", nil, err
	}
	if err := store.Migrate(ctx, url); err != nil {
		stop()
		return "", nil, err
	}
	if err := store.MigrateJobs(ctx, url); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return withDatabase(ctx, "migrate", args, stderr, func(context.Context, string) error {
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	})
}

func reindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return withDatabase(ctx, "reindex", args, stderr, func(ctx context.Context, url string) error {
		st, err := store.Open(ctx, url, store.Options{})
		if err != nil {
			return err
		}
		defer st.Close()
		guidesDone, err := reindexGuides(ctx, st, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			return err
		}
		start := time.Now()
		n, err := st.Reindex(ctx, func(done int) { fmt.Fprintf(stderr, "\rreindexed %d resources", done) })
		fmt.Fprintln(stderr)
		if err == nil {
			err = guidesDone(ctx)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "reindexed %d resources in %s\n", n, time.Since(start).Round(time.Millisecond))
		return nil
	})
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envInt(key string, def int64) int64 {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func numCPU() int { return runtime.NumCPU() }

// serveMetrics serves the Prometheus metrics on their own listener
// (--metrics-addr), unauthenticated: the address is meant to be private.
func serveMetrics(addr string, h http.Handler, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve: --metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		if err := ms.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics listener: %w", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return ms, nil
}

// serveDebug exposes net/http/pprof on its own listener, so profiling never
// shares a port with the public API.
func serveDebug(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("pprof listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Error("pprof listener", "err", err)
	}
}
