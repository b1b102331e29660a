# shellcheck shell=bash
# Sourced by bench.sh (not run): a throwaway Postgres, gateways started in
# the background, the load generator, and what they are measured by. The
# caller sets WORK (its files) and PGDIR/PG_PORT before calling lib_init,
# and calls lib_cleanup on exit. (make soak does the same in Go: cmd/soak.)

APP_ID=2021000000000001

lib_log() { echo "${LIB_NAME:-lib}: $*" >&2; }
lib_die() {
  lib_log "$*"
  exit 1
}

# lib_init builds the binaries, starts Postgres and makes the keys.
# Sets GW_BIN, LG_BIN, ADMIN_URL, KEYS, TOKEN_KEY, OPS_TOKEN.
lib_init() {
  mkdir -p "$WORK" .dev/bin
  rm -f "$WORK"/*.log "$WORK"/*.json
  for tool in curl jq psql; do
    command -v "$tool" >/dev/null || lib_die "$tool is required"
  done
  lib_log "building"
  if [[ -n ${GATEWAY_BIN:-} ]]; then
    GW_BIN=$GATEWAY_BIN # e.g. a gateway built from another commit
  else
    CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/gateway
    GW_BIN=.dev/bin/gateway
  fi
  CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/loadgen
  LG_BIN=.dev/bin/loadgen
  ADMIN_URL=$(bash deploy/dev/pg.sh start "$PGDIR" "$PG_PORT")
  LIB_PG_STARTED=1
  KEYS=$WORK/keys
  "$LG_BIN" -gen-key "$KEYS" 2>/dev/null
  TOKEN_KEY=$(head -c 32 /dev/urandom | base64)
  OPS_TOKEN=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
}

# db_url NAME: the URL of database NAME on our server.
db_url() { echo "${ADMIN_URL/\/gateway\?//$1?}"; }

# fresh_db NAME: drop and create database NAME.
fresh_db() {
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -d "$ADMIN_URL" \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >&2
}

# sql DBURL QUERY: one query, unaligned, no header.
sql() { psql -X -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

declare -A GW_PID=()

# gw_start NAME PORT DBURL: start a gateway in the background, log to
# $WORK/NAME.log, wait for /readyz. The caller's ALIPAY_* settings are left
# out, but for those GW_ALIPAY_ENV lists (NAME=value words, such as the app
# key and OpenAPI URL of make bench-send).
gw_start() {
  local name=$1 port=$2 url=$3
  (
    for v in $(compgen -e); do
      [[ $v == ALIPAY_* || $v == GATEWAY_CONFIG ]] && unset "$v"
    done
    # shellcheck disable=SC2086 # NAME=value words
    [[ -z ${GW_ALIPAY_ENV:-} ]] || export ${GW_ALIPAY_ENV?}
    export DATABASE_URL=$url ALIPAY_APP_ID=$APP_ID ALIPAY_PUBLIC_KEY_FILE=$KEYS/public_key.txt \
      TOKEN_ENCRYPTION_KEY=$TOKEN_KEY OPS_API_TOKENS=$OPS_TOKEN HTTP_ADDR=127.0.0.1:$port LOG_LEVEL=${GATEWAY_LOG_LEVEL:-warn}
    exec "$GW_BIN" serve
  ) >>"$WORK/$name.log" 2>&1 &
  GW_PID[$name]=$!
  local i
  for ((i = 0; i < 600; i++)); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      lib_log "gateway $name ready on 127.0.0.1:$port (pid ${GW_PID[$name]})"
      return 0
    fi
    kill -0 "${GW_PID[$name]}" 2>/dev/null || {
      tail -n 20 "$WORK/$name.log" >&2
      lib_die "gateway $name exited at start (log: $WORK/$name.log)"
    }
    sleep 0.1
  done
  lib_die "gateway $name not ready after 60s (log: $WORK/$name.log)"
}

# gw_stop NAME: SIGTERM, wait for the gateway to finish.
gw_stop() {
  local pid=${GW_PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "GW_PID[$1]"
}

# gw_kill9 NAME: SIGKILL, as a crash.
gw_kill9() {
  local pid=${GW_PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "GW_PID[$1]"
}

# metric PORT NAME: the sum of a metric's series on the gateway at PORT.
metric() {
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f\n", s }'
}

# machine_ticks: the CPUs' busy and idle time so far, in 1/100 s
# (/proc/stat: user+nice+system+irq+softirq, idle+iowait).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $5 + $6; exit }' /proc/stat; }

# rss_kb PID: resident set size in kB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# loadgen ARGS...: the load generator against our key and app.
loadgen() { "$LG_BIN" -key "$KEYS/private_key_pkcs8.pem" -app-id "$APP_ID" "$@"; }

# jqf FILE FILTER: one value from a loadgen -json output file.
jqf() { jq -r "$2" "$1" | head -n 1; }

lib_cleanup() {
  local name
  for name in "${!GW_PID[@]}"; do
    gw_stop "$name"
  done
  if [[ -n ${LIB_PG_STARTED:-} ]]; then
    bash deploy/dev/pg.sh stop "$PGDIR" || true
  fi
}
