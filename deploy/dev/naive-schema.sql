-- The naive design's tables for bench.sh, in a database of their own
-- (naive): the gateway's inbox and one state table, with the same columns
-- (in the same order), constraints, indexes and storage options as the
-- migrations give them (00001_inbox.sql, 00002_state.sql and
-- 00004_content_digest.sql), so that a row costs the same to write.
-- naive.sql writes them. deploy/naive_test.go holds this file to the
-- migrations.
DROP TABLE IF EXISTS notifications, mini_apps;

CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id           text        NOT NULL,
    notify_id        text        NOT NULL,
    msg_method       text        NOT NULL,
    utc_timestamp    bigint,
    biz_content      text        NOT NULL,
    params           json        NOT NULL,
    encrypted        boolean     NOT NULL DEFAULT false,
    channel          text        NOT NULL,
    content_form     text        NOT NULL,
    cert_sn          text        NOT NULL DEFAULT '',
    status           text        NOT NULL CHECK (status IN ('applied', 'stale', 'unhandled', 'failed')),
    error            text        NOT NULL DEFAULT '',
    delivery_count   integer     NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    processed_at     timestamptz NOT NULL,
    content_digest   bytea,
    CONSTRAINT notifications_notify_app_key UNIQUE (notify_id, app_id)
) WITH (fillfactor = 90);
CREATE INDEX notifications_received_idx ON notifications (received_at DESC, id DESC);
CREATE INDEX notifications_method_idx ON notifications (msg_method, received_at DESC, id DESC);
CREATE INDEX notifications_not_applied_idx ON notifications (status, received_at DESC, id DESC) WHERE status <> 'applied';
CREATE UNIQUE INDEX notifications_content_digest_key ON notifications (content_digest);

CREATE TABLE mini_apps (
    mini_app_id      text        PRIMARY KEY,
    app_id           text        NOT NULL,
    audit_status     text        NOT NULL,
    mini_app_version text        NOT NULL DEFAULT '',
    event_at         bigint      NOT NULL,
    event_notify_id  text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_reconciled_at timestamptz                      -- reconciliation (00010)
);
