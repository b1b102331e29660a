#!/usr/bin/env bash
# What a large prune costs intake (issue 23: intake while a large prune runs
# at or above 0.9x of intake without it), how fast a prune is alone, whether
# partitioning the inbox by month would prune cheaper, and the plans of the
# prune statements. docs/prune-bench.md has the figures of a run.
#
#  fill      a fresh database `prune_tpl`: BENCH_PRUNE_REAL (5000) real
#            notifications through the gateway (loadgen), then multiplied
#            in SQL to BENCH_PRUNE_ROWS (1,000,000) old ones (new notify_ids,
#            content_digest = sha256(notify_id), received_at spread over
#            the month from 230 to 200 days ago, ids below the real ones as
#            if they had come first) with their notification.received
#            events (created_at the same); VACUUM ANALYZE; the sizes.
#            Every pass below starts from a copy of it (CREATE DATABASE ...
#            TEMPLATE prune_tpl STRATEGY FILE_COPY).
#  intake    BENCH_PRUNE_ROUNDS (1) rounds of A B C C B A, each pass
#            loadgen -n BENCH_N (20000) -c BENCH_C (64) new notifications:
#              A  no prune (PRUNE=false);
#              B  `gateway prune` (the CLI, PRUNE_BATCH 1000, the default
#                 RETENTION_*: the old rows are all due) started just
#                 before the pass and running through it;
#              C  the gateway's own pruner (PRUNE=true, PRUNE_INTERVAL=2s),
#                 pruning when the pass starts; it yields to a busy intake.
#            Per pass: intake/s, p99, CPU a notification, and the rows the
#            prune deleted between the pass's start and its end.
#  alone     `gateway prune` of the 1M rows with no intake: seconds, rows/s,
#            WAL written, CPU (the CLI, its Postgres backend, the machine),
#            its rate over time; then the VACUUM the deletes leave to do.
#  plans     EXPLAIN (ANALYZE, BUFFERS) of one batch of each prune statement
#            (copied from internal/postgres/prune.go) on the filled tables,
#            custom and generic plans, rolled back.
#  partition the same old month of inbox rows as a partition: DETACH and
#            DROP against the batched deletes of `alone`; what the unique
#            keys say; and the batched deletes a global key table (what
#            deduplication would need beside a partitioned inbox) costs.
#
# BENCH_PRUNE_PARTS (fill intake alone plans partition) runs a subset
# (fill is needed once: prune_tpl is kept in .dev/pg-prune until the next
# fill). Its own Postgres: .dev/pg-prune on BENCH_PG_PORT (55491), gateway
# on BENCH_GW_PORT (18491). Everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${BENCH_N:-20000}
C=${BENCH_C:-64}
ROWS=${BENCH_PRUNE_ROWS:-1000000}
REAL=${BENCH_PRUNE_REAL:-5000}
ROUNDS=${BENCH_PRUNE_ROUNDS:-1}
SIGN_S=${BENCH_PRUNE_SIGN_S:-40} # seconds loadgen has to sign N notifications before it sends
PARTS=${BENCH_PRUNE_PARTS:-fill intake alone plans partition}
GW_PORT=${BENCH_GW_PORT:-18491}
PG_PORT=${BENCH_PG_PORT:-55491}
PGDIR=.dev/pg-prune
WORK=.dev/bench-prune
LIB_NAME=bench-prune
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh

CLI_PID=
# cli_stop: SIGTERM to the CLI (the wrapper's children, then the wrapper).
cli_stop() {
  [[ -n $CLI_PID ]] || return 0
  local c
  for c in $(pgrep -P "$CLI_PID"); do kill -TERM "$c" 2>/dev/null || true; done
  kill -TERM "$CLI_PID" 2>/dev/null || true
  wait "$CLI_PID" 2>/dev/null || true
  CLI_PID=
}
trap 'cli_stop; lib_cleanup' EXIT
trap 'exit 130' INT TERM

