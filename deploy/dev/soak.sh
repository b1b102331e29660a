#!/usr/bin/env bash
# make soak: the gateway under failure, each scenario a function.
#
#   soak.sh kill9|pgrestart|replicas|steady|all   (default all)
#
#  kill9      kill -9 of the gateway in the middle of a load run: every
#             acknowledged notification is stored; after a restart, a resend
#             of all N is acknowledged and each is stored exactly once.
#  pgrestart  Postgres stopped and started again in the middle of a steady
#             load: 503 fail for a while, then success; nothing acknowledged
#             lost, nothing applied twice (inbox and history rows), and a
#             resend of all N then stores the rest.
#  replicas   two gateways on one database get the same notifications at
#             once: one inbox row and one effect each, delivery_count 2; and
#             out-of-order pairs split across them (audit.passed newer to A,
#             audit.rejected older to B, same mini-app) end in the newest.
#  steady     SOAK_RATE (200)/s for SOAK_DURATION (10m): all acknowledged
#             and stored; RSS, heap in use and goroutines at start and end.
#
# A throwaway Postgres in .dev/pg-soak (port 55460), one database per
# scenario, gateways on 18461/18462 (LOG_LEVEL=warn; logs in .dev/soak/).
# SOAK_N (10000) notifications per load run. Prints PASS/FAIL lines with the
# figures; exit status 1 when any scenario fails. Everything is stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${SOAK_N:-10000}
RATE=${SOAK_RATE:-200}
DURATION=${SOAK_DURATION:-10m}
PAIRS=${SOAK_PAIRS:-2000}
PG_PORT=${SOAK_PG_PORT:-55460}
PORT_A=${SOAK_PORT_A:-18461} # gateways below the ephemeral port range
PORT_B=${SOAK_PORT_B:-18462}
PGDIR=.dev/pg-soak
WORK=.dev/soak
LIB_NAME=soak
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh

RUN=$(date +%s)
RESULTS=()
pass() { RESULTS+=("PASS $1: $2"); echo "PASS $1: $2"; }
fail() { RESULTS+=("FAIL $1: $2"); echo "FAIL $1: $2"; }
url() { echo "http://127.0.0.1:$1/alipay/notify"; }

# run_loadgen OUT ARGS...: loadgen with -json into OUT (its people's lines
# to the terminal); returns its exit status.
run_loadgen() {
  local out=$1
  shift
  local rc=0
  loadgen -json "$@" >"$out" || rc=$?
  return $rc
}

# summary OUT: one line of a loadgen run's figures.
summary() {
  jq -r 'if .pass then "\(.pass) acked \(.acked)/\(.sent) failed \(.failed) \(.per_second | floor)/s p99 \(.p99_ms)ms"
    else "check missing \(.check.missing) doubled \(.check.doubled) stored-unacked \(.check.stored_unacked) effects-missing \(.check.effects_missing) effects-doubled \(.check.effects_doubled) delivery_count \(.check.delivery_counts)" end' "$1" |
    paste -sd ';' | sed 's/;/; /g'
}

# wait_accepted PORT COUNT: until the gateway has acknowledged COUNT.
wait_accepted() {
  local i
  for ((i = 0; i < 1200; i++)); do
    (($(metric "$1" alipay_gateway_notifications_total) >= $2)) && return 0
    sleep 0.1
  done
  return 1
}

# inbox DBURL PREFIX: "rows distinct sum(delivery_count) min max" of a run.
inbox() {
  sql "$1" "SELECT count(*), count(DISTINCT notify_id), coalesce(sum(delivery_count), 0),
    coalesce(min(delivery_count), 0), coalesce(max(delivery_count), 0)
    FROM notifications WHERE notify_id LIKE '$2-%'"
}

# history DBURL PREFIX: "expected rows distinct" of the history tables: one
# row per stored audit or order notification (applied or stale).
history() {
  sql "$1" "SELECT
    (SELECT count(*) FROM notifications WHERE notify_id LIKE '$2-%' AND status IN ('applied', 'stale')
       AND (msg_method LIKE 'alipay.open.mini.version.%' OR msg_method LIKE 'alipay.open.mini.merchant.%')),
    (SELECT count(*) FROM mini_app_audit_events WHERE notify_id LIKE '$2-%')
      + (SELECT count(*) FROM mini_app_order_events WHERE notify_id LIKE '$2-%'),
    (SELECT count(DISTINCT notify_id) FROM mini_app_audit_events WHERE notify_id LIKE '$2-%')
      + (SELECT count(DISTINCT notify_id) FROM mini_app_order_events WHERE notify_id LIKE '$2-%')"
}

