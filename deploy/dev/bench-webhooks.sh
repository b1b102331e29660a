# shellcheck shell=bash
# Sourced by bench.sh (not run), after bench-lib.sh and lib_init: what the
# webhooks cost intake, and how fast a backlog of events drains to a local
# receiver (issue 19's targets: intake with two endpoints subscribed to
# everything at 0.9x or more of intake with none, in the same run; 20,000
# events drained at 2,000 a second or more).
#
#  intake  BENCH_WH_ROUNDS (2) rounds of two passes each, in the order
#          none, two, then two, none (ABBA: a drift of the host's load falls
#          on both alike): each pass a fresh database and gateway, with no
#          endpoint or with two, both to the local receiver and every event
#          type, then loadgen: BENCH_WH_N (20000) new notifications over
#          BENCH_C connections, the dispatcher delivering all the while.
#  steady  a fresh database and gateway, two endpoints as above, and
#          loadgen at a steady BENCH_WH_RATE (500) notifications a second
#          for BENCH_WH_SECONDS (30) (BENCH_WH_STEADY_ENDPOINTS=0: none, to
#          compare): do the webhooks keep up with intake
#          below saturation? The deliveries received by the pass's end, and
#          how long after it the last one arrived.
#  drain   a fresh database and gateway, an endpoint created disabled, then
#          BENCH_WH_DRAIN_N (10000) notifications (two events each: 20,000);
#          the endpoint enabled, timed until the receiver has every event
#          (the fan-out path: feed, deliveries, claims, attempts); then
#          POST /v1/endpoints/{id}/replay of all of them, timed the same way.
#
# The receiver is `loadgen -receive` (internal/loadtest.Receiver): it
# verifies every delivery's Standard Webhooks signature and counts distinct
# webhook-ids; with -cpu it gives the CPU time an event cost the machine,
# the gateway, Postgres and itself.

WH_N=${BENCH_WH_N:-20000}
WH_ROUNDS=${BENCH_WH_ROUNDS:-2}
WH_DRAIN_N=${BENCH_WH_DRAIN_N:-10000}
WH_RATE=${BENCH_WH_RATE:-500}
WH_SECONDS=${BENCH_WH_SECONDS:-30}
WH_PARTS=${BENCH_WH_PARTS:-intake steady drain} # a subset to run fewer
RX_PORT=${BENCH_RX_PORT:-18471} # below the ephemeral range, as the gateway's
RX_URL=http://127.0.0.1:$RX_PORT

# ops METHOD PATH [JSON]: the gateway's ops API, answering its JSON.
ops() {
  curl -fsS -X "$1" -H "Authorization: Bearer $OPS_TOKEN" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} "http://127.0.0.1:$GW_PORT$2"
}

# rx_start SECRETS [CPU]: start the receiver (loadgen -receive) for the
# endpoints' comma-separated SECRETS, measuring CPU (-cpu's name=pid,...).
rx_start() {
  "$LG_BIN" -receive "127.0.0.1:$RX_PORT" -secret "$1" ${2:+-cpu "$2"} >>"$WORK/receiver.log" 2>&1 &
  RX_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null "$RX_URL/_receiver/stats" 2>/dev/null && return 0
    kill -0 "$RX_PID" 2>/dev/null || lib_die "the receiver exited at start (log: $WORK/receiver.log)"
    sleep 0.1
  done
  lib_die "the receiver is not listening after 10s (log: $WORK/receiver.log)"
}

rx_stop() {
  [[ -n ${RX_PID:-} ]] || return 0
  kill -INT "$RX_PID" 2>/dev/null || true
  wait "$RX_PID" 2>/dev/null || true
  RX_PID=
}

rx_stats() { curl -fsS "$RX_URL/_receiver/stats"; }

# rx_wait: wait up to 5 minutes until the receiver has what its reset
# expects and has measured the CPU it took; print its stats.
rx_wait() {
  local i st
  for ((i = 0; i < 1500; i++)); do
    st=$(rx_stats)
    if [[ $(jq '.cpu != null' <<<"$st") == true ]]; then
      echo "$st"
      return 0
    fi
    sleep 0.2
  done
  lib_log "receiver after 5 minutes: $st"
  lib_die "the events did not all arrive"
}

# endpoint [ENABLED]: create an endpoint to the receiver for every event
# type; print "id secret".
endpoint() {
  ops POST /v1/endpoints "{\"url\": \"$RX_URL/hook\", \"event_types\": [], \"enabled\": ${1:-true}}" | jq -r '"\(.id) \(.secret)"'
}

