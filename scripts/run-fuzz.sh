#!/usr/bin/env bash
# run-fuzz.sh - runs each libFuzzer harness for N seconds on its seed corpus; fails on the first crash.
set -eu
secs=$1; shift
for f in "$@"; do
	name=$(basename "$f")
	seeds=tests/fuzz/corpus/${name#fuzz_}
	work=build/fuzz/corpus/${name#fuzz_}
	mkdir -p "$work"
	[ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null || true
	echo "fuzz: $name for ${secs}s"
	"$f" -max_total_time="$secs" -print_final_stats=0 "$work" 2>build/fuzz/$name.log || {
		tail -50 build/fuzz/$name.log >&2; exit 1; }
done
