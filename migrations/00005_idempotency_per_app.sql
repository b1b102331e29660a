-- +goose Up
-- An Idempotency-Key is scoped to the ISV app it was sent for: callers of
-- different apps choose their keys independently, so the same key used by
-- two apps is two messages, while a retry within one app still finds the
-- first send. The new unique index is built before the global one goes,
-- in this one transaction, so a key is never unguarded. (Building it
-- blocks template message writes for as long as the build takes.)
CREATE UNIQUE INDEX template_messages_app_idempotency_key ON template_messages (app_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX template_messages_idempotency_key;

-- +goose Down
-- Fails (and changes nothing) once two apps have used one key.
CREATE UNIQUE INDEX template_messages_idempotency_key ON template_messages (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX template_messages_app_idempotency_key;