scenario_kill9() {
  local db prefix out1=$WORK/kill9-1.json out2=$WORK/kill9-2.json rc1=0 rc2=0 lg at_kill
  echo "== kill9: kill -9 of the gateway during a run of $N, then a resend of all $N"
  fresh_db soak_kill9
  db=$(db_url soak_kill9)
  prefix=k9-$RUN
  local args=(-url "$(url "$PORT_A")" -n "$N" -c 32 -prefix "$prefix" -seed 11 -ts-base "${RUN}000" -database-url "$db")
  gw_start kill9 "$PORT_A" "$db"
  run_loadgen "$out1" "${args[@]}" -allow-failures &
  lg=$!
  if ! wait_accepted "$PORT_A" $((N / 3)); then
    fail kill9 "the gateway did not acknowledge $((N / 3)) notifications in 120s"
    wait "$lg" || true
    gw_stop kill9
    return
  fi
  at_kill=$(metric "$PORT_A" alipay_gateway_notifications_total)
  gw_kill9 kill9
  echo "kill9: killed the gateway (SIGKILL) after $at_kill acknowledgements"
  wait "$lg" || rc1=$?
  echo "kill9: during: $(summary "$out1")"
  local acked1 failed1 stored_unacked
  acked1=$(jqf "$out1" 'select(.pass) | .acked')
  failed1=$(jqf "$out1" 'select(.pass) | .sent - .acked')
  stored_unacked=$(jqf "$out1" 'select(.check) | .check.stored_unacked')

  gw_start kill9 "$PORT_A" "$db"
  run_loadgen "$out2" "${args[@]}" || rc2=$?
  gw_stop kill9
  echo "kill9: resend: $(summary "$out2")"
  local rows distinct deliveries dmin dmax acked2
  read -r rows distinct deliveries dmin dmax <<<"$(inbox "$db" "$prefix" | tr '|' ' ')"
  acked2=$(jqf "$out2" 'select(.pass) | .acked')
  local figures="killed after $at_kill acks; during the run $acked1 acknowledged, all stored (loadgen check exit $rc1), $failed1 not acknowledged of which $stored_unacked were stored anyway; resend after restart: $acked2/$N acknowledged (exit $rc2); inbox $rows rows, $distinct distinct, delivery_count $dmin..$dmax (sum $deliveries)"
  if ((rc1 == 0 && rc2 == 0 && acked1 > 0 && failed1 > 0 && acked2 == N && rows == N && distinct == N && dmin >= 1)); then
    pass kill9 "$figures"
  else
    fail kill9 "$figures"
  fi
}

scenario_pgrestart() {
  local db prefix out1=$WORK/pgrestart-1.json out2=$WORK/pgrestart-2.json rc1=0 rc2=0 lg n t0 t1
  n=$((RATE * 25))
  echo "== pgrestart: Postgres restarted during a steady run of $n at $RATE/s, then a resend of all $n"
  fresh_db soak_pgrestart
  db=$(db_url soak_pgrestart)
  prefix=pgr-$RUN
  local args=(-url "$(url "$PORT_A")" -n "$n" -c 32 -prefix "$prefix" -seed 12 -ts-base "${RUN}000" -database-url "$db")
  gw_start pgrestart "$PORT_A" "$db"
  run_loadgen "$out1" "${args[@]}" -rate "$RATE" -allow-failures &
  lg=$!
  wait_accepted "$PORT_A" $((RATE * 6)) || true
  t0=$(date +%s.%N)
  bash deploy/dev/pg.sh stop "$PGDIR" 2>/dev/null
  sleep 4
  bash deploy/dev/pg.sh start "$PGDIR" "$PG_PORT" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "pgrestart: Postgres down for $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s"
  wait "$lg" || rc1=$?
  echo "pgrestart: during: $(summary "$out1")"
  local acked1 f503 fother after window
  acked1=$(jqf "$out1" 'select(.pass) | .acked')
  f503=$(jqf "$out1" 'select(.pass) | .failed["503"] // 0')
  fother=$(jqf "$out1" 'select(.pass) | [.failed | to_entries[] | select(.key != "503") | .value] | add // 0')
  after=$(jqf "$out1" 'select(.pass) | .acked_after_last_failure')
  window=$(jqf "$out1" 'select(.pass) | if .first_failure_s then "\(.first_failure_s | . * 10 | floor / 10)s..\(.last_failure_s | . * 10 | floor / 10)s" else "none" end')
  local ready
  ready=$(curl -fsS "http://127.0.0.1:$PORT_A/readyz" 2>&1 || true)

  run_loadgen "$out2" "${args[@]}" || rc2=$?
  gw_stop pgrestart
  echo "pgrestart: resend: $(summary "$out2")"
  local rows distinct deliveries dmin dmax want hrows hdistinct acked2
  read -r rows distinct deliveries dmin dmax <<<"$(inbox "$db" "$prefix" | tr '|' ' ')"
  read -r want hrows hdistinct <<<"$(history "$db" "$prefix" | tr '|' ' ')"
  acked2=$(jqf "$out2" 'select(.pass) | .acked')
  local figures="during the run $acked1 acknowledged, all stored (exit $rc1); failed: $f503 × 503 and $fother other, in $window, then $after acknowledged; readyz after: ${ready//$'\n'/}; resend: $acked2/$n acknowledged (exit $rc2); inbox $rows rows, $distinct distinct, delivery_count $dmin..$dmax; history $hrows rows, $hdistinct distinct, $want expected"
  if ((rc1 == 0 && rc2 == 0 && f503 > 0 && after > 0 && acked2 == n && rows == n && distinct == n && hrows == want && hdistinct == want)); then
    pass pgrestart "$figures"
  else
    fail pgrestart "$figures"
  fi
}

