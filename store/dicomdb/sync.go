package dicomdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/emberfhir/ember/store"
)

// Each instance row carries a sequence number (renewed when it is
// replaced); a study's ImagingStudy was built from the instances up to its
// synced_seq. A study is stale when an instance is newer than that, or
// force_sync says it lost an instance to another study.

// StaleStudies lists the studies whose ImagingStudy is behind their
// instances, in no particular order.
func (db *DB) StaleStudies(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT st.study_uid FROM dicom_studies st WHERE st.force_sync
		OR EXISTS (SELECT 1 FROM dicom_instances i WHERE i.study_uid = st.study_uid AND i.seq > st.synced_seq)`)
	if err != nil {
		return nil, fmt.Errorf("dicomdb: stale studies: %w", err)
	}
	uids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("dicomdb: stale studies: %w", err)
	}
	return uids, nil
}

// LockedStudy is a study as its ImagingStudy is built from it: the study
// row, locked, and its series and instances in order.
type LockedStudy struct {
	Study
	// SyncedSeq: the ImagingStudy was built from the instances up to it.
	// MaxSeq: the newest instance's (0 when the study has none).
	SyncedSeq, MaxSeq int64
	// ForceSync: the study lost an instance to another study.
	ForceSync bool
	// Series in SeriesNumber order (absent last), then UID; each with its
	// instances in InstanceNumber order (absent last), then UID.
	Series []*SeriesInstances
}

// Stale reports whether the ImagingStudy is behind the study's instances.
func (s *LockedStudy) Stale() bool { return s.ForceSync || s.MaxSeq > s.SyncedSeq }

// SeriesInstances is a series and its instances.
type SeriesInstances struct {
	Series
	Instances []InstanceRef
}

// InstanceRef is what an ImagingStudy lists of an instance.
type InstanceRef struct {
	SOPUID, SOPClass string
	Number           *int // nil: absent
}

// LockStudy reads a study with its series and instances inside tx, holding
// its row FOR UPDATE: that waits for the ingests of the study in flight
// (they hold it FOR SHARE), so every instance below the highest seq read is
// visible, and serialises syncs of one study. ErrNotFound: no such study.
func (db *DB) LockStudy(ctx context.Context, tx *store.Tx, uid string) (*LockedStudy, error) {
	q := tx.DB()
	st := &LockedStudy{Study: Study{UID: uid}}
	err := q.QueryRow(ctx, `SELECT patient_id, issuer, patient_name, birth_date, sex, study_date, study_time,
		accession, study_id, description, referring, tz_offset, synced_seq, force_sync
		FROM dicom_studies WHERE study_uid = $1 FOR UPDATE`, uid).
		Scan(&st.PatientID, &st.Issuer, &st.PatientName, &st.BirthDate, &st.Sex, &st.Date, &st.Time,
			&st.Accession, &st.StudyID, &st.Description, &st.Referring, &st.TZOffset, &st.SyncedSeq, &st.ForceSync)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("dicomdb: load study: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT se.series_uid, se.modality, se.description, se.body_part, se.laterality, se.series_number,
		i.sop_uid, i.sop_class, i.instance_number, i.seq
		FROM dicom_series se JOIN dicom_instances i ON i.series_uid = se.series_uid
		WHERE se.study_uid = $1 AND i.study_uid = $1
		ORDER BY se.series_number NULLS LAST, se.series_uid, i.instance_number NULLS LAST, i.sop_uid`, uid)
	if err != nil {
		return nil, fmt.Errorf("dicomdb: load series: %w", err)
	}
	defer rows.Close()
	var cur *SeriesInstances
	for rows.Next() {
		var se SeriesInstances
		var in InstanceRef
		var seq int64
		if err := rows.Scan(&se.UID, &se.Modality, &se.Description, &se.BodyPart, &se.Laterality, &se.Number,
			&in.SOPUID, &in.SOPClass, &in.Number, &seq); err != nil {
			return nil, fmt.Errorf("dicomdb: load series: %w", err)
		}
		st.MaxSeq = max(st.MaxSeq, seq)
		if cur == nil || cur.UID != se.UID {
			cur = &se
			st.Series = append(st.Series, cur)
		}
		cur.Instances = append(cur.Instances, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dicomdb: load series: %w", err)
	}
	return st, nil
}

// MarkSynced records, inside the transaction that wrote the study's
// ImagingStudy, that it was built from the instances up to seq.
func (db *DB) MarkSynced(ctx context.Context, tx *store.Tx, uid string, seq int64) error {
	if _, err := tx.DB().Exec(ctx, `UPDATE dicom_studies SET synced_seq = $2, force_sync = false WHERE study_uid = $1`,
		uid, seq); err != nil {
		return fmt.Errorf("dicomdb: mark study synced: %w", err)
	}
	return nil
}
