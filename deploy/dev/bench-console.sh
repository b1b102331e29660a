#!/usr/bin/env bash
# make bench-console: how fast the ops console's pages answer on a database
# holding a million notifications (issue 22: every page under 100 ms).
# docs/console.md has the figures of a run and what they mean.
#
#  fill   a fresh database `console_bench` (kept in .dev/pg-console until
#         the next fill; BENCH_CONSOLE_FILL=0 reuses it), in SQL into the
#         real tables, migrated by the gateway itself:
#           BENCH_CONSOLE_ROWS (1,000,000) notifications: a tenth received
#             in the last 24 hours (a busy day, about 4,200 in the last
#             hour), the rest over the 89 days before (retention keeps 90);
#             60 % audits, 20 % order news, 10 % authorizations, 10 % of a
#             method no handler takes; 1 % failed, 1 % stale, the unknown
#             ones unhandled; biz_content and params of a real one's size;
#           their business state and histories: 20,000 merchants'
#             authorizations (5 % cancelled, 1 % with a refresh error),
#             20,000 mini-apps with two versions each, an audit history row
#             per audit notification, 20,000 orders with theirs;
#           the events of the last 30 days (notification.received, and
#             authorization.* with their data), and 2 webhook endpoints with
#             100,000 deliveries (1 % dead);
#         then VACUUM ANALYZE, as autovacuum would have.
#  time   a gateway on it (CONSOLE=true), signed in with curl; every page
#         once (its first request since the gateway started), then
#         BENCH_CONSOLE_N (20) times, timed by curl (time_total: connect to
#         last byte, on 127.0.0.1); the first, the median and the slowest of
#         each, and the slowest page.
#
# Its own Postgres: .dev/pg-console on BENCH_PG_PORT (55495), the gateway on
# BENCH_GW_PORT (18495). Everything it started is stopped on exit. It exits
# 1 when a page's median is over BENCH_CONSOLE_LIMIT_MS (100).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROWS=${BENCH_CONSOLE_ROWS:-1000000}
N=${BENCH_CONSOLE_N:-20}
LIMIT_MS=${BENCH_CONSOLE_LIMIT_MS:-100}
FILL=${BENCH_CONSOLE_FILL:-1}
GW_PORT=${BENCH_GW_PORT:-18495}
PG_PORT=${BENCH_PG_PORT:-55495}
PGDIR=.dev/pg-console
WORK=.dev/bench-console
LIB_NAME=bench-console
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh
trap 'lib_cleanup' EXIT
trap 'exit 130' INT TERM

lib_init
DB=$(db_url console_bench)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "bench-console: gateway $rev; $(sql "$ADMIN_URL" "SELECT format('PostgreSQL %s, shared_buffers=%s', current_setting('server_version'), current_setting('shared_buffers'))"); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$WORK/report.txt"
report() { echo "bench-console: $*" | tee -a "$WORK/report.txt"; }

have_db() { [[ $(sql "$ADMIN_URL" "SELECT count(*) FROM pg_database WHERE datname = 'console_bench'") == 1 ]]; }

if [[ $FILL == 1 ]] || ! have_db; then
  fresh_db console_bench
  (
    for v in $(compgen -e); do [[ $v == ALIPAY_* || $v == GATEWAY_CONFIG ]] && unset "$v"; done
    DATABASE_URL=$DB ALIPAY_APP_ID=$APP_ID ALIPAY_PUBLIC_KEY_FILE=$KEYS/public_key.txt LOG_LEVEL=warn "$GW_BIN" migrate
  )
  lib_log "fill: $ROWS notifications and their state"
  t0=$(date +%s)
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
-- Notification g: received newest first; its method, mini-app, merchant and status.
CREATE TEMP TABLE methods (k int PRIMARY KEY, method text, kind text);
INSERT INTO methods VALUES
  (0, 'alipay.open.mini.version.audit.passed', 'audit'), (1, 'alipay.open.mini.version.audit.passed', 'audit'),
  (2, 'alipay.open.mini.version.audit.rejected', 'audit'), (3, 'alipay.open.mini.version.audit.rejected', 'audit'),
  (4, 'alipay.open.mini.version.baseaudit.passed', 'audit'), (5, 'alipay.open.mini.version.baseaudit.passed', 'audit'),
  (6, 'alipay.open.mini.merchant.confirmed', 'order'), (7, 'alipay.open.mini.merchant.fastregister.changed', 'order'),
  (8, 'alipay.open.auth.appauth.cancelled', 'auth'), (9, 'alipay.open.mini.unknown.changed', 'unknown');

