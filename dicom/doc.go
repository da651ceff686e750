// Package dicom ingests DICOM instances (from C-STORE and STOW-RS alike):
// Part-10 files go to a blob store, their QIDO attributes to PostgreSQL,
// and each study is mirrored as a FHIR ImagingStudy written through the
// engine.
//
// Depends on engine (every resource write, as engine.System), store/dicomdb
// (every query on the metadata tables: this package holds no SQL), fhir,
// gocloud.dev/blob and suyashkumar/dicom's data dictionary (for implicit VR
// only); dicom/web serves it over HTTP and dicom/dimse over DIMSE (Service
// implements dimse.Handler).
//
// Ingest streams: the bytes go to a fresh blob key as they are read while a
// small parser reads the header up to PixelData (values over 1 MB are
// skipped, 16 MB in all) and then checks the rest of the structure, so
// memory stays bounded whatever the instance size. The file is synced (for
// file:// URLs Ember writes the file itself, because fileblob does not sync:
// keys are unique per write, so it is created at its final path, with no
// rename, and the file and its directory are fsynced together) before one
// batched statement upserts the study, series and instance rows; if that
// fails the blob is deleted. A crash between the two, or during the write,
// can leave an unreferenced blob, never a row without its file; SweepOrphans
// deletes such blobs once they are old enough that no ingest can still be
// about to commit them.
//
// Study and series rows take the latest non-empty value of each attribute
// and are written only when one changes; ingests of one study hold its row
// FOR SHARE, so they run in parallel while a sync (FOR UPDATE) waits for
// them.
//
// The same SOP Instance UID again replaces the stored instance (latest
// copy wins; the old blob is deleted after the commit), so a corrected
// resend is not refused and nothing is duplicated. Over DIMSE, where a
// calling AE title is only a name the peer picks, Config.Overwrite limits
// that: by default only the AE that stored an instance may replace it with
// other data (each instance records its source AE and its data set's
// SHA-256); the same data set is accepted from anyone. A refused C-STORE is
// Duplicate SOP Instance (0x0111) and changes nothing. STOW-RS, whose
// callers hold create and update scopes, always replaces.
//
// ImagingStudy: each instance row carries a sequence number; a study whose
// newest is above the one its ImagingStudy was built from is stale. A
// debounced per-study timer (Config.SyncDelay after the last instance, at
// most 5 s after the first) or an explicit Sync/Flush rebuilds it from the tables
// and writes it with id = StudyInstanceUID, so a burst of instances makes
// one version. Patient: identifier PatientID with system urn:oid:<issuer>
// (IssuerOfPatientID as an OID), urn:dicom:issuer:<issuer>, or
// Config.PatientIDSystem (default urn:dicom:patient-id); created from the
// patient module when absent. The Patient and the DICOMweb Endpoint are the
// engine's conditional creates on that identifier, in the sync's one
// transaction with the study rows and the ImagingStudy: the same condition,
// lock and rules as a REST If-None-Exist: identifier=system|value, so a
// push and a REST client creating the same patient make one Patient. Where
// several resources already carry the identifier (REST would refuse with
// multiple matches) the sync links the oldest and logs a warning, so
// studies keep arriving while an administrator merges the duplicates. StudyDate/StudyTime are read in
// TimezoneOffsetFromUTC when present, else Config.Location (default UTC).
package dicom

import (
	"net/url"
	"path/filepath"
)

// DefaultBlobURL is the blob store under a data directory: file://<dir>/dicom.
func DefaultBlobURL(dataDir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dataDir, "dicom"))
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
}