has() { [[ " $PARTS " == *" $1 "* ]]; }
now() { date +%s.%N; }
sleep_until() { sleep "$(awk -v t="$1" -v n="$(date +%s%3N)" 'BEGIN { d = (t - n) / 1000; printf "%.3f", (d > 0 ? d : 0) }')"; }
calc() { awk "BEGIN { printf \"$1\n\", $2 }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# ticks PID: the process's user+system CPU time so far, in 1/100 s.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
lsn() { sql "$1" "SELECT pg_current_wal_lsn()"; }
wal_since() { sql "$1" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$2')"; }
mib() { calc "%.1f" "$1 / 1048576"; }

# gw_cmd DBURL ARGS...: the gateway binary with the environment gw_start
# gives it (e.g. gw_cmd URL migrate, gw_cmd URL prune).
gw_cmd() {
  local url=$1
  shift
  (
    for v in $(compgen -e); do
      [[ $v == ALIPAY_* || $v == GATEWAY_CONFIG ]] && unset "$v"
    done
    export DATABASE_URL=$url ALIPAY_APP_ID=$APP_ID ALIPAY_PUBLIC_KEY_FILE=$KEYS/public_key.txt \
      TOKEN_ENCRYPTION_KEY=$TOKEN_KEY OPS_API_TOKENS=$OPS_TOKEN HTTP_ADDR=127.0.0.1:$GW_PORT LOG_LEVEL=${LOG_LEVEL:-warn}
    exec "$GW_BIN" "$@"
  )
}

# copy_db NAME: database NAME, a copy of prune_tpl.
copy_db() {
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -d "$ADMIN_URL" \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1 TEMPLATE prune_tpl STRATEGY FILE_COPY" >&2
}

# pruned DBURL: "notifications events" the prune has deleted so far (of
# the old ones: ids up to ROWS).
pruned() {
  sql "$1" "SELECT $ROWS - (SELECT count(*) FROM notifications WHERE id <= $ROWS), $ROWS - (SELECT count(*) FROM events WHERE id <= $ROWS)" | tr '|' ' '
}

sizes() {
  sql "$1" "SELECT format('%s: %s rows, heap %s, indexes %s, total %s', c.relname, c.reltuples::bigint,
      pg_size_pretty(pg_relation_size(c.oid)), pg_size_pretty(pg_indexes_size(c.oid)), pg_size_pretty(pg_total_relation_size(c.oid)))
    FROM pg_class c WHERE c.relname IN ('notifications', 'events', 'notifications_pruned') ORDER BY c.relname"
}

lib_init
TPL=$(db_url prune_tpl)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "bench-prune: gateway $rev; $(sql "$ADMIN_URL" "SELECT format('PostgreSQL %s, shared_buffers=%s, max_wal_size=%s, synchronous_commit=%s', current_setting('server_version'), current_setting('shared_buffers'), current_setting('max_wal_size'), current_setting('synchronous_commit'))"); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$WORK/report.txt"
report() { echo "bench-prune: $*" | tee -a "$WORK/report.txt"; }

# --- fill --------------------------------------------------------------
if has fill; then
  fresh_db prune_tpl
  gw_cmd "$TPL" migrate
  # The real ones come after the old ones in id order, as they would have.
  sql "$TPL" "ALTER TABLE notifications ALTER COLUMN id RESTART WITH $((ROWS + 1));
    ALTER TABLE events ALTER COLUMN id RESTART WITH $((ROWS + 1))" >/dev/null
  PRUNE=false gw_start fill "$GW_PORT" "$TPL"
  lib_log "fill: $REAL real notifications"
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$REAL" -c "$C" -prefix "fill-$(date +%s)" -json \
    >"$WORK/fill.json" 2>>"$WORK/loadgen.log" || lib_die "loadgen failed (log: $WORK/loadgen.log)"
  gw_stop fill
  t0=$(now)
  lib_log "fill: multiplying to $ROWS old notifications and their events"
  sql "$TPL" "
    CREATE TEMP TABLE r AS SELECT n.*, row_number() OVER (ORDER BY id) AS rn FROM notifications n;
    DO \$\$
    DECLARE k bigint := (SELECT count(*) FROM r);
    BEGIN
      FOR g IN 0 .. ($ROWS - 1) / k LOOP -- in id order, a copy of the real ones at a time
        INSERT INTO notifications (id, app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted, channel,
            content_form, cert_sn, status, error, delivery_count, received_at, last_received_at, processed_at, content_digest)
        OVERRIDING SYSTEM VALUE
        SELECT i, app_id, 'old-' || i, msg_method, utc_timestamp, biz_content, params, encrypted, channel,
            content_form, cert_sn, status, error, delivery_count, t, t, t, sha256(convert_to('old-' || i, 'UTF8'))
        FROM (SELECT r.*, g * k + rn AS i FROM r) x,
            LATERAL (SELECT now() - interval '230 days' + (x.i * interval '30 days') / $ROWS AS t) y
        WHERE x.i <= $ROWS
        ORDER BY x.i;
      END LOOP;
    END \$\$" >/dev/null
  sql "$TPL" "INSERT INTO events (id, app_id, notify_id, type, occurred_at, created_at, data) OVERRIDING SYSTEM VALUE
    SELECT id, app_id, notify_id, 'notification.received', to_timestamp(utc_timestamp / 1000.0), received_at, NULL
    FROM notifications WHERE id <= $ROWS ORDER BY id" >/dev/null
  sql "$TPL" "VACUUM ANALYZE" >/dev/null
  report "fill: $ROWS old notifications (received 230 to 200 days ago) and their events in $(calc %.0f "$(now) - $t0") s, $(sql "$TPL" "SELECT count(*) FROM notifications WHERE id > $ROWS") real ones; statuses of the old: $(sql "$TPL" "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM notifications WHERE id <= $ROWS GROUP BY 1) s")"
  while read -r line; do report "size: $line"; done < <(sizes "$TPL")
  report "database prune_tpl: $(sql "$TPL" "SELECT pg_size_pretty(pg_database_size(current_database()))")"