# wh_intake_pass MODE ROUND: one intake pass with MODE none or two
# endpoints; its loadgen summary goes to $WORK/wh-intake-MODE-ROUND.json,
# with the deliveries the receiver had when the pass ended.
wh_intake_pass() {
  local mode=$1 round=$2 out=$WORK/wh-intake-$1-$2.json secrets="" id secret i db
  fresh_db wh_intake
  db=$(db_url wh_intake)
  gw_start "wh-$mode" "$GW_PORT" "$db"
  if [[ $mode == two ]]; then
    for i in 1 2; do
      read -r id secret < <(endpoint)
      secrets+=${secrets:+,}$secret
    done
    rx_start "$secrets"
  fi
  sql "$db" CHECKPOINT >/dev/null
  lib_log "webhooks: intake, $mode endpoints, round $round: $WH_N notifications"
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$WH_N" -c "$C" -prefix "wh-$round" -json \
    -cpu "gateway=${GW_PID[wh-$mode]},postgres=$(bash deploy/dev/pg.sh pid "$PGDIR")" 2>>"$WORK/loadgen-wh.log" |
    jq -c 'select(.pass == "new")' >"$out" || lib_die "loadgen failed (log: $WORK/loadgen-wh.log)"
  local delivered=0 rejected=0 events
  if [[ $mode == two ]]; then
    read -r delivered rejected < <(rx_stats | jq -r '"\(.deliveries) \(.rejected)"')
    rx_stop
    [[ $rejected -eq 0 ]] || lib_die "the receiver refused $rejected deliveries (log: $WORK/receiver.log)"
  fi
  events=$(sql "$db" "SELECT count(*) FROM events")
  gw_stop "wh-$mode"
  jq -c --argjson d "$delivered" --argjson e "$events" '. + {delivered: $d, events: $e}' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
}

