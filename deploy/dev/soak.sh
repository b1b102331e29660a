#!/usr/bin/env bash
# make soak: the gateway under failure.
#
#   soak.sh kill9|pgrestart|replicas|steady|webhooks|all   (default all)
#
# Builds the gateway (or takes GATEWAY_BIN) and cmd/soak, starts a
# throwaway Postgres in .dev/pg-soak (SOAK_PG_PORT, 55460), and runs
# cmd/soak, which runs the scenarios, prints a PASS or FAIL line with the
# figures for each, and exits 1 when any fails (its doc comment says what
# each scenario does and checks; webhooks takes 2 to 4 minutes, for the
# retries' backoff). Settings: SOAK_N, SOAK_RATE, SOAK_DURATION,
# SOAK_PAIRS, SOAK_PORT_A, SOAK_PORT_B, SOAK_RECEIVER_PORT (unset:
# cmd/soak's defaults: 10000, 200/s, 10m, 2000, 18461, 18462, 18463),
# GATEWAY_LOG_LEVEL (warn). Logs in .dev/soak/. Postgres is stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

what=${1:-all}
case $what in
  kill9 | pgrestart | replicas | steady | webhooks | all) ;;
  *)
    echo "usage: soak.sh kill9|pgrestart|replicas|steady|webhooks|all" >&2
    exit 1
    ;;
esac
PGDIR=.dev/pg-soak
PG_PORT=${SOAK_PG_PORT:-55460}

args=()
for setting in n=SOAK_N rate=SOAK_RATE duration=SOAK_DURATION pairs=SOAK_PAIRS \
  port-a=SOAK_PORT_A port-b=SOAK_PORT_B receiver-port=SOAK_RECEIVER_PORT log-level=GATEWAY_LOG_LEVEL; do
  var=${setting#*=}
  [[ -z ${!var:-} ]] || args+=("-${setting%%=*}=${!var}")
done

echo "soak: building" >&2
mkdir -p .dev/bin
gateway=${GATEWAY_BIN:-.dev/bin/gateway} # e.g. a gateway built from another commit
[[ -n ${GATEWAY_BIN:-} ]] || CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/gateway
CGO_ENABLED=0 go build -o .dev/bin/ ./cmd/soak

trap 'bash deploy/dev/pg.sh stop "$PGDIR" || true' EXIT
admin_url=$(bash deploy/dev/pg.sh start "$PGDIR" "$PG_PORT")
.dev/bin/soak -admin-url "$admin_url" -pg-dir "$PGDIR" -pg-port "$PG_PORT" -gateway "$gateway" "${args[@]}" "$what"
