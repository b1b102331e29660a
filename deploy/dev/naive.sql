-- pgbench script for bench.sh: the naive design, one durable transaction
-- per notification: the gateway's inbox insert (the columns, conflict
-- target and conflict action of internal/postgres/inbox.go), then one
-- conditional state upsert (the mini-app's, as internal/postgres/state.go
-- writes it: the same conflict target, changes, owner and ordering
-- condition), with rows the size of the gateway's (an audit notification's
-- biz_content, params holding it and a 2048-bit RSA signature, and the
-- 32-byte digest of its signed content). Tables: naive-schema.sql.
-- deploy/naive_test.go holds both statements to the gateway's.
--   pgbench -n -c 16 -j 2 -T 20 -f deploy/dev/naive.sql postgres://.../naive
-- Each transaction inserts a distinct notification: a random 63-bit id per
-- transaction, qualified by the client id (its digest is that id's).
\set nid random(1, 9000000000000000000)
\set app random(1, 5000)
\set ts random(1700000000000, 1800000000000)
BEGIN;
INSERT INTO notifications (app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted,
    channel, content_form, content_digest, cert_sn, status, error, delivery_count, received_at, last_received_at,
    processed_at)
SELECT '2021000000000001', 'naive-' || :client_id || '-' || :nid, 'alipay.open.mini.version.audit.rejected', :ts,
    b, json_build_object('app_id', '2021000000000001', 'notify_id', 'naive-' || :client_id || '-' || :nid,
        'msg_method', 'alipay.open.mini.version.audit.rejected', 'utc_timestamp', :ts::text, 'charset', 'UTF-8',
        'version', '1.1', 'sign_type', 'RSA2', 'biz_content', b,
        'sign', 'Kq1vJ0pXrZ3w8Jd2yGm7Q9tBfV4hN6cR1sL5aE8uY2oI3kP7xW0zT9gH4jD6nM1bC5vF8qS2rA7eU3iO9lK0pZ4wX6yT1hG8dJ3nB5mV7cR2sQ9fE4aL6uY0oI8kP1xW3zT5gH7jD9nM2bC4vF6qS8rA0eU1iO3lK5pZ7wX9yT2hG4dJ6nB8mV0cR1sQ3fE5aL7uY9oI2kP4xW6zT8gH0jD1nM3bC5vF7qS9rA2eU4iO6lK8pZ0wX1yT3hG5dJ7nB9mV2cR4sQ6fE8aL0uY1oI3kP5xW7zT9gH2jD4nM6bC8vF0qS1rA3eU5iO7lK9pZ2wX4yT6hG8dJ0nB1mV3cR5sQ7fE9aL2uY4oI6kP8xW0zT1gH3jD5nM7bC9vF2qS4rA6eU8iO0lK1pZ3w=='),
    false, 'http', 'v1', sha256(('naive-' || :client_id || '-' || :nid)::bytea), '', 'applied', '', 1, now(), now(), now()
FROM (SELECT '{"mini_app_id":"20' || :app || '","bundle_id":"com.isv.mini' || :app || '","mini_app_version":"0.1.' || :client_id || '","audit_reason":"JS错误检测:发现JS错误,请及时优化","base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":{"audit_images":["xxx.png"],"memos":[{"memo":"JS错误检测:发现JS错误,请及时优化","memo_image_list":["xxx.png"]}]},"promote_audit_reason":{"audit_images":["xxx.png"],"memos":[{"memo":"JS错误检测:发现JS错误,请及时优化","memo_image_list":["xxx.png"]}]}}' AS b) biz
ON CONFLICT (app_id, notify_id) DO UPDATE
    SET delivery_count = notifications.delivery_count + EXCLUDED.delivery_count,
        last_received_at = EXCLUDED.last_received_at
    WHERE notifications.channel <> EXCLUDED.channel OR notifications.content_digest IS NULL OR EXCLUDED.content_digest IS NULL
       OR notifications.content_digest = EXCLUDED.content_digest;
INSERT INTO mini_apps (mini_app_id, app_id, audit_status, mini_app_version, event_at, event_notify_id)
VALUES ('20' || :app, '2021000000000001', 'audit_rejected', '0.1.' || :client_id, :ts, 'naive-' || :client_id || '-' || :nid)
ON CONFLICT (mini_app_id) DO UPDATE SET
    audit_status = EXCLUDED.audit_status,
    mini_app_version = EXCLUDED.mini_app_version,
    event_at = EXCLUDED.event_at,
    event_notify_id = EXCLUDED.event_notify_id,
    updated_at = now()
WHERE mini_apps.app_id = EXCLUDED.app_id AND (mini_apps.event_at, mini_apps.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id);
END;
