package dicomdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Stored is a stored instance's location and pixel layout.
type Stored struct {
	StudyUID, SeriesUID, SOPUID, SOPClass, TransferSyntax string
	BlobKey                                               string
	Size                                                  int64
	PixelOffset, PixelLength                              int64 // -1: none / undefined length
	Rows, Columns, Frames                                 int   // Frames ≥ 1
}

// Instances lists the stored instances of a study, optionally narrowed to a
// series and an instance ("" = all), in series and instance order.
func (db *DB) Instances(ctx context.Context, study, series, sop string) ([]Stored, error) {
	rows, err := db.pool.Query(ctx, `SELECT i.study_uid, i.series_uid, i.sop_uid, i.sop_class, i.transfer_syntax,
		i.blob_key, i.size, COALESCE(i.pixel_offset, -1), COALESCE(i.pixel_length, -1),
		COALESCE(i.rows, 0), COALESCE(i.columns, 0), COALESCE(i.frames, 1)
		FROM dicom_instances i JOIN dicom_series se ON se.series_uid = i.series_uid
		WHERE i.study_uid = $1 AND ($2 = '' OR i.series_uid = $2) AND ($3 = '' OR i.sop_uid = $3)
		ORDER BY se.series_number NULLS LAST, i.series_uid, i.instance_number NULLS LAST, i.sop_uid`, study, series, sop)
	if err != nil {
		return nil, fmt.Errorf("dicomdb: instances: %w", err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var st Stored
		if err := rows.Scan(&st.StudyUID, &st.SeriesUID, &st.SOPUID, &st.SOPClass, &st.TransferSyntax, &st.BlobKey, &st.Size,
			&st.PixelOffset, &st.PixelLength, &st.Rows, &st.Columns, &st.Frames); err != nil {
			return nil, fmt.Errorf("dicomdb: instances: %w", err)
		}
		if st.Frames < 1 {
			st.Frames = 1
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dicomdb: instances: %w", err)
	}
	return out, nil
}

// Instance returns one stored instance by SOP Instance UID; ErrNotFound
// when there is none.
func (db *DB) Instance(ctx context.Context, sopUID string) (Stored, error) {
	var st Stored
	err := db.pool.QueryRow(ctx, `SELECT study_uid, series_uid, sop_uid, sop_class, transfer_syntax, blob_key, size,
		COALESCE(pixel_offset, -1), COALESCE(pixel_length, -1), COALESCE(rows, 0), COALESCE(columns, 0), COALESCE(frames, 1)
		FROM dicom_instances WHERE sop_uid = $1`, sopUID).
		Scan(&st.StudyUID, &st.SeriesUID, &st.SOPUID, &st.SOPClass, &st.TransferSyntax, &st.BlobKey, &st.Size,
			&st.PixelOffset, &st.PixelLength, &st.Rows, &st.Columns, &st.Frames)
	if errors.Is(err, pgx.ErrNoRows) {
		return Stored{}, ErrNotFound
	}
	if err != nil {
		return Stored{}, fmt.Errorf("dicomdb: instance %s: %w", sopUID, err)
	}
	if st.Frames < 1 {
		st.Frames = 1
	}
	return st, nil
}

// UnreferencedBlobs returns the keys, of those given, that no instance
// names (the orphan sweep's question; one index probe per key, one round
// trip per call).
func (db *DB) UnreferencedBlobs(ctx context.Context, keys []string) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT k FROM unnest($1::text[]) AS k
		WHERE NOT EXISTS (SELECT 1 FROM dicom_instances WHERE blob_key = k)`, keys)
	if err != nil {
		return nil, fmt.Errorf("dicomdb: sweep: %w", err)
	}
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("dicomdb: sweep: %w", err)
	}
	return orphans, nil
}
