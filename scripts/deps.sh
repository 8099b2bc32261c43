#!/usr/bin/env bash
# deps.sh - installs the Debian packages pandit needs to build, test and benchmark; only those missing, so reruns are no-ops.
set -euo pipefail

PKGS=(
	# build: compiler, BPF toolchain (clang -target bpf, bpftool gen skeleton), libraries
	gcc make clang llvm libbpf-dev bpftool libyaml-dev libcap-dev libelf-dev zlib1g-dev pkg-config
	# tests: cmocka, clang's sanitizer and libFuzzer runtimes, pytest (run by /usr/bin/python3), netns tools
	libcmocka-dev libclang-rt-14-dev libfuzzer-14-dev python3 python3-pytest python3-websockets iproute2 procps curl netcat-openbsd
	# benchmark: the proxies pandit is compared with, load generators, the chart
	haproxy nginx-light libnginx-mod-stream iperf3 sockperf gnuplot-nox wrk nghttp2-client
)

missing=()
for p in "${PKGS[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
	echo "deps.sh: run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2

# The benchmark starts its own haproxy and nginx; the packaged services must
# not be left running (they would hold port 80 and take CPU from the
# measurement). Debian's maintainer scripts start services through
# invoke-rc.d / deb-systemd-invoke, which ask /usr/sbin/policy-rc.d first:
# exit status 101 means "not allowed". A policy that already exists (Docker
# images ship one that forbids everything) is the admin's and is left alone.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	trap 'exit 130' INT TERM	# so the EXIT trap runs on Ctrl-C too
	printf '#!/bin/sh\n# temporary, from pandit scripts/deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# policy-rc.d stops the start now; on a systemd host the units are still
# enabled for the next boot. Disable the ones this run installed.
if [ -d /run/systemd/system ]; then
	for svc in haproxy nginx; do
		if [[ " ${missing[*]}" == *" $svc"* ]]; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
		fi
	done
fi
echo "deps.sh: done" >&2
