// Package trail writes Ember's audit trail: the accesses producers record
// (package audit) become FHIR AuditEvents (IHE BALP shapes), written off
// the request path in batches through the engine (the one write path:
// validated, indexed, searchable as AuditEvent), and chained: each event's
// link hashes the previous link's hash with the event's canonical JSON, and
// the chain's head is signed with the server's key at checkpoints, so
// Verify (`ember audit verify`) finds an event changed, deleted or inserted
// behind Ember's back.
//
// The writer groups the accesses of one interval by who did what to which
// patient with which outcome: one AuditEvent, whose period spans them and
// whose entities name every resource touched, so a server answering
// thousands of reads a second writes a handful of events, not thousands.
package trail

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/auditdb"
)

// Config configures a Trail.
type Config struct {
	// Store is the database retention prunes (the events are written
	// through the engine Start is given).
	Store *store.Store
	// Site is AuditEvent.source.site (the server's host name).
	Site string
	// Interval is how often accesses are written: the most a crash can
	// lose. 0 means one second.
	Interval time.Duration
	// Retention is how long events are kept; 0 keeps them for ever.
	Retention time.Duration
	// Signer signs checkpoints; nil writes none (Verify then checks only
	// the chain).
	Signer Signer
	// CheckpointEvery and CheckpointInterval: a checkpoint is signed once
	// this many links or this much time have passed since the last one
	// (0: 1000 links, one minute).
	CheckpointEvery    int64
	CheckpointInterval time.Duration
	// Buffer is how many accesses may wait for the writer; beyond it they
	// are dropped and counted (ember_audit_dropped_total). 0 means 65,536.
	Buffer   int
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Trail is the audit trail's writer: an audit.Recorder whose accesses a background
// loop groups and writes. Start it, and Close it to flush.
type Trail struct {
	cfg Config
	en  *engine.Engine // set by Start
	in  chan audit.Event
	m   *metrics

	mu      sync.Mutex
	pending map[groupKey]*group
	order   []*group // pending groups in arrival order
	entries int      // accesses in pending

	patients patientCache

	flushReq  chan chan error
	stop      chan struct{}
	done      chan struct{}
	started   bool
	closeOnce sync.Once
	closeCtx  context.Context // Close's: bounds the last write
}

// maxEntities bounds one AuditEvent's entities: a busy group is written
// as several events. The group itself gathers the whole interval's
// accesses, so a resource read a hundred times in it is named once.
const maxEntities = 500

// maxPending bounds the accesses held while the database is unreachable;
// beyond it the oldest groups are dropped and counted.
const maxPending = 1 << 20

// New returns a Trail; nothing is written until Start.
func New(cfg Config) (*Trail, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Store is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 1000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Minute
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1 << 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Trail{
		cfg:      cfg,
		in:       make(chan audit.Event, cfg.Buffer),
		pending:  map[groupKey]*group{},
		flushReq: make(chan chan error),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.m = newMetrics(cfg.Registry, t)
	return t, nil
}

// Record takes one access without blocking; when the buffer is full it is
// dropped and counted.
func (t *Trail) Record(e audit.Event) {
	if e.When.IsZero() {
		e.When = time.Now()
	}
	select {
	case t.in <- e:
		if int(e.Kind) < len(t.m.byKind) && t.m.byKind[e.Kind] != nil {
			t.m.byKind[e.Kind].Inc()
		}
	default:
		t.m.dropped.Inc()
	}
}

// Start runs the writer, which writes through en as engine.AuditTrail (and,
// with a Retention, the retention sweep) until Close. Accesses recorded
// before Start wait in the buffer.
func (t *Trail) Start(ctx context.Context, en *engine.Engine) {
	t.en = en
	t.started = true
	go t.run(context.WithoutCancel(ctx))
}

// Flush writes every access recorded so far, for tests and commands that
// exit.
func (t *Trail) Flush(ctx context.Context) error {
	if !t.started {
		return errors.New("audit: flush: the trail was not started")
	}
	reply := make(chan error, 1)
	select {
	case t.flushReq <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the writer after a last flush, waiting at most until ctx ends.
func (t *Trail) Close(ctx context.Context) error {
	if !t.started {
		return nil
	}
	t.closeOnce.Do(func() {
		t.closeCtx = ctx
		close(t.stop)
	})
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

func (t *Trail) run(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	var sweep <-chan time.Time
	if t.cfg.Retention > 0 {
		st := time.NewTicker(time.Hour)
		defer st.Stop()
		sweep = st.C
		t.prune(ctx)
	}
	for {
		select {
		case e := <-t.in:
			t.add(e)
		case <-tick.C:
			t.drain()
			if err := t.write(ctx); err != nil {
				t.cfg.Logger.Warn("audit: write failed; retrying", "err", err)
			}
		case reply := <-t.flushReq:
			t.drain()
			reply <- t.write(ctx)
		case <-sweep:
			t.prune(ctx)
		case <-t.stop:
			t.drain()
			wctx, cancel := context.WithoutCancel(ctx), context.CancelFunc(func() {})
			if d, ok := t.closeCtx.Deadline(); ok {
				wctx, cancel = context.WithDeadline(wctx, d)
			}
			if err := t.write(wctx); err != nil {
				t.cfg.Logger.Error("audit: last write failed", "err", err, "lost", t.entries)
				t.m.dropped.Add(float64(t.entries))
			}
			cancel()
			return
		}
	}
}

// drain moves every buffered access into its group.
func (t *Trail) drain() {
	for {
		select {
		case e := <-t.in:
			t.add(e)
		default:
			return
		}
	}
}

// add groups one access with those of the same who, what and patient.
func (t *Trail) add(e audit.Event) {
	if e.Patient == "" && e.Content != nil {
		e.Patient = t.patients.of(e.ContentType, e.ContentKey, e.Content)
	}
	if e.Bundle != nil {
		refs, patient := bundleEntities(e.Bundle)
		e.Entities = append(e.Entities, refs...)
		if e.Patient == "" {
			e.Patient = patient
		}
	}
	e.Content, e.Bundle = nil, nil
	k := keyOf(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.pending[k]
	if g == nil {
		g = &group{key: k, first: e.When, last: e.When}
		t.pending[k] = g
		t.order = append(t.order, g)
	}
	g.add(e)
	t.entries++
	for t.entries > maxPending && len(t.order) > 0 {
		old := t.order[0]
		t.order = t.order[1:]
		if t.pending[old.key] == old {
			delete(t.pending, old.key)
		}
		t.entries -= old.n
		t.m.dropped.Add(float64(old.n))
	}
}

// write writes the pending groups as AuditEvents with their links, in one
// transaction; on failure they stay pending for the next try.
func (t *Trail) write(ctx context.Context) error {
	t.mu.Lock()
	groups := t.order
	n := t.entries
	t.order, t.pending, t.entries = nil, map[groupKey]*group{}, 0
	t.mu.Unlock()
	if len(groups) == 0 {
		return nil
	}
	start := time.Now()
	written, err := t.append(ctx, groups)
	t.m.flush.Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.writeErrors.Inc()
		t.mu.Lock()
		// Put them back in front of anything recorded meanwhile; a later
		// access of the same key starts a group of its own.
		t.order = append(groups, t.order...)
		for _, g := range groups {
			if _, ok := t.pending[g.key]; !ok {
				t.pending[g.key] = g
			}
		}
		t.entries += n
		t.mu.Unlock()
		return err
	}
	t.m.written.Add(float64(written))
	return nil
}

// append writes groups through the engine and extends the chain, in one
// transaction.
func (t *Trail) append(ctx context.Context, groups []*group) (int, error) {
	parser := t.en.Parser()
	written := 0
	err := t.en.InTx(ctx, engine.AuditTrail, func(tx *engine.Tx) error {
		stx := tx.StoreTx()
		seq, prev, err := auditdb.Head(ctx, stx)
		if err != nil {
			return err
		}
		now := time.Now()
		links := make([]auditdb.Link, 0, len(groups))
		type built struct {
			body     []byte
			accesses int // of the group, on its first event
		}
		var bodies []built
		for _, g := range groups {
			bs, err := g.build(t.cfg.Site, now)
			if err != nil {
				return fmt.Errorf("audit: build event: %w", err)
			}
			for i, b := range bs {
				n := 0
				if i == 0 {
					n = g.n
				}
				bodies = append(bodies, built{b, n})
			}
		}
		for _, bt := range bodies {
			res, err := parser.Parse(bt.body, "AuditEvent")
			if err != nil {
				// A bug, or a value from a request no check caught: drop
				// this event, never the batch (it would block the trail).
				t.cfg.Logger.Error("audit: an event does not validate; dropped", "err", err)
				t.m.dropped.Add(float64(bt.accesses))
				continue
			}
			r, err := tx.Create(engine.CreateRequest{Resource: res})
			if err != nil {
				return fmt.Errorf("audit: write event: %w", err)
			}
			canon, err := Canonical(r.Version.Content)
			if err != nil {
				return err
			}
			seq++
			prev = LinkHash(prev, canon)
			links = append(links, auditdb.Link{Seq: seq, EventID: r.Version.ID, Recorded: now, Hash: prev})
		}
		if err := auditdb.Append(ctx, stx, links); err != nil {
			return err
		}
		written = len(links)
		return t.checkpoint(ctx, stx, seq, prev, now)
	})
	return written, err
}

// checkpoint signs the chain's head when enough links or time have passed
// since the last checkpoint.
func (t *Trail) checkpoint(ctx context.Context, tx *store.Tx, seq int64, hash []byte, now time.Time) error {
	if t.cfg.Signer == nil {
		return nil
	}
	last, at, err := auditdb.LastCheckpoint(ctx, tx)
	if err != nil {
		return err
	}
	if seq-last < t.cfg.CheckpointEvery && now.Sub(at) < t.cfg.CheckpointInterval {
		return nil
	}
	cp, err := signCheckpoint(t.cfg.Signer, seq, hash, now)
	if err != nil {
		return err
	}
	return auditdb.AddCheckpoint(ctx, tx, cp)
}

// prune deletes what is past retention, in batches.
func (t *Trail) prune(ctx context.Context) {
	db := auditdb.New(t.cfg.Store)
	cutoff := time.Now().Add(-t.cfg.Retention)
	total := 0
	for {
		n, err := db.Prune(ctx, t.cfg.Store, cutoff, 5000)
		if err != nil {
			t.cfg.Logger.Warn("audit: retention sweep failed", "err", err)
			return
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total > 0 {
		t.m.pruned.Add(float64(total))
		t.cfg.Logger.Info("audit: retention pruned events", "events", total, "before", cutoff)
	}
}

// backlog is how many accesses wait to be written.
func (t *Trail) backlog() float64 {
	t.mu.Lock()
	n := t.entries
	t.mu.Unlock()
	return float64(n + len(t.in))
}

// LinkHash is SHA-256(prev || canonical).
func LinkHash(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(nil)
}
