#!/usr/bin/env bash
# make bench-send: issue 20's two speed targets for bulk template messages
# (POST /v1/template-message-batches), against the OpenAPI simulator as a
# process (cmd/openapisim: it verifies every request's signature, signs
# every answer, and records when each message was delivered).
#
#  drain     one gateway (TEMPLATE_SEND_RATE=0: no limit), one batch of
#            BENCH_SEND_N (20000) to_user_ids with shared data and no
#            pre-check. The drain rate is timed on the simulator's clock,
#            first to last delivered send, so the upload and its COPY stay
#            out of it; pass at BENCH_SEND_MIN_RATE (1000) a second or more.
#            Also POST-to-finished, and the CPU the gateway, the simulator
#            and Postgres took over it (cores busy, and ms a send).
#  rate      two gateways on one database (TEMPLATE_SEND_RATE=BENCH_SEND_RATE,
#            50), one batch of BENCH_SEND_RATE_N (3000) posted to the first:
#            after dropping the first 2 s, the steady rate and every 10 s
#            window within ±5% of 50 (the 1 s windows' least and most for
#            information), and both replicas sent (their
#            alipay_gateway_template_batch_sends_total{result="sent"}).
#  simlimit  the same with the simulator limiting the app to 50 calls a
#            second itself (a burst of 10): (close to) no 40005 answers, at
#            most BENCH_SEND_MAX_LIMITED (1% of the batch); the rates are
#            shown, not judged.
#
# BENCH_SEND_PARTS picks some ("drain rate simlimit"). Its own Postgres
# (.dev/pg-bench-send on BENCH_PG_PORT, 55470), fresh databases, the
# gateway built from this tree (or GATEWAY_BIN), BENCH_SEND_CONCURRENCY
# (TEMPLATE_SEND_CONCURRENCY, the gateway's default when unset). Files in
# .dev/bench-send: the logs, each batch's last view, the simulator's stats
# and the rates. Everything is stopped on exit; exit status 1 when a check
# fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${BENCH_SEND_N:-20000}
MIN_RATE=${BENCH_SEND_MIN_RATE:-1000}
RATE=${BENCH_SEND_RATE:-50}
RATE_N=${BENCH_SEND_RATE_N:-3000}
MAX_LIMITED=${BENCH_SEND_MAX_LIMITED:-$((RATE_N / 100))}
PARTS=${BENCH_SEND_PARTS:-drain rate simlimit}
TIMEOUT=${BENCH_SEND_TIMEOUT:-600} # seconds a batch may take
GW_PORT=${BENCH_GW_PORT:-18461}    # below the ephemeral range, as bench.sh's
GW_PORT2=$((GW_PORT + 1))
SIM_PORT=${BENCH_SIM_PORT:-18463}
SIM_URL=http://127.0.0.1:$SIM_PORT
PG_PORT=${BENCH_PG_PORT:-55470}
PGDIR=.dev/pg-bench-send
WORK=.dev/bench-send
LIB_NAME=bench-send
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh

trap 'sim_stop; lib_cleanup' EXIT
trap 'exit 130' INT TERM

SIM_BIN=.dev/bin/openapisim
fails=()
fail() {
  fails+=("$1")
  lib_log "FAIL: $1"
}

# sim_start [FLAGS...]: the simulator for our app (its key pair: APP_KEYS;
# answers signed with the "Alipay" key the gateway trusts), log to
# $WORK/sim.log, wait until it answers.
sim_start() {
  "$SIM_BIN" -addr "127.0.0.1:$SIM_PORT" -app-id "$APP_ID" -app-public-key "$APP_KEYS/public_key.txt" \
    -alipay-private-key "$KEYS/private_key_pkcs8.pem" "$@" >>"$WORK/sim.log" 2>&1 &
  SIM_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null "$SIM_URL/sim/stats" 2>/dev/null && return 0
    kill -0 "$SIM_PID" 2>/dev/null || lib_die "the simulator exited at start (log: $WORK/sim.log)"
    sleep 0.1
  done
  lib_die "the simulator is not answering after 10s (log: $WORK/sim.log)"
}

sim_stop() {
  [[ -n ${SIM_PID:-} ]] || return 0
  kill -TERM "$SIM_PID" 2>/dev/null || true
  wait "$SIM_PID" 2>/dev/null || true
  SIM_PID=
}

# ops PORT METHOD PATH [CURL ARGS...]: the ops API of the gateway at PORT.
ops() {
  local port=$1 method=$2 path=$3
  shift 3
  curl -fsS -X "$method" -H "Authorization: Bearer $OPS_TOKEN" "$@" "http://127.0.0.1:$port$path"
}

# batch_body N FILE: a batch of N to_user_ids (2088000000000000 on) with
# shared data, no pre-check.
batch_body() {
  awk -v n="$1" -v app="$APP_ID" 'BEGIN {
    printf "{\"app_id\":\"%s\",\"user_template_id\":\"bench-tpl\",\"page\":\"pages/index\",", app
    printf "\"data\":{\"keyword1\":{\"value\":\"bench\"}},\"precheck\":false,\"recipients\":["
    for (i = 0; i < n; i++) printf "%s{\"to_user_id\":\"2088%012d\"}", (i ? "," : ""), i
    print "]}"
  }' >"$2"
}

