-- +goose Up
-- The SHA-256 of each notification's signed content as it verified (the
-- HTTP form's k=v string, a WebSocket message's data object). One signature
-- verifies one content however its parameters are split, so at most one
-- inbox row holds a given digest: the same signed content under another
-- notify_id (a replay through the unescaped signed string, or a WebSocket
-- message re-sent under a new x-msgId) has no second effect. NULL for rows
-- stored before digests were kept (NULLs do not collide).
ALTER TABLE notifications ADD COLUMN content_digest bytea;
CREATE UNIQUE INDEX notifications_content_digest_key ON notifications (content_digest);

-- +goose Down
DROP INDEX notifications_content_digest_key;
ALTER TABLE notifications DROP COLUMN content_digest;
