#!/usr/bin/env bash
# Runs every fuzz target in the module for a short fixed time (FUZZTIME,
# default 10s each), on top of the checked-in seed corpora under
# testdata/fuzz/. New crashers are written to testdata/fuzz/ by go test: check
# them in with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
fail=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 3s "$pkg" >/tmp/fff-fuzz.$$.log 2>&1; then
      cat /tmp/fff-fuzz.$$.log; fail=1
    fi
  done
done
rm -f /tmp/fff-fuzz.$$.log
exit $fail