scenario_replicas() {
  local db prefix out_a=$WORK/replicas-a.json out_b=$WORK/replicas-b.json rc_a=0 rc_b=0 la lb
  echo "== replicas: the same $N notifications to two gateways at once; $PAIRS out-of-order pairs split across them"
  fresh_db soak_replicas
  db=$(db_url soak_replicas)
  prefix=rep-$RUN
  gw_start replica-a "$PORT_A" "$db"
  gw_start replica-b "$PORT_B" "$db"
  # Both sign first, then start sending at the same moment.
  local same=(-n "$N" -c 32 -prefix "$prefix" -seed 13 -ts-base "${RUN}000" -database-url "$db" -start-at "$(start_at "$N")")
  run_loadgen "$out_a" -url "$(url "$PORT_A")" "${same[@]}" &
  la=$!
  run_loadgen "$out_b" -url "$(url "$PORT_B")" "${same[@]}" &
  lb=$!
  wait "$la" || rc_a=$?
  wait "$lb" || rc_b=$?
  echo "replicas: A: $(summary "$out_a")"
  echo "replicas: B: $(summary "$out_b")"
  local rows distinct deliveries dmin dmax want hrows hdistinct
  read -r rows distinct deliveries dmin dmax <<<"$(inbox "$db" "$prefix" | tr '|' ' ')"
  read -r want hrows hdistinct <<<"$(history "$db" "$prefix" | tr '|' ' ')"
  local figures="same $N to A and B: exit $rc_a/$rc_b; inbox $rows rows, $distinct distinct, delivery_count $dmin..$dmax (sum $deliveries of $((2 * N))); history $hrows rows, $hdistinct distinct, $want expected"
  if ((rc_a == 0 && rc_b == 0 && rows == N && distinct == N && dmin == 2 && dmax == 2 && hrows == want && hdistinct == want)); then
    pass replicas-same "$figures"
  else
    fail replicas-same "$figures"
  fi

  # Pair i: audit.passed at ts T+1+i to A, audit.rejected at T+i to B, same mini-app (T in the
  # past: a time ahead of the gateways' clock is refused).
  local pa=pairA-$RUN pb=pairB-$RUN ts=$((RUN * 1000 - 1000000)) out_pa=$WORK/pairs-a.json out_pb=$WORK/pairs-b.json rc_pa=0 rc_pb=0
  local pairs=(-n "$PAIRS" -c 32 -seed 14 -entities "$PAIRS" -database-url "$db" -start-at "$(start_at "$PAIRS")")
  run_loadgen "$out_pa" -url "$(url "$PORT_A")" "${pairs[@]}" -prefix "$pa" -mix audit-passed -ts-base $((ts + 1)) &
  la=$!
  run_loadgen "$out_pb" -url "$(url "$PORT_B")" "${pairs[@]}" -prefix "$pb" -mix audit-rejected -ts-base "$ts" &
  lb=$!
  wait "$la" || rc_pa=$?
  wait "$lb" || rc_pb=$?
  gw_stop replica-a
  gw_stop replica-b
  echo "replicas: pairs A: $(summary "$out_pa")"
  echo "replicas: pairs B: $(summary "$out_pb")"
  local apps newest blate bearly
  read -r apps newest <<<"$(sql "$db" "SELECT count(*), count(*) FILTER (WHERE audit_status = 'audit_passed' AND event_notify_id LIKE '$pa-%')
    FROM mini_apps WHERE mini_app_id IN (SELECT mini_app_id FROM mini_app_audit_events WHERE notify_id LIKE '$pb-%')" | tr '|' ' ')"
  # Which of a pair reached the gateway first (received_at: intake start).
  read -r blate bearly <<<"$(sql "$db" "SELECT count(*) FILTER (WHERE b.received_at > a.received_at), count(*) FILTER (WHERE b.received_at <= a.received_at)
    FROM notifications a JOIN notifications b ON split_part(b.notify_id, '-', 3) = split_part(a.notify_id, '-', 3)
    WHERE a.notify_id LIKE '$pa-%' AND b.notify_id LIKE '$pb-%'" | tr '|' ' ')"
  figures="$PAIRS pairs: exit $rc_pa/$rc_pb; $apps mini-apps, $newest in the newest state (audit_passed from A); the older (B) reached its gateway after the newer for $blate pairs, before it for $bearly"
  if ((rc_pa == 0 && rc_pb == 0 && apps == PAIRS && newest == PAIRS)); then
    pass replicas-pairs "$figures"
  else
    fail replicas-pairs "$figures"
  fi
}

