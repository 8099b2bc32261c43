#!/usr/bin/env bash
# run-unit.sh - runs each test binary given (after a label for the summary line), prints a summary line, fails if any failed.
set -u
label=$1; shift
pass=0; fail=0
for t in "$@"; do
	if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t" >&2; fi
done
echo "$label: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
