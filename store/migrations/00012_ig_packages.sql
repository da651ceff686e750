-- +goose Up
-- Implementation guide packages installed into this database (issue 16):
-- the npm-format archive as installed, so every replica loads the same
-- profiles and search parameters at start without reading any file.
-- reindex_pending is set when the package added search parameters while
-- resources of their types were stored already: they are not in the index
-- until `ember reindex` has run (which clears it).
CREATE TABLE ig_packages (
    name            text        NOT NULL,
    version         text        NOT NULL,
    archive         bytea       NOT NULL,
    sha256          text        NOT NULL,
    installed_at    timestamptz NOT NULL DEFAULT now(),
    reindex_pending boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (name, version)
);

-- +goose Down
DROP TABLE ig_packages;
