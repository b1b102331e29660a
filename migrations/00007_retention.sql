-- +goose Up
-- Retention (notify.Retention, internal/retention): what a prune needs.
--
-- The digest of each pruned notification's signed content, kept for
-- RETENTION_DIGESTS after the prune: a resend or a replay of a pruned
-- notification is then still a duplicate (the intake's look-up reads this
-- table too), at about 150 bytes a notification with its index.
CREATE TABLE notifications_pruned (
    content_digest bytea       PRIMARY KEY,
    pruned_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_pruned_at_idx ON notifications_pruned USING brin (pruned_at);

-- +goose Down
DROP TABLE notifications_pruned;
