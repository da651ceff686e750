// Package dicomdb holds the queries on the DICOM metadata tables that
// store/migrations defines (00004, 00008, 00009): the ingest upsert with its
// overwrite policy, the reads and marks of the ImagingStudy sync, QIDO-RS and
// C-FIND matching, instance lookups for retrieval, and the orphan-blob sweep.
//
// Depends on store (its pool and transactions) and pgx. Package dicom calls
// it and holds no SQL itself: the tables' schema and their queries live side
// by side in the storage layer, where a change to one shows in the other.
package dicomdb

import (
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/emberfhir/ember/store"
)

// Sentinel errors.
var (
	// ErrNotFound: no such study or instance.
	ErrNotFound = errors.New("dicomdb: not found")
	// ErrOverwriteRefused: SaveInstance found the instance stored with
	// other data, and its Replace policy kept the stored one.
	ErrOverwriteRefused = errors.New("dicomdb: overwrite refused")
)

// DB runs the DICOM metadata queries on a store's database. It is safe for
// concurrent use.
type DB struct {
	pool *pgxpool.Pool
}

// New returns the DICOM metadata queries of st.
func New(st *store.Store) *DB { return &DB{pool: st.Pool()} }