# start_at N: a time (unix ms) by which two loadgens have signed N each.
start_at() { echo $(($(date +%s%3N) + 2000 + $1 * 2 / 3)); }

# mem PORT PID: "rss_kb heap_inuse_bytes goroutines"
mem() {
  echo "$(rss_kb "$2") $(metric "$1" go_memstats_heap_inuse_bytes) $(metric "$1" go_goroutines)"
}

scenario_steady() {
  local db prefix out=$WORK/steady.json rc=0 lg pid
  echo "== steady: $RATE/s for $DURATION"
  fresh_db soak_steady
  db=$(db_url soak_steady)
  prefix=steady-$RUN
  gw_start steady "$PORT_A" "$db"
  pid=${GW_PID[steady]}
  local r0 h0 g0 r1 h1 g1 rmax=0 samples=$WORK/steady-memory.txt
  read -r r0 h0 g0 <<<"$(mem "$PORT_A" "$pid")"
  echo "# seconds rss_kb heap_inuse_bytes goroutines" >"$samples"
  echo "0 $r0 $h0 $g0" >>"$samples"
  run_loadgen "$out" -url "$(url "$PORT_A")" -rate "$RATE" -duration "$DURATION" -c 16 -prefix "$prefix" -seed 15 -database-url "$db" &
  lg=$!
  local start=$SECONDS r h g
  while kill -0 "$lg" 2>/dev/null; do
    sleep 10
    read -r r h g <<<"$(mem "$PORT_A" "$pid")"
    echo "$((SECONDS - start)) $r $h $g" >>"$samples"
    ((r > rmax)) && rmax=$r
  done
  wait "$lg" || rc=$?
  sleep 2 # the loadgen's connections are closed: their goroutines end
  read -r r1 h1 g1 <<<"$(mem "$PORT_A" "$pid")"
  echo "$((SECONDS - start)) $r1 $h1 $g1 (after the load)" >>"$samples"
  gw_stop steady
  echo "steady: $(summary "$out")"
  echo "steady: memory samples ($samples):"
  sed 's/^/steady:   /' "$samples"
  local rate sent acked
  rate=$(jqf "$out" 'select(.pass) | .per_second | floor')
  sent=$(jqf "$out" 'select(.pass) | .sent')
  acked=$(jqf "$out" 'select(.pass) | .acked')
  local figures="$acked/$sent acknowledged at $rate/s (exit $rc); RSS $((r0 / 1024)) MiB at start, $((rmax / 1024)) MiB peak, $((r1 / 1024)) MiB at end; heap in use $((h0 / 1048576)) -> $((h1 / 1048576)) MiB; goroutines $g0 -> $g1"
  if ((rc == 0 && acked == sent && rate * 100 >= RATE * 95 && g1 <= g0 + 10)); then
    pass steady "$figures"
  else
    fail steady "$figures"
  fi
}

main() {
  local what=${1:-all}
  case $what in
    kill9 | pgrestart | replicas | steady | all) ;;
    *) lib_die "usage: soak.sh kill9|pgrestart|replicas|steady|all" ;;
  esac
  trap lib_cleanup EXIT
  trap 'exit 130' INT TERM
  lib_init
  if [[ $what == all ]]; then
    scenario_kill9
    scenario_pgrestart
    scenario_replicas
    scenario_steady
  else
    "scenario_$what"
  fi
  echo
  echo "soak: gateway $(git rev-parse --short HEAD 2>/dev/null || echo unknown), N=$N"
  printf 'soak: %s\n' "${RESULTS[@]}"
  [[ ${RESULTS[*]} != *FAIL* ]]
}

main "$@"