INSERT INTO notifications (app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted, channel,
    content_form, status, error, delivery_count, received_at, last_received_at, processed_at, content_digest)
SELECT '$APP_ID', 'bench' || lpad(g::text, 10, '0'), m.method, (extract(epoch FROM t) * 1000)::bigint, biz,
    json_build_object('app_id', '$APP_ID', 'notify_id', 'bench' || lpad(g::text, 10, '0'), 'msg_method', m.method,
        'charset', 'UTF-8', 'version', '1.1', 'sign_type', 'RSA2', 'utc_timestamp', (extract(epoch FROM t) * 1000)::bigint::text,
        'sign', repeat('Q', 344), 'biz_content', biz),
    false, CASE WHEN g % 5 = 0 THEN 'websocket' ELSE 'http' END, 'v1',
    CASE WHEN m.kind = 'unknown' THEN 'unhandled' WHEN g % 100 = 1 THEN 'failed' WHEN g % 100 = 2 THEN 'stale' ELSE 'applied' END,
    CASE WHEN m.kind <> 'unknown' AND g % 100 = 1 THEN 'biz_content has no mini_app_id' ELSE '' END,
    1 + (g % 17 = 0)::int, t, t, t + interval '3 ms', sha256(convert_to('bench' || g, 'UTF8'))
FROM generate_series(1, $ROWS) g
CROSS JOIN LATERAL (SELECT CASE WHEN g <= $ROWS / 10 THEN now() - g * (interval '24 hours' / ($ROWS / 10))
                              ELSE now() - interval '24 hours' - (g - $ROWS / 10) * (interval '89 days' / ($ROWS - $ROWS / 10)) END AS t,
                           '2021' || lpad((g % 20000)::text, 12, '0') AS app) x
JOIN methods m ON m.k = g % 10
CROSS JOIN LATERAL (SELECT CASE m.kind
    WHEN 'audit' THEN format('{"mini_app_id":"%s","mini_app_version":"1.0.%s","bundle_id":"com.alipay.alipaywallet","audit_reason":"JS错误检测:发现JS错误,请及时优化","base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":{"audit_images":["a.png"],"memos":[{"memo":"JS错误检测","memo_image_list":["b.png"]}]}}', app, g % 2)
    WHEN 'order' THEN format('{"order_no":"ord%s","out_order_no":"out%s","min_app_id":"%s","status":"PROCESS","pid":"2088%s"}', g % 20000, g % 20000, app, lpad((g % 20000)::text, 12, '0'))
    WHEN 'auth' THEN format('{"app_auth_token":"[redacted]","app_id":"%s","auth_app_id":"%s","user_id":"2088%s"}', app, app, lpad((g % 20000)::text, 12, '0'))
    ELSE '{"x":1}' END AS biz) b;

INSERT INTO authorizations (app_id, auth_app_id, user_id, status, authorized_at, cancelled_at, app_auth_token, app_refresh_token,
    expires_at, refresh_expires_at, event_at, event_notify_id, refresh_error, refreshed_at)
SELECT '$APP_ID', '2021' || lpad(i::text, 12, '0'), '2088' || lpad(i::text, 12, '0'),
    CASE WHEN i % 20 = 0 THEN 'cancelled' ELSE 'authorized' END, now() - (i % 300) * interval '1 day',
    CASE WHEN i % 20 = 0 THEN now() - (i % 30) * interval '1 day' END,
    CASE WHEN i % 20 <> 0 THEN sha512(convert_to('a' || i, 'UTF8')) END, CASE WHEN i % 20 <> 0 THEN sha512(convert_to('r' || i, 'UTF8')) END,
    now() + (i % 365) * interval '1 day', now() + (i % 365 + 7) * interval '1 day', i, 'bench' || lpad((i * 10 + 8)::text, 10, '0'),
    CASE WHEN i % 100 = 7 THEN 'isv.invalid-app-auth-token: 无效的应用授权令牌' ELSE '' END, now() - (i % 7) * interval '1 day'
