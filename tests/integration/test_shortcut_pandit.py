"""test_shortcut_pandit.py - pandit's local short-circuit (shortcut_cgroup, local_shortcut): clients and backends in a cgroup of the test's own, pandit outside it; integrity, half-close, resets, counters, map hygiene."""
import json
import os
import subprocess
import tempfile
import uuid

import pytest

from helpers import app, base_config, find_app, find_target, wait_until
from test_splice import map_entries, pandit_maps

# The peers: one process inside the cgroup (it joins it before making any
# socket) running the backend's listener and the clients, each connection
# on threads of its own. It prints one JSON line: per connection, what the
# client and the backend sent and read.
PEER = r'''
import hashlib, json, os, random, socket, struct, sys, threading, time

A = json.loads(sys.argv[1])
with open(os.path.join(A["cgroup"], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
TMO = 60.0


def sha(b):
    return hashlib.sha256(b).hexdigest()


def read_all(s):
    out = []
    while True:
        b = s.recv(1 << 16)
        if not b:
            return b"".join(out)
        out.append(b)


def read_end(s):
    """Reads to the end: (bytes, 'eof' | 'reset' | 'timeout')."""
    out = []
    try:
        while True:
            b = s.recv(1 << 16)
            if not b:
                return b"".join(out), "eof"
            out.append(b)
    except ConnectionResetError:
        return b"".join(out), "reset"
    except socket.timeout:
        return b"".join(out), "timeout"


class Lines:
    def __init__(self, s):
        self.s, self.buf = s, b""

    def line(self):
        while b"\n" not in self.buf:
            b = self.s.recv(4096)
            if not b:
                return None
            self.buf += b
        i = self.buf.index(b"\n") + 1
        l, self.buf = self.buf[:i], self.buf[i:]
        return l


def msg(i):
    return b"%d:" % i + b"x" * (i % 61) + b"\n"


def ping(s, rounds, r):
    """Client side of the ping-pong: each reply must be the right one."""
    ln = Lines(s)
    for i in range(rounds):
        s.sendall(msg(i))
        if ln.line() != b"ok " + msg(i):
            r["bad_reply"] = i
            return ln
    r["rounds_ok"] = rounds
    return ln


def pong(s, rounds):
    """Backend side: answers rounds lines; returns the reader."""
    ln = Lines(s)
    for _ in range(rounds):
        l = ln.line()
        if l is None:
            break
        s.sendall(b"ok " + l)
    return ln


def rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def client(i, r):
    sc, n = A["scenario"], A.get("bytes", 0)
    s = socket.create_connection(("127.0.0.1", A["pport"]), timeout=TMO)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rounds = A.get("rounds", 0)
    if sc == "bulk":
        data = random.Random(1000 + i).randbytes(n)
        r["sent"], r["sent_len"] = sha(data), len(data)
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = read_all(s)
        t.join()
        r["got"], r["got_len"] = sha(got), len(got)
    elif sc == "pingpong":
        ping(s, rounds, r)
        s.shutdown(socket.SHUT_WR)
        r["end"] = read_end(s)[1]
    elif sc == "slow_pingpong":
        ln = Lines(s)
        for i in range(rounds):
            time.sleep(A["pause"])
            s.sendall(msg(i))
            if ln.line() != b"ok " + msg(i):
                r["bad_reply"] = i
                break
        else:
            r["rounds_ok"] = rounds
        s.shutdown(socket.SHUT_WR)
        r["end"] = read_end(s)[1]
    elif sc == "half_c2b":
        ln = ping(s, rounds, r)
        data = random.Random(2000 + i).randbytes(n)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # the backend answers after our FIN
        r["sent"], r["sent_len"] = sha(data), len(data)
        got = ln.buf + read_all(s)
        r["got"], r["got_len"] = sha(got), len(got)
    elif sc == "half_b2c":
        ln = ping(s, rounds, r)
        got = ln.buf + read_all(s)  # the backend sends, then its FIN
        r["got"], r["got_len"] = sha(got), len(got)
        data = random.Random(3000 + i).randbytes(n)
        s.sendall(data)  # our direction still flows
        s.shutdown(socket.SHUT_WR)
        r["sent"], r["sent_len"] = sha(data), len(data)
        r["end"] = read_end(s)[1]
    elif sc == "backend_reset":
        ln = ping(s, rounds, r)
        got, r["end"] = read_end(s)
        r["tail"] = (ln.buf + got).decode()
    elif sc == "client_vanish":
        ping(s, rounds, r)
        rst(s)
        return
    s.close()


def backend(i, s, r):
    sc, n = A["scenario"], A.get("bytes", 0)
    s.settimeout(TMO)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rounds = A.get("rounds", 0)
    if sc == "bulk":
        data = random.Random(5000 + i).randbytes(n + 4096 * i)
        r["sent"], r["sent_len"] = sha(data), len(data)
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = read_all(s)
        t.join()
        r["got"], r["got_len"] = sha(got), len(got)
    elif sc in ("pingpong", "slow_pingpong"):
        pong(s, rounds)
        r["end"] = read_end(s)[1]
    elif sc == "half_c2b":
        ln = pong(s, rounds)
        got = ln.buf + read_all(s)
        r["got"], r["got_len"] = sha(got), len(got)
        data = random.Random(6000 + i).randbytes(n)
        s.sendall(data)  # after the client's FIN: this direction still flows
        r["sent"], r["sent_len"] = sha(data), len(data)
    elif sc == "half_b2c":
        ln = pong(s, rounds)
        data = random.Random(7000 + i).randbytes(n)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        r["sent"], r["sent_len"] = sha(data), len(data)
        got = ln.buf + read_all(s)
        r["got"], r["got_len"] = sha(got), len(got)
    elif sc == "backend_reset":
        pong(s, rounds)
        s.sendall(b"bye\n")
        rst(s)
        return
    elif sc == "client_vanish":
        ln = pong(s, rounds)
        got, r["end"] = read_end(s)
        r["tail_len"] = len(ln.buf + got)
    s.close()


def guard(fn, r, *args):
    try:
        fn(*args, r)
    except Exception as e:  # reported, the test fails on it
        r["error"] = repr(e)


conns = A.get("conns", 1)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", A["bport"]))
ls.listen(64)
ls.settimeout(TMO)
res = {"client": [{} for _ in range(conns)], "backend": [{} for _ in range(conns)]}
threads = []
for i in range(conns):
    t = threading.Thread(target=guard, args=(client, res["client"][i], i))
    t.start()
    threads.append(t)
for i in range(conns):
    s, _ = ls.accept()
    t = threading.Thread(target=guard, args=(backend, res["backend"][i], i, s))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
ls.close()
print(json.dumps(res))
'''

