package engine

import (
	"context"
	"errors"
	"strconv"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// Read returns the current version of typ/id: the stored bytes, never
// re-serialised. A resource the caller cannot see is NotFound, as if
// absent; a deleted one is Gone, with the tombstone's version.
func (en *Engine) Read(ctx context.Context, caller *Caller, typ, id string) (store.Version, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return store.Version{}, err
	}
	v, err := en.store.Read(ctx, typ, id)
	return v, versionError(v, err)
}

// VRead returns version vid of typ/id.
func (en *Engine) VRead(ctx context.Context, caller *Caller, typ, id string, vid int64) (store.Version, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return store.Version{}, err
	}
	v, err := en.store.VRead(ctx, typ, id, vid)
	return v, versionError(v, err)
}

// versionError maps a read's store errors for the REST read and vread.
func versionError(v store.Version, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fhir.Missing(notFoundText(v))
	case errors.Is(err, store.ErrDeleted):
		return fhir.NewError(fhir.Gone, "deleted", v.Type+"/"+v.ID+" was deleted (version "+strconv.FormatInt(v.VersionID, 10)+")")
	}
	return err
}

// readError maps a read's store errors for Bundle entries and patches.
func readError(v store.Version, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fhir.Missing(notFoundText(v))
	case errors.Is(err, store.ErrDeleted):
		return fhir.NewError(fhir.Gone, "deleted", v.Type+"/"+v.ID+" was deleted")
	}
	return err
}

func notFoundText(v store.Version) string {
	if v.VersionID > 0 {
		return "version " + strconv.FormatInt(v.VersionID, 10) + " of " + v.Type + "/" + v.ID + " is not known"
	}
	return v.Type + "/" + v.ID + " is not known"
}