FROM generate_series(0, 19999) i;

INSERT INTO mini_apps (mini_app_id, app_id, audit_status, mini_app_version, event_at, event_notify_id)
SELECT '2021' || lpad(i::text, 12, '0'), '$APP_ID', (ARRAY['audit_passed', 'audit_rejected', 'base_audit_passed'])[1 + i % 3], '1.0.1', i, 'bench'
FROM generate_series(0, 19999) i;
INSERT INTO mini_app_versions (mini_app_id, mini_app_version, app_id, audit_status, bundle_id, audit_reason, base_audit_reason, event_at, event_notify_id)
SELECT '2021' || lpad(i::text, 12, '0'), '1.0.' || v, '$APP_ID', 'audit_rejected', 'com.alipay.alipaywallet', 'JS错误',
    '{"audit_images":["a.png"],"memos":[{"memo":"JS错误检测","memo_image_list":["b.png"]}]}', i, 'bench'
FROM generate_series(0, 19999) i, generate_series(0, 1) v;
INSERT INTO mini_app_audit_events (mini_app_id, mini_app_version, app_id, notify_id, msg_method, audit_status, bundle_id,
    base_audit, promote_audit, audit_reason, base_audit_reason, event_at, applied, received_at)
SELECT biz_content::jsonb ->> 'mini_app_id', biz_content::jsonb ->> 'mini_app_version', app_id, notify_id, msg_method,
    CASE msg_method WHEN 'alipay.open.mini.version.audit.rejected' THEN 'audit_rejected' WHEN 'alipay.open.mini.version.baseaudit.passed' THEN 'base_audit_passed' ELSE 'audit_passed' END,
    'com.alipay.alipaywallet', 'REJECT', 'REJECT', 'JS错误检测', (biz_content::jsonb -> 'base_audit_reason'), utc_timestamp, status = 'applied', received_at
FROM notifications WHERE msg_method LIKE 'alipay.open.mini.version.%' AND status IN ('applied', 'stale');

INSERT INTO mini_app_orders (order_no, app_id, kind, out_order_no, mini_app_id, status, pid, event_at, event_notify_id)
SELECT 'ord' || i, '$APP_ID', CASE WHEN i % 2 = 0 THEN 'merchant_confirmed' ELSE 'fast_register' END, 'out' || i,
    '2021' || lpad(i::text, 12, '0'), 'PROCESS', '2088' || lpad(i::text, 12, '0'), i, 'bench'
FROM generate_series(0, 19999) i;
INSERT INTO mini_app_order_events (order_no, app_id, notify_id, msg_method, kind, status, mini_app_id, event_at, applied, received_at)
SELECT biz_content::jsonb ->> 'order_no', app_id, notify_id, msg_method, 'merchant_confirmed', 'PROCESS', biz_content::jsonb ->> 'min_app_id',
    utc_timestamp, status = 'applied', received_at
FROM notifications WHERE msg_method LIKE 'alipay.open.mini.merchant.%' AND status IN ('applied', 'stale');

-- The outbox of the last 30 days, in arrival order.
INSERT INTO events (app_id, notify_id, type, occurred_at, created_at, data)
SELECT app_id, notify_id, 'notification.received', received_at, received_at, NULL
FROM notifications WHERE received_at > now() - interval '30 days' ORDER BY received_at;
INSERT INTO events (app_id, notify_id, type, occurred_at, created_at, data)
SELECT app_id, notify_id, 'authorization.cancelled', received_at, received_at,
    jsonb_build_object('auth_app_id', biz_content::jsonb ->> 'auth_app_id', 'user_id', biz_content::jsonb ->> 'user_id', 'status', 'cancelled')