fi

# --- intake ------------------------------------------------------------
# pass MODE ROUND: one pass; its loadgen summary, with the rows deleted
# while it sent, goes to $WORK/pass-MODE-ROUND.json. loadgen signs its N
# notifications first (tens of seconds on this host) and sends at T
# (-start-at), SIGN_S after it starts; the prune starts just before T, so
# that it runs while loadgen sends, not while it signs: the CLI 1.5 s
# before; the gateway's pruner (its first run is PRUNE_INTERVAL after the
# gateway's start, when that is under a minute) about 2 s before, with
# PRUNE_INTERVAL=SIGN_S-3s.
pass() {
  local mode=$1 round=$2 db out=$WORK/pass-$1-$2.json T lg n0 e0 n1 e1 procs signed
  copy_db pass
  db=$(db_url pass)
  sql "$db" CHECKPOINT >/dev/null
  T=$(($(date +%s%3N) + SIGN_S * 1000))
  case $mode in
    A | B) PRUNE=false gw_start "gw-$mode" "$GW_PORT" "$db" ;;
    C) PRUNE=true PRUNE_INTERVAL=$((SIGN_S - 3))s PRUNE_BATCH=1000 gw_start "gw-$mode" "$GW_PORT" "$db" ;;
  esac
  procs="gateway=${GW_PID[gw-$mode]},postgres=$(bash deploy/dev/pg.sh pid "$PGDIR")"
  if [[ $mode == B ]]; then
    # the CLI in a wrapper whose pid -cpu can be given now
    (
      sleep_until $((T - 1500))
      LOG_LEVEL=info PRUNE_BATCH=1000 gw_cmd "$db" prune
    ) >>"$WORK/prune-cli.log" 2>&1 &
    CLI_PID=$!
    procs+=",prune=$CLI_PID"
  fi
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$N" -c "$C" -prefix "p$mode$round-$(date +%s)" -json \
    -start-at "$T" -cpu "$procs" 2>>"$WORK/loadgen.log" | jq -c 'select(.pass == "new")' >"$WORK/pass.tmp" &
  lg=$!
  sleep_until "$T"
  read -r n0 e0 < <(pruned "$db")
  lib_log "intake: pass $mode, round $round: $N notifications (prune has deleted $n0 notifications, $e0 events by the start)"
  wait "$lg" || lib_die "loadgen failed (log: $WORK/loadgen.log)"
  read -r n1 e1 < <(pruned "$db")
  cli_stop
  gw_stop "gw-$mode"
  signed=$(grep -o "signed [0-9]* notifications (prefix p$mode$round-[^)]*) in [0-9.]*s" "$WORK/loadgen.log" | tail -n 1 | sed 's/.* in //; s/s$//')
  jq -c --argjson n "$((n1 - n0))" --argjson e "$((e1 - e0))" --arg signed "$signed" \
    '. + {pruned_notifications: $n, pruned_events: $e, signed_s: $signed}' "$WORK/pass.tmp" >"$out"
  report "pass $mode round $round: $(jq -r '"\(.per_second | floor)/s, p99 \(.p99_ms)ms, CPU a notification \(.cpu.machine_us | round)µs of the machine (idle \(.cpu.idle_pct | round)%), acked \(.acked)/\(.sent) in \(.seconds)s (signed in \(.signed_s)s); pruned meanwhile: \(.pruned_notifications) notifications + \(.pruned_events) events (\((.pruned_notifications + .pruned_events) / .seconds | floor) rows/s)"' "$out")"
  if awk -v s="$signed" -v w="$SIGN_S" 'BEGIN { exit !(s + 0 > w - 2) }'; then
    report "WARNING: pass $mode round $round: signing took ${signed}s, more than BENCH_PRUNE_SIGN_S ($SIGN_S) allows: its prune figures include time before the sending"
  fi
}

