-- +goose Up
-- The SMART on FHIR authorization server (smart/authserver): registered
-- clients and users, the state of authorization requests in flight, codes,
-- refresh tokens, EHR launch contexts, revoked access-token ids, used client
-- assertion ids and the token signing key. Secrets and tokens are stored
-- hashed; access tokens themselves are self-contained JWTs and not stored.
CREATE TABLE smart_clients (
    id            text        PRIMARY KEY,
    type          text        NOT NULL CHECK (type IN ('public', 'symmetric', 'asymmetric')),
    secret_hash   text,                  -- argon2id, symmetric clients only
    redirect_uris text[]      NOT NULL DEFAULT '{}',
    scopes        text[]      NOT NULL DEFAULT '{}',
    jwks          jsonb,                 -- registered public keys (asymmetric)
    jwks_uri      text,                  -- or where to fetch them; also the one allowed jku
    launch_uri    text,                  -- the app's EHR launch URL
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE smart_users (
    username      text        PRIMARY KEY,
    password_hash text        NOT NULL,  -- argon2id, PHC string format
    role          text        NOT NULL,
    fhir_user     text        NOT NULL,  -- Practitioner/ID, Patient/ID, ...
    failed_logins integer     NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE smart_launches (
    id         text        PRIMARY KEY,  -- the opaque launch parameter
    client_id  text        NOT NULL REFERENCES smart_clients ON DELETE CASCADE,
    patient    text        NOT NULL DEFAULT '',
    encounter  text        NOT NULL DEFAULT '',
    username   text        NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL
);

-- An authorization request from /authorize until its code is issued.
CREATE TABLE smart_auth_requests (
    id             text        PRIMARY KEY,
    csrf           text        NOT NULL,  -- bound to the browser by cookie and to each form
    client_id      text        NOT NULL REFERENCES smart_clients ON DELETE CASCADE,
    redirect_uri   text        NOT NULL,
    scopes         text[]      NOT NULL,  -- as requested
    state          text        NOT NULL DEFAULT '',
    nonce          text        NOT NULL DEFAULT '',
    code_challenge text        NOT NULL DEFAULT '',
    launch_id      text        NOT NULL DEFAULT '',
    username       text        NOT NULL DEFAULT '',  -- set by login
    login_at       timestamptz,
    patient        text        NOT NULL DEFAULT '',
    encounter      text        NOT NULL DEFAULT '',
    granted        text[],                -- set by consent
    code_hash      bytea       UNIQUE,    -- set with the code
    code_used      boolean     NOT NULL DEFAULT false,
    access_jti     text,                  -- the token the code bought, revoked if the code is replayed
    access_exp     timestamptz,
    expires_at     timestamptz NOT NULL
);

CREATE TABLE smart_refresh_tokens (
    token_hash      bytea       PRIMARY KEY,
    client_id       text        NOT NULL REFERENCES smart_clients ON DELETE CASCADE,
    username        text        NOT NULL,
    role            text        NOT NULL,
    fhir_user       text        NOT NULL,
    scopes          text[]      NOT NULL,
    patient         text        NOT NULL DEFAULT '',
    encounter       text        NOT NULL DEFAULT '',
    expires_at      timestamptz NOT NULL,
    revoked         boolean     NOT NULL DEFAULT false,
    auth_request    text,                  -- the code grant it came from
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX smart_refresh_tokens_auth_request ON smart_refresh_tokens (auth_request);

-- Revoked access tokens by jti, kept until the token would have expired;
-- verifiers poll revoked_at to refresh their in-memory set.
CREATE TABLE smart_revoked_jtis (
    jti        text        PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX smart_revoked_jtis_revoked_at ON smart_revoked_jtis (revoked_at);

-- Client assertion ids seen, kept until the assertion expires (replay).
CREATE TABLE smart_used_jtis (
    client_id  text        NOT NULL,
    jti        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE smart_keys (
    kid         text        PRIMARY KEY,
    private_der bytea       NOT NULL,   -- PKCS#8 RSA private key
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE smart_keys;
DROP TABLE smart_used_jtis;
DROP TABLE smart_revoked_jtis;
DROP TABLE smart_refresh_tokens;
DROP TABLE smart_auth_requests;
DROP TABLE smart_launches;
DROP TABLE smart_users;
DROP TABLE smart_clients;