SC_PORT, US_PORT, IDLE_PORT = 19700, 19701, 19703


def _cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


class _NsEnter:
    """The test's namespace, but commands run with nsenter: `ip netns exec`
    remounts /sys, which would hide the cgroup2 mount pandit attaches to."""

    def __init__(self, ns):
        self._ns = ns

    def __getattr__(self, name):
        return getattr(self._ns, name)

    def exec_argv(self, argv):
        return ["nsenter", f"--net={self._ns.path}", *argv]


@pytest.fixture
def cgroup():
    root = _cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 mount")
    path = os.path.join(root, f"pandit-sc-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    yield path
    wait_until(lambda: not open(os.path.join(path, "cgroup.procs")).read().strip(), 10, 0.1,
               "the test's cgroup to be empty")
    os.rmdir(path)


@pytest.fixture
def peer_script():
    fd, path = tempfile.mkstemp(prefix="pandit-sc-peer-", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(PEER)
    yield path
    os.unlink(path)


@pytest.fixture
def world(ns, cgroup, peer_script, start_pandit):
    """pandit (outside the cgroup) with an app short-circuited and one not,
    both to the same backend port; run(scenario, port, **kw) runs the
    peers inside the cgroup and returns their report."""
    bport = ns.free_port()
    target = f"127.0.0.1:{bport}"
    cfg = base_config([app("sc", [SC_PORT], [target], health_check=False),
                       app("us", [US_PORT], [target], health_check=False, local_shortcut="off"),
                       app("idle", [IDLE_PORT], [target], health_check=False, idle_timeout="1s")],
                      shortcut_cgroup=cgroup)
    p = start_pandit(cfg, in_ns=_NsEnter(ns))

    class W:
        pass

    w = W()
    w.p, w.ns, w.cgroup, w.target = p, ns, cgroup, target

    def run(scenario, port=SC_PORT, **kw):
        args = {"cgroup": cgroup, "bport": bport, "pport": port, "scenario": scenario, **kw}
        r = subprocess.run(["nsenter", f"--net={ns.path}", "/usr/bin/python3", peer_script,
                            json.dumps(args)], capture_output=True, timeout=180)
        assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace")[-3000:])
        res = json.loads(r.stdout.decode().strip().splitlines()[-1])
        for side in ("client", "backend"):
            for i, c in enumerate(res[side]):
                assert "error" not in c, (side, i, c)
        # every connection is over: nothing left open or paired in pandit
        wait_until(lambda: all(a["active"] == 0 for a in p.stats()["apps"]), 20, 0.05,
                   "pandit's connections to close")
        return res

    w.run = run
    return w


def shortcut(p):
    return p.stats()["kernel_path"]["shortcut"]


def pair_entries(p):
    maps = pandit_maps(p.pid)
    assert "shortcut_pairs" in maps and "shortcut_socks" in maps, maps
    return map_entries(maps["shortcut_pairs"]), map_entries(maps["shortcut_socks"])


def check_clean(p):
    """No pair entry left (the daemon deletes both before closing its
    sockets), and no socket of the cgroup left in the sockets map once the
    peers exited (the kernel's part)."""
    assert shortcut(p)["paired_active"] == 0
    pairs, _ = pair_entries(p)
    assert pairs == 0
    wait_until(lambda: pair_entries(p)[1] == 0, 10, 0.1, "the sockets map to be empty")


def check_transfer(res):
    """What each client read is exactly what one backend sent, and the other
    way round (backends are matched to clients by what they sent: accept
    order is not connect order)."""
    cs, bs = res["client"], res["backend"]
    c_sent = sorted((c["sent"], c["sent_len"]) for c in cs)
    c_got = sorted((c["got"], c["got_len"]) for c in cs)
    b_sent = sorted((b["sent"], b["sent_len"]) for b in bs)
    b_got = sorted((b["got"], b["got_len"]) for b in bs)
    assert len(set(c_sent)) == len(cs) and len(set(b_sent)) == len(bs)
    assert c_got == b_sent, res
    assert b_got == c_sent, res


def test_bulk_both_ways_checksummed(world):
    """20 MB of random bytes each way at once (two connections, the second
    with a little more from the backend): every byte arrives, in order."""
    before = shortcut(world.p)
    res = world.run("bulk", bytes=20 * 1000 * 1000, conns=2)
    check_transfer(res)
    after = shortcut(world.p)
    assert after["available"] is True
    assert after["paired_total"] - before["paired_total"] == 2
    check_clean(world.p)


def test_pingpong_is_short_circuited(world):
    """Request/response: every reply right, the connections paired (and
    spliced), and their bytes went straight between the peers (the program
    redirected them)."""
    before = shortcut(world.p)
    spliced = world.p.stats()["kernel_path"]["connections"]["spliced_total"]
    res = world.run("pingpong", rounds=2000, conns=2)
    for c in res["client"]:
        assert c.get("rounds_ok") == 2000, c
        assert c["end"] == "eof"
    for b in res["backend"]:
        assert b["end"] == "eof"
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == 2
    assert after["program"]["redirected"] > before["program"]["redirected"]
    assert after["redirected_bytes"] > before["redirected_bytes"]
    # spliced as well (kernel_splice: auto): the two are independent
    assert world.p.stats()["kernel_path"]["connections"]["spliced_total"] - spliced == 2
    check_clean(world.p)


def test_half_close_client_first(world):
    """The client sends and shuts its write side after the short-circuit
    carried a ping-pong; the backend reads everything then the EOF, and
    answers over the still open other direction."""
    before = shortcut(world.p)
    res = world.run("half_c2b", rounds=50, bytes=3 * 1000 * 1000)
    assert res["client"][0]["rounds_ok"] == 50
    check_transfer(res)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == 1
    assert after["redirected_bytes"] > before["redirected_bytes"]
    check_clean(world.p)


def test_half_close_backend_first(world):
    """The same the other way: the backend sends and shuts its write side;
    the client reads to the EOF, then sends its part, which arrives whole."""
    before = shortcut(world.p)
    res = world.run("half_b2c", rounds=50, bytes=3 * 1000 * 1000)
    assert res["client"][0]["rounds_ok"] == 50
    check_transfer(res)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == 1
    assert after["redirected_bytes"] > before["redirected_bytes"]
    assert res["client"][0]["end"] == "eof"
    check_clean(world.p)


def test_backend_reset(world):
    """A backend that resets after its last bytes: the client reads them
    (or some of them) and then a reset or an EOF, never waits forever."""
    before = shortcut(world.p)
    res = world.run("backend_reset", rounds=50)
    c = res["client"][0]
    assert c["rounds_ok"] == 50
    assert c["end"] in ("reset", "eof"), c
    assert "bye\n".startswith(c["tail"]), c
    assert shortcut(world.p)["paired_total"] - before["paired_total"] == 1
    check_clean(world.p)


def test_client_vanishing(world):
    """A client that resets mid-conversation: the backend sees the end of
    the stream (reset or EOF) with nothing extra, and pandit cleans up."""
    before = shortcut(world.p)
    res = world.run("client_vanish", rounds=50)
    b = res["backend"][0]
    assert b["end"] in ("reset", "eof"), b
    assert b["tail_len"] == 0, b
    assert shortcut(world.p)["paired_total"] - before["paired_total"] == 1
    check_clean(world.p)


def test_counters_equal_userspace_path(world):
    """The same traffic through the short-circuited app and through the one
    with local_shortcut: off gives the same byte counters, each the exact
    number of bytes sent; the off app's connections are never paired."""
    p = world.p
    n = 2 * 1000 * 1000
    sent = {}
    for port, name in ((SC_PORT, "sc"), (US_PORT, "us")):
        before = shortcut(p)
        r1 = world.run("bulk", port=port, bytes=n)
        check_transfer(r1)
        r2 = world.run("pingpong", port=port, rounds=500)
        assert r2["client"][0]["rounds_ok"] == 500
        after = shortcut(p)
        paired = after["paired_total"] - before["paired_total"]
        refused = sum(after["refused"].values()) - sum(before["refused"].values())
        if name == "sc":
            assert paired == 2
            assert after["redirected_bytes"] > before["redirected_bytes"]
        else:
            assert (paired, refused) == (0, 0)  # not even tried
            assert after["redirected_bytes"] == before["redirected_bytes"]
        ping_in = sum(len(b"%d:" % i + b"x" * (i % 61) + b"\n") for i in range(500))
        sent[name] = (r1["client"][0]["sent_len"] + ping_in,
                      r1["backend"][0]["sent_len"] + ping_in + 3 * 500)
    st = p.stats()
    for name in ("sc", "us"):
        a = find_app(st, name)
        t = find_target(a, world.target)
        assert (a["bytes_in"], a["bytes_out"]) == sent[name], (name, a)
        assert (t["bytes_in"], t["bytes_out"]) == sent[name], (name, t)
    assert sent["sc"] == sent["us"]
    check_clean(p)


def test_short_circuited_traffic_keeps_the_connection_alive(world):
    """idle_timeout 1s, and a ping-pong every 0.1 s for 4 s whose bytes all
    go straight between the peers after the first round (pandit sees none
    of them): the idle check counts them as activity and the connection
    lives on; its bytes are in the app's counters once it closes."""
    before = shortcut(world.p)
    res = world.run("slow_pingpong", port=IDLE_PORT, rounds=40, pause=0.1)
    assert res["client"][0].get("rounds_ok") == 40, res
    assert res["client"][0]["end"] == "eof"
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == 1
    a = find_app(world.p.stats(), "idle")
    n = sum(len(b"%d:" % i + b"x" * (i % 61) + b"\n") for i in range(40))
    assert (a["bytes_in"], a["bytes_out"]) == (n, n + 3 * 40), a
    check_clean(world.p)


def test_metrics(world):
    """/metrics carries the short-circuit's families once it is loaded."""
    world.run("pingpong", rounds=10)
    _, body = world.p.metrics()
    assert "pandit_shortcut_connections_total 1" in body
    assert "pandit_shortcut_connections_active 0" in body
    assert 'pandit_shortcut_refused_total{reason="not_local"} 0' in body
    assert 'pandit_shortcut_program_total{outcome="redirected"}' in body


def test_off_without_cgroup(ns, start_pandit):
    """Without shortcut_cgroup the short-circuit is never loaded: /stats
    says so, /metrics has none of its families, pandit holds none of its
    maps."""
    p = start_pandit(base_config([app("x", [19702], ["127.0.0.1:9"], health_check=False)]))
    s = p.stats()["kernel_path"]["shortcut"]
    assert s["available"] is False and s["paired_total"] == 0
    assert "pandit_shortcut" not in p.metrics()[1]
    assert "shortcut_pairs" not in pandit_maps(p.pid)
