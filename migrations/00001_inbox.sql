-- +goose Up
-- The inbox: one row per notification, whichever channel brought it.
CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id           text        NOT NULL,
    notify_id        text        NOT NULL,
    msg_method       text        NOT NULL,       -- msg_method, or notify_type for the older style
    utc_timestamp    bigint,                     -- ms since the epoch; NULL when the notification has none
    biz_content      text        NOT NULL,       -- UTF-8, decrypted when it can be, secrets redacted
    params           json        NOT NULL,       -- every parameter as received (UTF-8, secrets redacted)
    encrypted        boolean     NOT NULL DEFAULT false,
    channel          text        NOT NULL,
    content_form     text        NOT NULL,       -- which signed-content form verified
    cert_sn          text        NOT NULL DEFAULT '',
    status           text        NOT NULL CHECK (status IN ('applied', 'stale', 'unhandled', 'failed')),
    error            text        NOT NULL DEFAULT '',
    delivery_count   integer     NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    processed_at     timestamptz NOT NULL,
    -- notify_id first: the key also serves look-ups by notify_id alone.
    CONSTRAINT notifications_notify_app_key UNIQUE (notify_id, app_id)
) WITH (fillfactor = 90); -- room for HOT updates of delivery_count on resends
-- The ops API lists newest first, optionally by method, app or status.
CREATE INDEX notifications_received_idx ON notifications (received_at DESC, id DESC);
CREATE INDEX notifications_method_idx ON notifications (msg_method, received_at DESC, id DESC);
-- Most notifications end applied; the others, which ops look for, are few:
-- a partial index keeps them at hand without an index write per applied one.
CREATE INDEX notifications_not_applied_idx ON notifications (status, received_at DESC, id DESC) WHERE status <> 'applied';

-- +goose Down
DROP TABLE notifications;
