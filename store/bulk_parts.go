package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Bulk export output lives in bulk_export_parts (migration 00007): a file
// is its parts in order, so any replica can serve it.

// AppendExportPart stores part number part of file (an index into the
// export's file list). ErrNotFound means the export is gone (cancelled or
// expired) and the worker should stop.
func (s *Store) AppendExportPart(ctx context.Context, id string, file, part int, data []byte) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO bulk_export_parts (export_id, file, part, data) VALUES ($1, $2, $3, $4)`,
		id, file, part, data)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" { // foreign key: the export row is gone
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: export %s file %d part %d: %w", id, file, part, err)
	}
	return nil
}

// TrimExportParts deletes the parts an export's checkpoint does not list:
// file i keeps its first parts[i] parts, files past len(parts) go (all of
// them for an empty or nil parts). A
// resumed worker calls it before writing on, so parts written after the
// last checkpoint by an interrupted run are not kept twice.
func (s *Store) TrimExportParts(ctx context.Context, id string, parts []int32) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM bulk_export_parts WHERE export_id = $1
		AND (file >= coalesce(cardinality($2::int4[]), 0) OR part >= ($2::int4[])[file + 1])`, id, parts)
	if err != nil {
		return fmt.Errorf("store: trim export %s: %w", id, err)
	}
	return nil
}

// ExportFileParts calls fn with each part of an export's file in order,
// reading them one at a time.
func (s *Store) ExportFileParts(ctx context.Context, id string, file int, fn func([]byte) error) error {
	rows, err := s.pool.Query(ctx, `SELECT data FROM bulk_export_parts WHERE export_id = $1 AND file = $2 ORDER BY part`, id, file)
	if err != nil {
		return fmt.Errorf("store: export %s file %d: %w", id, file, err)
	}
	defer rows.Close()
	var data []byte
	for rows.Next() {
		if err := rows.Scan(&data); err != nil {
			return fmt.Errorf("store: export %s file %d: %w", id, file, err)
		}
		if err := fn(data); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: export %s file %d: %w", id, file, err)
	}
	return nil
}
