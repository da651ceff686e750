-- +goose Up
-- The change log (issue 19): one row per resource version, written by the
-- statement that writes the version, so it commits or rolls back with it.
-- The subscriptions dispatcher reads it in seq order, matches each change
-- against the active subscriptions and deletes what it has matched: it is a
-- queue, not a history (resource_history is that). Only committed rows are
-- visible to the dispatcher, so a change is never matched before its write
-- is durable, and none is lost across restarts.
CREATE TABLE resource_changes (
    seq     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid     bigint      NOT NULL,
    type    text        NOT NULL,
    id      text        NOT NULL,
    version bigint      NOT NULL,
    method  "char"      NOT NULL,
    at      timestamptz NOT NULL -- the version's lastUpdated
);

-- One row per Subscription resource, kept in step with it by the
-- dispatcher (from the change log): what delivery needs without parsing
-- the resource, and delivery's own state. events is the last event number
-- assigned (eventsSinceSubscriptionStart), delivered the last one a
-- receiver acknowledged.
CREATE TABLE subscriptions (
    id             text        PRIMARY KEY,
    version        bigint      NOT NULL,
    status         text        NOT NULL, -- requested | active | error | off
    channel        text        NOT NULL, -- rest-hook | websocket
    config         jsonb       NOT NULL,
    events         bigint      NOT NULL DEFAULT 0,
    delivered      bigint      NOT NULL DEFAULT 0,
    failures       integer     NOT NULL DEFAULT 0,
    next_attempt   timestamptz NOT NULL DEFAULT now(),
    lease_owner    text,
    lease_until    timestamptz,
    last_sent      timestamptz,
    error          text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_due ON subscriptions (next_attempt) WHERE status IN ('requested', 'active');

-- The events matched for each subscription, numbered contiguously from 1.
-- Kept after delivery for $events and websocket replay until pruned.
CREATE TABLE subscription_events (
    subscription text        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    number       bigint      NOT NULL,
    type         text        NOT NULL,
    id           text        NOT NULL,
    version      bigint      NOT NULL,
    method       "char"      NOT NULL,
    at           timestamptz NOT NULL, -- when the change was written
    matched_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, number)
);

-- Websocket binding tokens ($get-ws-binding-token): only their SHA-256 is
-- kept, so the table does not hold usable credentials.
CREATE TABLE subscription_ws_tokens (
    hash          bytea       PRIMARY KEY,
    subscriptions text[]      NOT NULL,
    expires       timestamptz NOT NULL
);

-- +goose Down
DROP TABLE subscription_ws_tokens;
DROP TABLE subscription_events;
DROP TABLE subscriptions;
DROP TABLE resource_changes;