FROM notifications WHERE received_at > now() - interval '30 days' AND msg_method = 'alipay.open.auth.appauth.cancelled' AND status = 'applied'
ORDER BY received_at;

INSERT INTO webhook_endpoints (url, secret, event_types) VALUES
    ('https://isv.example.com/alipay-events', 'whsec_' || encode(sha256('one'), 'base64'), '{}'),
    ('https://erp.example.com/hooks/mini-app', 'whsec_' || encode(sha256('two'), 'base64'), '{mini_app.*}');
INSERT INTO webhook_deliveries (endpoint_id, event_id, status, attempts, next_attempt_at, expires_at, last_status_code, last_error, created_at, delivered_at)
SELECT 1 + (e.id % 2), e.id, CASE WHEN e.id % 100 = 0 THEN 'dead' WHEN e.id % 1000 = 1 THEN 'pending' ELSE 'delivered' END,
    CASE WHEN e.id % 100 = 0 THEN 14 ELSE 1 END, e.created_at, e.created_at + interval '72 hours',
    CASE WHEN e.id % 100 = 0 THEN 503 ELSE 204 END, CASE WHEN e.id % 100 = 0 THEN 'HTTP 503' ELSE '' END, e.created_at,
    CASE WHEN e.id % 100 > 1 THEN e.created_at + interval '40 ms' END
FROM (SELECT id, created_at FROM events ORDER BY id DESC LIMIT 100000) e;
SQL
  psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "VACUUM ANALYZE" >&2
  report "fill: $(($(date +%s) - t0)) s; $(sql "$DB" "SELECT format('notifications %s (%s in the last 24 h, %s in the last hour), events %s, authorizations %s, mini-apps %s, audit history %s, deliveries %s; inbox %s',
      (SELECT count(*) FROM notifications), (SELECT count(*) FROM notifications WHERE received_at > now() - interval '1 day'),
      (SELECT count(*) FROM notifications WHERE received_at > now() - interval '1 hour'), (SELECT count(*) FROM events),
      (SELECT count(*) FROM authorizations), (SELECT count(*) FROM mini_apps), (SELECT count(*) FROM mini_app_audit_events),
      (SELECT count(*) FROM webhook_deliveries), pg_size_pretty(pg_total_relation_size('notifications')))")"
else
  report "fill: reusing console_bench ($(sql "$DB" "SELECT count(*) FROM notifications") notifications)"
fi

CONSOLE=true PRUNE=false WEBHOOK_DISPATCH=false gw_start console "$GW_PORT" "$DB"
GW=http://127.0.0.1:$GW_PORT
JAR=$WORK/cookies
rm -f "$JAR"
csrf() { grep -o 'name="csrf" value="[^"]*"' | head -n 1 | sed 's/.*value="//; s/"$//'; }
login_token=$(curl -fsS -c "$JAR" -b "$JAR" "$GW/console/login" | csrf)
code=$(curl -sS -o /dev/null -w '%{http_code}' -c "$JAR" -b "$JAR" --data-urlencode "csrf=$login_token" \
  --data-urlencode "token=$OPS_TOKEN" --data-urlencode "next=/console/" "$GW/console/login")
[[ $code == 303 ]] || lib_die "sign-in answered $code"
CSRF=$(curl -fsS -c "$JAR" -b "$JAR" "$GW/console/" | csrf)
[[ -n $CSRF ]] || lib_die "no CSRF token on the overview"

