#!/usr/bin/env bash
# make demo: the gateway end to end, on development keys.
#  1. starts the gateway as `make run` does (deploy/dev/run.sh, in the
#     background, its output in .dev/demo-gateway.log), waits for /readyz;
#  2. sends the seven sample notifications signed with the development
#     "Alipay" key (alipayctl send), resends one (same notify_id: the
#     duplicate is answered success again and stored once), sends a tampered
#     one (403 fail) and shows alipayctl verify's diagnosis of it;
#  3. the WebSocket channel: the app has ALIPAY_CHANNEL=both, connected to
#     the local simulator of Alipay's message service (cmd/msgsim); the same
#     six messages arrive over it (duplicates: one effect), a new one is
#     applied, a dropped connection is re-established, a forged message is
#     acknowledged FAIL;
#  4. the events: `alipayctl listen` registers itself as a webhook endpoint
#     before the samples are sent, and prints each event the gateway
#     forwards to it (signed, verified); the feed GET /v1/events too;
#  5. prints the resulting state from the ops API;
#  6. stops alipayctl listen (which deletes its endpoint), the gateway (and so the Postgres run.sh started) and the
#     simulator, always.
# The ALIPAY_* app settings, GATEWAY_CONFIG and OPS_API_TOKENS of the caller
# are ignored: the demo uses run.sh's development app and token.
set -euo pipefail
cd "$(dirname "$0")/../.."

unset GATEWAY_CONFIG OPS_API_TOKENS ALIPAY_APP_ID ALIPAY_PUBLIC_KEY ALIPAY_PUBLIC_KEY_FILE \
  ALIPAY_ROOT_CERT_FILE ALIPAY_PUBLIC_CERT_FILE ALIPAY_ENCRYPT_KEY ALIPAY_ALLOW_RSA1 \
  ALIPAY_APP_CERT_FILE ALIPAY_CHANNEL ALIPAY_MSG_HOST ALIPAY_APP_PRIVATE_KEY_FILE

