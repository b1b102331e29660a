#!/usr/bin/env bash
# make test: start a throwaway Postgres (unless TEST_DATABASE_URL is given),
# run every Go test with the race detector against it, stop it.
set -euo pipefail
cd "$(dirname "$0")/../.."

port=${TEST_PG_PORT:-55433}
started=""
if [[ -z ${TEST_DATABASE_URL:-} ]]; then
  TEST_DATABASE_URL=$(bash deploy/dev/pg.sh start .dev/pg-test "$port")
  started=1
  trap 'bash deploy/dev/pg.sh stop .dev/pg-test' EXIT
fi
export TEST_DATABASE_URL
# Tests read TEST_DATABASE_URL; a DATABASE_URL of the caller's is not theirs.
unset DATABASE_URL

echo "test: Postgres at ${TEST_DATABASE_URL}${started:+ (started for this run)}" >&2

# Alipay's official Node.js SDK, pinned, for the test that holds the
# gateway's verification to it (internal/alipay/agreement_test.go); that test
# says SKIPPED when it is missing.
if [[ ! -d deploy/dev/nodesdk/node_modules/alipay-sdk ]]; then
  if command -v npm >/dev/null && npm ci --prefix deploy/dev/nodesdk --no-audit --no-fund --loglevel=error >&2; then
    echo "test: installed the official Node.js SDK (deploy/dev/nodesdk)" >&2
  else
    echo "test: the official Node.js SDK is not installed (needs node and npm): its agreement test will be SKIPPED" >&2
  fi
fi
# The official Standard Webhooks JavaScript library, pinned, for the test
# that holds internal/stdwebhook to it (internal/stdwebhook/interop_test.go);
# that test says SKIPPED when it is missing.
if [[ ! -d deploy/dev/whcheck/node_modules/standardwebhooks ]]; then
  if command -v npm >/dev/null && npm ci --prefix deploy/dev/whcheck --no-audit --no-fund --loglevel=error >&2; then
    echo "test: installed the official Standard Webhooks library (deploy/dev/whcheck)" >&2
  else
    echo "test: the official Standard Webhooks library is not installed (needs node and npm): its interop test will be SKIPPED" >&2
  fi
fi
# The ops console's browser tests drive Debian's chromium (internal/console);
# they skip without it.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [[ -z ${CHROMIUM:-} ]]; then
  echo "test: chromium not found: the console's browser tests will be SKIPPED" >&2
fi
go vet ./...
unformatted=$(gofmt -l cmd internal migrations)
if [[ -n $unformatted ]]; then
  echo "test: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go test -race -count=1 -timeout 20m ${GOTESTFLAGS:-} ./...

# A short fuzz run of each target (make fuzz runs them longer).
bash deploy/dev/fuzz.sh "${FUZZTIME:-10s}"
