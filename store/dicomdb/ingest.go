package dicomdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Study is a study row: the patient and general study module attributes as
// received ("" when absent).
type Study struct {
	UID                                            string
	PatientID, Issuer, PatientName, BirthDate, Sex string // Issuer: IssuerOfPatientID
	Date, Time, Accession, StudyID, Description    string
	Referring, TZOffset                            string // TZOffset: TimezoneOffsetFromUTC
}

// Series is a series row's attributes.
type Series struct {
	UID                                         string
	Modality, Description, BodyPart, Laterality string
	Number                                      *int // nil: absent
}

// Instance is an instance row's attributes as ingest writes them.
type Instance struct {
	SOPUID, SOPClass, TransferSyntax string
	Number, Rows, Columns, Frames    *int // nil: absent
	BlobKey                          string
	Size                             int64
	// PixelOffset is where the PixelData value starts in the blob, -1 when
	// the instance has none; PixelLength is its length, -1 when undefined
	// (encapsulated).
	PixelOffset, PixelLength int64
	// SourceAE is the calling AE of a C-STORE, "" for DICOMweb.
	SourceAE string
	// Digest is the SHA-256 of the data set; nil when not computed.
	Digest []byte
}

// Record is one received instance with its series and study: what one
// ingest stores.
type Record struct {
	Study    Study
	Series   Series
	Instance Instance
}

// Replace is when SaveInstance may replace a stored instance with a
// different data set (the same data set, by Digest, always replaces).
type Replace uint8

// Replace policies.
const (
	ReplaceAlways     Replace = iota // any source may replace
	ReplaceSameSource                // only the SourceAE that stored it
	ReplaceNever                     // the first data set stays
)

// sql is the policy as the upsert statement's $16 reads it.
func (r Replace) sql() string {
	switch r {
	case ReplaceSameSource:
		return "same-ae"
	case ReplaceNever:
		return "never"
	}
	return "any"
}

// Saved is what SaveInstance replaced.
type Saved struct {
	// ReplacedBlobKey is the blob of the instance this one replaced ("" if
	// it is new); the caller deletes it once it differs from the new one.
	ReplacedBlobKey string
	// MovedFromStudyUID: the replaced instance belonged to this other
	// study, now marked for an ImagingStudy sync.
	MovedFromStudyUID string
}

