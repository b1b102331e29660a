-- +goose Up
-- Bulk subscription template messages (issue 20): a batch is one template
-- sent to up to 100,000 recipients, each sent at most once by whichever
-- replica claims it. The queue is the recipients table, worked the way the
-- webhook deliveries are (internal/postgres/webhooks.go): claimed FOR
-- UPDATE SKIP LOCKED in small batches, the outcomes recorded in bulk, a
-- retry scheduled with backoff (notify.Backoff). The one difference: a
-- claim that is never recorded (the replica died mid-send) becomes
-- 'unknown', never 'pending' again: a template message must not go out
-- twice, and Alipay gives no id to check with.

-- One batch. status: running, paused, cancelled, stopped (stop_reason says
-- why: the merchant's authorization was cancelled, the template is
-- refused, ...), finished. data is the shared template data (NULL when
-- every recipient has its own), json rather than jsonb: it is sent as it
-- was given, its keywords in their order (Alipay takes them in the
-- template's). An Idempotency-Key is unique per ISV app,
-- as for the single send.
CREATE TABLE template_message_batches (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id           text        NOT NULL,
    auth_app_id      text        NOT NULL DEFAULT '',
    idempotency_key  text,
    request_hash     text        NOT NULL,
    user_template_id text        NOT NULL,
    page             text        NOT NULL,
    data             json,
    precheck         boolean     NOT NULL DEFAULT false,
    status           text        NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'paused', 'cancelled', 'stopped', 'finished')),
    stop_reason      text        NOT NULL DEFAULT '',
    total            integer     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE UNIQUE INDEX template_message_batches_key_idx ON template_message_batches (app_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- What the senders loop over.
CREATE INDEX template_message_batches_running_idx ON template_message_batches (app_id, id) WHERE status = 'running';
-- Retention: batches that ended, oldest first.
CREATE INDEX template_message_batches_finished_idx ON template_message_batches (finished_at)
    WHERE status IN ('finished', 'cancelled', 'stopped');

-- One recipient of a batch, seq its place in the upload (from 1): to_user_id
-- or to_open_id (the other ''), so that one unique index holds each
-- recipient once per batch. data is its
-- own template data, if any. status: pending (due at next_attempt_at),
-- sending (claimed at claimed_at by a replica, the call in flight), sent,
-- failed (Alipay refused it: code, sub_code; or retries ran out), skipped
-- (the pre-check found no subscription), unknown (the call may have
-- reached Alipay: sent only again by an explicit retry-unknown), cancelled.
-- No foreign key, as for the webhook deliveries: 100,000 checks would cost
-- the upload's COPY; the store deletes a batch's recipients with it.
CREATE TABLE template_message_recipients (
    batch_id        bigint      NOT NULL,
    seq             integer     NOT NULL,
    to_user_id      text        NOT NULL DEFAULT '',
    to_open_id      text        NOT NULL DEFAULT '',
    data            json,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'unknown', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    code            text        NOT NULL DEFAULT '',
    sub_code        text        NOT NULL DEFAULT '',
    sub_msg         text        NOT NULL DEFAULT '',
    error           text        NOT NULL DEFAULT '',
    latency_ms      integer,
    finished_at     timestamptz,
    PRIMARY KEY (batch_id, seq),
    CHECK ((to_user_id = '') <> (to_open_id = ''))
);
-- Each recipient at most once per batch.
CREATE UNIQUE INDEX template_message_recipients_once_idx ON template_message_recipients (batch_id, to_user_id, to_open_id);
-- The claim (status 'pending' in upload order), the progress counts, and
-- the listing by outcome with a cursor (the primary key lists them all).
CREATE INDEX template_message_recipients_status_idx ON template_message_recipients (batch_id, status, seq);
-- The sweep of claims whose replica died.
CREATE INDEX template_message_recipients_sending_idx ON template_message_recipients (claimed_at) WHERE status = 'sending';
-- The current rate: sends finished in the last minute.
CREATE INDEX template_message_recipients_finished_idx ON template_message_recipients (batch_id, finished_at)
    WHERE finished_at IS NOT NULL;

-- +goose Down
DROP TABLE template_message_recipients;
DROP TABLE template_message_batches;
