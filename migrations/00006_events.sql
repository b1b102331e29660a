-- +goose Up
-- The outbox: what happened, as typed events, written in the transaction
-- that stores the notification (and applies its change), so an event
-- exists if and only if its change committed. One event of a type per
-- notification: a delivery Alipay repeats makes no second one.
--
-- tx is the writing transaction's id. The feed (GET /v1/events, and the
-- webhook dispatcher) reads in (tx, id) order and only rows whose tx is
-- below the oldest transaction still in flight (pg_snapshot_xmin of the
-- current snapshot): identity values are taken before commit, so a reader
-- paging by id alone would skip a row whose transaction commits after a
-- later id's, while no transaction below that horizon can still commit.
CREATE TABLE events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    app_id      text        NOT NULL,
    notify_id   text        NOT NULL,
    type        text        NOT NULL,
    occurred_at timestamptz,                       -- Alipay's time for it (utc_timestamp), when it has one
    created_at  timestamptz NOT NULL DEFAULT now(),
    data        jsonb,                             -- NULL for a notification.received: its payload is the inbox row
    UNIQUE (app_id, notify_id, type)
);
CREATE INDEX events_feed_idx ON events (tx, id);
-- created_at grows with the table: a BRIN index serves a replay since a time
-- (and retention) for little write cost.
CREATE INDEX events_created_idx ON events USING brin (created_at);

-- Where events are forwarded: the ISV's own HTTP receivers, signed per the
-- Standard Webhooks specification. event_types empty means every type; an
-- entry ending in ".*" is a prefix. app_id empty means every app. The
-- cursor is the feed position (tx, id) up to which events have been given
-- deliveries; a new endpoint starts at the feed's horizon when created.
CREATE TABLE webhook_endpoints (
    id                     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url                    text        NOT NULL,
    description            text        NOT NULL DEFAULT '',
    event_types            text[]      NOT NULL DEFAULT '{}',
    app_id                 text        NOT NULL DEFAULT '',
    enabled                boolean     NOT NULL DEFAULT true,
    disabled_reason        text        NOT NULL DEFAULT '',
    secret                 text        NOT NULL,  -- whsec_...
    previous_secret        text,                  -- still signed with until previous_secret_until
    previous_secret_until  timestamptz,
    cursor_tx              xid8        NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot()),
    cursor_id              bigint      NOT NULL DEFAULT 0,
    failing_since          timestamptz,           -- first failed attempt since the last success
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- One event to one endpoint. status: pending (next_attempt_at says when;
-- an attempt in progress pushes it past its timeout, a lease another
-- replica takes over if this one dies), delivered, or dead (no 2xx before
-- expires_at). No foreign keys: a delivery row is written for every event
-- and endpoint, and the checks would cost a third of it; the store deletes
-- an endpoint's deliveries and attempts with it.
CREATE TABLE webhook_deliveries (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      bigint      NOT NULL,
    event_id         bigint      NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    last_status_code int,
    last_error       text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_dead_idx ON webhook_deliveries (endpoint_id, id) WHERE status = 'dead';

-- Each attempt of a delivery: what the receiver answered.
CREATE TABLE webhook_attempts (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  bigint      NOT NULL,
    attempt      int         NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_ms  int         NOT NULL,
    status_code  int,                              -- NULL when no answer came
    error        text        NOT NULL DEFAULT '',
    response     text        NOT NULL DEFAULT ''   -- the answer's first bytes
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
DROP TABLE events;
