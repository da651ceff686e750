package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// internalKey marks the service's own writes of Subscriptions (status
// changes), which keep the status and owner as written.
type internalKey struct{}

// admitSubscription is the engine's Admitter for Subscriptions: it refuses
// what the service cannot deliver, naming the element, and sets what the
// server owns: the status (requested until a rest-hook's handshake
// succeeds) and the owner extension (the writer's grant, which decides
// what notifications may carry).
type admitSubscription struct{ s *Service }

func (a admitSubscription) Admit(ctx context.Context, caller *engine.Caller, res *fhir.Resource) (*fhir.Resource, error) {
	s := a.s
	sub, cfg, err := readConfig(res.Body())
	if err != nil {
		return nil, err
	}
	if err := s.checkTopic(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Channel == "rest-hook" {
		if err := s.guard.checkLiteral(cfg.Endpoint); err != nil {
			return nil, unprocessable("Subscription.channel.endpoint", "%v", err)
		}
	}
	if ctx.Value(internalKey{}) != nil {
		return res, nil // the service's own status changes: as written
	}
	status, err := a.status(ctx, sub, cfg)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(res.Body(), &doc); err != nil {
		return nil, fhir.Invalid("the Subscription cannot be read: " + err.Error())
	}
	doc["status"], _ = json.Marshal(status)
	if status != "error" {
		delete(doc, "error")
	}
	if err := stampOwner(doc, ownerOf(caller.Grant())); err != nil {
		return nil, err
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return s.en.Parser().Parse(body, "Subscription")
}

// status is the status a client's write of a Subscription is stored with.
// The client asks (R4: requested; off to stop); the server decides: a
// rest-hook stays requested until its handshake succeeds, a websocket
// subscription is active at once (its handshake is on binding), and an
// update that leaves an active subscription active keeps it so.
func (a admitSubscription) status(ctx context.Context, sub *subscriptionJSON, cfg *settings) (string, error) {
	switch sub.Status {
	case "off":
		return "off", nil
	case "requested", "active", "error", "":
	default:
		return "", fhir.Invalid("Subscription.status "+sub.Status+" is not an R4 status", "Subscription.status")
	}
	if cfg.Channel == "websocket" {
		return "active", nil
	}
	if sub.Status == "active" && sub.ID != "" {
		if cur, err := a.s.en.Read(ctx, engine.System, "Subscription", sub.ID); err == nil {
			var old struct {
				Status  string                    `json:"status"`
				Channel struct{ Endpoint string } `json:"channel"`
			}
			if json.Unmarshal(cur.Content, &old) == nil && old.Status == "active" && old.Channel.Endpoint == cfg.Endpoint {
				return "active", nil
			}
		}
	}
	return "requested", nil
}

// stampOwner replaces the owner extension with owner's (removes it for
// an unrestricted writer): a client cannot choose whose grant applies.
func stampOwner(doc map[string]json.RawMessage, owner *Owner) error {
	var exts []json.RawMessage
	if raw, ok := doc["extension"]; ok {
		if err := json.Unmarshal(raw, &exts); err != nil {
			return fhir.Invalid("Subscription.extension is not an array", "Subscription.extension")
		}
	}
	kept := exts[:0]
	for _, e := range exts {
		var head struct {
			URL string `json:"url"`
		}
		if json.Unmarshal(e, &head) == nil && head.URL == extOwner {
			continue
		}
		kept = append(kept, e)
	}
	if owner != nil {
		grant, _ := json.Marshal(owner)
		e, _ := json.Marshal(map[string]any{"url": extOwner, "valueString": string(grant)})
		kept = append(kept, e)
	}
	if len(kept) == 0 {
		delete(doc, "extension")
		return nil
	}
	doc["extension"], _ = json.Marshal(kept)
	return nil
}

// readOwner reads the owner extension of a stored Subscription.
func readOwner(body []byte) *Owner {
	var s struct {
		Extension []extension `json:"extension"`
	}
	if json.Unmarshal(body, &s) != nil {
		return nil
	}
	for _, e := range s.Extension {
		if e.URL == extOwner && e.ValueString != nil {
			var o Owner
			if json.Unmarshal([]byte(*e.ValueString), &o) == nil {
				return &o
			}
		}
	}
	return nil
}

// checkTopic refuses an unknown topic, and filters the topic cannot take
// or the matcher cannot evaluate.
func (s *Service) checkTopic(ctx context.Context, cfg *settings) error {
	if cfg.Topic == "" {
		return fhir.Invalid("Subscription.criteria must be the canonical URL of a SubscriptionTopic", "Subscription.criteria")
	}
	t := s.topic(cfg.Topic)
	if t == nil && s.loadUserTopics(store.WithoutGuard(ctx)) == nil {
		t = s.topic(cfg.Topic) // defined through another replica
	}
	if t == nil {
		if strings.Contains(cfg.Topic, "?") && !strings.Contains(cfg.Topic, "://") {
			return unprocessable("Subscription.criteria", "criteria %q is an R4 query; Ember serves topic-based subscriptions (Subscriptions R5 Backport): use a topic such as %s with a backport-filter-criteria of that query", cfg.Topic, TopicBase+strings.SplitN(cfg.Topic, "?", 2)[0])
		}
		return unprocessable("Subscription.criteria", "unknown topic %q: see the CapabilityStatement's subscription topics", cfg.Topic)
	}
	for _, f := range cfg.Filters {
		if _, err := s.compileFilter(t, f); err != nil {
			return unprocessable("Subscription.criteria.extension", "filter %q: %v", f, err)
		}
	}
	return nil
}

// compileFilter compiles one backport-filter-criteria ("Type?query") of a
// subscription to topic t.
func (s *Service) compileFilter(t *Topic, f string) (*filter, error) {
	typ, query, ok := strings.Cut(f, "?")
	if !ok {
		return nil, errors.New("a filter is Type?query, e.g. Observation?patient=Patient/123")
	}
	watched := false
	for _, r := range t.resources() {
		watched = watched || r == typ
	}
	if !watched {
		return nil, errors.New("the topic has no trigger for " + typ + " (it watches " + strings.Join(t.resources(), ", ") + ")")
	}
	m, err := compileQuery(typ, query, s.en.Base())
	if err != nil {
		return nil, err
	}
	return &filter{typ: typ, m: m}, nil
}

// admitTopic is the engine's Admitter for Basic: a Basic that is a
// SubscriptionTopic must compile (its triggers, criteria and FHIRPath).
type admitTopic struct{ s *Service }

func (a admitTopic) Admit(_ context.Context, _ *engine.Caller, res *fhir.Resource) (*fhir.Resource, error) {
	if !isTopic(res.Body()) {
		return res, nil
	}
	t, err := userTopic(res.Body(), a.s.en.Base())
	if err != nil {
		return nil, err
	}
	if other := a.s.topicOwner(t.URL); other != "" && other != res.ID() {
		return nil, fhir.NewError(fhir.Conflict, "duplicate", "topic "+t.URL+" is defined already by Basic/"+other, "Basic.extension")
	}
	return res, nil
}

// topicOwner is the id of the Basic that defines topic url ("" none).
func (s *Service) topicOwner(url string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, u := range s.topicsOf {
		if u == url {
			return id
		}
	}
	return ""
}
