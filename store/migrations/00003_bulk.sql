-- +goose Up
-- Bulk Data $export jobs. River (its own tables, migrated by rivermigrate)
-- schedules and retries the work; this table is the export's own record:
-- what was asked, how far the worker got, and the files it wrote. A worker
-- that restarts resumes from checkpoint, so progress lives here rather than
-- in River's job row.
CREATE TABLE bulk_exports (
    id               text        PRIMARY KEY,
    status           text        NOT NULL, -- accepted, running, completed, failed
    request          text        NOT NULL, -- the kick-off request URL, echoed in the manifest
    params           jsonb       NOT NULL, -- the parsed kick-off parameters
    river_job        bigint,               -- River's job id, to cancel it
    transaction_time timestamptz,          -- set when the worker first takes its snapshot
    checkpoint       jsonb,                -- last rid written and the files so far
    exported         bigint      NOT NULL DEFAULT 0,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

-- +goose Down
DROP TABLE bulk_exports;
