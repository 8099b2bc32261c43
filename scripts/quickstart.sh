#!/usr/bin/env bash
# quickstart.sh - `make run`: starts demo backends on loopback, then pandit on examples/quickstart.yaml until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cfg=examples/quickstart.yaml
admin=127.0.0.1:9900			# the admin address in $cfg
pandit=build/pandit
backend=build/demo_backend
# name, mode, address: the targets $cfg points at
backends=(
	"b1 banner 127.0.0.1:17001"
	"b2 banner 127.0.0.1:17002"
	"w1 http 127.0.0.1:18001"
	"w2 http 127.0.0.1:18002"
)

die() { echo "quickstart: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] ||
	die "needs root: pandit loads and attaches its BPF program at start, then drops to user nobody"
for f in "$pandit" "$backend"; do
	[ -x "$f" ] || die "$f is missing: run 'make' first"
done
# sk_lookup programs arrived in Linux 5.9
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
if [ "$kmaj" -lt 5 ] || { [ "$kmaj" -eq 5 ] && [ "${kmin%%[!0-9]*}" -lt 9 ]; }; then
	echo "quickstart: warning: kernel $(uname -r) is older than 5.9, which pandit needs (BPF sk_lookup)" >&2
fi

# pandit rereads the file as user nobody on reload, by the same relative path
# (so a clone under /root, mode 700, is fine). If nobody cannot read it (a
# umask of 077, say), run on a copy it can read.
work=$(mktemp -d /tmp/pandit-quickstart.XXXXXX)
chmod 755 "$work"
if ! runuser -u nobody -- test -r "$cfg" 2>/dev/null; then
	cp "$cfg" "$work/quickstart.yaml"
	chmod 644 "$work/quickstart.yaml"
	cfg=$work/quickstart.yaml
	echo "quickstart: user nobody cannot read examples/quickstart.yaml here; using the copy $cfg" >&2
fi

pids=()
pandit_pid=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
	set +e
	[ -n "$pandit_pid" ] && kill -TERM "$pandit_pid" 2>/dev/null
	[ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

for b in "${backends[@]}"; do
	read -r name mode addr <<<"$b"
	"$backend" --listen "$addr" --name "$name" --mode "$mode" >"$work/$name.log" 2>&1 &
	pids+=($!)
done
# each backend prints "listening on" once ready; give them 5 s
for i in "${!backends[@]}"; do
	read -r name _ addr <<<"${backends[$i]}"
	for _ in $(seq 50); do
		grep -q 'listening on' "$work/$name.log" && break
		kill -0 "${pids[$i]}" 2>/dev/null || break
		sleep 0.1
	done
	grep -q 'listening on' "$work/$name.log" ||
		die "demo backend $name did not start on $addr: $(cat "$work/$name.log")"
done

# pandit runs in the background so we know its PID and can clean up after it;
# a background job of a script ignores SIGINT, so Ctrl-C reaches this shell,
# which passes it on as SIGTERM.
"$pandit" -c "$cfg" &
pandit_pid=$!
trap 'kill -TERM "$pandit_pid" 2>/dev/null' INT TERM

up=0
for _ in $(seq 50); do
	kill -0 "$pandit_pid" 2>/dev/null || break
	if curl -sf --noproxy '*' -o /dev/null "http://$admin/stats"; then up=1; break; fi
	sleep 0.1
done

try() { printf '  %-36s %s\n' "$1" "$2"; }
if kill -0 "$pandit_pid" 2>/dev/null; then
	[ "$up" -eq 1 ] || echo "quickstart: pandit runs but its admin endpoint $admin does not answer" >&2
	echo
	echo "pandit is running (PID $pandit_pid) on $cfg:"
	echo "  app \"echo\": ports 7000-7009 -> b1, b2 (write their name, then echo)"
	echo "  app \"web\":  ports 8080-8081 -> w1, w2 (protocol http: each request balanced and logged)"
	echo "Try from another terminal:"
	try "nc 127.0.0.1 7000" "first line names the backend, then it echoes what you type"
	try "curl 127.0.0.1:8080 127.0.0.1:8080" "w1 then w2 on one connection: each request is balanced"
	try "curl $admin/stats" "counters per app and per target, JSON (/metrics: Prometheus)"
	try "kill -USR1 $pandit_pid" "the same statistics as one JSON line, printed here"
	try "edit $cfg" "add a port or a target, save: applied live"
	echo "Ctrl-C stops pandit and the demo backends."
	echo
fi

rc=0
wait "$pandit_pid" || rc=$?
# wait returns early when a trapped signal arrives: wait until pandit is gone
while kill -0 "$pandit_pid" 2>/dev/null; do
	rc=0
	wait "$pandit_pid" || rc=$?
done
pandit_pid=
[ "$rc" -eq 0 ] || echo "quickstart: pandit exited with status $rc" >&2
exit "$rc"
