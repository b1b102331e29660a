#!/usr/bin/env bash
# make demo: the gateway end to end, on development keys.
#  1. starts the gateway as `make run` does (deploy/dev/run.sh, in the
#     background, its output in .dev/demo-gateway.log), waits for /readyz;
#  2. sends the seven sample notifications signed with the development
#     "Alipay" key (alipayctl send), resends one (same notify_id: the
#     duplicate is answered success again and stored once), sends a tampered
#     one (403 fail) and shows alipayctl verify's diagnosis of it;
#  3. prints the resulting state from the ops API;
#  4. stops the gateway (and so the Postgres run.sh started), always.
# The ALIPAY_* app settings, GATEWAY_CONFIG and OPS_API_TOKENS of the caller
# are ignored: the demo uses run.sh's development app and token.
set -euo pipefail
cd "$(dirname "$0")/../.."

unset GATEWAY_CONFIG OPS_API_TOKENS ALIPAY_APP_ID ALIPAY_PUBLIC_KEY ALIPAY_PUBLIC_KEY_FILE \
  ALIPAY_ROOT_CERT_FILE ALIPAY_PUBLIC_CERT_FILE ALIPAY_ENCRYPT_KEY ALIPAY_ALLOW_RSA1

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

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

if curl -s -o /dev/null --max-time 2 "$base/"; then
  die "something already answers on $base: stop it, or set HTTP_ADDR to a free address"
fi

mkdir -p .dev
runpid=""
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

send() { "$ctl" send --url "$base/alipay/notify" --key "$keys/alipay/private_key_pkcs8.pem" --app-id "$app_id" "$@"; }

say "sending the seven samples"
first=""
for name in auth-granted merchant-confirmed fastregister-changed audit-rejected baseaudit-passed audit-passed appauth-cancelled; do
  flags=()
  # The seed's cancellation is dated before the grant (which the gateway
  # would then keep); date it now so that it cancels.
  [[ $name == appauth-cancelled ]] && flags=(--now)
  printf '%-22s ' "$name"
  out=$(send --sample "$name" "${flags[@]}") || { echo "$out"; die "sending $name failed"; }
  echo "$out"
  [[ -n $first ]] || first=${out##*notify_id=}
done

say "resending auth-granted (notify_id $first), as Alipay does until it gets success"
printf '%-22s ' "auth-granted (again)"
send --sample auth-granted --notify-id "$first"
grep -F "\"notify_id\":\"$first\"" "$log" | tail -n 1 | grep -o '"duplicate":[a-z]*\|"delivery_count":[0-9]*' | paste -sd' ' - |
  sed 's/^/gateway log: /' || true

say "sending a tampered notification (biz_content changed after signing)"
send --sample audit-passed --print | sed 's/2014072300007148/2014072300009999/' >"$tmp/tampered.txt"
printf '%-22s ' "audit-passed (tampered)"
curl -sS -o "$tmp/reply" -w 'HTTP %{http_code} ' -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-binary "@$tmp/tampered.txt" "$base/alipay/notify"
cat "$tmp/reply"
echo
say "alipayctl verify on the tampered body"
"$ctl" verify "$tmp/tampered.txt" --key "$keys/alipay/public_key.txt" 2>/dev/null | sed -n '/^NOT VERIFIED\|^VERIFIED/,$p' || true

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
ops "/v1/notifications?limit=20"
ops "/v1/authorizations"
ops "/v1/mini-app-orders"
ops "/v1/mini-apps/2014072300007148"
