#!/usr/bin/env bash
# make bench: how many notifications per second the gateway acknowledges,
# against what the naive design (one durable transaction per notification)
# gets from the same Postgres.
#
#  1. a throwaway Postgres (.dev/pg-bench, port 55450; fsync and
#     synchronous_commit at their defaults: on), a fresh database `bench`;
#  2. the gateway built from this tree (or GATEWAY_BIN), LOG_LEVEL=warn;
#  3. loadgen: BENCH_N (20000) new notifications over BENCH_C (64)
#     keep-alive connections, then the same N again (pure duplicates), then
#     BENCH_FORGED_N (5000) forged requests of each kind (padded: 60 KiB of
#     empty parameters and a zero sign; small: a wrong signature; big: a
#     60 KiB biz_content and a zero sign), every one refused, then its
#     database check (every acknowledged one stored exactly once);
#  4. pgbench, BENCH_NAIVE_CLIENTS (16) clients for BENCH_NAIVE_SECONDS (20)
#     running deploy/dev/naive.sql on a database `naive` of the same tables;
#  5. the figures, and the ratio gateway/naive; and what CPU time a
#     notification, and a naive transaction, cost the machine (from
#     /proc: on a machine either design saturates, throughput is the
#     inverse of that cost);
#  6. the webhooks (deploy/dev/bench-webhooks.sh says how): intake with no
#     endpoint against intake with two, interleaved, and their ratio; how
#     fast 20,000 events drain to a local receiver, and what CPU an event
#     costs. BENCH_WEBHOOKS=0 leaves them out, BENCH_WEBHOOKS=only runs
#     them alone (steps 3 to 5 left out).
# Everything is stopped on exit. Exit status 1 when the check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${BENCH_N:-20000}
FORGED_N=${BENCH_FORGED_N:-5000}
C=${BENCH_C:-64}
NAIVE_CLIENTS=${BENCH_NAIVE_CLIENTS:-16}
NAIVE_SECONDS=${BENCH_NAIVE_SECONDS:-20}
GW_PORT=${BENCH_GW_PORT:-18451} # below the ephemeral range (32768-60999): a client socket never holds it
PG_PORT=${BENCH_PG_PORT:-55450}
PGDIR=.dev/pg-bench
WORK=.dev/bench
LIB_NAME=bench
WEBHOOKS=${BENCH_WEBHOOKS:-1}
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh
# shellcheck source=deploy/dev/bench-webhooks.sh
source deploy/dev/bench-webhooks.sh

trap 'rx_stop; lib_cleanup' EXIT
trap 'exit 130' INT TERM

PGBENCH=$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)
[[ -x $PGBENCH ]] || lib_die "pgbench is required"

lib_init
settings=$(sql "$ADMIN_URL" "SELECT format('PostgreSQL %s, fsync=%s, synchronous_commit=%s, wal_sync_method=%s, shared_buffers=%s',
  current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit'),
  current_setting('wal_sync_method'), current_setting('shared_buffers'))")
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain -- internal cmd/gateway migrations go.mod 2>/dev/null) ]] || rev="$rev+changes"
[[ -z ${GATEWAY_BIN:-} ]] || rev="$GATEWAY_BIN"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
lg_rc=0
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# bench_intake: steps 3 and 4.
bench_intake() {
  fresh_db bench
  fresh_db naive
  DB=$(db_url bench)
  NAIVE=$(db_url naive)
  gw_start gateway "$GW_PORT" "$DB"
  sql "$DB" CHECKPOINT >/dev/null # each measurement starts with clean buffers

  lib_log "loadgen: $N notifications, $C connections, then the same $N again"
  out=$WORK/loadgen.json
  set +e
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$N" -c "$C" -resend \
    -forged padded,small,big -forged-n "$FORGED_N" \
    -prefix "bench-$(date +%s)" -json -database-url "$DB" \
    -cpu "gateway=${GW_PID[gateway]},postgres=$(bash deploy/dev/pg.sh pid "$PGDIR")" >"$out"
  lg_rc=$?
  set -e
  batches=$(metric "$GW_PORT" alipay_gateway_batch_size_count)
  batched=$(metric "$GW_PORT" alipay_gateway_batch_size_sum)
  rss=$(rss_kb "${GW_PID[gateway]}")
  gw_stop gateway

  lib_log "pgbench: the naive design, $NAIVE_CLIENTS clients for ${NAIVE_SECONDS}s"
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -d "$NAIVE" -f deploy/dev/naive-schema.sql >&2
  naive_out=$WORK/pgbench.txt
  sql "$NAIVE" CHECKPOINT >/dev/null
  read -r busy0 idle0 < <(machine_ticks)
  "$PGBENCH" -n -c "$NAIVE_CLIENTS" -j 2 -T "$NAIVE_SECONDS" -f deploy/dev/naive.sql "$NAIVE" >"$naive_out" 2>&1 ||
    { cat "$naive_out" >&2; lib_die "pgbench failed"; }
  read -r busy1 idle1 < <(machine_ticks)
  naive_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$naive_out" | head -n 1)
  naive_lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$naive_out")
  naive_rows=$(sql "$NAIVE" "SELECT count(*) FROM notifications")
  naive_txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$naive_out")
  # CPU a naive transaction: the machine's busy time over pgbench's run
  # (Postgres and pgbench), in µs (/proc/stat counts in 1/100 s), and the
  # share of the CPUs' time left idle.
  read -r naive_us naive_idle < <(awk -v b="$((busy1 - busy0))" -v i="$((idle1 - idle0))" -v n="${naive_txns:-0}" \
    'BEGIN { if (n > 0 && b + i > 0) printf "%.1f %.0f\n", b * 1e4 / n, 100 * i / (b + i); else print "0 0" }')
}

