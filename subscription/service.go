// Package subscription delivers FHIR Subscriptions, the R5 Backport IG's
// topic-based form for R4: topics (shipped and user-defined), the
// Subscription resource's admission, matching changes to subscriptions,
// and delivery over rest-hook and websocket.
//
// Durability and order come from PostgreSQL, not from memory:
//
//   - every resource write appends to the change log (resource_changes) in
//     its own transaction (store);
//   - one dispatcher at a time, across replicas, reads the log in order,
//     matches each change against the active subscriptions, stores the
//     matches as numbered events and retires the changes, in one
//     transaction (dispatch.go);
//   - delivery workers lease one subscription at a time, so each event is
//     delivered by one process, in order, and acknowledged before the next
//     batch (deliver.go); websocket connections read the same events
//     (websocket.go).
//
// What a notification may carry is decided by the subscription's owner's
// grant, at matching and again at delivery (notify.go).
package subscription

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/subdb"
)

// Config configures a Service.
type Config struct {
	Engine *engine.Engine
	// AllowHosts are rest-hook targets allowed although they are private,
	// loopback or link-local addresses (host names, IP addresses or CIDR
	// ranges; --subscription-allow-hosts). Others are refused: a
	// subscription must not make the server probe its own network.
	AllowHosts []string
	// MaxRetries is how many failed attempts in a row a rest-hook
	// subscription has before it goes to error (default 10: about five
	// minutes of backoff).
	MaxRetries int
	// Poll is how often the dispatcher looks for changes other processes
	// wrote (default 100ms; this process's commits wake it at once); the
	// delivery workers, woken by the dispatcher, poll ten times less often.
	Poll time.Duration
	// Workers is the number of rest-hook delivery workers (default 4).
	Workers int
	// WebsocketURL is the public URL of the websocket endpoint, returned
	// by $get-ws-binding-token ("" derives it from the FHIR base).
	WebsocketURL string
	// Retention is how long delivered events are kept for $events and
	// websocket replay (default 7 days).
	Retention time.Duration
	Registry  prometheus.Registerer
	Logger    *slog.Logger
	// Transport, when set, replaces the guarded transport (tests).
	Transport http.RoundTripper
}

// Service is the subscriptions service of one process.
type Service struct {
	cfg     Config
	en      *engine.Engine
	st      *store.Store
	db      *subdb.DB
	log     *slog.Logger
	owner   string // lease owner: this process
	shipped map[string]*Topic
	guard   *hostGuard
	client  *http.Client
	m       *metrics

	mu         sync.RWMutex
	userTopics map[string]*Topic // by url
	topicsOf   map[string]string // Basic id → topic url

	// The dispatcher's view of the subscriptions (dispatch.go).
	subs  map[string]*active
	stamp string

	deliver chan struct{} // wakes the rest-hook workers
	hub     *hub          // websocket connections of this process
	running sync.WaitGroup
}