if has intake; then
  declare -A PASSES=()
  for ((r = 1; r <= ROUNDS; r++)); do
    for m in A B C C B A; do
      PASSES[$m]=$((${PASSES[$m]:-0} + 1))
      pass "$m" "${PASSES[$m]}"
    done
  done
  for m in A B C; do
    jq -s --arg m "$m" '{mode: $m, rates: map(.per_second | floor), mean: (map(.per_second) | add / length),
      p99: map(.p99_ms), cpu_us: map(.cpu.machine_us | round), pruned: map(.pruned_notifications + .pruned_events)}' \
      "$WORK"/pass-"$m"-*.json >"$WORK/mode-$m.json"
    report "mode $m: $(jq -c 'del(.mode)' "$WORK/mode-$m.json")"
  done
  a=$(jq .mean "$WORK/mode-A.json")
  for ((r = 1; r <= ROUNDS; r++)); do # round r: passes 2r-1 and 2r of each mode
    mean() { jq -s 'map(.per_second) | add / length' "$WORK/pass-$1-$((2 * r - 1)).json" "$WORK/pass-$1-$((2 * r)).json"; }
    report "round $r: A $(mean A | cut -d. -f1)/s, B $(mean B | cut -d. -f1)/s, C $(mean C | cut -d. -f1)/s: B/A $(ratio "$(mean B)" "$(mean A)"), C/A $(ratio "$(mean C)" "$(mean A)")"
  done
  report "ratio B/A: $(ratio "$(jq .mean "$WORK/mode-B.json")" "$a"), C/A: $(ratio "$(jq .mean "$WORK/mode-C.json")" "$a") (means of the passes)"
fi