# report_intake: step 5.
report_intake() {
  new_rate=$(jqf "$out" 'select(.pass=="new") | .per_second')
  res_rate=$(jqf "$out" 'select(.pass=="resend") | .per_second')
  jq -r 'select(.pass and (.refused | not)) | "bench: gateway \(.pass):\t\(.per_second | floor) notifications/s, p50 \(.p50_ms)ms p90 \(.p90_ms)ms p99 \(.p99_ms)ms max \(.max_ms)ms, acknowledged \(.acked)/\(.sent)" +
    (if (.failed | length) > 0 then ", failed \(.failed)" else "" end)' "$out"
  jq -r 'select(.check) | .check | "bench: check:\t\(.stored)/\(.acked) acknowledged stored exactly once, \(.missing) missing, \(.doubled) doubled, effects \(.effects) ok \(.effects_missing) missing \(.effects_doubled) doubled; status \(.statuses); delivery_count \(.delivery_counts)"' "$out"
  if [[ ${batches:-0} -gt 0 ]]; then
    echo "bench: group commit:	$batches transactions, $(ratio "$batched" "$batches") notifications each on average"
  fi
  echo "bench: gateway RSS after the run: $((rss / 1024)) MiB"
  jq -r 'select(.pass and .cpu and (.refused | not)) | "bench: CPU a notification (\(.pass)):\t\(.cpu.machine_us | round)µs of the machine (" +
    (.cpu.procs_us | to_entries | map("\(.key) \(.value | round)µs") | join(", ")) + "), idle \(.cpu.idle_pct | round)%"' "$out"
  new_gw=$(jqf "$out" 'select(.pass=="new") | .cpu.procs_us.gateway // 0')
  jq -r --arg new_gw "$new_gw" 'select(.refused) | "bench: \(.pass):\t\(.per_second | floor) refusals/s, \(.refused) refused (\(.failed | to_entries | map("\(.key) \(.value)") | join(", "))), bodies of \(.body_bytes) bytes" +
    (if .cpu then "; CPU a refusal: \(.cpu.machine_us | round)µs of the machine, gateway \(.cpu.procs_us.gateway | round)µs (\(if ($new_gw | tonumber) > 0 then (.cpu.procs_us.gateway / ($new_gw | tonumber) * 100 | round | tostring) + "% of a new notification'"'"'s" else "n/a" end))" else "" end)' "$out"
  echo "bench: CPU a transaction (naive):	machine $(printf %.0f "$naive_us")µs (Postgres and pgbench), idle ${naive_idle}%"
  echo "bench: duplicate vs new:	$(ratio "$res_rate" "$new_rate")× the throughput"
  echo "bench: naive (pgbench):	${naive_tps%.*} TPS (1 notification per transaction), latency avg ${naive_lat}ms, $NAIVE_CLIENTS clients, ${NAIVE_SECONDS}s, $naive_rows rows"
  echo "bench: ratio gateway/naive:	$(ratio "$new_rate" "$naive_tps")"
  new_cpu=$(jqf "$out" 'select(.pass=="new") | .cpu.machine_us // 0')
  echo "bench: CPU ratio naive/gateway:	$(ratio "$naive_us" "$new_cpu") (CPU time a naive transaction costs over what a notification costs: the ratio this machine allows when both designs keep its CPUs busy)"
}

[[ $WEBHOOKS == only ]] || bench_intake
[[ $WEBHOOKS == 0 ]] || bench_webhooks

echo
echo "bench: gateway $rev, N=$N C=$C; $settings; $(nproc) CPUs, load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
[[ $WEBHOOKS == only ]] || report_intake
[[ $WEBHOOKS == 0 ]] || report_webhooks
if [[ $lg_rc -ne 0 ]]; then
  lib_log "FAIL: loadgen exited $lg_rc (see above; gateway log: $WORK/gateway.log)"
  exit 1
fi