// New returns the service; Start runs it. It registers the Subscription
// and Basic admitters with the engine; the caller registers Operations
// with the HTTP server.
func New(cfg Config) (*Service, error) {
	if cfg.Engine == nil {
		return nil, errors.New("subscription: Engine is required")
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 10
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WebsocketURL == "" {
		cfg.WebsocketURL = websocketURL(cfg.Engine.Base())
	}
	guard, err := newHostGuard(cfg.AllowHosts)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	s := &Service{cfg: cfg, en: cfg.Engine, st: cfg.Engine.Store(), db: subdb.New(cfg.Engine.Store()), log: cfg.Logger,
		owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(nonce[:])), shipped: shippedTopics(), guard: guard,
		userTopics: map[string]*Topic{}, topicsOf: map[string]string{}, subs: map[string]*active{},
		deliver: make(chan struct{}, 1), hub: newHub()}
	s.client = &http.Client{Transport: cfg.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if s.client.Transport == nil {
		s.client.Transport = guard.transport()
	}
	if s.m, err = newMetrics(cfg.Registry, s.db); err != nil {
		return nil, err
	}
	s.en.SetAdmitter("Subscription", admitSubscription{s})
	s.en.SetAdmitter("Basic", admitTopic{s})
	return s, nil
}

// websocketURL derives the websocket endpoint from the FHIR base:
// http://host/fhir → ws://host/subscriptions/ws.
func websocketURL(base string) string {
	scheme, rest, ok := strings.Cut(base, "://")
	if !ok {
		return WebsocketPath
	}
	host, _, _ := strings.Cut(rest, "/")
	ws := "ws"
	if scheme == "https" {
		ws = "wss"
	}
	return ws + "://" + host + WebsocketPath
}

// WebsocketPath is where the websocket endpoint is served.
const WebsocketPath = "/subscriptions/ws"

// Start loads the user-defined topics and runs the dispatcher, the
// delivery workers and the event pruner until ctx ends.
func (s *Service) Start(ctx context.Context) error {
	if err := s.loadUserTopics(ctx); err != nil {
		return err
	}
	s.running.Go(func() { s.dispatchLoop(ctx) })
	for range s.cfg.Workers {
		s.running.Go(func() { s.workLoop(ctx) })
	}
	s.running.Go(func() { s.pruneLoop(ctx) })
	return nil
}

// Wait returns once the loops Start began have stopped (after its
// context ended): workers have released their leases.
func (s *Service) Wait() { s.running.Wait() }

// Topics lists the canonical URLs of the topics the server serves, for
// the CapabilityStatement: the named shipped topics, one per resource
// type, and the users' own.
func (s *Service) Topics() []string {
	out := make([]string, 0, len(s.shipped)+len(s.userTopics))
	for _, n := range namedTopics {
		out = append(out, TopicBase+n)
	}
	for u := range s.shipped {
		if !strings.HasPrefix(u, TopicBase) || !isNamed(u) {
			out = append(out, u)
		}
	}
	s.mu.RLock()
	for u := range s.userTopics {
		out = append(out, u)
	}
	s.mu.RUnlock()
	slices.Sort(out[len(namedTopics):]) // a stable CapabilityStatement
	return out
}

func isNamed(u string) bool {
	for _, n := range namedTopics {
		if u == TopicBase+n {
			return true
		}
	}
	return false
}

// topic returns the topic with canonical url (shipped, or a user's).
func (s *Service) topic(canonical string) *Topic {
	if t := s.shipped[canonical]; t != nil {
		return t
	}
	canonical, _, _ = strings.Cut(canonical, "|")
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.userTopics[canonical]
}

// loadUserTopics reads every Basic that is a SubscriptionTopic.
func (s *Service) loadUserTopics(ctx context.Context) error {
	q, err := search.Parse("Basic", url.Values{"code": {fhirTypesSystem + "|SubscriptionTopic"}},
		search.Options{Strict: true, Base: s.en.Base(), DefaultCount: 500, MaxCount: 500})
	if err != nil {
		return fmt.Errorf("subscription: load topics: %w", err)
	}
	for {
		res, err := s.st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("subscription: load topics: %w", err)
		}
		for _, m := range res.Matches {
			s.noteTopic(m.ID, m.Content)
		}
		if res.Next == "" {
			return nil
		}
		q.Cursor = res.Next
	}
}

// noteTopic records (content nil: forgets) the topic Basic id defines.
func (s *Service) noteTopic(id string, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.topicsOf[id]; ok {
		delete(s.userTopics, old)
		delete(s.topicsOf, id)
	}
	if content == nil || !isTopic(content) {
		return
	}
	t, err := userTopic(content, s.en.Base())
	if err != nil {
		s.log.Warn("subscription topic not loaded", "basic", id, "err", err)
		return
	}
	s.userTopics[t.URL] = t
	s.topicsOf[id] = t.URL
}

// setStatus moves a subscription to status (active after its handshake,
// error past its retries, off at its end): its row first, so delivery
// stops at once, then its resource, through the engine like any write.
func (s *Service) setStatus(ctx context.Context, id, status, reason string) error {
	if err := s.db.SetStatus(ctx, id, status, reason); err != nil {
		return err
	}
	cur, err := s.en.Read(ctx, engine.System, "Subscription", id)
	if err != nil {
		return fmt.Errorf("subscription: read %s: %w", id, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(cur.Content, &doc); err != nil {
		return fmt.Errorf("subscription: read %s: %w", id, err)
	}
	doc["status"], _ = json.Marshal(status)
	if reason != "" {
		doc["error"], _ = json.Marshal(reason)
	} else {
		delete(doc, "error")
	}
	body, _ := json.Marshal(doc)
	res, err := s.en.Parser().Parse(body, "Subscription")
	if err != nil {
		return fmt.Errorf("subscription: status of %s: %w", id, err)
	}
	_, err = s.en.Update(context.WithValue(ctx, internalKey{}, true), engine.System, engine.UpdateRequest{Resource: res, ID: id, IfMatch: cur.VersionID})
	var fe *fhir.Error
	if errors.As(err, &fe) && fe.Kind == fhir.PreconditionFailed {
		return nil // the owner changed it meanwhile: theirs stands
	}
	if err != nil {
		return fmt.Errorf("subscription: status of %s: %w", id, err)
	}
	return nil
}

// pruneLoop deletes delivered events past the retention, hourly.
func (s *Service) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.db.PruneEvents(ctx, time.Now().Add(-s.cfg.Retention)); err != nil && ctx.Err() == nil {
			s.log.Warn("subscription events prune failed", "err", err)
		} else if n > 0 {
			s.log.Info("subscription events pruned", "events", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// DropUnwatched runs, until ctx ends, what a process that serves no
// subscriptions owes the change log: emptying it every poll while no
// subscription is active anywhere (see subdb.DB.DropUnwatched).
func DropUnwatched(ctx context.Context, st *store.Store, every time.Duration, log *slog.Logger) {
	db := subdb.New(st)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := db.DropUnwatched(ctx); err != nil && ctx.Err() == nil {
			log.Warn("change log not emptied", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
