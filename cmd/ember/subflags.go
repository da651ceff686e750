package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/subscription"
)

// subscriptionFlags are serve's flags for FHIR Subscriptions.
type subscriptionFlags struct {
	mode       string
	allowHosts string
	maxRetries int
}

func (f *subscriptionFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "subscriptions", env("EMBER_SUBSCRIPTIONS", "on"),
		"deliver FHIR Subscriptions (R5 Backport topics; rest-hook and websocket): on or off (env EMBER_SUBSCRIPTIONS)")
	fs.StringVar(&f.allowHosts, "subscription-allow-hosts", env("EMBER_SUBSCRIPTION_ALLOW_HOSTS", ""),
		"comma-separated host names, addresses or CIDR ranges that rest-hook subscriptions may call although they are loopback, private or link-local (env EMBER_SUBSCRIPTION_ALLOW_HOSTS; none by default)")
	fs.IntVar(&f.maxRetries, "subscription-max-retries", int(envInt("EMBER_SUBSCRIPTION_MAX_RETRIES", 10)),
		"failed rest-hook attempts in a row (backing off from 0.5 s to 30 s) before a subscription goes to error (env EMBER_SUBSCRIPTION_MAX_RETRIES)")
}

func (f *subscriptionFlags) check() error {
	switch f.mode {
	case "on", "off", "":
	default:
		return fmt.Errorf("--subscriptions %q: use on or off", f.mode)
	}
	if f.maxRetries < 1 {
		return fmt.Errorf("--subscription-max-retries %d: use 1 or more", f.maxRetries)
	}
	return nil
}

// subscriptionMount serves the websocket endpoint once the service is
// started (the server, which the service needs, is built after its mounts).
type subscriptionMount struct {
	svc atomic.Pointer[subscription.Service]
}

func (m *subscriptionMount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	svc := m.svc.Load()
	if svc == nil {
		http.Error(w, "subscriptions are off on this server (--subscriptions)", http.StatusServiceUnavailable)
		return
	}
	svc.WebsocketHandler().ServeHTTP(w, r)
}

// mount adds the websocket endpoint to the server's configuration.
func (f *subscriptionFlags) mount(cfg *server.Config) *subscriptionMount {
	m := &subscriptionMount{}
	if f.mode != "off" {
		cfg.Mounts = append(cfg.Mounts, server.Mount{Prefix: subscription.WebsocketPath, Handler: m})
	}
	return m
}

// start builds and runs the subscriptions service on srv's engine; stop
// ends it (its workers release their leases, for another replica or the
// next start to deliver at once).
func (f *subscriptionFlags) start(ctx context.Context, srv *server.Server, m *subscriptionMount, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	stop = func() {}
	if f.mode == "off" {
		// Nothing here reads the change log: keep it from growing while
		// no subscription is active anywhere.
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			subscription.DropUnwatched(ctx, srv.Engine().Store(), 10*time.Second, log)
		}()
		return func() { cancel(); <-done }, nil
	}
	var allow []string
	for _, h := range strings.Split(f.allowHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			allow = append(allow, h)
		}
	}
	svc, err := subscription.New(subscription.Config{Engine: srv.Engine(), AllowHosts: allow, MaxRetries: f.maxRetries,
		Registry: reg, Logger: log})
	if err != nil {
		return stop, fmt.Errorf("serve: subscriptions: %w", err)
	}
	for _, op := range svc.Operations() {
		if err := srv.RegisterOperation(op); err != nil {
			return stop, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	if err := svc.Start(ctx); err != nil {
		cancel()
		return stop, fmt.Errorf("serve: subscriptions: %w", err)
	}
	stop = func() {
		cancel()
		svc.Wait()
	}
	if err := srv.AdvertiseTopics(svc.Topics()); err != nil {
		return stop, err
	}
	m.svc.Store(svc)
	return stop, nil
}