# --- alone -------------------------------------------------------------
if has alone; then
  copy_db alone
  db=$(db_url alone)
  sql "$db" CHECKPOINT >/dev/null
  l0=$(lsn "$db")
  read -r busy0 idle0 < <(machine_ticks)
  lib_log "alone: gateway prune of the old rows, no intake"
  t0=$(now)
  LOG_LEVEL=info PRUNE_BATCH=1000 /usr/bin/time -f "%U %S" -o "$WORK/alone-time.txt" "$BASH" -c "$(declare -f gw_cmd); $(declare -p APP_ID KEYS TOKEN_KEY OPS_TOKEN GW_PORT GW_BIN); gw_cmd '$db' prune" >"$WORK/alone-cli.log" 2>&1 &
  CLI_PID=$!
  backend=
  bticks=0
  : >"$WORK/alone-progress.txt"
  while kill -0 "$CLI_PID" 2>/dev/null; do
    sleep 1
    # the backend holding the prune lock
    [[ -n $backend ]] || backend=$(sql "$db" "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted LIMIT 1" 2>/dev/null || true)
    [[ -z $backend ]] || { b=$(ticks "$backend"); ((b == 0)) || bticks=$b; }
    echo "$(calc %.0f "$(now) - $t0") $(sql "$db" "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'notifications'") $(sql "$db" "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'events'")" >>"$WORK/alone-progress.txt"
  done
  wait "$CLI_PID" || lib_die "gateway prune failed (log: $WORK/alone-cli.log)"
  CLI_PID=
  t1=$(now)
  read -r busy1 idle1 < <(machine_ticks)
  wal=$(wal_since "$db" "$l0")
  read -r n e < <(pruned "$db")
  secs=$(calc %.1f "$t1 - $t0")
  read -r cu cs <"$WORK/alone-time.txt"
  report "alone: gateway prune deleted $n notifications + $e events in ${secs}s: $(calc %.0f "($n + $e) / $secs") rows/s ($(calc %.0f "$n / $secs") notifications/s); WAL $(mib "$wal") MiB ($(calc %.0f "$wal / ($n + $e)") bytes a row)"
  report "alone: CPU: the CLI $(calc %.1f "$cu + $cs") s, its Postgres backend $(calc %.1f "$bticks / 100") s (sampled each second), the machine busy $(calc %.1f "($busy1 - $busy0) / 100") s of $(calc %.1f "($busy1 - $busy0 + $idle1 - $idle0) / 100") CPU-s (other work on the host included)"
  report "alone: progress (s, notifications deleted, events deleted): $(awk 'NR % 10 == 0 { printf "%s%s/%s/%s", sep, $1, $2, $3; sep = " " }' "$WORK/alone-progress.txt")"
  grep -v '^{' "$WORK/alone-cli.log" | sed 's/^/bench-prune: alone: cli: /' | tee -a "$WORK/report.txt"
  # A batch with nothing left to delete, before VACUUM: what the dead index entries cost.
  sql "$db" "BEGIN; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)
    WITH doomed AS (SELECT id FROM notifications WHERE status = 'applied' AND received_at < now() - interval '2160 hours'
      ORDER BY received_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED) SELECT count(*) FROM doomed; ROLLBACK" >"$WORK/alone-empty-plan.txt"
  report "alone: after the prune, a batch finding nothing: $(grep -m1 'Buffers' "$WORK/alone-empty-plan.txt" | sed 's/^ *//')"
  l1=$(lsn "$db")
  t0=$(now)
  sql "$db" "VACUUM notifications" >/dev/null
  sql "$db" "VACUUM events" >/dev/null
  report "alone: then VACUUM notifications, events: $(calc %.1f "$(now) - $t0") s, WAL $(mib "$(wal_since "$db" "$l1")") MiB"
  while read -r line; do report "alone: size after: $line"; done < <(sizes "$db")
fi

