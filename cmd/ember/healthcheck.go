package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheck asks a running `ember serve` on this machine for /healthz
// (or --path) and fails unless it answers 200. It is the container
// image's HEALTHCHECK, so the image needs no curl or wget: it reads the
// same EMBER_ADDR and EMBER_TLS_CERT as serve and finds the listener the
// way a local client would.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ember healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", env("EMBER_ADDR", "127.0.0.1:8080"), "the address serve listens on (env EMBER_ADDR); a wildcard host is asked on loopback")
	path := fs.String("path", "/healthz", "the path to ask: /healthz (alive) or /readyz (database reachable and migrated)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	useTLS := fs.Bool("tls", env("EMBER_TLS_CERT", "") != "", "ask over HTTPS (default: when EMBER_TLS_CERT is set, as serve then serves HTTPS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected arguments %q", fs.Args())
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("healthcheck: --addr %q: %w", *addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: *timeout}
	if *useTLS {
		scheme = "https"
		// The certificate names the public host, not the loopback address
		// asked here; this request carries nothing and only reads a status.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + *path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d: %s", url, resp.StatusCode, body)
	}
	fmt.Fprintf(stdout, "%s: %s", url, body)
	return nil
}
