package engine

import (
	"errors"

	"github.com/emberfhir/ember/store"
)

// StoreTx is the database transaction under tx, for a producer's own
// tables written in the same transaction (DICOM locks and marks its study
// rows through store/dicomdb while its ImagingStudy is written), and for a
// System producer's plain searches, which have no typed engine form yet
// (searches through it apply no Caller's grant). Resource writes must use
// the engine's methods (Create, Update, Delete, Patch, Put), or they would
// skip its conditional locks and authorisation.
func (tx *Tx) StoreTx() *store.Tx { return tx.tx }

// IsMultipleMatches reports whether err is a conditional interaction's
// "the condition matches more than one resource", for producers that
// resolve that case themselves rather than fail.
func IsMultipleMatches(err error) bool { return errors.Is(err, errMultipleMatches) }
