-- +goose Up
-- Current version of every resource. rid is the compact surrogate key that
-- every search index table references; (type, id) is the FHIR identity.
CREATE TABLE resources (
    rid          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         text        NOT NULL,
    id           text        NOT NULL,
    version      bigint      NOT NULL,
    last_updated timestamptz NOT NULL,
    method       "char"      NOT NULL, -- C create, U update, D delete: the interaction that made this version
    deleted      boolean     NOT NULL DEFAULT false,
    content      jsonb,                -- NULL for a delete tombstone
    -- The exact text, kept only when JSONB would rewrite a number's written
    -- form (exponents, -0), which carries a FHIR decimal's precision.
    raw          text,
    CONSTRAINT resources_identity UNIQUE (type, id)
);
CREATE INDEX resources_type_updated ON resources (type, last_updated, rid);
CREATE INDEX resources_updated ON resources (last_updated, rid);

-- Every earlier version. A write moves the replaced current row here inside
-- the same transaction, so the union of both tables is the full history.
CREATE TABLE resource_history (
    rid          bigint      NOT NULL REFERENCES resources (rid),
    version      bigint      NOT NULL,
    type         text        NOT NULL,
    id           text        NOT NULL,
    last_updated timestamptz NOT NULL,
    method       "char"      NOT NULL,
    deleted      boolean     NOT NULL,
    content      jsonb,
    raw          text,
    PRIMARY KEY (rid, version)
);
CREATE INDEX resource_history_type_updated ON resource_history (type, last_updated, rid);
CREATE INDEX resource_history_updated ON resource_history (last_updated, rid);

-- +goose Down
DROP TABLE resource_history;
DROP TABLE resources;
