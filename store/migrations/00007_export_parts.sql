-- +goose Up
-- Bulk Data export output, in PostgreSQL so that whichever replica serves
-- a download has the files (local files needed a volume shared by every
-- replica). A file is its parts in order; the export's checkpoint says how
-- many parts each file has, and a resumed worker drops any beyond that.
-- Deleting the export (cancel, expiry) deletes its parts, and a worker
-- still writing for a deleted export fails on the foreign key and stops.
CREATE TABLE bulk_export_parts (
    export_id text  NOT NULL REFERENCES bulk_exports (id) ON DELETE CASCADE,
    file      int   NOT NULL, -- index in the checkpoint's file list
    part      int   NOT NULL,
    data      bytea NOT NULL, -- ndjson lines, whole ones only
    PRIMARY KEY (export_id, file, part)
);
-- ndjson compresses several times over; LZ4 where the server has it.
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE bulk_export_parts ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'LZ4 is not available; export parts stay pglz-compressed';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE bulk_export_parts;
