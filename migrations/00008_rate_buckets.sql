-- +goose Up
-- Token buckets shared by the gateway's replicas (postgres.TakeTokens): the
-- calls one ISV app makes to Alipay's OpenAPI for one purpose (openapi:<app_id>:send
-- for template-message batches, openapi:<app_id>:reconcile), whichever replica
-- makes them, stay within that purpose's configured rate. Refills are computed from the database's
-- clock, so the replicas' clocks do not matter; each take is one statement
-- holding the row's lock for its duration.
CREATE TABLE rate_buckets (
    name         text             PRIMARY KEY,        -- e.g. openapi:<app_id>
    tokens       double precision NOT NULL,           -- after the last take, at refilled_at
    burst        double precision NOT NULL,           -- the cap of the last take, for ReturnTokens
    granted      integer          NOT NULL DEFAULT 0, -- what the last take granted
    refilled_at  timestamptz      NOT NULL
);

-- +goose Down
DROP TABLE rate_buckets;
