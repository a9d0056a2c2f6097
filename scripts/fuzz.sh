#!/usr/bin/env bash
# Runs every Fuzz* target in the module for $FUZZTIME each (go test allows
# one fuzz target per invocation).
#
# Budgets are counts ("20000x"), never wall-clock times (see the Makefile).
# Minimization is bounded too: the fuzzer minimizes every new interesting
# input for up to -fuzzminimizetime (default 60 s each, not counted in the
# -fuzztime budget), which let one slow target spend its whole run
# minimizing seeds (10 executions in 60 s). FUZZMINIMIZE=0 (the short runs
# of make test) turns minimization off; a failing input is still saved to
# testdata/fuzz and reproduced by go test.
set -euo pipefail
FUZZTIME=${FUZZTIME:-20000x}
FUZZMINIMIZE=${FUZZMINIMIZE:-0}
n=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fn in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort -u); do
    echo "fuzz $pkg $fn ($FUZZTIME, minimize $FUZZMINIMIZE)"
    go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" "$pkg"
    n=$((n + 1))
  done
done
# Every Fuzz function of the module must have been run above.
all=$(find . -name '*_test.go' -not -path './.git/*' -not -path '*/testdata/*' -exec grep -hoE '^func Fuzz[A-Za-z0-9_]+\(' {} + | wc -l)
echo "fuzz: ran $n targets of $all"
if [ "$n" -ne "$all" ]; then
  echo "fuzz: some Fuzz targets were not run" >&2
  exit 1
fi
