package subscription

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store/subdb"
)

// The backport IG's operation definitions.
const (
	opBase           = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
	bindingTokenLife = 10 * time.Minute
	maxQueryEvents   = 1000
)

// Operations are $status, $events and $get-ws-binding-token on
// Subscription. Each reads the Subscription with the caller's grant
// first, so a caller learns nothing of subscriptions it cannot read.
func (s *Service) Operations() []engine.Operation {
	subs := []string{"Subscription"}
	return []engine.Operation{
		{Name: "status", Levels: engine.TypeLevel | engine.InstanceLevel, Types: subs, Methods: []string{"GET", "POST"},
			Definition: opBase + "backport-subscription-status", Invoke: s.statusOp},
		{Name: "events", Levels: engine.InstanceLevel, Types: subs, Methods: []string{"GET", "POST"},
			Definition: opBase + "backport-subscription-events", Invoke: s.eventsOp},
		{Name: "get-ws-binding-token", Levels: engine.TypeLevel | engine.InstanceLevel, Types: subs, Methods: []string{"POST"},
			Definition: opBase + "backport-subscription-get-ws-binding-token", Invoke: s.bindingTokenOp},
	}
}

// opArgs are an invocation's arguments by name: the query's, then the
// Parameters body's primitive values.
func opArgs(req engine.OpRequest) (map[string][]string, error) {
	out := map[string][]string{}
	for k, vs := range req.Query {
		out[k] = append(out[k], vs...)
	}
	if len(req.Body) == 0 {
		return out, nil
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []map[string]json.RawMessage
	}
	if err := json.Unmarshal(req.Body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, fhir.Invalid("the body must be a Parameters resource")
	}
	for _, prm := range p.Parameter {
		var name string
		_ = json.Unmarshal(prm["name"], &name)
		for k, raw := range prm {
			if len(k) > 5 && k[:5] == "value" {
				var v any
				if json.Unmarshal(raw, &v) == nil {
					switch x := v.(type) {
					case string:
						out[name] = append(out[name], x)
					case float64:
						out[name] = append(out[name], strconv.FormatFloat(x, 'f', -1, 64))
					}
				}
			}
		}
	}
	return out, nil
}

// readable returns the subscription's row after checking that caller may
// read the Subscription.
func (s *Service) readable(ctx context.Context, caller *engine.Caller, id string) (subdb.Sub, *settings, error) {
	v, err := s.en.Read(ctx, caller, "Subscription", id)
	if err != nil {
		return subdb.Sub{}, nil, err
	}
	row, ok, err := s.db.Get(ctx, id)
	if err != nil {
		return row, nil, err
	}
	_, cfg, cerr := readConfig(v.Content)
	if cerr != nil {
		return row, nil, cerr
	}
	cfg.Owner = readOwner(v.Content)
	if !ok {
		// Not matched yet (the dispatcher has not seen it): as stored.
		var head struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(v.Content, &head)
		row = subdb.Sub{ID: id, Status: head.Status, Channel: cfg.Channel}
	}
	return row, cfg, nil
}

// ids are the subscriptions a type-level invocation names (id), or every
// one the caller can read when it names none.
func (s *Service) ids(ctx context.Context, caller *engine.Caller, args map[string][]string) ([]string, error) {
	if ids := args["id"]; len(ids) > 0 {
		return ids, nil
	}
	body, err := s.en.Search(ctx, caller, engine.SearchRequest{Type: "Subscription", Params: map[string][]string{"_count": {"1000"}, "_elements": {"id"}}})
	if err != nil {
		return nil, err
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ID string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Resource.ID)
	}
	return out, nil
}

// targets are an invocation's arguments and the subscriptions it names:
// the instance's, or at type level those of its id arguments (all the
// caller can read when none).
func (s *Service) targets(ctx context.Context, caller *engine.Caller, req engine.OpRequest) (map[string][]string, []string, error) {
	args, err := opArgs(req)
	if err != nil {
		return nil, nil, err
	}
	if req.Level == engine.InstanceLevel {
		return args, []string{req.ID}, nil
	}
	ids, err := s.ids(ctx, caller, args)
	return args, ids, err
}

