package dicomdb

import (
	"context"
	"fmt"
)

// Selectable is what a model's instance selection needs of one stored
// instance: its series' Modality and BodyPartExamined, its InstanceNumber
// and pixel matrix, all from the metadata rows (no file is opened).
type Selectable struct {
	SOPUID, SeriesUID  string
	Modality, BodyPart string
	Number             int // 0: absent
	Rows, Columns      int // 0: no pixel data
}

// Selectables lists the instances of a study with their series attributes.
func (db *DB) Selectables(ctx context.Context, study string) ([]Selectable, error) {
	rows, err := db.pool.Query(ctx, `SELECT i.sop_uid, i.series_uid, se.modality, se.body_part,
		COALESCE(i.instance_number, 0), COALESCE(i.rows, 0), COALESCE(i.columns, 0)
		FROM dicom_instances i JOIN dicom_series se ON se.series_uid = i.series_uid
		WHERE i.study_uid = $1`, study)
	if err != nil {
		return nil, fmt.Errorf("dicomdb: selectables: %w", err)
	}
	defer rows.Close()
	var out []Selectable
	for rows.Next() {
		var s Selectable
		if err := rows.Scan(&s.SOPUID, &s.SeriesUID, &s.Modality, &s.BodyPart, &s.Number, &s.Rows, &s.Columns); err != nil {
			return nil, fmt.Errorf("dicomdb: selectables: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dicomdb: selectables: %w", err)
	}
	return out, nil
}
