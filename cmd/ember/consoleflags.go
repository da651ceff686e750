package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/emberfhir/ember/console"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
)

// consoleFlags are serve's flags for Ember Console, the web UI at /console.
type consoleFlags struct {
	mode string
}

func (f *consoleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "console", env("EMBER_CONSOLE", "on"),
		"serve Ember Console, the web UI, at /console: on or off (env EMBER_CONSOLE)")
}

func (f *consoleFlags) check() error {
	switch f.mode {
	case "on", "off":
		return nil
	}
	return fmt.Errorf("--console %q: use on or off", f.mode)
}

// mount adds the console to the server's configuration; call it after
// authorisation is configured. Under SMART authorisation it first makes
// sure the console's public client is registered with this base's
// redirect URI.
func (f *consoleFlags) mount(ctx context.Context, cfg *server.Config, st *store.Store, log *slog.Logger) error {
	if f.mode == "off" {
		return nil
	}
	auth := "none"
	if cfg.OAuth != nil {
		auth = "smart"
		did, err := console.Register(ctx, st, cfg.BaseURL)
		if err != nil {
			return fmt.Errorf("serve: console: %w", err)
		}
		if did != "" {
			log.Info("console client "+did, "client", console.ClientID, "redirect_uri", console.RedirectURI(cfg.BaseURL))
		}
	}
	h, err := console.Handler(console.Config{FHIRBase: cfg.BaseURL, Auth: auth, Version: version})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	cfg.Mounts = append(cfg.Mounts, server.Mount{Prefix: console.Prefix, Handler: h})
	log.Info("Ember Console on", "url", console.URL(cfg.BaseURL), "auth", auth)
	return nil
}