# --- plans -------------------------------------------------------------
# The statements of internal/postgres/prune.go (pruneStatements), copied.
inbox() {
  cat <<SQL
WITH doomed AS (
    SELECT id FROM notifications
    WHERE status = '$1' AND received_at < \$1
    ORDER BY received_at, id LIMIT \$2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM notifications n USING doomed WHERE n.id = doomed.id RETURNING n.content_digest
), kept AS (
    INSERT INTO notifications_pruned (content_digest)
    SELECT content_digest FROM gone WHERE content_digest IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM gone
SQL
}
declare -A STMT=(
  [1-inbox-applied]=$(inbox applied)
  [2-inbox-stale]=$(inbox stale)
  [3-deliveries]="WITH doomed AS (
    SELECT id FROM webhook_deliveries
    WHERE created_at < \$1 AND updated_at < \$1 AND status <> 'pending'
    ORDER BY id LIMIT \$2 FOR UPDATE SKIP LOCKED
), attempts AS (
    DELETE FROM webhook_attempts a USING doomed WHERE a.delivery_id = doomed.id
), gone AS (
    DELETE FROM webhook_deliveries d USING doomed WHERE d.id = doomed.id RETURNING d.id
)
SELECT count(*) FROM gone"
  [4-events]="WITH doomed AS (
    SELECT id FROM events
    WHERE created_at < \$1
      AND id < COALESCE((SELECT min(event_id) FROM webhook_deliveries WHERE status = 'pending'), 9223372036854775807)
    ORDER BY id LIMIT \$2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM events e USING doomed WHERE e.id = doomed.id RETURNING e.id
)
SELECT count(*) FROM gone"
  [5-template-messages]="WITH doomed AS (
    SELECT id FROM template_messages
    WHERE created_at < \$1 AND status <> 'pending'
    ORDER BY created_at, id LIMIT \$2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM template_messages m USING doomed WHERE m.id = doomed.id RETURNING m.id
)
SELECT count(*) FROM gone"
  [6-digests]="WITH doomed AS (
    SELECT content_digest FROM notifications_pruned WHERE pruned_at < \$1
    LIMIT \$2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM notifications_pruned p USING doomed WHERE p.content_digest = doomed.content_digest RETURNING 1
)
SELECT count(*) FROM gone"
)
declare -A CUTOFF=([1-inbox-applied]=2160h [2-inbox-stale]=2160h [3-deliveries]=720h [4-events]=720h [5-template-messages]=2160h [6-digests]=720h)

if has plans; then
  copy_db plans
  db=$(db_url plans)
  # notifications_pruned holds nothing yet: give it the digests of the
  # 100,000 others, pruned 40 days ago, so its statement has rows to find.
  sql "$db" "INSERT INTO notifications_pruned (content_digest, pruned_at) SELECT sha256(convert_to('pruned-' || i, 'UTF8')), now() - interval '40 days' FROM generate_series(1, 100000) i" >/dev/null
  sql "$db" "VACUUM ANALYZE notifications_pruned" >/dev/null
  : >"$WORK/plans.txt"
  for k in $(printf '%s\n' "${!STMT[@]}" | sort); do
    for mode in force_custom_plan force_generic_plan; do
      {
        echo "=== $k ($mode, \$1 = now() - ${CUTOFF[$k]}, \$2 = 1000)"
        psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
BEGIN;
SET LOCAL plan_cache_mode = $mode;
PREPARE s(timestamptz, int) AS ${STMT[$k]};
\\pset pager off
\\pset tuples_only on
EXPLAIN (ANALYZE, BUFFERS) EXECUTE s(now() - interval '${CUTOFF[$k]}', 1000);
ROLLBACK;
SQL
      } >>"$WORK/plans.txt" 2>&1
    done
  done
  lib_log "plans: $WORK/plans.txt"
  awk '/^===/ { h = $0 } /Execution Time/ { print "bench-prune: plan " substr(h, 5) ": " $0 }' "$WORK/plans.txt" | tee -a "$WORK/report.txt"
fi

