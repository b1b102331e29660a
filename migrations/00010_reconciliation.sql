-- +goose Up
-- Reconciliation (internal/reconcile, docs/reconciliation.md): runs that
-- ask Alipay what it knows of each merchant's authorization and mini-app
-- versions and repair the state where it differs.

-- A run: started on a schedule, after an outage, or on demand. The counts
-- are written when it finishes; while it runs, the reads count its targets,
-- drift and errors.
CREATE TABLE reconcile_runs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger     text        NOT NULL CHECK (trigger IN ('schedule', 'outage', 'manual')),
    scope       text        NOT NULL CHECK (scope IN ('all', 'auth_app_id', 'mini_app_id')),
    scope_id    text        NOT NULL DEFAULT '',
    app_id      text        NOT NULL DEFAULT '',   -- a scoped run's ISV app, when one was named
    reason      text        NOT NULL DEFAULT '',
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    targets     integer     NOT NULL DEFAULT 0,
    checked     integer     NOT NULL DEFAULT 0,
    repaired    integer     NOT NULL DEFAULT 0,
    errors      integer     NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX reconcile_runs_running_idx ON reconcile_runs (id) WHERE status = 'running';

-- The merchants (authorizations) of a running run, each claimed by one
-- replica at a time: a claim sets lease_until (FOR UPDATE SKIP LOCKED); a
-- replica that dies leaves the target to another once its lease ends.
-- Deleted with their run's finish (the run keeps the counts).
CREATE TABLE reconcile_targets (
    run_id      bigint      NOT NULL REFERENCES reconcile_runs (id) ON DELETE CASCADE,
    app_id      text        NOT NULL,
    auth_app_id text        NOT NULL,              -- '' for the ISV app's own mini-app
    mini_app_id text        NOT NULL DEFAULT '',   -- the mini-app whose versions are checked, if any
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    attempts    integer     NOT NULL DEFAULT 0,
    lease_until timestamptz,
    checked     integer     NOT NULL DEFAULT 0,
    finished_at timestamptz,
    PRIMARY KEY (run_id, app_id, auth_app_id)
);
CREATE INDEX reconcile_targets_pending_idx ON reconcile_targets (run_id) WHERE status = 'pending';

-- Who checks a merchant now, across runs: runs may overlap (an on-demand
-- or outage run during a scheduled one), and each merchant is checked by
-- one replica at a time. A claim takes the merchant's row with INSERT ...
-- ON CONFLICT DO UPDATE ... WHERE lease_until < now() in the claim's
-- transaction, with the same lease as its target's (renewed with it); a
-- target whose merchant another run holds stays pending. Deleted when the
-- target is done (or its run finishes); an expired row is taken over.
CREATE TABLE reconcile_leases (
    app_id      text        NOT NULL,
    auth_app_id text        NOT NULL,              -- '' for the ISV app's own mini-app
    run_id      bigint      NOT NULL,
    attempt     integer     NOT NULL,              -- the target's claim that holds it
    lease_until timestamptz NOT NULL,
    PRIMARY KEY (app_id, auth_app_id)
);

-- What a run found different from Alipay's answer and repaired: one row
-- per repair, written in the repair's transaction. notify_id is the
-- repair's (reconcile:<run>:<kind>:<entity>), unique with its field, so a
-- resumed run never records a repair twice.
CREATE TABLE reconcile_drift (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint      NOT NULL,
    app_id      text        NOT NULL,
    auth_app_id text        NOT NULL DEFAULT '',
    mini_app_id text        NOT NULL DEFAULT '',
    kind        text        NOT NULL CHECK (kind IN ('authorization', 'mini_app_version')),
    entity      text        NOT NULL,              -- the auth_app_id, or mini_app_id@version
    field       text        NOT NULL,
    before      text,                              -- NULL when the gateway had no such row
    after       text        NOT NULL,
    observed_at timestamptz NOT NULL,              -- the query's time less the clock skew allowed: the repair's place in the ordering
    source      text        NOT NULL DEFAULT 'reconcile',
    notify_id   text        NOT NULL,
    observed    jsonb,                             -- what Alipay answered
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, notify_id, field)
);
CREATE INDEX reconcile_drift_run_idx ON reconcile_drift (run_id);
CREATE INDEX reconcile_drift_auth_idx ON reconcile_drift (auth_app_id, id);
CREATE INDEX reconcile_drift_mini_idx ON reconcile_drift (mini_app_id, id);

-- What a run met that changed nothing: an error answer, a timeout, an
-- answer that did not verify, an unknown status, a token not to be used.
CREATE TABLE reconcile_errors (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint      NOT NULL,
    app_id      text        NOT NULL,
    auth_app_id text        NOT NULL DEFAULT '',
    mini_app_id text        NOT NULL DEFAULT '',
    version     text        NOT NULL DEFAULT '',
    method      text        NOT NULL DEFAULT '',
    kind        text        NOT NULL,
    code        text        NOT NULL DEFAULT '',
    sub_code    text        NOT NULL DEFAULT '',
    message     text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconcile_errors_run_idx ON reconcile_errors (run_id, id);

-- The replicas' shared clocks: 'schedule' is when the last scheduled run
-- started, 'outage' the last outage-triggered one (each claimed by a
-- conditional UPDATE, so replicas start one run), 'heartbeat' when a
-- reconciler last ran anywhere (a gateway starting after all replicas were
-- down longer than an outage takes reconciles).
CREATE TABLE reconcile_state (
    name text        PRIMARY KEY,
    at   timestamptz NOT NULL
);
INSERT INTO reconcile_state (name, at) VALUES ('schedule', now()), ('outage', '-infinity'), ('heartbeat', now());

-- When each authorization and mini-app was last checked against Alipay.
ALTER TABLE authorizations ADD COLUMN last_reconciled_at timestamptz;
ALTER TABLE mini_apps ADD COLUMN last_reconciled_at timestamptz;

-- +goose Down
ALTER TABLE mini_apps DROP COLUMN last_reconciled_at;
ALTER TABLE authorizations DROP COLUMN last_reconciled_at;
DROP TABLE reconcile_state;
DROP TABLE reconcile_errors;
DROP TABLE reconcile_drift;
DROP TABLE reconcile_leases;
DROP TABLE reconcile_targets;
DROP TABLE reconcile_runs;
