-- +goose Up
-- The ops console (internal/console).
--
-- Its sessions, in the database so that every replica knows them and a
-- sign-out revokes the session everywhere. The cookie holds the session id;
-- only its SHA-256 is stored, so that a copy of this table signs no one in.
-- token_hash is the SHA-256 of the ops API token signed in with: a session
-- ends when its token is no longer one of OPS_API_TOKENS. csrf_token is the
-- session's synchronizer token, which every state-changing form carries.
CREATE TABLE console_sessions (
    id_hash    bytea       PRIMARY KEY,
    token_hash bytea       NOT NULL,
    csrf_token text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

-- A merchant's page: its mini-app creation orders, by the mini-app they
-- made and by the merchant's PID (its authorization's user_id); and its
-- authorization events (few rows: a partial index).
CREATE INDEX mini_app_orders_mini_app_idx ON mini_app_orders (mini_app_id) WHERE mini_app_id <> '';
CREATE INDEX mini_app_orders_pid_idx ON mini_app_orders (pid) WHERE pid <> '';
CREATE INDEX events_auth_app_idx ON events ((data ->> 'auth_app_id'), id DESC)
    WHERE type IN ('authorization.granted', 'authorization.cancelled');

-- +goose Down
DROP INDEX events_auth_app_idx;
DROP INDEX mini_app_orders_pid_idx;
DROP INDEX mini_app_orders_mini_app_idx;
DROP TABLE console_sessions;
