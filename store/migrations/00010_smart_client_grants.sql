-- +goose Up
-- The grants a client registered beyond the default (issue 17): today only
-- 'client_credentials', which lets a symmetric client obtain system/ tokens
-- with its secret (client_secret_basic or client_secret_post). Empty for
-- every client registered before, which keeps what they could do: public
-- and symmetric clients the authorization code, asymmetric clients also
-- client_credentials (SMART Backend Services, whatever this column says).
ALTER TABLE smart_clients
    ADD COLUMN grant_types text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE smart_clients DROP COLUMN grant_types;
