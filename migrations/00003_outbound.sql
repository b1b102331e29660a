-- +goose Up
-- Outbound calls to Alipay's OpenAPI.

-- Every subscription template message the gateway sends: the request (never
-- a token), Alipay's answer, how long it took. A row is written 'pending'
-- before the call and finished after it, so an Idempotency-Key is claimed
-- once (the unique index) before anything is sent: a retried or concurrent
-- call with the same key finds the row instead of sending again.
CREATE TABLE template_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          text        NOT NULL,
    auth_app_id     text        NOT NULL DEFAULT '',   -- the merchant app it was sent for, if any
    idempotency_key text,                              -- NULL when the caller gave none
    request         jsonb       NOT NULL,              -- the request as received (no tokens)
    request_hash    text        NOT NULL,              -- a retry must repeat the same request
    status          text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'unknown')),
    code            text        NOT NULL DEFAULT '',   -- Alipay's code, sub_code and messages
    msg             text        NOT NULL DEFAULT '',
    sub_code        text        NOT NULL DEFAULT '',
    sub_msg         text        NOT NULL DEFAULT '',
    error           text        NOT NULL DEFAULT '',   -- why the outcome is unknown (transport, bad answer)
    latency_ms      integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE UNIQUE INDEX template_messages_idempotency_key ON template_messages (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX template_messages_created_idx ON template_messages (created_at DESC, id DESC);

-- The token refresher's bookkeeping. An attempt is claimed by setting
-- refresh_attempted_at (FOR UPDATE SKIP LOCKED), so one replica refreshes a
-- given authorization at a time and a failed one is retried only later.
ALTER TABLE authorizations
    ADD COLUMN refreshed_at         timestamptz,
    ADD COLUMN refresh_attempted_at timestamptz,
    ADD COLUMN refresh_error        text NOT NULL DEFAULT '';
CREATE INDEX authorizations_refresh_due_idx ON authorizations (LEAST(expires_at, refresh_expires_at))
    WHERE status = 'authorized' AND app_refresh_token IS NOT NULL;

-- +goose Down
DROP INDEX authorizations_refresh_due_idx;
ALTER TABLE authorizations
    DROP COLUMN refresh_error,
    DROP COLUMN refresh_attempted_at,
    DROP COLUMN refreshed_at;
DROP TABLE template_messages;
