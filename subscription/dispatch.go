package subscription

import (
	"context"
	"encoding/json"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/subdb"
)

// dispatchBatch is how many changes one dispatch round matches.
const dispatchBatch = 1000

// active is the dispatcher's view of one subscription that may match.
type active struct {
	id      string
	status  string
	channel string
	cfg     *settings
	topic   *Topic
	filters []*filter
	caller  *engine.Caller // the owner's grant (System when none)
}

// filter is one compiled backport-filter-criteria.
type filter struct {
	typ string
	m   *search.Matcher
}

// matches reports whether a change passes the subscription's filters:
// those for its type must all pass (the IG: filters on one resource type
// are ANDed); a change of a type no filter names passes.
func (a *active) matches(s *snapshot) bool {
	for _, f := range a.filters {
		if f.typ == s.typ && !f.m.Match(s.typ, s.id, s.lastUpdated(), s.index()) {
			return false
		}
	}
	return true
}

// dispatchLoop runs dispatch rounds when this process commits, and every
// Poll for the commits of others, until ctx ends.
func (s *Service) dispatchLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		for {
			n, err := s.dispatch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("subscription dispatch failed", "err", err)
				}
				break
			}
			if n < dispatchBatch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.st.Committed():
		case <-t.C:
		}
	}
}

// dispatch runs one round: it matches up to dispatchBatch changes and
// reports how many it read (0 when another process holds the round).
func (s *Service) dispatch(ctx context.Context) (int, error) {
	var (
		n      int
		events []subdb.Event
		synced bool // a Subscription was written: a handshake may be due
	)
	_, err := s.db.Dispatch(ctx, func(r *subdb.Round) error {
		events = events[:0]
		if err := s.refreshSubs(ctx, r); err != nil {
			return err
		}
		if len(s.byType()) == 0 {
			// Nobody subscribes: drop what only a subscription could want.
			dropped, err := r.DropUnmatchable(ctx, dispatchBatch)
			if err != nil {
				return err
			}
			n = dropped
		}
		cs, err := r.Changes(ctx, dispatchBatch)
		if err != nil || len(cs) == 0 {
			return err
		}
		n = max(n, len(cs))
		byType := s.byType()
		reads := map[string]map[int32]bool{} // per type, what its subscriptions read
		var need []int
		for i, c := range cs {
			if len(byType[c.Type]) > 0 || c.Type == "Subscription" || c.Type == "Basic" {
				need = append(need, i)
			}
		}
		if err := r.Contents(ctx, cs, need); err != nil {
			return err
		}
		seqs := make([]int64, len(cs))
		for i := range cs {
			c := &cs[i]
			seqs[i] = c.Seq
			switch c.Type {
			case "Subscription":
				if err := s.syncSub(ctx, r, c); err != nil {
					return err
				}
				synced = true
				byType, reads = s.byType(), map[string]map[int32]bool{}
			case "Basic":
				s.noteTopic(c.ID, c.Content)
			}
			subs := byType[c.Type]
			if len(subs) > 0 && reads[c.Type] == nil {
				reads[c.Type] = readsOf(c.Type, subs)
			}
			events = s.match(ctx, c, subs, reads[c.Type], events)
		}
		if err := r.AddEvents(ctx, events); err != nil {
			return err
		}
		return r.Retire(ctx, seqs)
	})
	if err != nil {
		return 0, err
	}
	if len(events) > 0 {
		s.afterMatch(events)
	} else if synced {
		kick(s.deliver)
	}
	return n, nil
}

// match appends the events change c makes for subs (the subscriptions
// whose topics watch its type).
func (s *Service) match(ctx context.Context, c *subdb.Change, subs []*active, reads map[int32]bool, events []subdb.Event) []subdb.Event {
	if len(subs) == 0 {
		return events
	}
	cur := newSnapshot(c.Type, c.ID, c.Content, c.At, reads)
	prev := newSnapshot(c.Type, c.ID, c.Previous, time.Time{}, reads)
	if c.Method != store.MethodDelete && cur == nil {
		return events // purged since: nothing to say
	}
	subject := cur
	if subject == nil {
		subject = prev // a delete is filtered on what was deleted
	}
	for _, a := range subs {
		if !a.topic.fires(c.Type, c.Method, prev, cur) {
			continue
		}
		if subject != nil && !a.matches(subject) {
			continue
		}
		if subject == nil && len(a.filters) > 0 {
			continue // a delete of what cannot be read again: no filter can pass
		}
		if !s.visible(ctx, a, subject) {
			continue
		}
		events = append(events, subdb.Event{Subscription: a.id, Type: c.Type, ID: c.ID, Version: c.Version, Method: c.Method, At: c.At})
	}
	return events
}

