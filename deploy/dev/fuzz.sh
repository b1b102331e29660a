#!/usr/bin/env bash
# Fuzz every Fuzz* target of the project for DURATION each (default 10s):
#   bash deploy/dev/fuzz.sh 10m
# New failing inputs land in the package's testdata/fuzz/ and then run as
# ordinary tests in make test.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10s}
for pkg in $(go list ./... ); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target for $duration" >&2
    # The whole output when it fails (the reason is above the last lines).
    if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" "$pkg" 2>&1); then
      grep -v '^fuzz: elapsed' <<<"$out" | tail -40
      exit 1
    fi
    grep -v '^fuzz: elapsed' <<<"$out" | tail -2
  done
done
