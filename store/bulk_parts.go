package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
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

// ExportFileRange calls fn with the bytes of an export's file from offset,
// length bytes of them (length < 0: to the end), a part at a time. It
// reads only the parts the range needs.
func (s *Store) ExportFileRange(ctx context.Context, id string, file int, offset, length int64, fn func([]byte) error) error {
	if s.replica != nil {
		return s.replicaExportFileRange(ctx, id, file, offset, length, fn)
	}
	return exportFileRange(ctx, s.pool, id, file, offset, length, fn)
}

func exportFileRange(ctx context.Context, db querier, id string, file int, offset, length int64, fn func([]byte) error) error {
	first := 0
	if offset > 0 {
		// Part sizes come from the TOAST header: nothing is decompressed.
		rows, err := db.Query(ctx, `SELECT octet_length(data) FROM bulk_export_parts
			WHERE export_id = $1 AND file = $2 ORDER BY part`, id, file)
		if err != nil {
			return fmt.Errorf("store: export %s file %d: %w", id, file, err)
		}
		sizes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("store: export %s file %d: %w", id, file, err)
		}
		for first < len(sizes) && offset >= sizes[first] {
			offset -= sizes[first]
			first++
		}
	}
	rows, err := db.Query(ctx, `SELECT data FROM bulk_export_parts WHERE export_id = $1 AND file = $2 AND part >= $3
		ORDER BY part`, id, file, first)
	if err != nil {
		return fmt.Errorf("store: export %s file %d: %w", id, file, err)
	}
	defer rows.Close()
	var data []byte
	for rows.Next() && length != 0 {
		if err := rows.Scan(&data); err != nil {
			return fmt.Errorf("store: export %s file %d: %w", id, file, err)
		}
		data = data[min(offset, int64(len(data))):]
		offset = 0
		if length >= 0 && int64(len(data)) > length {
			data = data[:length]
		}
		if length > 0 {
			length -= int64(len(data))
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
