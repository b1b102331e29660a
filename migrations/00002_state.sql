-- +goose Up
-- Business state. Every row that a notification may change carries the
-- (event_at, event_notify_id) of the notification that set it; a change is
-- applied only when the incoming pair is greater (ROW comparison), so an
-- older notification never overwrites a newer one, whatever the replica.

-- A merchant app's authorization of one of our ISV apps.
CREATE TABLE authorizations (
    app_id              text        NOT NULL,
    auth_app_id         text        NOT NULL,
    user_id             text        NOT NULL DEFAULT '',
    status              text        NOT NULL,          -- authorized | cancelled
    authorized_at       timestamptz,
    cancelled_at        timestamptz,
    app_auth_token      bytea,                         -- AES-GCM sealed; NULL once cancelled
    app_refresh_token   bytea,                         -- AES-GCM sealed; NULL once cancelled
    expires_at          timestamptz,
    refresh_expires_at  timestamptz,
    event_at            bigint      NOT NULL,
    event_notify_id     text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, auth_app_id)
);
CREATE INDEX authorizations_auth_app_idx ON authorizations (auth_app_id);
CREATE INDEX authorizations_status_idx ON authorizations (status, auth_app_id);

-- A mini-app creation order (alipay.open.mini.isv.create or fast register).
CREATE TABLE mini_app_orders (
    order_no        text        PRIMARY KEY,
    app_id          text        NOT NULL,
    kind            text        NOT NULL,               -- merchant_confirmed | fast_register
    out_order_no    text        NOT NULL DEFAULT '',
    mini_app_id     text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT '',    -- as Alipay sent it
    pid             text        NOT NULL DEFAULT '',
    merchant_id     text        NOT NULL DEFAULT '',
    app_name        text        NOT NULL DEFAULT '',
    event_at        bigint      NOT NULL,
    event_notify_id text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mini_app_orders_out_order_idx ON mini_app_orders (out_order_no);

-- Every notification about an order, stale ones included, in event order.
CREATE TABLE mini_app_order_events (
    order_no     text        NOT NULL,
    app_id       text        NOT NULL,
    notify_id    text        NOT NULL,
    msg_method   text        NOT NULL,
    kind         text        NOT NULL,
    status       text        NOT NULL,
    mini_app_id  text        NOT NULL,
    event_at     bigint      NOT NULL,
    applied      boolean     NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, notify_id)
);
CREATE INDEX mini_app_order_events_order_idx ON mini_app_order_events (order_no, event_at, notify_id);

-- A mini-app's app-level audit state.
CREATE TABLE mini_apps (
    mini_app_id      text        PRIMARY KEY,
    app_id           text        NOT NULL,
    audit_status     text        NOT NULL,
    mini_app_version text        NOT NULL DEFAULT '',   -- the version of the latest audit, if named
    event_at         bigint      NOT NULL,
    event_notify_id  text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per mini-app version with its latest audit outcome.
CREATE TABLE mini_app_versions (
    mini_app_id          text        NOT NULL,
    mini_app_version     text        NOT NULL,
    app_id               text        NOT NULL,
    audit_status         text        NOT NULL,
    bundle_id            text        NOT NULL DEFAULT '',
    base_audit           text        NOT NULL DEFAULT '',
    promote_audit        text        NOT NULL DEFAULT '',
    audit_reason         text        NOT NULL DEFAULT '',
    base_audit_reason    jsonb,
    promote_audit_reason jsonb,
    event_at             bigint      NOT NULL,
    event_notify_id      text        NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mini_app_id, mini_app_version)
);

-- Append-only: every audit notification, stale ones included.
CREATE TABLE mini_app_audit_events (
    mini_app_id          text        NOT NULL,
    mini_app_version     text        NOT NULL,
    app_id               text        NOT NULL,
    notify_id            text        NOT NULL,
    msg_method           text        NOT NULL,
    audit_status         text        NOT NULL,
    bundle_id            text        NOT NULL,
    base_audit           text        NOT NULL,
    promote_audit        text        NOT NULL,
    audit_reason         text        NOT NULL,
    base_audit_reason    jsonb,
    promote_audit_reason jsonb,
    event_at             bigint      NOT NULL,
    applied              boolean     NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, notify_id)
);
CREATE INDEX mini_app_audit_events_app_idx ON mini_app_audit_events (mini_app_id, event_at DESC, notify_id DESC);

-- +goose Down
DROP TABLE mini_app_audit_events;
DROP TABLE mini_app_versions;
DROP TABLE mini_apps;
DROP TABLE mini_app_order_events;
DROP TABLE mini_app_orders;
DROP TABLE authorizations;