export HTTP_ADDR=${HTTP_ADDR:-:8080}
host=${HTTP_ADDR%:*}
port=${HTTP_ADDR##*:}
case $host in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
base=http://$host:$port
app_id=2021000000000001
keys=.dev/keys
ctl=.dev/bin/alipayctl
log=.dev/demo-gateway.log
tmp=$(mktemp -d)
sim_addr=${MSGSIM_ADDR:-127.0.0.1:8090}
sim_log=.dev/demo-msgsim.log
# The dev app takes Alipay's messages over HTTP and over the WebSocket channel.
export ALIPAY_CHANNEL=both ALIPAY_MSG_HOST=http://$sim_addr ALIPAY_MSG_ALLOW_INSECURE=true ALIPAY_APP_PRIVATE_KEY_FILE=$keys/app/private_key_pkcs8.pem

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

if curl -s -o /dev/null --max-time 2 "$base/"; then
  die "something already answers on $base: stop it, or set HTTP_ADDR to a free address"
fi
if curl -s -o /dev/null --max-time 2 "http://$sim_addr/"; then
  die "something already answers on $sim_addr: stop it, or set MSGSIM_ADDR to a free address"
fi

mkdir -p .dev
runpid=""
simpid=""
listenpid=""
listen_log=.dev/demo-listen.log
started_pg=""
# Stop the dev Postgres at the end only if it is this run's (run.sh starts
# it when DATABASE_URL is unset, and reuses one already running).
# shellcheck disable=SC2016 # $1 is expanded by the inner bash
if [[ -z ${DATABASE_URL:-} ]] && ! timeout 2 bash -c 'exec 4<>"/dev/tcp/127.0.0.1/$1"' _ "${RUN_PG_PORT:-55432}" 2>/dev/null; then
  started_pg=1
fi
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # First: it deletes its endpoint through the gateway.
  if [[ -n $listenpid ]] && kill -0 "$listenpid" 2>/dev/null; then
    kill -TERM "$listenpid" 2>/dev/null || true
    wait "$listenpid" 2>/dev/null || true
    tail -n 1 "$listen_log" 2>/dev/null | grep '^deleted endpoint' || true
  fi
  if [[ -n $runpid ]] && kill -0 "$runpid" 2>/dev/null; then
    say "stopping the gateway"
    # run.sh leads its own process group: the gateway gets SIGTERM, run.sh
    # waits for it, then stops Postgres.
    kill -TERM -- "-$runpid" 2>/dev/null || true
    for _ in $(seq 60); do
      kill -0 "$runpid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$runpid" 2>/dev/null; then
      echo "demo: the gateway did not stop in 30s; killing it" >&2
      kill -KILL -- "-$runpid" 2>/dev/null || true
    fi
    wait "$runpid" 2>/dev/null || true
  fi
  # After the gateway: it closes its WebSocket cleanly first.
  if [[ -n $simpid ]]; then
    kill -TERM "$simpid" 2>/dev/null || true
    wait "$simpid" 2>/dev/null || true
  fi
  # In case run.sh was stopped before it set its own trap.
  if [[ -n $started_pg ]]; then
    bash deploy/dev/pg.sh stop .dev/pg >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting the simulator of Alipay's message service on $sim_addr (log: $sim_log)"
mkdir -p .dev/bin
CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/alipayctl ./cmd/msgsim
[[ -f $keys/alipay/public_key.txt ]] || "$ctl" keys --out "$keys/alipay" >/dev/null
[[ -f $keys/app/public_key.txt ]] || "$ctl" keys --out "$keys/app" >/dev/null
.dev/bin/msgsim -addr "$sim_addr" -app-id "$app_id" -app-public-key "$keys/app/public_key.txt" \
  -alipay-private-key "$keys/alipay/private_key_pkcs8.pem" -ack-timeout 5s >"$sim_log" 2>&1 &
simpid=$!

say "starting the gateway (log: $log)"
set -m # run.sh in its own process group, so that it can be stopped whole
bash deploy/dev/run.sh >"$log" 2>&1 &
runpid=$!
set +m

# First run: go build, initdb and migrations; allow two minutes.
for i in $(seq 240); do
  if ! kill -0 "$runpid" 2>/dev/null; then
    tail -n 30 "$log" >&2
    die "the gateway exited before it was ready (see $log)"
  fi
  if curl -fsS --max-time 2 "$base/readyz" >/dev/null 2>&1; then
    break
  fi
  ((i == 240)) && die "the gateway was not ready after 120s (see $log)"
  sleep 0.5
done
echo "ready: $base"
token=$(cat "$keys/ops_api_token")

say "alipayctl listen: a receiver of the gateway's events, registered as a webhook endpoint (log: $listen_log)"
"$ctl" listen --gateway "$base" --token "$token" >"$listen_log" 2>&1 &
listenpid=$!
for i in $(seq 50); do
  grep -q '^ready' "$listen_log" 2>/dev/null && break
  kill -0 "$listenpid" 2>/dev/null || { cat "$listen_log" >&2; die "alipayctl listen exited"; }
  ((i == 50)) && die "alipayctl listen was not ready after 10s (see $listen_log)"
  sleep 0.2
done
grep '^registered' "$listen_log" | sed 's/; its secret: .*//'

send() { "$ctl" send --url "$base/alipay/notify" --key "$keys/alipay/private_key_pkcs8.pem" --app-id "$app_id" "$@"; }

say "sending the seven samples"
first=""
declare -A ids
for name in auth-granted merchant-confirmed fastregister-changed audit-rejected baseaudit-passed audit-passed appauth-cancelled; do
  flags=()
  # The seed's cancellation is dated before the grant (which the gateway
  # would then keep); date it now so that it cancels.
  [[ $name == appauth-cancelled ]] && flags=(--now)
  printf '%-22s ' "$name"
  out=$(send --sample "$name" "${flags[@]}") || { echo "$out"; die "sending $name failed"; }
  echo "$out"
  [[ -n $first ]] || first=${out##*notify_id=}
  ids[$name]=${out##*notify_id=}
done

say "resending auth-granted (notify_id $first), as Alipay does until it gets success"
printf '%-22s ' "auth-granted (again)"
send --sample auth-granted --notify-id "$first"
grep -F "\"notify_id\":\"$first\"" "$log" | tail -n 1 | grep -o '"duplicate":[a-z]*\|"delivery_count":[0-9]*' | paste -sd' ' - |
  sed 's/^/gateway log: /' || true

say "sending a tampered notification (biz_content changed after signing)"
send --sample audit-passed --print | sed 's/2014072300007148/2014072300009999/' | tr -d '\n' >"$tmp/tampered.txt"
printf '%-22s ' "audit-passed (tampered)"
curl -sS -o "$tmp/reply" -w 'HTTP %{http_code} ' -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-binary "@$tmp/tampered.txt" "$base/alipay/notify"
cat "$tmp/reply"
echo
say "alipayctl verify on the tampered body"
"$ctl" verify "$tmp/tampered.txt" --key "$keys/alipay/public_key.txt" 2>/dev/null | sed -n '/^NOT VERIFIED\|^VERIFIED/,$p' || true

sim() { curl -sS -X POST "http://$sim_addr/sim/$1" "${@:2}"; }
acked() { # prints the last ack of msg id $1 once there is one
  local i
  for i in $(seq 50); do
    curl -sS "http://$sim_addr/sim/acks" | python3 -c "import json,sys
a=[x['status'] for x in json.load(sys.stdin) if x['msg_id']=='$1']
print(a[-1] if a else '')" | grep . && return 0
    sleep 0.2
  done
  echo "(no ack)"
}
gwlog() { # the key fields of the gateway's WebSocket line for notify_id $1
  local i line
  for i in $(seq 20); do
    line=$(grep -F '"channel":"websocket"' "$log" | grep -F "\"notify_id\":\"$1\"" | tail -n 1) && break
    sleep 0.1
  done
  grep -o '"outcome":"[a-z]*"\|"duplicate":[a-z]*\|"delivery_count":[0-9]*\|"reason":"[a-z_]*"' <<<"$line" | paste -sd' ' -
}

say "the WebSocket channel: the same six messages over it (each already taken over HTTP)"
for name in merchant-confirmed fastregister-changed audit-rejected baseaudit-passed audit-passed appauth-cancelled; do
  sim deliver -d app_id="$app_id" -d sample="$name" -d msg_id="${ids[$name]}" >/dev/null
  printf '%-22s ack %s  gateway: %s\n' "$name" "$(acked "${ids[$name]}")" "$(gwlog "${ids[$name]}")"
done
say "a new message over the WebSocket only"
# New ids and new content each run: the dev database is kept between runs, and the inbox knows a message by
# its signed data too (the same data under a new x-msgId is a replay: acknowledged, no second effect).
run=$(date +%s)
ws1="ws-demo-$run-1" ws2="ws-demo-$run-2"
audit() { echo "{\"mini_app_id\":\"2014072300007148\",\"mini_app_version\":\"0.1.$run$1\"}"; }
sim deliver -d app_id="$app_id" -d msg_api=alipay.open.mini.version.audit.passed --data-urlencode content="$(audit 1)" \
  -d msg_id="$ws1" -d timestamp="$(date +%s%3N)" >/dev/null
printf '%-22s ack %s  gateway: %s\n' "audit-passed (new)" "$(acked "$ws1")" "$(gwlog "$ws1")"
say "the connection dropped: the gateway registers and connects again"
sim drop -d app_id="$app_id"
echo
sim deliver -d app_id="$app_id" -d msg_api=alipay.open.mini.version.audit.passed --data-urlencode content="$(audit 2)" \
  -d msg_id="$ws2" -d timestamp="$(date +%s%3N)" >/dev/null
printf '%-22s ack %s  gateway: %s\n' "after the drop" "$(acked "$ws2")" "$(gwlog "$ws2")"
curl -sS "$base/metrics" | grep '^alipay_gateway_websocket_' || true
say "a forged message over the WebSocket (its x-sign does not sign its data)"
sim deliver-forged -d app_id="$app_id" -d sample=audit-passed -d msg_id=ws-forged-1 >/dev/null
printf '%-22s ack %s  gateway: %s\n' "forged" "$(acked ws-forged-1)" "$(gwlog ws-forged-1)"

say "the events alipayctl listen received (webhooks, signed per Standard Webhooks, verified)"
# Seven notifications: seven notification.received, and an event for each change applied.
for i in $(seq 50); do
  (($(grep -c ' -> 204$' "$listen_log") >= 14)) && break
  sleep 0.2
done
grep ' -> 204$' "$listen_log" | sed 's/ -> 204$//' | cut -c1-160

ops() {
  say "GET $1"
  local code
  code=$(curl -sS -o "$tmp/ops" -w '%{http_code}' -H "Authorization: Bearer $token" "$base$1") || true
  echo "HTTP $code"
  if [[ $code == 2* ]] && command -v python3 >/dev/null &&
    { python3 -m json.tool --no-ensure-ascii <"$tmp/ops" || python3 -m json.tool <"$tmp/ops"; } >"$tmp/ops.json" 2>/dev/null; then
    cat "$tmp/ops.json"
  else
    cat "$tmp/ops"
    echo
  fi
}
ops "/v1/events?type=authorization.*&limit=5"
ops "/v1/notifications?limit=20"
ops "/v1/authorizations"
ops "/v1/mini-app-orders"
ops "/v1/mini-apps/2014072300007148"