// statusOp is $status: a searchset Bundle of SubscriptionStatus.
func (s *Service) statusOp(ctx context.Context, caller *engine.Caller, req engine.OpRequest) (engine.OpResponse, error) {
	_, ids, err := s.targets(ctx, caller, req)
	if err != nil {
		return engine.OpResponse{}, err
	}
	var entries []any
	for _, id := range ids {
		row, cfg, err := s.readable(ctx, caller, id)
		if err != nil {
			return engine.OpResponse{}, err
		}
		p := s.statusParameters(row, cfg, typeQueryState, nil)
		entries = append(entries, obj{"fullUrl": "urn:uuid:" + p["id"].(string), "resource": p, "search": obj{"mode": "match"}})
	}
	body, err := json.Marshal(obj{"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})
	return engine.OpResponse{Body: body}, err
}

// eventsOp is $events: the stored events eventsSinceNumber to
// eventsUntilNumber (by default all kept) as a query-event notification,
// with the content asked for (default: the subscription's).
func (s *Service) eventsOp(ctx context.Context, caller *engine.Caller, req engine.OpRequest) (engine.OpResponse, error) {
	args, err := opArgs(req)
	if err != nil {
		return engine.OpResponse{}, err
	}
	row, cfg, err := s.readable(ctx, caller, req.ID)
	if err != nil {
		return engine.OpResponse{}, err
	}
	since, until := int64(1), row.Events
	if v := first(args["eventsSinceNumber"]); v != "" {
		if since, err = strconv.ParseInt(v, 10, 64); err != nil || since < 1 {
			return engine.OpResponse{}, fhir.Invalid("eventsSinceNumber must be a positive integer")
		}
	}
	if v := first(args["eventsUntilNumber"]); v != "" {
		if until, err = strconv.ParseInt(v, 10, 64); err != nil || until < 0 {
			return engine.OpResponse{}, fhir.Invalid("eventsUntilNumber must be a non-negative integer")
		}
	}
	switch c := first(args["content"]); c {
	case "":
	case contentEmpty, contentIDOnly, contentResource:
		cfg.Content = c
	default:
		return engine.OpResponse{}, fhir.Invalid("content " + strconv.Quote(c) + ": use empty, id-only or full-resource")
	}
	if until-since+1 > maxQueryEvents {
		since = until - maxQueryEvents + 1
	}
	evs, err := s.db.Events(ctx, req.ID, since, until, maxQueryEvents)
	if err != nil {
		return engine.OpResponse{}, err
	}
	cfg.Payload = defaultPayload
	body, err := s.notification(ctx, row, cfg, typeQueryEvent, evs)
	return engine.OpResponse{Body: body}, err
}

// bindingTokenOp is $get-ws-binding-token: a token, valid ten minutes,
// that binds a websocket to the named websocket subscriptions the caller
// can read. Only its hash is stored.
func (s *Service) bindingTokenOp(ctx context.Context, caller *engine.Caller, req engine.OpRequest) (engine.OpResponse, error) {
	args, ids, err := s.targets(ctx, caller, req)
	if err != nil {
		return engine.OpResponse{}, err
	}
	var bound []string
	for _, id := range ids {
		_, cfg, err := s.readable(ctx, caller, id)
		if err != nil {
			return engine.OpResponse{}, err
		}
		if cfg.Channel != "websocket" {
			if req.Level == engine.InstanceLevel || len(args["id"]) > 0 {
				return engine.OpResponse{}, fhir.NewError(fhir.Unprocessable, "not-supported",
					"Subscription/"+id+" has channel "+cfg.Channel+", not websocket", "Subscription.channel.type")
			}
			continue
		}
		bound = append(bound, id)
	}
	if len(bound) == 0 {
		return engine.OpResponse{}, fhir.NewError(fhir.Unprocessable, "not-found", "no websocket subscription to bind")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return engine.OpResponse{}, err
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	hash := sha256.Sum256([]byte(token))
	expires := time.Now().Add(bindingTokenLife)
	if err := s.db.AddToken(ctx, hash[:], bound, expires); err != nil {
		return engine.OpResponse{}, err
	}
	params := []any{
		obj{"name": "token", "valueString": token},
		obj{"name": "expiration", "valueDateTime": fhir.FormatInstant(expires)},
	}
	for _, id := range bound {
		params = append(params, obj{"name": "subscription", "valueString": s.en.Base() + "/Subscription/" + id})
	}
	params = append(params, obj{"name": "websocket-url", "valueUrl": s.cfg.WebsocketURL})
	body, err := json.Marshal(obj{"resourceType": "Parameters", "parameter": params})
	return engine.OpResponse{Body: body}, err
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
