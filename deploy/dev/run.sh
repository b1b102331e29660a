#!/usr/bin/env bash
# make run: the gateway with development settings.
#  - DATABASE_URL unset: a local Postgres under .dev/pg, stopped on exit.
#  - No Alipay app configured: a development "Alipay" key pair under
#    .dev/keys (made on first run), app id 2021000000000001.
#  - A development TOKEN_ENCRYPTION_KEY and OPS_API_TOKENS under .dev/keys.
# Anything already set in the environment is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .dev/bin
keys=.dev/keys

echo "run: building" >&2
CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/gateway ./cmd/alipayctl

if [[ -z ${DATABASE_URL:-} ]]; then
  DATABASE_URL=$(bash deploy/dev/pg.sh start .dev/pg "${RUN_PG_PORT:-55432}")
  trap 'bash deploy/dev/pg.sh stop .dev/pg' EXIT
  export DATABASE_URL
fi

if [[ -z ${ALIPAY_APP_ID:-} && -z ${GATEWAY_CONFIG:-} ]]; then
  if [[ ! -f $keys/alipay/public_key.txt ]]; then
    .dev/bin/alipayctl keys --out "$keys/alipay" >/dev/null
    echo "run: made a development Alipay key pair in $keys/alipay/ (sign test notifications with private_key_pkcs8.pem)" >&2
  fi
  export ALIPAY_APP_ID=2021000000000001
  export ALIPAY_PUBLIC_KEY_FILE=$keys/alipay/public_key.txt
fi
if [[ -z ${TOKEN_ENCRYPTION_KEY:-} ]]; then
  [[ -f $keys/token_encryption_key ]] || (umask 077; head -c 32 /dev/urandom | base64 >"$keys/token_encryption_key")
  TOKEN_ENCRYPTION_KEY=$(cat "$keys/token_encryption_key")
  export TOKEN_ENCRYPTION_KEY
fi
if [[ -z ${OPS_API_TOKENS:-} ]]; then
  [[ -f $keys/ops_api_token ]] || (umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$keys/ops_api_token")
  OPS_API_TOKENS=$(cat "$keys/ops_api_token")
  export OPS_API_TOKENS
fi
export HTTP_ADDR=${HTTP_ADDR:-:8080}
echo "run: gateway on $HTTP_ADDR, app ${ALIPAY_APP_ID:-(GATEWAY_CONFIG)}, ops token in $keys/ops_api_token" >&2
# Not exec: the trap stops Postgres once the gateway has stopped.
.dev/bin/gateway serve &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' INT TERM
set +e
wait $pid
rc=$?
if kill -0 $pid 2>/dev/null; then
  wait $pid
  rc=$?
fi
exit $rc