# post_batch PORT FILE: post the batch; print its id.
post_batch() {
  local view
  view=$(ops "$1" POST /v1/template-message-batches -H 'Content-Type: application/json' \
    -H "Idempotency-Key: bench-$(date +%s%N)" --data-binary "@$2") || lib_die "POST /v1/template-message-batches failed"
  jq -r '.id' <<<"$view"
}

# wait_batch PORT ID FILE: poll the batch until it is no longer running,
# its last view into FILE; print its status.
wait_batch() {
  local i view status
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    view=$(ops "$1" GET "/v1/template-message-batches/$2") || lib_die "GET /v1/template-message-batches/$2 failed"
    status=$(jq -r .status <<<"$view")
    if [[ $status != running ]]; then
      echo "$view" >"$3"
      echo "$status"
      return 0
    fi
    sleep 0.2
  done
  echo "$view" >"$3"
  echo timeout
}

# tree_ticks PID...: CPU time (1/100 s) of the processes and their
# descendants, reaped children included (utime+stime+cutime+cstime).
tree_ticks() {
  local pids="$*" all="$*" kids p
  while [[ -n $pids ]]; do
    kids=""
    for p in $pids; do
      kids+=" $(ps -o pid= --ppid "$p" 2>/dev/null | tr '\n' ' ')"
    done
    pids=$(echo "$kids" | xargs)
    all+=" $pids"
  done
  for p in $all; do
    sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }'
  done | awk '{ s += $1 } END { print s + 0 }'
}

# cpu_sample GATEWAY_PIDS: "gateways sim postgres machine-busy" ticks now.
cpu_sample() {
  local busy _idle
  read -r busy _idle < <(machine_ticks)
  # shellcheck disable=SC2086 # a list of pids
  echo "$(tree_ticks $1) $(tree_ticks "$SIM_PID") $(tree_ticks "$(bash deploy/dev/pg.sh pid "$PGDIR")") $busy"
}

# cpu_report BEFORE AFTER SECONDS SENDS: the CPU split over the interval.
cpu_report() {
  awk -v b="$1" -v a="$2" -v s="$3" -v n="$4" 'BEGIN {
    split(b, x); split(a, y); split("gateway sim postgres machine", name)
    out = ""
    for (i = 1; i <= 4; i++) {
      t = y[i] - x[i]
      out = out sprintf("%s%s %.2f cores (%.2f ms a send)", (i > 1 ? ", " : ""), name[i], t / 100 / s, t * 10 / n)
    }
    print out
  }'
}

# sent_on PORT: the sends the gateway at PORT recorded as sent.
sent_on() {
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk 'index($1, "alipay_gateway_template_batch_sends_total{") == 1 && index($1, "result=\"sent\"") > 0 { s += $2 }
      END { printf "%.0f\n", s }'
}

gw_env() {
  GW_ALIPAY_ENV="ALIPAY_APP_PRIVATE_KEY_FILE=$APP_KEYS/private_key_pkcs8.pem ALIPAY_GATEWAY_URL=$SIM_URL/gateway.do${BENCH_SEND_EXTRA_ENV:+ $BENCH_SEND_EXTRA_ENV}"
  export GW_ALIPAY_ENV
  [[ -z ${BENCH_SEND_CONCURRENCY:-} ]] || export TEMPLATE_SEND_CONCURRENCY=$BENCH_SEND_CONCURRENCY
}

report=()

