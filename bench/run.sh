#!/usr/bin/env bash
# run.sh - `make bench`: the L4 benchmark (direct, pandit, HAProxy, NGINX) in a private netns; writes bench/results/l4.{md,png,json}.
#
# Everything runs inside a network namespace made here (loopback only), the
# proxies pinned to CPU 1 with one worker each, load generators and servers on
# CPU 0. Arguments are passed to bench/l4bench.py (e.g. --secs 2 --repeat 1
# --only direct,haproxy --skip-reload for a quick try). The results are written
# to bench/results/ (or $BENCH_OUT) only when the run completes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/run.sh: needs root (network namespace, BPF)" >&2
	exit 1
fi
for t in haproxy nginx iperf3 sockperf gnuplot taskset ip gcc; do
	command -v "$t" >/dev/null || { echo "bench/run.sh: $t missing (make deps)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
	echo "bench/run.sh: needs 2 CPUs (proxy on CPU 1, load on CPU 0)" >&2
	exit 1
fi

OUT="${BENCH_OUT:-bench/results}"	# where the results go
mkdir -p build/bench "$OUT"
# build/pandit from this tree (a no-op under `make bench`); its build time goes into the results
make --no-print-directory all >&2 || echo "bench/run.sh: make all failed; using the existing build/pandit" >&2
gcc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE bench/l4tool.c -o build/bench/l4tool -lpthread

NS="pandit-bench-$$"
TMP="$(mktemp -d /tmp/pandit-bench.XXXXXX)"
chmod 755 "$TMP"	# pandit reads its config again as nobody

cleanup() {
	local pids
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
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# ephemeral ports above every port the benchmark listens on (apps of the
# reload test use 10000-49999 and new ports from 50000)
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="50100 65535"

echo "bench: namespace $NS, scratch $TMP" >&2
timeout 1200 ip netns exec "$NS" /usr/bin/python3 bench/l4bench.py --tmp "$TMP" --out "$TMP/l4.json" "$@"

/usr/bin/python3 bench/report.py "$TMP/l4.json" "$TMP/l4.md" "$TMP/l4.dat"
gnuplot -e "datafile='$TMP/l4.dat'; outfile='$TMP/l4.png'" bench/l4.gp
cp "$TMP/l4.json" "$TMP/l4.md" "$TMP/l4.png" "$OUT/"
echo "bench: wrote $OUT/l4.md, $OUT/l4.png, $OUT/l4.json" >&2