# --- partition ---------------------------------------------------------
if has partition; then
  copy_db part
  db=$(db_url part)
  # The old month alone, in a table of the inbox's columns without identity.
  sql "$db" "DELETE FROM notifications WHERE id > $ROWS; ALTER TABLE notifications ALTER COLUMN id DROP IDENTITY" >/dev/null
  sql "$db" "VACUUM ANALYZE notifications" >/dev/null
  lo=$(sql "$db" "SELECT date_trunc('day', min(received_at)) FROM notifications")
  hi=$(sql "$db" "SELECT date_trunc('day', max(received_at)) + interval '1 day' FROM notifications")
  sql "$db" "CREATE TABLE inbox_p (LIKE notifications INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (received_at);
    CREATE TABLE inbox_p_now PARTITION OF inbox_p FOR VALUES FROM ('$hi') TO (MAXVALUE)" >/dev/null
  for key in "UNIQUE (notify_id, app_id)" "UNIQUE (content_digest)" "UNIQUE (notify_id, app_id, received_at)"; do
    report "partition: ALTER TABLE inbox_p ADD $key: $(psql -X -At -v ON_ERROR_STOP=1 -d "$db" -c BEGIN -c "ALTER TABLE inbox_p ADD $key" -c ROLLBACK 2>&1 | grep -v '^BEGIN$' | head -n 2 | tr '\n' ' ' || true)"
  done
  sql "$db" "ALTER TABLE notifications ADD CONSTRAINT month CHECK (received_at >= '$lo' AND received_at < '$hi')" >/dev/null
  size=$(sql "$db" "SELECT pg_total_relation_size('notifications')")
  t0=$(now)
  sql "$db" "ALTER TABLE inbox_p ATTACH PARTITION notifications FOR VALUES FROM ('$lo') TO ('$hi')" >/dev/null
  report "partition: the old month ($(sql "$db" "SELECT count(*) FROM inbox_p"), $(mib "$size") MiB with its indexes) attached as a partition in $(calc %.2f "$(now) - $t0") s"
  sql "$db" CHECKPOINT >/dev/null
  for step in "ALTER TABLE inbox_p DETACH PARTITION notifications CONCURRENTLY" "DROP TABLE notifications"; do
    l0=$(lsn "$db")
    t0=$(now)
    sql "$db" "$step" >/dev/null
    report "partition: $step: $(calc %.3f "$(now) - $t0") s, WAL $(wal_since "$db" "$l0") bytes"
  done
  # Beside a partitioned inbox, deduplication across all time needs the
  # keys in a table of their own, which is pruned by deletes as now.
  sql "$db" "CREATE TABLE inbox_keys (notify_id text NOT NULL, app_id text NOT NULL, content_digest bytea, received_at timestamptz NOT NULL,
      PRIMARY KEY (notify_id, app_id), UNIQUE (content_digest));
    CREATE INDEX ON inbox_keys (received_at);
    INSERT INTO inbox_keys SELECT 'old-' || i, '$APP_ID', sha256(convert_to('old-' || i, 'UTF8')), now() - interval '230 days' + (i * interval '30 days') / $ROWS
      FROM generate_series(1, $ROWS) i" >/dev/null
  sql "$db" "VACUUM ANALYZE inbox_keys" >/dev/null
  sql "$db" CHECKPOINT >/dev/null
  ksize=$(sql "$db" "SELECT pg_total_relation_size('inbox_keys')")
  l0=$(lsn "$db")
  t0=$(now)
  sql "$db" "DO \$\$
    DECLARE n bigint;
    BEGIN
      LOOP
        WITH doomed AS (SELECT notify_id, app_id FROM inbox_keys WHERE received_at < now() - interval '2160 hours'
            ORDER BY received_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
        DELETE FROM inbox_keys k USING doomed WHERE k.notify_id = doomed.notify_id AND k.app_id = doomed.app_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        COMMIT;
        EXIT WHEN n < 1000;
      END LOOP;
    END \$\$" >/dev/null
  secs=$(calc %.1f "$(now) - $t0")
  report "partition: the same month's $ROWS rows of a key table (notify_id, app_id, content_digest, received_at; $(mib "$ksize") MiB) deleted in batches of 1000: ${secs}s, $(calc %.0f "$ROWS / $secs") rows/s, WAL $(mib "$(wal_since "$db" "$l0")") MiB"
fi