bench_drain() {
  lib_log "drain: one gateway, no rate limit, a batch of $N"
  fresh_db send_drain
  sim_start
  TEMPLATE_SEND_RATE=0 gw_start send-drain "$GW_PORT" "$(db_url send_drain)"
  batch_body "$N" "$WORK/drain-body.json"
  sql "$(db_url send_drain)" CHECKPOINT >/dev/null
  local before after t0 t1 id status secs
  before=$(cpu_sample "${GW_PID[send-drain]}")
  t0=$(date +%s.%N)
  id=$(post_batch "$GW_PORT" "$WORK/drain-body.json")
  status=$(wait_batch "$GW_PORT" "$id" "$WORK/drain-batch.json")
  t1=$(date +%s.%N)
  after=$(cpu_sample "${GW_PID[send-drain]}")
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  curl -fsS "$SIM_URL/sim/stats?times=1&dups=1" >"$WORK/drain-sim.json"
  "$SIM_BIN" rates -n "$N" -min-rate "$MIN_RATE" <"$WORK/drain-sim.json" >"$WORK/drain-rates.json" || fail "drain: $(jq -c .fails "$WORK/drain-rates.json")"
  [[ $status == finished ]] || fail "drain: batch $id is $status, not finished"
  [[ $(jq .counts.sent "$WORK/drain-batch.json") == "$N" ]] || fail "drain: $(jq -c .counts "$WORK/drain-batch.json")"
  [[ $(jq .duplicates "$WORK/drain-sim.json") == 0 ]] || fail "drain: the simulator got $(jq .duplicates "$WORK/drain-sim.json") messages twice"
  report+=("drain:	$(jq -r '"\(.rate // 0 | floor) sends/s on the simulator'"'"'s clock (\(.n) sends in \((.span_s // 0) * 1000 | round / 1000) s, pass at '"$MIN_RATE"': \(.pass))"' "$WORK/drain-rates.json")")
  report+=("drain:	POST to finished ${secs}s ($(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')/s), batch $status, counts $(jq -c .counts "$WORK/drain-batch.json"), simulator $(jq -c '{sent, calls, rate_limited, duplicates}' "$WORK/drain-sim.json")")
  report+=("drain:	CPU over it: $(cpu_report "$before" "$after" "$secs" "$N")")
  gw_stop send-drain
  sim_stop
}

# bench_rate MODE: rate (the gateways' limit alone) or simlimit (the
# simulator's too).
bench_rate() {
  local mode=$1 db=send_$1
  lib_log "$mode: two gateways at TEMPLATE_SEND_RATE=$RATE, a batch of $RATE_N"
  fresh_db "$db"
  if [[ $mode == simlimit ]]; then
    sim_start -rate "$RATE" -burst 10
  else
    sim_start
  fi
  TEMPLATE_SEND_RATE=$RATE gw_start "$mode-a" "$GW_PORT" "$(db_url "$db")"
  TEMPLATE_SEND_RATE=$RATE gw_start "$mode-b" "$GW_PORT2" "$(db_url "$db")"
  batch_body "$RATE_N" "$WORK/$mode-body.json"
  local id status a b rc=0
  id=$(post_batch "$GW_PORT" "$WORK/$mode-body.json")
  status=$(wait_batch "$GW_PORT" "$id" "$WORK/$mode-batch.json")
  curl -fsS "$SIM_URL/sim/stats?times=1&dups=1" >"$WORK/$mode-sim.json"
  "$SIM_BIN" rates -n "$RATE_N" -target "$RATE" -tolerance 0.05 -drop 2s -window 10s \
    <"$WORK/$mode-sim.json" >"$WORK/$mode-rates.json" || rc=$?
  a=$(sent_on "$GW_PORT")
  b=$(sent_on "$GW_PORT2")
  [[ $status == finished ]] || fail "$mode: batch $id is $status, not finished"
  [[ $(jq .counts.sent "$WORK/$mode-batch.json") == "$RATE_N" ]] || fail "$mode: $(jq -c .counts "$WORK/$mode-batch.json")"
  [[ $(jq .duplicates "$WORK/$mode-sim.json") == 0 ]] || fail "$mode: the simulator got $(jq .duplicates "$WORK/$mode-sim.json") messages twice"
  local limited
  limited=$(jq .rate_limited "$WORK/$mode-sim.json")
  if [[ $mode == rate ]]; then
    ((rc == 0)) || fail "rate: $(jq -c .fails "$WORK/$mode-rates.json")"
    ((a > 0 && b > 0)) || fail "rate: not both replicas sent (a $a, b $b)"
  else
    ((limited <= MAX_LIMITED)) || fail "simlimit: $limited calls answered 40005 (at most $MAX_LIMITED)"
  fi
  report+=("$mode:	$(jq -r '"steady \((.steady_rate // 0) * 100 | round / 100)/s after 2 s (\(.kept // 0) sends), 10 s windows \(.windows // [] | map(. * 100 | round / 100)), 1 s windows \(.second_min // 0)-\(.second_max // 0); pass \(.pass)"' "$WORK/$mode-rates.json")")
  report+=("$mode:	batch $status, counts $(jq -c .counts "$WORK/$mode-batch.json"); replicas sent a $a, b $b; 40005 answers $limited; simulator $(jq -c '{sent, calls, duplicates}' "$WORK/$mode-sim.json")")
  gw_stop "$mode-a"
  gw_stop "$mode-b"
  sim_stop
}

lib_init
CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/openapisim
APP_KEYS=$WORK/appkeys
"$LG_BIN" -gen-key "$APP_KEYS" 2>/dev/null
gw_env
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain -- internal cmd migrations go.mod 2>/dev/null) ]] || rev="$rev+changes"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

for part in $PARTS; do
  case $part in
    drain) bench_drain ;;
    rate | simlimit) bench_rate "$part" ;;
    *) lib_die "BENCH_SEND_PARTS: unknown part $part (drain, rate, simlimit)" ;;
  esac
done

echo
echo "bench-send: gateway $rev, $(nproc) CPUs, load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
for line in "${report[@]}"; do
  echo "bench-send: $line"
done
if ((${#fails[@]} > 0)); then
  for f in "${fails[@]}"; do
    echo "bench-send: FAIL: $f"
  done
  exit 1
fi
echo "bench-send: PASS"
