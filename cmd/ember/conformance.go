package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/emberfhir/ember/conformance/runner"
)

// errChecksFailed: the run finished and some check failed (exit 1, the
// summary already says which).
var errChecksFailed = errors.New("conformance checks failed")

// conformanceCmd is `ember conformance run`: the self-check of
// conformance/runner against any FHIR server's base URL.
func conformanceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(stderr, "usage: ember conformance run --base URL [--token T] [--suite us-core-6.1|smart|core,…] [--patient ID,…] [--junit FILE]")
		return errUsage
	}
	fs := flag.NewFlagSet("ember conformance run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("base", "", "the FHIR base URL of the server to check, e.g. https://ember.example.org/fhir")
	token := fs.String("token", env("EMBER_CONFORMANCE_TOKEN", ""), "bearer token sent with every request (env EMBER_CONFORMANCE_TOKEN)")
	suites := fs.String("suite", "", "suites to run, comma-separated: "+strings.Join(runner.Suites, ", ")+" (default all)")
	patients := fs.String("patient", "", "patient ids the patient-scoped searches use, comma-separated (default: discovered from the data)")
	junit := fs.String("junit", "", "also write the results as JUnit XML to this file")
	timeout := fs.Duration("timeout", 60*time.Second, "how long one request may take")
	max := fs.Int("max-resources", 50, "resources of each type to sample, read and resolve")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 || *base == "" {
		fmt.Fprintln(stderr, "ember conformance run: --base is required and takes no arguments")
		return errUsage
	}
	o := runner.Options{Base: *base, Token: *token, Suites: splitList(*suites), Patients: splitList(*patients), MaxResources: *max}
	o.Client = &http.Client{Timeout: *timeout}
	report, err := runner.Run(ctx, o)
	if err != nil {
		return err
	}
	if err := report.WriteSummary(stdout); err != nil {
		return err
	}
	if *junit != "" {
		f, err := os.Create(*junit)
		if err != nil {
			return fmt.Errorf("conformance: %w", err)
		}
		if err := report.WriteJUnit(f); err != nil {
			f.Close()
			return fmt.Errorf("conformance: %s: %w", *junit, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("conformance: %w", err)
		}
	}
	if n := report.Count(runner.Fail); n > 0 {
		return fmt.Errorf("%w: %d", errChecksFailed, n)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
