#!/usr/bin/env bash
# Runs every fuzz target in the module for a short fixed time (FUZZTIME,
# default 10s each), on top of the checked-in seed corpora under
# testdata/fuzz/. New crashers are written to testdata/fuzz/ by go test: check
# them in with the fix.
#
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" at the end of -fuzztime, having found nothing: a race in
# internal/fuzz (golang/go#75804, fixed in Go 1.27). A failure with that
# message and no new input written under testdata/fuzz/ is reported and not
# counted; every other failure is. (Seed inputs run as ordinary tests in
# `make test-go` too.)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
fail=0
log=/tmp/fff-fuzz.$$.log
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    corpus="$dir/testdata/fuzz/$target"
    before=$({ ls "$corpus" 2>/dev/null || true; } | wc -l) # a target may have no checked-in corpus yet
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 3s "$pkg" >"$log" 2>&1; then
      after=$({ ls "$corpus" 2>/dev/null || true; } | wc -l)
      if [ "$after" = "$before" ] && grep -q '^    context deadline exceeded$' "$log"; then
        echo "fuzz: $target: Go's fuzzing coordinator ended with 'context deadline exceeded' and no failing input (golang/go#75804): not a failure"
      else
        cat "$log"; fail=1
      fi
    fi
  done
done
exit $fail