// SaveInstance upserts the study, series and instance rows of rec in one
// implicit transaction (one round trip). An existing instance with the same
// SOP Instance UID is replaced as replace allows; when it refuses, nothing
// changes and the error wraps ErrOverwriteRefused.
//
// Study and series rows are inserted once and updated only when a value
// changes (the latest non-empty value wins), so parallel ingests of one
// study do not queue on its row; the study row is then held FOR SHARE, which
// holds off a concurrent sync (LockStudy: FOR UPDATE) until this commits.
func (db *DB) SaveInstance(ctx context.Context, rec *Record, replace Replace) (Saved, error) {
	st, se, in := &rec.Study, &rec.Series, &rec.Instance
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO dicom_studies (study_uid, patient_id, issuer, patient_name, birth_date, sex,
		study_date, study_time, accession, study_id, description, referring, tz_offset)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT (study_uid) DO NOTHING`,
		st.UID, st.PatientID, st.Issuer, st.PatientName, st.BirthDate, st.Sex,
		st.Date, st.Time, st.Accession, st.StudyID, st.Description, st.Referring, st.TZOffset)
	b.Queue(`UPDATE dicom_studies st SET
		  patient_id = COALESCE(NULLIF($2,''), st.patient_id), issuer = COALESCE(NULLIF($3,''), st.issuer),
		  patient_name = COALESCE(NULLIF($4,''), st.patient_name), birth_date = COALESCE(NULLIF($5,''), st.birth_date),
		  sex = COALESCE(NULLIF($6,''), st.sex), study_date = COALESCE(NULLIF($7,''), st.study_date),
		  study_time = COALESCE(NULLIF($8,''), st.study_time), accession = COALESCE(NULLIF($9,''), st.accession),
		  study_id = COALESCE(NULLIF($10,''), st.study_id), description = COALESCE(NULLIF($11,''), st.description),
		  referring = COALESCE(NULLIF($12,''), st.referring), tz_offset = COALESCE(NULLIF($13,''), st.tz_offset),
		  updated_at = now()
		WHERE st.study_uid = $1 AND ROW(st.patient_id, st.issuer, st.patient_name, st.birth_date, st.sex, st.study_date,
		  st.study_time, st.accession, st.study_id, st.description, st.referring, st.tz_offset) IS DISTINCT FROM
		  ROW(COALESCE(NULLIF($2,''), st.patient_id), COALESCE(NULLIF($3,''), st.issuer), COALESCE(NULLIF($4,''), st.patient_name),
		  COALESCE(NULLIF($5,''), st.birth_date), COALESCE(NULLIF($6,''), st.sex), COALESCE(NULLIF($7,''), st.study_date),
		  COALESCE(NULLIF($8,''), st.study_time), COALESCE(NULLIF($9,''), st.accession), COALESCE(NULLIF($10,''), st.study_id),
		  COALESCE(NULLIF($11,''), st.description), COALESCE(NULLIF($12,''), st.referring), COALESCE(NULLIF($13,''), st.tz_offset))`,
		st.UID, st.PatientID, st.Issuer, st.PatientName, st.BirthDate, st.Sex,
		st.Date, st.Time, st.Accession, st.StudyID, st.Description, st.Referring, st.TZOffset)
	b.Queue(`SELECT 1 FROM dicom_studies WHERE study_uid = $1 FOR SHARE`, st.UID)
	b.Queue(`INSERT INTO dicom_series (series_uid, study_uid, modality, series_number, description, body_part, laterality)
		VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (series_uid) DO NOTHING`,
		se.UID, st.UID, se.Modality, se.Number, se.Description, se.BodyPart, se.Laterality)
	b.Queue(`UPDATE dicom_series se SET study_uid = $2,
		  modality = COALESCE(NULLIF($3,''), se.modality), series_number = COALESCE($4, se.series_number),
		  description = COALESCE(NULLIF($5,''), se.description), body_part = COALESCE(NULLIF($6,''), se.body_part),
		  laterality = COALESCE(NULLIF($7,''), se.laterality)
		WHERE se.series_uid = $1 AND ROW(se.study_uid, se.modality, se.series_number, se.description, se.body_part, se.laterality)
		  IS DISTINCT FROM ROW($2::text, COALESCE(NULLIF($3,''), se.modality), COALESCE($4, se.series_number),
		  COALESCE(NULLIF($5,''), se.description), COALESCE(NULLIF($6,''), se.body_part), COALESCE(NULLIF($7,''), se.laterality))`,
		se.UID, st.UID, se.Modality, se.Number, se.Description, se.BodyPart, se.Laterality)
	var px, pl *int64
	if in.PixelOffset >= 0 {
		px, pl = &in.PixelOffset, &in.PixelLength
	}
	// A replaced instance that moves to another study bumps its old study
	// too, so that study's ImagingStudy is rebuilt without it.
	//
	// The overwrite policy is decided on the conflicting row itself, under
	// its lock, so concurrent stores cannot slip past it: the same data set
	// always replaces (and keeps its first source); other data only as
	// $16 allows. A refused replace raises (dicom_refuse_overwrite), which
	// rolls the whole batch back, study and series updates included.
	b.Queue(`WITH old AS (SELECT blob_key, study_uid FROM dicom_instances WHERE sop_uid = $1),
		ins AS (INSERT INTO dicom_instances AS cur (sop_uid, series_uid, study_uid, sop_class, instance_number, transfer_syntax,
		  rows, columns, frames, blob_key, size, pixel_offset, pixel_length, source_ae, digest)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
		ON CONFLICT (sop_uid) DO UPDATE SET series_uid = EXCLUDED.series_uid, study_uid = EXCLUDED.study_uid,
		  sop_class = EXCLUDED.sop_class, instance_number = EXCLUDED.instance_number,
		  transfer_syntax = EXCLUDED.transfer_syntax, rows = EXCLUDED.rows, columns = EXCLUDED.columns,
		  frames = EXCLUDED.frames, blob_key = EXCLUDED.blob_key, size = EXCLUDED.size,
		  pixel_offset = EXCLUDED.pixel_offset, pixel_length = EXCLUDED.pixel_length,
		  source_ae = CASE WHEN cur.digest = EXCLUDED.digest THEN cur.source_ae ELSE EXCLUDED.source_ae END,
		  digest = EXCLUDED.digest, seq = EXCLUDED.seq, created_at = now()
		  WHERE $16 = 'any' OR cur.digest = EXCLUDED.digest OR ($16 = 'same-ae' AND cur.source_ae = EXCLUDED.source_ae)
		RETURNING 1),
		moved AS (UPDATE dicom_studies SET force_sync = true, updated_at = now()
		  WHERE study_uid = (SELECT study_uid FROM old) AND study_uid <> $3 RETURNING study_uid)
		SELECT COALESCE((SELECT blob_key FROM old), ''), COALESCE((SELECT study_uid FROM moved), ''),
		  CASE WHEN (SELECT count(*) FROM ins) = 0 THEN dicom_refuse_overwrite($1) ELSE 1 END`,
		in.SOPUID, se.UID, st.UID, in.SOPClass, in.Number, in.TransferSyntax,
		in.Rows, in.Columns, in.Frames, in.BlobKey, in.Size, px, pl, in.SourceAE, in.Digest, replace.sql())
	// A batch ends in one Sync, so PostgreSQL runs it as one implicit
	// transaction: all rows or none, in a single round trip.
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()
	for i := 0; i < 5; i++ {
		if _, err := br.Exec(); err != nil {
			return Saved{}, fmt.Errorf("dicomdb: save metadata: %w", err)
		}
	}
	var saved Saved
	var inserted int
	if err := br.QueryRow().Scan(&saved.ReplacedBlobKey, &saved.MovedFromStudyUID, &inserted); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.ConstraintName == "dicom_instances_overwrite" {
			err = fmt.Errorf("%w: %s", ErrOverwriteRefused, pe.Message)
		}
		return Saved{}, fmt.Errorf("dicomdb: save instance: %w", err)
	}
	if err := br.Close(); err != nil {
		return Saved{}, fmt.Errorf("dicomdb: save metadata: %w", err)
	}
	return saved, nil
}
