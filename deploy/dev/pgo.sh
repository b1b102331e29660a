#!/usr/bin/env bash
# make pgo: refresh cmd/gateway/default.pgo, the CPU profile that `go build`
# uses for profile-guided optimisation of the gateway (Go's -pgo=auto picks
# up default.pgo in the main package's directory).
#
# The profile is taken under the bench's load: the gateway built from this
# tree on a throwaway Postgres (.dev/pg-bench), loadgen posting
# PGO_N (150000) new notifications over 64 connections, and PGO_SECONDS
# (12) of CPU profile from PPROF_ADDR once the posting has begun. Rebuild
# and run `make bench` afterwards to see what it changed; commit the new
# default.pgo with the change that made it worth refreshing.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${PGO_N:-150000}
PROFILE_SECONDS=${PGO_SECONDS:-12}
GW_PORT=18452
PPROF=127.0.0.1:18453
PG_PORT=${BENCH_PG_PORT:-55450}
PGDIR=.dev/pg-bench
WORK=.dev/pgo
LIB_NAME=pgo
OUT=cmd/gateway/default.pgo
# shellcheck source=deploy/dev/bench-lib.sh
source deploy/dev/bench-lib.sh

trap lib_cleanup EXIT
trap 'exit 130' INT TERM

lib_init
fresh_db pgo
PPROF_ADDR=$PPROF gw_start gateway "$GW_PORT" "$(db_url pgo)"

lib_log "loadgen: signing $N notifications, then posting them over 64 connections"
loadgen -url "http://127.0.0.1:$GW_PORT/alipay/notify" -n "$N" -c 64 -prefix "pgo-$(date +%s)" \
  >"$WORK/loadgen.log" 2>&1 &
lg=$!
until grep -q signed "$WORK/loadgen.log" 2>/dev/null; do
  kill -0 "$lg" 2>/dev/null || { cat "$WORK/loadgen.log" >&2; lib_die "loadgen exited before posting"; }
  sleep 0.2
done
sleep 1
lib_log "profiling the gateway for ${PROFILE_SECONDS}s"
curl -fsS -o "$WORK/cpu.pprof" "http://$PPROF/debug/pprof/profile?seconds=$PROFILE_SECONDS"
wait "$lg" || { cat "$WORK/loadgen.log" >&2; lib_die "loadgen failed"; }
grep 'notifications/s' "$WORK/loadgen.log" >&2 || true
cp "$WORK/cpu.pprof" "$OUT"
lib_log "wrote $OUT ($(wc -c <"$OUT") bytes); rebuild, then make bench"
