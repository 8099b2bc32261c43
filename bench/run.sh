#!/usr/bin/env bash
# run.sh - `make bench`: the L4, Foo and HTTP/1.1 benchmarks (direct, pandit, HAProxy, NGINX), each in a private netns; writes bench/results/{l4,foo,http1}.{md,png,json}.
#
# Each benchmark runs inside a network namespace of its own (loopback only),
# the proxies pinned to CPU 1 with one worker each, load generators and
# servers on CPU 0. BENCH_ONLY picks benchmarks (default "l4 foo http", e.g.
# BENCH_ONLY=http). Arguments are passed to bench/l4bench.py (e.g. --secs 2
# --repeat 1 --only direct,haproxy --skip-reload for a quick try); the Foo and
# HTTP drivers get theirs from BENCH_FOO_ARGS and BENCH_HTTP_ARGS (e.g.
# BENCH_HTTP_ARGS="--secs 2 --repeat 1"). Each benchmark's results are written
# to bench/results/ (or $BENCH_OUT) only when that benchmark completes; a
# failed one does not stop the others, and the exit status says one failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/run.sh: needs root (network namespace, BPF)" >&2
	exit 1
fi
for t in haproxy nginx iperf3 sockperf wrk h2load gnuplot taskset ip gcc; do
	command -v "$t" >/dev/null || { echo "bench/run.sh: $t missing (make deps)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
	echo "bench/run.sh: needs 2 CPUs (proxy on CPU 1, load on CPU 0)" >&2
	exit 1
fi

OUT="${BENCH_OUT:-bench/results}"	# where the results go
ONLY=" ${BENCH_ONLY:-l4 foo http} "	# which benchmarks run
FAILED=""
mkdir -p build/bench "$OUT"
# build/pandit from this tree (a no-op under `make bench`); its build time goes into the results
make --no-print-directory all >&2 || echo "bench/run.sh: make all failed; using the existing build/pandit" >&2

NS=""	# the L4 benchmark's namespace and scratch directory, while it runs
TMP=""
cleanup() {
	local pids
	if [ -n "$NS" ]; then
		pids="$(ip netns pids "$NS" 2>/dev/null || true)"
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086
			kill -TERM $pids 2>/dev/null || true
			sleep 1
			pids="$(ip netns pids "$NS" 2>/dev/null || true)"
			# shellcheck disable=SC2086
			[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
		fi
		ip netns del "$NS" 2>/dev/null || true
		NS=""
	fi
	if [ -n "$TMP" ]; then
		rm -rf "$TMP"
		TMP=""
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The L4 benchmark; returns non-zero when any step failed (set -e does not
# apply inside a function called from `||`, hence the explicit returns).
run_l4() {
	gcc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE bench/l4tool.c -o build/bench/l4tool -lpthread ||
		return 1
	NS="pandit-bench-$$"
	TMP="$(mktemp -d /tmp/pandit-bench.XXXXXX)" || return 1
	chmod 755 "$TMP"	# pandit reads its config again as nobody
	ip netns add "$NS" || return 1
	ip netns exec "$NS" ip link set lo up || return 1
	# ephemeral ports above every port the benchmark listens on (apps of the
	# reload test use 10000-49999 and new ports from 50000)
	ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="50100 65535" || return 1

	echo "bench: namespace $NS, scratch $TMP" >&2
	timeout 1200 ip netns exec "$NS" /usr/bin/python3 bench/l4bench.py --tmp "$TMP" --out "$TMP/l4.json" "$@" ||
		return 1
	/usr/bin/python3 bench/report.py "$TMP/l4.json" "$TMP/l4.md" "$TMP/l4.dat" || return 1
	gnuplot -e "datafile='$TMP/l4.dat'; outfile='$TMP/l4.png'" bench/l4.gp || return 1
	cp "$TMP/l4.json" "$TMP/l4.md" "$TMP/l4.png" "$OUT/" || return 1
	echo "bench: wrote $OUT/l4.md, $OUT/l4.png, $OUT/l4.json" >&2
}

case "$ONLY" in *" l4 "*)
	run_l4 "$@" || { echo "bench: the L4 benchmark failed" >&2; FAILED="$FAILED l4"; }
	cleanup ;;
esac
# the Foo and HTTP drivers make and remove their own namespace and scratch directory
case "$ONLY" in *" foo "*)
	# shellcheck disable=SC2086
	/usr/bin/python3 bench/foo_bench.py --no-build --out-dir "$OUT" ${BENCH_FOO_ARGS:-} ||
		{ echo "bench: the Foo benchmark failed" >&2; FAILED="$FAILED foo"; } ;;
esac
case "$ONLY" in *" http "*)
	# shellcheck disable=SC2086
	/usr/bin/python3 bench/http_bench.py --no-build --out-dir "$OUT" ${BENCH_HTTP_ARGS:-} ||
		{ echo "bench: the HTTP/1.1 benchmark failed" >&2; FAILED="$FAILED http"; } ;;
esac
if [ -n "$FAILED" ]; then
	echo "bench: failed:$FAILED" >&2
	exit 1
fi
