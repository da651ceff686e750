-- +goose Up
-- The audit trail's hash chain. Every AuditEvent Ember records is a resource
-- like any other (resources, resource_history, the idx_ tables); this table
-- holds, beside it, its place in the chain: seq is contiguous from 1 (a gap
-- is a deleted link), hash = SHA-256(previous hash || the event's canonical
-- JSON). The writer appends under an advisory lock, so replicas share one chain.
CREATE TABLE audit_chain (
    seq      bigint      PRIMARY KEY,
    event_id text        NOT NULL UNIQUE,
    recorded timestamptz NOT NULL,
    hash     bytea       NOT NULL
);
CREATE INDEX audit_chain_recorded ON audit_chain (recorded, seq);

-- Signed checkpoints: a JWS (the server's signing key) over a link's seq and
-- hash, so a chain recomputed after tampering no longer matches them.
CREATE TABLE audit_checkpoints (
    seq        bigint      PRIMARY KEY,
    hash       bytea       NOT NULL,
    kid        text        NOT NULL,
    jws        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Where the chain starts once retention has pruned its head: the last pruned
-- link (seq 0 and 32 zero bytes before any pruning).
CREATE TABLE audit_anchor (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint  NOT NULL,
    hash bytea   NOT NULL
);
INSERT INTO audit_anchor (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- +goose Down
DROP TABLE audit_anchor;
DROP TABLE audit_checkpoints;
DROP TABLE audit_chain;
