// Command ember-bench is the load driver behind `make bench`: it starts a
// fresh `ember serve`, runs the benchmark scenarios and prints one figure a line.
package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	ember      string
	duration   time.Duration
	warmup     time.Duration
	only       *regexp.Regexp
	cpuprofile string
	keep       bool
	slowlog    time.Duration
}

// targets are the goals from the performance issue; they are printed next to
// the figures but never change the exit status.
var targets = []string{
	"read_c32_throughput >= 10000 req/s with read_c32_p99 <= 10 ms",
	"create_c8_throughput >= 2000 resources/s",
	"search_mix_c1_p95 <= 20 ms at 33k resources; search_mix_c1_p95_330k <= 50 ms at 330k",
	"search_or200_p50 < 100 ms (and search_or200_p50_330k)",
	"search_obs_by_patient_c16_throughput >= 4000 req/s",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ember-bench: %v\n", err)
		return 2
	}
	if err := bench(ctx, opts, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "ember-bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("ember-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var only string
	fs.StringVar(&o.ember, "ember", "", "path to the ember binary to benchmark (required)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each timed scenario")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each timed scenario")
	fs.StringVar(&only, "only", "", "run only scenarios whose name matches this regexp (plus what they require)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a server CPU profile per timed scenario to DIR/<scenario>.pprof")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (server data and log)")
	fs.DurationVar(&o.slowlog, "slowlog", 0, "have PostgreSQL log statements slower than this, with parameters, to DATA/postgres/postgres.log (use with -keep)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.ember == "":
		return o, errors.New("-ember PATH is required")
	case o.duration < time.Second:
		return o, errors.New("-duration must be at least 1s")
	case o.warmup < 0:
		return o, errors.New("-warmup must not be negative")
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return o, fmt.Errorf("-only: %w", err)
		}
		o.only = re
	}
	return o, nil
}

// bench runs the whole benchmark against one fresh server. Figures are
// printed as each scenario ends; the error reports any failure afterwards.
func bench(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	selected, err := selectScenarios(scenarios(), o.only)
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
	}
	// A crashed server cancels the run with its exit as the cause.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fmt.Fprintln(stderr, "# starting ember …")
	srv, err := startEmber(ctx, o.ember, o.cpuprofile != "", cancel)
	if srv != nil {
		defer func() { err = errors.Join(err, shutdown(srv, o.keep, err != nil, stderr)) }()
	}
	if err != nil {
		return err
	}
	printContext(stdout, o)
	stopRSS := srv.sampleRSS()
	e := &env{
		bin:        o.ember,
		fhirBase:   srv.baseURL + "/fhir",
		client:     newClient(),
		duration:   o.duration,
		warmup:     o.warmup,
		debugAddr:  srv.debugAddr,
		profileDir: o.cpuprofile,
		dataDir:    filepath.Join(srv.dir, "data"),
	}
	if o.slowlog > 0 {
		if err := e.logSlowStatements(ctx, o.slowlog); err != nil {
			return err
		}
	}
	runErr := runScenarios(ctx, e, selected, stdout, stderr)
	printFigure(stdout, figure{"server_rss_peak", float64(stopRSS()) / 1024, "MB"}) // MiB, as top and ps show it
	if runErr == nil {
		runErr = abortCause(ctx)
	}
	return runErr
}

// runScenarios prints each scenario's figures and goes on after a failed
// one, so one broken scenario does not hide the others' numbers.
func runScenarios(ctx context.Context, e *env, selected []scenario, stdout, stderr io.Writer) error {
	var errs []error
	for _, s := range selected {
		fmt.Fprintf(stderr, "# running %s …\n", s.name)
		figs, err := s.run(ctx, e)
		for _, f := range figs {
			printFigure(stdout, f)
		}
		if err == nil {
			err = abortCause(ctx) // cancelled just after the scenario ended
		}
		if err != nil {
			fmt.Fprintf(stderr, "# %s failed: %v\n", s.name, err)
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// shutdown stops the server, shows the end of its log when something went
// wrong, and removes the temp dir unless asked to keep it.
func shutdown(srv *emberServer, keep, failed bool, stderr io.Writer) error {
	err := srv.stop()
	if err != nil {
		err = fmt.Errorf("stopping ember: %w", err)
	}
	err = errors.Join(err, srv.stopOrphanPostgres())
	if failed || err != nil {
		fmt.Fprintf(stderr, "# ember log (%s), last lines:\n%s\n", srv.logPath, srv.logTail(40))
	}
	if keep {
		fmt.Fprintf(stderr, "# kept %s\n", srv.dir)
		return err
	}
	if rmErr := os.RemoveAll(srv.dir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("removing temp dir: %w", rmErr))
	}
	return err
}

func printFigure(w io.Writer, f figure) {
	prec := 0
	switch f.unit {
	case "ms":
		prec = 2
	case "MB", "µs":
		prec = 1
	}
	fmt.Fprintf(w, "%s %.*f %s\n", f.name, prec, f.value, f.unit)
}

// printContext writes the "# " lines that make a run's figures comparable.
func printContext(w io.Writer, o options) {
	fmt.Fprintf(w, "# date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "# nproc: %d\n", runtime.NumCPU())
	fmt.Fprintf(w, "# cpu: %s\n", cpuModel())
	fmt.Fprintf(w, "# go: %s\n", goVersion(o.ember))
	fmt.Fprintf(w, "# commit: %s\n", gitCommit(o.ember))
	fmt.Fprintf(w, "# duration: %v per timed scenario, warm-up %v\n", o.duration, o.warmup)
	for _, t := range targets {
		fmt.Fprintf(w, "# target: %s\n", t)
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// goVersion is the toolchain that built the server, which is what the
// figures depend on; the driver's own is the fallback.
func goVersion(bin string) string {
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		return bi.GoVersion
	}
	return runtime.Version() + " (driver)"
}

// gitCommit prefers the revision stamped into the binary; builds made with
// -buildvcs=false lack it, so the working tree's HEAD is the fallback.
func gitCommit(bin string) string {
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "-dirty"
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=40").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out)) + " (working tree)"
}
