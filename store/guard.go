package store

import (
	"context"
	"errors"

	"github.com/emberfhir/ember/fhir/search"
)

// WriteOp names the kind of write a Guard is asked about.
type WriteOp int

// The writes a Guard checks.
const (
	OpCreate WriteOp = iota
	OpUpdate
	OpDelete
)

// Guard is the access policy of one request (its SMART grant). The store
// consults the guard a context carries on every read, search, history and
// write, so no path through the server — REST, bundles, operations,
// includes, conditional references — can reach data the policy hides.
// Contexts without a guard (background jobs, the CLI, auth mode none) are
// unrestricted.
type Guard interface {
	// Confine narrows a search before it runs, or refuses it.
	Confine(ctx context.Context, q *search.Query) error
	// Visible reports whether a stored version may be returned; an error
	// refuses the whole request (e.g. no scope for the type). content is
	// nil for a deletion tombstone.
	Visible(ctx context.Context, typ, id string, content []byte) (bool, error)
	// CheckWrite allows or refuses a write: content is the new version (nil
	// for a delete), old the current one (nil when there is none).
	CheckWrite(ctx context.Context, op WriteOp, typ, id string, content, old []byte) error
}

type guardKey struct{}

// WithGuard returns ctx carrying g.
func WithGuard(ctx context.Context, g Guard) context.Context {
	return context.WithValue(ctx, guardKey{}, g)
}

// WithoutGuard returns ctx with no guard, for a guard's own lookups.
func WithoutGuard(ctx context.Context) context.Context {
	if guardOf(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, guardKey{}, nil)
}

func guardOf(ctx context.Context) Guard {
	g, _ := ctx.Value(guardKey{}).(Guard)
	return g
}

// visible applies ctx's guard to a version read from the database: a hidden
// one reads as not found, so its existence does not leak either.
func visible(ctx context.Context, v Version, err error) (Version, error) {
	g := guardOf(ctx)
	if g == nil || (err != nil && !errors.Is(err, ErrDeleted)) {
		return v, err
	}
	var content []byte
	if !v.Deleted {
		content = v.Content
	}
	ok, gerr := g.Visible(ctx, v.Type, v.ID, content)
	if gerr != nil {
		return Version{Type: v.Type, ID: v.ID}, gerr
	}
	if !ok {
		return Version{Type: v.Type, ID: v.ID}, ErrNotFound
	}
	return v, err
}

// checkWrite asks ctx's guard about a write; old is read only when a guard
// needs it.
func (t *Tx) checkWrite(ctx context.Context, op WriteOp, typ, id string, content []byte) error {
	g := guardOf(ctx)
	if g == nil {
		return nil
	}
	var old []byte
	if op != OpCreate {
		if v, err := read(ctx, t.tx, typ, id); err == nil {
			old = v.Content
		} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrDeleted) {
			return err
		}
	}
	return g.CheckWrite(ctx, op, typ, id, content, old)
}
