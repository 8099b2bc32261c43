#!/usr/bin/env bash
# deps.sh - installs the Debian packages pandit needs to build, test and benchmark, only those missing.
set -euo pipefail

PKGS=(
	# build
	gcc make clang llvm libbpf-dev bpftool libyaml-dev libcap-dev libelf-dev zlib1g-dev pkg-config
	# tests
	libcmocka-dev libclang-rt-14-dev libfuzzer-14-dev python3 python3-pytest iproute2 procps curl
	# benchmarks and demo backends
	haproxy nginx-light libnginx-mod-stream iperf3 sockperf gnuplot-nox
)

missing=()
for p in "${PKGS[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# the packaged nginx and haproxy services must not start on their own: the benchmark runs its own
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.pandit
if [ ! -e /usr/sbin/policy-rc.d ]; then
	cp /usr/sbin/policy-rc.d.pandit /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
rm -f /usr/sbin/policy-rc.d.pandit
chmod +x /usr/sbin/policy-rc.d 2>/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