# What the pages are about: a merchant, a mini-app, a failed notification,
# the second page of the notifications, a dead delivery.
M=2021000000004242
FAILED=$(sql "$DB" "SELECT notify_id FROM notifications WHERE status = 'failed' ORDER BY received_at DESC LIMIT 1")
OLD=$(sql "$DB" "SELECT notify_id FROM notifications ORDER BY received_at LIMIT 1")
DEAD=$(sql "$DB" "SELECT id FROM webhook_deliveries WHERE status = 'dead' ORDER BY id DESC LIMIT 1")
NEXT=$(curl -fsS -b "$JAR" "$GW/console/notifications" | grep -o 'href="/console/notifications?cursor=[^"]*"' | head -n 1 | sed 's/^href="//; s/"$//; s/&amp;/\&/g')
[[ -n $NEXT ]] || lib_die "no next page on the notifications"
SINCE=$(date -d '-3 hours' '+%Y-%m-%dT%H:%M')
FORGED="app_id=$APP_ID&notify_id=2026120100forged&msg_method=alipay.open.mini.version.audit.passed&utc_timestamp=1764547200000&version=1.1&charset=UTF-8&sign_type=RSA2&biz_content=%7B%22mini_app_id%22%3A%22$M%22%7D&sign=$(head -c 256 /dev/urandom | base64 -w0 | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')"

pages=(
  "overview|/console/"
  "merchants|/console/merchants"
  "merchants, prefix|/console/merchants?q=20210000000042"
  "merchants, expiring|/console/merchants?problem=expiring"
  "merchants, cancelled this week|/console/merchants?problem=cancelled"
  "merchants, refresh errors|/console/merchants?problem=refresh_error"
  "merchant|/console/merchants/$M"
  "mini-apps|/console/mini-apps"
  "mini-apps, rejected|/console/mini-apps?status=audit_rejected"
  "mini-app timeline|/console/mini-apps/$M"
  "notifications|/console/notifications"
  "notifications, page 2|$NEXT"
  "notifications, failed|/console/notifications?status=failed"
  "notifications, unhandled|/console/notifications?status=unhandled"
  "notifications, one method|/console/notifications?msg_method=alipay.open.mini.merchant.confirmed"
  "notifications, since 3 h|/console/notifications?since=$SINCE"
  "notifications, oldest app page|/console/notifications?app_id=$APP_ID&until=$(date -d '-80 days' '+%Y-%m-%dT%H:%M')"
  "notification|/console/notifications/$FAILED?app_id=$APP_ID"
  "notification, 90 days old|/console/notifications/$OLD"
  "verify (form)|/console/verify"
  "verify a forged body|POST /console/verify"
  "forwarding|/console/webhooks"
  "endpoint's deliveries|/console/webhooks/1"
  "endpoint's dead|/console/webhooks/1?status=dead"
  "delivery|/console/webhooks/deliveries/$DEAD"
)

# fetch PATH: the time_total of one request, in ms; fails unless it is 200.
fetch() {
  local out
  if [[ $1 == "POST "* ]]; then
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' -b "$JAR" --data-urlencode "csrf=$CSRF" --data-urlencode "body=$FORGED" "$GW${1#POST }")
  else
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' -b "$JAR" "$GW$1")
  fi
  [[ ${out%% *} == 200 ]] || lib_die "$1 answered ${out%% *}"
  awk -v s="${out#* }" 'BEGIN { printf "%.1f\n", s * 1000 }'
}

report "time: each page once (first: the gateway's first request for it), then $N times, by curl on 127.0.0.1 (ms)"
printf '%-34s %8s %8s %8s\n' page first median slowest | tee -a "$WORK/report.txt"
worst_name="" worst=0 fail=0
for entry in "${pages[@]}"; do
  name=${entry%%|*} path=${entry#*|}
  first=$(fetch "$path")
  times=()
  for ((i = 0; i < N; i++)); do times+=("$(fetch "$path")"); done
  read -r median slowest < <(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f %.1f\n", m, a[NR] }')
  printf '%-34s %8s %8s %8s\n' "$name" "$first" "$median" "$slowest" | tee -a "$WORK/report.txt"
  if awk -v m="$median" -v w="$worst" 'BEGIN { exit !(m > w) }'; then worst=$median worst_name=$name; fi
  if awk -v m="$median" -v l="$LIMIT_MS" 'BEGIN { exit !(m > l) }'; then fail=1; fi
done
report "slowest page: $worst_name, median $worst ms (limit $LIMIT_MS ms)"
if [[ $fail == 1 ]]; then
  report "FAIL: a page's median is over $LIMIT_MS ms"
  exit 1
fi
report "PASS: every page's median is under $LIMIT_MS ms"