// readsOf is the set of typ's parameters the subscriptions' topics and
// filters read: all a change's snapshot needs to extract.
func readsOf(typ string, subs []*active) map[int32]bool {
	set := map[int32]bool{}
	for _, a := range subs {
		a.topic.reads(typ, set)
		for _, f := range a.filters {
			if f.typ == typ {
				f.m.Params(typ, set)
			}
		}
	}
	return set
}

// visible reports whether the subscription's owner may read the version
// (a deletion by what was deleted).
func (s *Service) visible(ctx context.Context, a *active, v *snapshot) bool {
	if a.cfg.Owner == nil {
		return true
	}
	if v == nil {
		return false
	}
	ok, err := a.caller.Visible(store.WithoutGuard(ctx), v.typ, v.id, v.content)
	return err == nil && ok
}

// byType indexes the matchable subscriptions by the resource types their
// topics watch.
func (s *Service) byType() map[string][]*active {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]*active{}
	for _, a := range s.subs {
		if a.status != "active" && a.status != "requested" {
			continue
		}
		if a.cfg.End != nil && time.Now().After(*a.cfg.End) {
			continue
		}
		for _, r := range a.topic.resources() {
			out[r] = append(out[r], a)
		}
	}
	return out
}

// refreshSubs reloads the subscriptions when their table changed since
// the last round (another process may have held the rounds meanwhile).
func (s *Service) refreshSubs(ctx context.Context, r *subdb.Round) error {
	stamp, err := r.Stamp(ctx)
	if err != nil || stamp == s.stamp {
		return err
	}
	rows, err := r.Subs(ctx)
	if err != nil {
		return err
	}
	subs := map[string]*active{}
	reloaded := false
	for _, row := range rows {
		a, err := s.activate(row)
		if err != nil && !reloaded {
			// A topic defined through another process: load and retry.
			reloaded = true
			if lerr := s.loadUserTopics(ctx); lerr != nil {
				return lerr
			}
			a, err = s.activate(row)
		}
		if err != nil {
			s.log.Warn("subscription not matched", "subscription", row.ID, "err", err)
			continue
		}
		subs[row.ID] = a
	}
	s.mu.Lock()
	s.subs, s.stamp = subs, stamp
	s.mu.Unlock()
	return nil
}

// activate compiles a subscription row for matching.
func (s *Service) activate(row subdb.Sub) (*active, error) {
	var cfg settings
	if err := json.Unmarshal(row.Config, &cfg); err != nil {
		return nil, err
	}
	t := s.topic(cfg.Topic)
	if t == nil {
		return nil, errUnknownTopic(cfg.Topic)
	}
	a := &active{id: row.ID, status: row.Status, channel: row.Channel, cfg: &cfg, topic: t, caller: s.en.CallerFor(cfg.Owner.Grant())}
	for _, f := range cfg.Filters {
		flt, err := s.compileFilter(t, f)
		if err != nil {
			return nil, err
		}
		a.filters = append(a.filters, flt)
	}
	return a, nil
}

type errUnknownTopic string

func (e errUnknownTopic) Error() string { return "unknown topic " + string(e) }

// syncSub keeps a subscription's row in step with a new version of its
// resource (removed with it), and the dispatcher's view with the row.
func (s *Service) syncSub(ctx context.Context, r *subdb.Round, c *subdb.Change) error {
	if c.Method == store.MethodDelete {
		s.mu.Lock()
		delete(s.subs, c.ID)
		s.mu.Unlock()
		return r.Remove(ctx, c.ID)
	}
	if c.Content == nil {
		return nil // purged
	}
	sub, cfg, err := readConfig(c.Content)
	if err != nil {
		s.log.Warn("stored subscription unreadable", "subscription", c.ID, "err", err)
		return nil
	}
	cfg.Owner = readOwner(c.Content)
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	row := subdb.Sub{ID: c.ID, Version: c.Version, Status: sub.Status, Channel: cfg.Channel, Config: raw}
	if err := r.Put(ctx, row); err != nil {
		return err
	}
	a, err := s.activate(row)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		delete(s.subs, c.ID)
		s.log.Warn("subscription not matched", "subscription", c.ID, "err", err)
		return nil
	}
	s.subs[c.ID] = a
	s.stamp = "" // the row changed: reload at the next round
	return nil
}

// afterMatch counts the events matched and wakes delivery.
func (s *Service) afterMatch(events []subdb.Event) {
	s.mu.RLock()
	for _, e := range events {
		if a := s.subs[e.Subscription]; a != nil {
			s.m.matched.WithLabelValues(a.channel).Inc()
		}
	}
	s.mu.RUnlock()
	kick(s.deliver)
	s.hub.wake()
}