# wh_steady: the steady pass; its figures go to $WORK/wh-steady.json.
wh_steady() {
  local db secrets="" id secret i
  fresh_db wh_steady
  db=$(db_url wh_steady)
  gw_start wh-steady "$GW_PORT" "$db"
  for ((i = 0; i < ${BENCH_WH_STEADY_ENDPOINTS:-2}; i++)); do
    read -r id secret < <(endpoint)
    secrets+=${secrets:+,}$secret
  done
  [[ -z $secrets ]] || rx_start "$secrets"
  sql "$db" CHECKPOINT >/dev/null
  lib_log "webhooks: steady: $WH_RATE notifications/s for ${WH_SECONDS}s, two endpoints"
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -rate "$WH_RATE" -duration "${WH_SECONDS}s" -c "$C" -prefix wh-steady -json \
    2>>"$WORK/loadgen-wh.log" | jq -c 'select(.pass == "new")' >"$WORK/wh-steady.json" ||
    lib_die "loadgen failed (log: $WORK/loadgen-wh.log)"
  local ended delivered events want last=0
  ended=$(date +%s.%N)
  delivered=0
  [[ -z $secrets ]] || delivered=$(rx_stats | jq .deliveries)
  events=$(sql "$db" "SELECT count(*) FROM events")
  want=$((${BENCH_WH_STEADY_ENDPOINTS:-2} * events))
  for ((i = 0; i < 1500 && want > 0; i++)); do
    last=$(rx_stats | jq .deliveries)
    ((last < want)) || break
    sleep 0.1
  done
  local lag
  lag=$(awk -v a="$ended" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  ((last >= want)) || lib_die "steady: $last of $want deliveries 150s after the pass"
  rx_stop
  gw_stop wh-steady
  jq -c --argjson d "$delivered" --argjson w "$want" --argjson lag "$lag" '. + {delivered: $d, want: $w, lag_s: $lag}' \
    "$WORK/wh-steady.json" >"$WORK/wh-steady.tmp" && mv "$WORK/wh-steady.tmp" "$WORK/wh-steady.json"
}

# wh_drain: the drain of a backlog, fan-out then replay; the receiver's
# stats go to $WORK/wh-drain-fanout.json and wh-drain-replay.json.
wh_drain() {
  local db id secret events
  fresh_db wh_drain
  db=$(db_url wh_drain)
  gw_start wh-drain "$GW_PORT" "$db"
  read -r id secret < <(endpoint false)
  lib_log "webhooks: drain: $WH_DRAIN_N notifications stored with the endpoint disabled"
  loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$WH_DRAIN_N" -c "$C" -prefix wh-drain >>"$WORK/loadgen-wh.log" 2>&1 ||
    lib_die "loadgen failed (log: $WORK/loadgen-wh.log)"
  events=$(sql "$db" "SELECT count(*) FROM events")
  rx_start "$secret" "gateway=${GW_PID[wh-drain]},postgres=$(bash deploy/dev/pg.sh pid "$PGDIR")"
  sql "$db" CHECKPOINT >/dev/null

  lib_log "webhooks: drain: the endpoint enabled, $events events behind it"
  curl -fsS -o /dev/null -X POST "$RX_URL/_receiver/reset?expect=$events"
  ops PATCH "/v1/endpoints/$id" '{"enabled": true}' >/dev/null
  rx_wait >"$WORK/wh-drain-fanout.json"
  local delivered
  delivered=$(sql "$db" "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
  [[ $delivered -eq $events ]] || lib_die "after the drain $delivered deliveries delivered, want $events"

  lib_log "webhooks: drain: a replay of all $events"
  sql "$db" CHECKPOINT >/dev/null
  curl -fsS -o /dev/null -X POST "$RX_URL/_receiver/reset?expect=$events"
  ops POST "/v1/endpoints/$id/replay" '{"since": "2000-01-01T00:00:00Z"}' >/dev/null
  rx_wait >"$WORK/wh-drain-replay.json"
  local rejected
  rejected=$(rx_stats | jq .rejected)
  rx_stop
  gw_stop wh-drain
  [[ $rejected -eq 0 ]] || lib_die "the receiver refused $rejected deliveries (log: $WORK/receiver.log)"
}

bench_webhooks() {
  local r
  rm -f "$WORK"/wh-*.json "$WORK/receiver.log" "$WORK/loadgen-wh.log"
  if [[ " $WH_PARTS " == *" intake "* ]]; then
    for ((r = 1; r <= WH_ROUNDS; r++)); do
      if ((r % 2)); then
        wh_intake_pass none "$r"
        wh_intake_pass two "$r"
      else
        wh_intake_pass two "$r"
        wh_intake_pass none "$r"
      fi
    done
  fi
  [[ " $WH_PARTS " != *" steady "* ]] || wh_steady
  [[ " $WH_PARTS " != *" drain "* ]] || wh_drain
}

# report_webhooks: the figures of bench_webhooks.
report_webhooks() {
  local mode
  for mode in none two; do
    [[ " $WH_PARTS " == *" intake "* ]] || continue
    jq -s -r --arg mode "$mode" '
      "bench: webhooks: intake, \($mode) endpoints:\t\(map(.per_second) | add / length | floor) notifications/s" +
      " (rounds: \(map(.per_second | floor | tostring) | join(", "))), p99 \(map(.p99_ms | tostring) | join(", "))ms;" +
      " CPU a notification: gateway \(map(.cpu.procs_us.gateway | round | tostring) | join(", "))µs," +
      " postgres \(map(.cpu.procs_us.postgres | round | tostring) | join(", "))µs, machine \(map(.cpu.machine_us | round | tostring) | join(", "))µs" +
      (if $mode == "two" then "; deliveries received by the pass'"'"'s end: " +
        (map("\(.delivered)/\(2 * .events)") | join(", ")) else "" end)' "$WORK"/wh-intake-"$mode"-*.json
  done
  local r ratios=()
  if [[ " $WH_PARTS " == *" intake "* ]]; then
  for ((r = 1; r <= WH_ROUNDS; r++)); do
    ratios+=("$(jq -s -r '(.[1].per_second / .[0].per_second * 1000 | round) / 1000' "$WORK/wh-intake-none-$r.json" "$WORK/wh-intake-two-$r.json")")
  done
  echo "bench: webhooks: intake two/none:	$(printf '%s\n' "${ratios[@]}" | awk '{ s += $1 } END { printf "%.2f", s / NR }') (mean of the rounds: ${ratios[*]}; target 0.9 or more)"
  fi
  [[ ! -f $WORK/wh-steady.json ]] || jq -r '"bench: webhooks: steady, two endpoints:\t\(.acked) notifications at \(.per_second | floor)/s, p99 \(.p99_ms)ms; deliveries by the pass'"'"'s end \(.delivered)/\(.want), the last \(.lag_s)s after it"' "$WORK/wh-steady.json"
  [[ " $WH_PARTS " == *" drain "* ]] || return 0
  local kind
  for kind in fanout replay; do
    jq -r --arg kind "$kind" '
      "bench: webhooks: drain (\(if $kind == "fanout" then "endpoint enabled" else "replay" end)):\t\(.distinct) events in \(.seconds * 100 | round / 100)s: \(.per_second | floor) events/s" +
      (if $kind == "fanout" then " (\(.distinct / (.seconds - .first_s) | floor)/s from the first delivery, \(.first_s * 100 | round / 100)s after enabling)" else "" end) +
      "; \(.deliveries) deliveries, \(.rejected) refused; CPU an event: machine \(.cpu.machine_us | round)µs (" +
      (.cpu.procs_us | to_entries | map("\(if .key == "loadgen" then "receiver" else .key end) \(.value | round)µs") | join(", ")) + "), idle \(.cpu.idle_pct | round)%; target 2000/s or more"' \
      "$WORK/wh-drain-$kind.json"
  done
}
