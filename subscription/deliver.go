package subscription

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/emberfhir/ember/store/subdb"
)

// leaseFor bounds how long a worker holds a subscription: longer than
// any one attempt (the timeout is at most a minute), so a lease expires
// only when its process died. A process that stops cleanly releases its
// leases at once (workLoop).
const leaseFor = maxTimeoutSecond*time.Second + 15*time.Second

// workPollFactor is how many dispatcher polls a worker's poll lasts.
const workPollFactor = 10

// SignatureHeader carries the HMAC-SHA256 of a rest-hook notification's
// body, keyed with the subscription's secret: "sha256=" and the hex MAC.
const SignatureHeader = "X-Ember-Signature"

// workLoop delivers rest-hook subscriptions one lease at a time until ctx
// ends.
func (s *Service) workLoop(ctx context.Context) {
	// This process's dispatcher wakes the workers when it matches events or
	// sees a Subscription written; the poll is for the rest (retries,
	// heartbeats, what another replica matched), so it need not be as
	// frequent as the dispatcher's: four workers polling every 100 ms
	// would be 40 queries a second on an idle server.
	t := time.NewTicker(workPollFactor * s.cfg.Poll)
	defer t.Stop()
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.db.Release(rctx, s.owner); err != nil {
			s.log.Warn("subscription leases not released", "err", err)
		}
	}()
	for {
		for ctx.Err() == nil {
			l, ok, err := s.db.Claim(ctx, s.owner, leaseFor)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("subscription claim failed", "err", err)
				}
				break
			}
			if !ok {
				break
			}
			s.work(ctx, l)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.deliver:
		case <-t.C:
		}
	}
}

// work does what a leased subscription is due: end it, shake hands,
// deliver its next events, or send a heartbeat.
func (s *Service) work(ctx context.Context, l subdb.Lease) {
	var cfg settings
	if err := json.Unmarshal(l.Config, &cfg); err != nil {
		s.log.Error("subscription config unreadable", "subscription", l.ID, "err", err)
		_ = s.db.Failed(ctx, l, "unreadable configuration", time.Hour)
		return
	}
	if cfg.End != nil && !time.Now().Before(*cfg.End) {
		if err := s.setStatus(ctx, l.ID, "off", ""); err != nil {
			s.log.Warn("subscription end", "subscription", l.ID, "err", err)
		}
		return
	}
	if l.Channel != "rest-hook" {
		_ = s.db.Delivered(ctx, l, 0) // not ours to deliver: release
		return
	}
	switch {
	case l.Status == "requested":
		if err := s.send(ctx, l, &cfg, typeHandshake, nil); err != nil {
			s.failed(ctx, l, &cfg, "handshake: "+err.Error())
			return
		}
		if err := s.setStatus(ctx, l.ID, "active", ""); err != nil {
			s.log.Warn("subscription activation", "subscription", l.ID, "err", err)
		}
	case l.Delivered < l.Events:
		evs, err := s.db.Events(ctx, l.ID, l.Delivered+1, l.Events, int(cfg.MaxCount))
		if err != nil {
			s.failed(ctx, l, &cfg, err.Error())
			return
		}
		if len(evs) == 0 {
			// Pruned before delivery (a subscription in error past the
			// retention): nothing left to send of them.
			_ = s.db.Delivered(ctx, l, l.Events)
			return
		}
		if err := s.send(ctx, l, &cfg, typeEvent, evs); err != nil {
			s.failed(ctx, l, &cfg, err.Error())
			return
		}
		last := evs[len(evs)-1].Number
		if err := s.db.Delivered(ctx, l, last); err != nil {
			s.log.Warn("subscription delivered", "subscription", l.ID, "err", err)
		}
		now := time.Now()
		s.m.delivered.WithLabelValues(cfg.Channel).Add(float64(len(evs)))
		for _, e := range evs {
			s.m.lag.WithLabelValues(cfg.Channel).Observe(now.Sub(e.At).Seconds())
		}
		if last < l.Events {
			kick(s.deliver) // more to send: come back at once
		}
	default: // a heartbeat is due
		if err := s.send(ctx, l, &cfg, typeHeartbeat, nil); err != nil {
			s.failed(ctx, l, &cfg, "heartbeat: "+err.Error())
			return
		}
		_ = s.db.Delivered(ctx, l, l.Delivered)
	}
}

// failed records a failed attempt: retried after a backoff that doubles
// from half a second up to half a minute, until MaxRetries attempts in a
// row have failed; then the subscription goes to error with the reason.
func (s *Service) failed(ctx context.Context, l subdb.Lease, cfg *settings, reason string) {
	if ctx.Err() != nil {
		return // stopping: not the receiver's failure; the lease is released
	}
	s.m.failed.WithLabelValues(cfg.Channel).Inc()
	if l.Failures+1 >= s.cfg.MaxRetries {
		msg := fmt.Sprintf("delivery failed %d times in a row; last: %s", l.Failures+1, reason)
		if err := s.setStatus(ctx, l.ID, "error", msg); err != nil {
			s.log.Warn("subscription error status", "subscription", l.ID, "err", err)
		}
		s.log.Warn("subscription in error", "subscription", l.ID, "reason", msg)
		return
	}
	if err := s.db.Failed(ctx, l, reason, backoff(l.Failures)); err != nil {
		s.log.Warn("subscription failure", "subscription", l.ID, "err", err)
	}
}

// backoff is the wait after the failures+1'th failed attempt in a row.
func backoff(failures int) time.Duration {
	d := time.Duration(float64(500*time.Millisecond) * math.Pow(2, float64(failures)))
	return min(d, 30*time.Second)
}

// send builds a notification of kind and posts it.
func (s *Service) send(ctx context.Context, l subdb.Lease, cfg *settings, kind string, evs []subdb.Event) error {
	body, err := s.notification(ctx, l.Sub, cfg, kind, evs)
	if err != nil {
		return err
	}
	return s.post(ctx, cfg, body)
}

// post sends one notification to the subscription's endpoint; any answer
// other than 2xx is a failure.
func (s *Service) post(ctx context.Context, cfg *settings, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Timeout)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range cfg.Headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	req.Header.Set("Content-Type", cfg.Payload)
	req.Header.Set("User-Agent", "Ember-Subscriptions")
	if cfg.Secret != "" {
		mac := hmac.New(sha256.New, []byte(cfg.Secret))
		mac.Write(body)
		req.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", cfg.Endpoint, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: the receiver answered %s", cfg.Endpoint, resp.Status)
	}
	return nil
}
