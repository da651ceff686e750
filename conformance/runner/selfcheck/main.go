// Command selfcheck is `make conformance`: it starts a fresh Ember (the
// given binary, its own PostgreSQL under a temporary --data-dir, SMART
// authorization on), loads the Synthea patients and the US Core 6.1
// examples, issues itself a system/*.rs token, runs every conformance
// suite against it and exits 1 unless all applicable checks pass.
//
// The US Core package is installed first (`ember ig install`) when the
// binary has that command, else passed to serve with --ig when serve has
// that flag; without either the profile checks skip, saying why.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/emberfhir/ember/conformance/runner"
)

func main() {
	ember := flag.String("ember", "bin/ember", "the ember binary")
	synthea := flag.String("synthea", "testdata/synthea.tar.zst", "the Synthea archive to load")
	ig := flag.String("ig", "testdata/ig/hl7.fhir.us.core-6.1.0.tgz", "the US Core package (npm tarball): its examples are loaded")
	junit := flag.String("junit", "", "write the results as JUnit XML to this file too")
	keep := flag.Bool("keep", false, "keep the temporary data directory (its path is printed)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *ember, *synthea, *ig, *junit, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, ember, synthea, ig, junit string, keep bool) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "ember-conformance-")
	if err != nil {
		return err
	}
	// Run as root, Ember's PostgreSQL runs as "postgres", which must reach
	// the data directory inside this one (MkdirTemp makes it 0700).
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if keep {
		fmt.Println("data directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	base := "http://" + addr + "/fhir"
	data := filepath.Join(dir, "data")
	common := []string{"--data-dir", data}
	help := output(ctx, ember, "--help")
	serveHelp := output(ctx, ember, "serve", "--help")
	var serveExtra []string
	switch {
	case strings.Contains(help, "ember ig"):
		if err := command(ctx, ember, append([]string{"ig", "install"}, append(common, ig)...)...); err != nil {
			return err
		}
	case strings.Contains(serveHelp, "  -ig "):
		serveExtra = []string{"--ig", ig}
	default:
		fmt.Println("note: this ember has neither `ember ig install` nor `serve --ig`: profile checks will skip")
	}
	examples := filepath.Join(dir, "examples")
	n, err := extractExamples(ig, examples)
	if err != nil {
		return err
	}
	fmt.Printf("loading %s and %d US Core examples …\n", synthea, n)
	if err := command(ctx, ember, append([]string{"import"}, append(common, synthea)...)...); err != nil {
		return err
	}
	if err := command(ctx, ember, append([]string{"import"}, append(common, examples)...)...); err != nil {
		return err
	}
	token, err := exec.CommandContext(ctx, ember, append([]string{"token"}, append(common, "--base-url", base,
		"--client", "conformance", "--register", "--scope", "system/*.rs")...)...).Output()
	if err != nil {
		return fmt.Errorf("ember token: %w", err)
	}
	srv := exec.Command(ember, append([]string{"serve", "--addr", addr, "--base-url", base, "--dimse-addr", "off"}, append(common, serveExtra...)...)...)
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		return fmt.Errorf("ember serve: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
	}()
	if err := waitReady(ctx, "http://"+addr+"/readyz", exited); err != nil {
		return fmt.Errorf("%w\n%s", err, log.String())
	}
	report, err := runner.Run(ctx, runner.Options{Base: base, Token: strings.TrimSpace(string(token))})
	if err != nil {
		return err
	}
	if err := report.WriteSummary(os.Stdout); err != nil {
		return err
	}
	if junit != "" {
		var b bytes.Buffer
		if err := report.WriteJUnit(&b); err != nil {
			return err
		}
		if err := os.WriteFile(junit, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("make conformance took %s\n", time.Since(start).Round(time.Second))
	if n := report.Count(runner.Fail); n > 0 {
		return fmt.Errorf("%d checks failed", n)
	}
	return nil
}

// command runs ember with args, its output passed through.
func command(ctx context.Context, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ember %s: %w", strings.Join(args[:min(2, len(args))], " "), err)
	}
	return nil
}

// output is what a command prints (its help), "" when it cannot run.
func output(ctx context.Context, bin string, args ...string) string {
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out)
}

// extractExamples writes the package's example resources (package/example/)
// into dir and returns how many.
func extractExamples(tgz, dir string) (int, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", tgz, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	tr := tar.NewReader(zr)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%s: %w", tgz, err)
		}
		name, ok := strings.CutPrefix(h.Name, "package/example/")
		if !ok || strings.Contains(name, "/") || !strings.HasSuffix(name, ".json") || h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
		if err != nil {
			return n, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return n, err
		}
		n++
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls url until it answers 200 (two minutes at most: the first
// start initialises PostgreSQL).
func waitReady(ctx context.Context, url string, exited chan error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			exited <- err // for the deferred stop
			return fmt.Errorf("ember serve exited before it was ready: %v", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("ember serve was not ready at %s within two minutes", url)
}
