package engine

import (
	"context"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/smart/scope"
)

// Admitter has its say on resources of one type before they are written,
// on every write path (create, update, patch, transaction and batch
// entries, PutMany): the subscriptions service admits Subscriptions (a
// topic it knows, a channel and filters it can serve; the status and owner
// the server sets) and the topics users define. It returns the resource to
// store, which may differ from res (server-set elements), or a fhir.Error
// naming the element that cannot be accepted.
type Admitter interface {
	Admit(ctx context.Context, caller *Caller, res *fhir.Resource) (*fhir.Resource, error)
}

// SetAdmitter makes a the Admitter of resources of type typ. Call it before
// serving (like Register).
func (en *Engine) SetAdmitter(typ string, a Admitter) {
	if en.admitters == nil {
		en.admitters = map[string]Admitter{}
	}
	en.admitters[typ] = a
}

// admit runs the write-time checks every path shares on a resource about
// to be written: the profile policy, then its type's Admitter.
func (en *Engine) admit(ctx context.Context, res *fhir.Resource) (*fhir.Resource, error) {
	if err := en.checkProfiles(res); err != nil {
		return nil, err
	}
	a := en.admitters[res.Type()]
	if a == nil {
		return res, nil
	}
	return a.Admit(ctx, callerOf(ctx), res)
}

type callerKey struct{}

// callerOf is the Caller a context was bound to (System when none).
func callerOf(ctx context.Context) *Caller {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok {
		return c
	}
	return System
}

// CallerFor returns a Caller that enforces g without the token cache
// Grant keeps: for a grant held beyond its request, such as the owner of
// a subscription, whose notifications are filtered by what it may read at
// delivery time.
func (en *Engine) CallerFor(g *access.Grant) *Caller {
	if g == nil {
		return System
	}
	return &Caller{p: &policy{en: en, grant: g, scopes: scope.ParseSet(g.Scopes)}}
}

// Visible reports whether the caller may read the given version of a
// resource (content nil for a deletion, which shows no compartment):
// the same decision the store's guard makes on every read.
func (c *Caller) Visible(ctx context.Context, typ, id string, content []byte) (bool, error) {
	p := c.policy()
	if p == nil {
		return true, nil
	}
	return p.Visible(ctx, typ, id, content)
}
