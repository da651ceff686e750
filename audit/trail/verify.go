package trail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emberfhir/ember/store/auditdb"
)

// Report is what Verify found.
type Report struct {
	// From is the first link walked; Events how many were checked.
	From, Events int64
	// Checkpoints is how many signed checkpoints verified.
	Checkpoints int
	// Broken is the first break found; nil when the chain is intact.
	Broken *Break
}

// Break names the first link that does not hold.
type Break struct {
	Seq     int64  // 0 when the break is an event outside the chain
	EventID string // the AuditEvent's id, when there is one
	Reason  string
}

func (b *Break) String() string {
	s := ""
	if b.Seq > 0 {
		s = fmt.Sprintf("link %d", b.Seq)
	}
	if b.EventID != "" {
		if s != "" {
			s += " "
		}
		s += "(AuditEvent/" + b.EventID + ")"
	}
	return s + ": " + b.Reason
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Since starts the walk at the first link recorded at or after it
	// (zero: the whole chain, from the anchor retention left).
	Since time.Time
	// Keys resolves checkpoint signing keys; nil skips signature checks
	// (and says so: Checkpoints stays 0).
	Keys Keys
}

// errStop ends a walk at the first break.
var errStop = errors.New("stop")

// Verify walks the chain: links contiguous, each event present, unchanged
// (its hash recomputed from the stored row) and chained to the one before,
// every signed checkpoint valid and equal to the chain at its link, and no
// event with Ember's tag outside the chain.
func Verify(ctx context.Context, db *auditdb.DB, opts VerifyOptions) (Report, error) {
	var rep Report
	from, prev, err := db.Anchor(ctx)
	if err != nil {
		return rep, err
	}
	from++
	if !opts.Since.IsZero() {
		seq, p, ok, err := db.StartAt(ctx, opts.Since)
		if err != nil {
			return rep, err
		}
		if !ok {
			from = -1 // nothing that recent
		} else if seq > from {
			from, prev = seq, p
		}
	}
	rep.From = from
	cps := checkpointCursor{db: db, next: max(from, 0)}
	breakAt := func(b Break) error {
		rep.Broken = &b
		return errStop
	}
	if from >= 0 {
		next := from
		lastGood := from - 1
		err = db.Walk(ctx, from, func(e auditdb.ChainedEvent) error {
			if e.Seq != next {
				return breakAt(Break{Seq: next, Reason: fmt.Sprintf("missing: the chain jumps from link %d to %d (links deleted)", next-1, e.Seq)})
			}
			next++
			switch {
			case !e.Present:
				return breakAt(Break{Seq: e.Seq, EventID: e.EventID, Reason: "the event was deleted"})
			case e.Deleted || e.Content == nil:
				return breakAt(Break{Seq: e.Seq, EventID: e.EventID, Reason: "the event was deleted (a tombstone replaced it)"})
			}
			canon, err := Canonical(e.Content)
			if err != nil {
				return breakAt(Break{Seq: e.Seq, EventID: e.EventID, Reason: "the event was changed: it is no longer readable JSON"})
			}
			if prev == nil { // --since past a pruned or missing link: trust this one's place
				prev = e.Hash
			} else {
				h := LinkHash(prev, canon)
				if !bytes.Equal(h, e.Hash) {
					return breakAt(Break{Seq: e.Seq, EventID: e.EventID, Reason: "the event (or its link) was changed: its content no longer matches the link's hash"})
				}
				prev = h
			}
			rep.Events++
			cp, ok, err := cps.at(ctx, e.Seq)
			if err != nil {
				return err
			}
			if ok && opts.Keys != nil {
				if !bytes.Equal(cp.Hash, e.Hash) {
					return breakAt(Break{Seq: e.Seq, EventID: e.EventID, Reason: fmt.Sprintf(
						"the signed checkpoint here holds another hash: the chain was recomputed after the fact, after link %d (the last checkpoint that holds)", lastGood)})
				}
				lastGood = e.Seq
				if err := verifyCheckpoint(cp, opts.Keys); err != nil {
					return breakAt(Break{Seq: e.Seq, EventID: e.EventID, Reason: "checkpoint: " + err.Error()})
				}
				rep.Checkpoints++
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return rep, err
		}
		if rep.Broken != nil {
			return rep, nil
		}
		// A checkpoint beyond the last link: the tail was deleted.
		if cp, ok, err := cps.first(ctx, next); err != nil {
			return rep, err
		} else if ok {
			return rep, breakAtCheckpoint(&rep, cp)
		}
	}
	ids, err := db.Unchained(ctx, TagSystem, TagCode, 1)
	if err != nil {
		return rep, err
	}
	if len(ids) > 0 {
		rep.Broken = &Break{EventID: ids[0], Reason: "the event carries Ember's audit tag but has no link: it was inserted behind Ember's back"}
	}
	return rep, nil
}

func breakAtCheckpoint(rep *Report, cp auditdb.Checkpoint) error {
	rep.Broken = &Break{Seq: cp.Seq, Reason: "a signed checkpoint names this link, which is gone: the chain's tail was deleted"}
	return nil
}

// checkpointCursor reads checkpoints in seq order a page at a time, beside
// the walk over the links.
type checkpointCursor struct {
	db   *auditdb.DB
	page []auditdb.Checkpoint
	next int64 // the first seq not yet read
	done bool
}

// checkpointPage is how many checkpoints one read fetches (a variable: the
// paging test makes it small).
var checkpointPage = 1000

// at returns the checkpoint at seq, if there is one; seqs must not
// decrease between calls.
func (c *checkpointCursor) at(ctx context.Context, seq int64) (auditdb.Checkpoint, bool, error) {
	for {
		for len(c.page) > 0 && c.page[0].Seq < seq {
			c.page = c.page[1:]
		}
		if len(c.page) > 0 || c.done {
			break
		}
		if err := c.fill(ctx); err != nil {
			return auditdb.Checkpoint{}, false, err
		}
	}
	if len(c.page) > 0 && c.page[0].Seq == seq {
		return c.page[0], true, nil
	}
	return auditdb.Checkpoint{}, false, nil
}

// first returns the first checkpoint at or after seq.
func (c *checkpointCursor) first(ctx context.Context, seq int64) (auditdb.Checkpoint, bool, error) {
	if _, _, err := c.at(ctx, seq); err != nil {
		return auditdb.Checkpoint{}, false, err
	}
	if len(c.page) > 0 {
		return c.page[0], true, nil
	}
	return auditdb.Checkpoint{}, false, nil
}

func (c *checkpointCursor) fill(ctx context.Context) error {
	page, err := c.db.Checkpoints(ctx, c.next, checkpointPage)
	if err != nil {
		return err
	}
	c.page = page
	if len(page) < checkpointPage {
		c.done = true
	}
	if len(page) > 0 {
		c.next = page[len(page)-1].Seq + 1
	}
	return nil
}
