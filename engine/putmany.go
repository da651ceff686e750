package engine

import (
	"context"
	"slices"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// InBulkTx is InTx for bulk loads: the transaction commits without waiting
// for its WAL flush (see store.Store.InBulkTx); the loader calls
// WaitDurable once at the end before it reports success.
func (en *Engine) InBulkTx(ctx context.Context, caller *Caller, fn func(*Tx) error) error {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return err
	}
	return en.store.InBulkTx(ctx, func(tx *store.Tx) error {
		return fn(&Tx{en: en, ctx: ctx, tx: tx})
	})
}

// WaitDurable waits until every commit so far is flushed to disk.
func (en *Engine) WaitDurable(ctx context.Context) error { return en.store.WaitDurable(ctx) }

// PutMany writes resources with the effect of putting them one by one in
// order: each under its own id as an update-as-create (so loading twice
// does not duplicate), or created when it has none. It is the bulk form
// ember import uses: resources whose id is not stored yet (the bulk of a
// first load) are loaded with COPY (store.Tx.CopyCreate); those stored
// already (a re-load) are updated together (UpdateMany); the rest (ids
// repeated in the list, resources without an id) go one by one, after the
// first copy of their id. The store's guard checks every write as it does
// for a single one. A concurrent writer creating one of the ids in between
// makes CopyCreate fail: retry the resources one by one (Put).
func (tx *Tx) PutMany(resources []*fhir.Resource) error {
	resources = slices.Clone(resources)
	for i, r := range resources {
		r, err := tx.en.admit(tx.ctx, r)
		if err != nil {
			return err
		}
		if err := refuseAuditForgery(tx.ctx, r); err != nil {
			return err
		}
		resources[i] = r
	}
	ctx, t := tx.ctx, tx.tx
	keys := make([]store.ResourceKey, 0, len(resources))
	for _, r := range resources {
		if id := r.ID(); id != "" {
			keys = append(keys, store.ResourceKey{Type: r.Type(), ID: id})
		}
	}
	exists, err := t.Existing(ctx, keys)
	if err != nil {
		return err
	}
	var fresh, stored []store.NewResource
	var rest []*fhir.Resource
	seen := make(map[store.ResourceKey]bool, len(resources))
	for _, r := range resources {
		k := store.ResourceKey{Type: r.Type(), ID: r.ID()}
		if k.ID == "" || seen[k] {
			rest = append(rest, r)
			continue
		}
		seen[k] = true
		if exists[k] {
			stored = append(stored, store.NewResource{Res: r, ID: k.ID})
		} else {
			fresh = append(fresh, store.NewResource{Res: r, ID: k.ID})
		}
	}
	for _, s := range stored {
		if err := refuseAuditEdit(ctx, t, s.Res.Type(), s.ID); err != nil {
			return err
		}
	}
	if _, err := t.CopyCreate(ctx, fresh); err != nil {
		return err
	}
	if _, _, err := t.UpdateMany(ctx, stored); err != nil {
		return err
	}
	for _, r := range rest {
		if err := tx.Put(r); err != nil {
			return err
		}
	}
	return nil
}

// Put writes one resource: under its id when it has one (an update, or an
// update-as-create), else created with a fresh id.
func (tx *Tx) Put(r *fhir.Resource) error {
	r, err := tx.en.admit(tx.ctx, r)
	if err != nil {
		return err
	}
	if id := r.ID(); id != "" {
		_, _, err := tx.tx.Update(tx.ctx, r, id, 0)
		return err
	}
	_, err = tx.tx.Create(tx.ctx, r)
	return err
}
