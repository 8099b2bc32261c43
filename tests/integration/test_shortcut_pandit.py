"""test_shortcut_pandit.py - pandit's local short-circuit (shortcut_cgroup, local_shortcut): clients and backends in a cgroup of the test's own, pandit outside it; integrity (100 MB each way), 1,000 concurrent connections, bytes before pairing, half-close, resets, killed clients, counters, fallbacks, map hygiene after 10,000 connections."""
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
# on threads of its own (or A["workers"] client threads taking connections
# in turn). It prints one JSON line: per connection, what the client and
# the backend sent and read. With "where" the clients and the backends are
# two processes, one of them outside the cgroup; in scenario "killed" the
# clients are a child process that is killed.
PEER = r'''
import errno, hashlib, json, os, random, signal, socket, struct, sys, threading, time

A = json.loads(sys.argv[1])
TMO = 60.0
threading.stack_size(512 * 1024)  # up to 2,000 threads at once


def join_cgroup():
    with open(os.path.join(A["cgroup"], "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


# "hold": every client stops after its main part until the test has looked
# at pandit (the peer prints HELD, the test answers with a line on stdin)
HELD = threading.Semaphore(0)
RELEASE = threading.Event()
# scenario "stall": the clients drain once every backend is done streaming
STREAMED = threading.Semaphore(0)
DRAIN = threading.Event()


def hold_point():
    if A.get("hold"):
        HELD.release()
        RELEASE.wait(TMO)


# a fixed banner a backend sends the moment it accepts (scenario "early")
BANNER = random.Random(77).randbytes(65536)
CHUNK = 1 << 20


def stream_send(s, seed, n):
    """Sends n pseudo-random bytes in chunks, then shuts down the write
    side; returns (sha256, length) of what was sent."""
    rnd, h, left = random.Random(seed), hashlib.sha256(), n
    while left:
        b = rnd.randbytes(min(CHUNK, left))
        h.update(b)
        s.sendall(b)
        left -= len(b)
    s.shutdown(socket.SHUT_WR)
    return h.hexdigest(), n


def stream_read(s):
    """Reads to EOF hashing as it goes: (sha256, length)."""
    h, n = hashlib.sha256(), 0
    while True:
        b = s.recv(CHUNK)
        if not b:
            return h.hexdigest(), n
        h.update(b)
        n += len(b)


def stream_both(s, seed, n):
    out = {}
    def send():
        try:
            out["sent"], out["sent_len"] = stream_send(s, seed, n)
        except Exception as e:
            out["error"] = repr(e)
    t = threading.Thread(target=send)
    t.start()
    out["got"], out["got_len"] = stream_read(s)
    t.join()
    return out


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        b = s.recv(min(CHUNK, n - len(out)))
        if not b:
            break
        out += b
    return bytes(out)


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
    elif sc == "bulk_stream":
        r.update(stream_both(s, 1000 + i, n))
    elif sc == "early":
        # n bytes the moment the connection is up (pandit may still be
        # connecting upstream: nothing is paired yet), read back after the
        # backend's banner (sent the moment it accepted), then round trips
        data = random.Random(4000 + i).randbytes(n)
        t = threading.Thread(target=s.sendall, args=(data,))
        t.start()
        got = recv_exact(s, len(BANNER) + n)
        t.join()
        r["banner_ok"] = got[:len(BANNER)] == BANNER
        r["echo_ok"] = got[len(BANNER):] == data
        ping(s, rounds, r)
        s.shutdown(socket.SHUT_WR)
        r["end"] = read_end(s)[1]
    elif sc == "many":
        ping(s, rounds, r)
        hold_point()
        s.shutdown(socket.SHUT_WR)
        r["end"] = read_end(s)[1]
    elif sc == "churn":
        ping(s, rounds, r)
        if i % 2:
            s.shutdown(socket.SHUT_WR)  # half the clients end with a FIN first
            r["end"] = read_end(s)[1]
        else:
            r["end"] = "closed"
    elif sc == "killed":
        ping(s, rounds, r)
        os.write(A["_ready_w"], b"x")
        if A["dir"] == "up":  # streams until killed
            while True:
                s.sendall(b"u" * 65536)
        time.sleep(TMO)  # reads nothing more: killed with the stream coming
    elif sc == "stall":
        ln = ping(s, rounds, r)
        DRAIN.wait(TMO)  # reads nothing more while every backend streams
        r["got_len"] = len(ln.buf) + len(read_all(s))
        s.shutdown(socket.SHUT_WR)
    elif sc == "backend_reset_stream":
        # asks for n bytes, reads until the backend's reset reaches it
        s.sendall(b"go %d\n" % i)
        got = bytearray()
        try:
            while True:
                b = s.recv(CHUNK)
                if not b:
                    r["end"] = "eof"
                    break
                got += b
        except ConnectionResetError:
            r["end"] = "reset"
        data = random.Random(8000 + i).randbytes(n)
        r["got_len"] = len(got)
        r["prefix_ok"] = got == data[:len(got)]
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
    elif sc == "bulk_stream":
        r.update(stream_both(s, 5000 + i, n + 4096 * i))
    elif sc == "early":
        s.sendall(BANNER)
        left = n
        while left:  # echo as it comes
            b = s.recv(min(CHUNK, left))
            if not b:
                r["short"] = left
                break
            s.sendall(b)
            left -= len(b)
        pong(s, rounds)
        r["end"] = read_end(s)[1]
    elif sc in ("many", "churn"):
        pong(s, rounds)
        r["end"] = read_end(s)[1]
    elif sc == "killed":
        ln = pong(s, rounds)
        r["streamed"] = 0
        try:  # streams until the client's end is gone
            if A["dir"] == "down":
                while True:
                    s.sendall(b"y" * 65536)
                    r["streamed"] += 65536
            r["streamed"] = len(ln.buf)  # reads until the client's end is gone
            while True:
                b = s.recv(CHUNK)
                if not b:
                    r["end"] = "eof"
                    break
                r["streamed"] += len(b)
        except (ConnectionResetError, BrokenPipeError) as e:
            r["end"] = type(e).__name__
        except socket.timeout:
            r["end"] = "timeout"
    elif sc == "stall":
        pong(s, rounds)
        # streams to a client that reads nothing until n bytes are out or a
        # send waited A["block"] seconds (flow control, as over TCP)
        r["streamed"] = 0
        s.settimeout(A["block"])
        chunk = b"y" * 65536
        try:
            while r["streamed"] < n:
                r["streamed"] += s.send(chunk)
        except socket.timeout:
            r["blocked"] = True
        except OSError as e:
            if e.errno != errno.ENOMEM:
                raise
            r["enomem"] = True  # what TCP never says to a sender
        finally:
            STREAMED.release()
        s.settimeout(TMO)
        s.shutdown(socket.SHUT_WR)
        r["end"] = read_end(s)[1]
    elif sc == "backend_reset_stream":
        # n pseudo-random bytes (the client's own: it says who it is), then
        # a reset with part of them still in flight
        l = Lines(s).line()
        k = int(l.split()[1])
        data = random.Random(8000 + k).randbytes(n)
        for off in range(0, n, 65536):
            s.sendall(data[off:off + 65536])
        r["sent_len"] = n
        rst(s)
        return
    s.close()


def guard(fn, r, *args):
    try:
        fn(*args, r)
    except Exception as e:  # reported, the test fails on it
        r["error"] = repr(e)


def listener():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", A["bport"]))
    ls.listen(1024)
    ls.settimeout(TMO)
    return ls


def run_clients(out):
    """Client threads (one per connection, or A["workers"] threads taking
    connections one after the other); returns them started."""
    n, w = len(out), A.get("workers")
    if not w:
        ts = [threading.Thread(target=guard, args=(client, out[i], i)) for i in range(n)]
    else:
        def work(k):
            for i in range(k, n, w):
                guard(client, out[i], i)
        ts = [threading.Thread(target=work, args=(k,)) for k in range(w)]
    for t in ts:
        t.start()
    return ts


def run_backends(ls, out):
    ts = []
    for i in range(len(out)):
        s, _ = ls.accept()
        t = threading.Thread(target=guard, args=(backend, out[i], i, s))
        t.start()
        ts.append(t)
    return ts


def held(n):
    """Waits for n clients at their hold point, tells the test, waits for it."""
    for _ in range(n):
        if not HELD.acquire(timeout=TMO):
            break
    print("HELD", flush=True)
    sys.stdin.readline()
    RELEASE.set()


conns, where = A.get("conns", 1), A.get("where", "both")
res = {"client": [{} for _ in range(conns)], "backend": [{} for _ in range(conns)]}
if A["scenario"] == "killed":
    # the clients in a child process that is killed (SIGKILL) once every
    # connection did its round trips and the backends are streaming
    join_cgroup()
    ls = listener()
    ready_r, A["_ready_w"] = os.pipe()
    pid = os.fork()
    if pid == 0:
        for t in run_clients(res["client"]):
            t.join()
        os._exit(0)
    ts = run_backends(ls, res["backend"])
    for _ in range(conns):
        os.read(ready_r, 1)
    end = time.monotonic() + TMO
    while time.monotonic() < end and any(b.get("streamed", 0) < (1 << 20) for b in res["backend"]):
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    for t in ts:
        t.join()
elif where in ("both", "none"):
    if where == "both":
        join_cgroup()
    ls = listener()
    ts = run_clients(res["client"])
    ts += run_backends(ls, res["backend"])
    if A.get("hold"):
        held(conns)
    if A["scenario"] == "stall":
        for _ in range(conns):
            STREAMED.acquire(timeout=TMO)
        DRAIN.set()
    for t in ts:
        t.join()
    ls.close()
else:
    # clients and backends in two processes, one of them in the cgroup:
    # "client_out" or "backend_out" says which one is not
    ready_r, ready_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if where == "client_out":
            join_cgroup()
        ls = listener()
        os.write(ready_w, b"x")
        for t in run_backends(ls, res["backend"]):
            t.join()
        with os.fdopen(out_w, "w") as f:
            f.write(json.dumps(res["backend"]))
        os._exit(0)
    os.close(out_w)
    if where == "backend_out":
        join_cgroup()
    os.read(ready_r, 1)
    for t in run_clients(res["client"]):
        t.join()
    with os.fdopen(out_r) as f:
        res["backend"] = json.loads(f.read())
    os.waitpid(pid, 0)
print(json.dumps(res))
'''

SC_PORT, US_PORT, IDLE_PORT, LATE_PORT = 19700, 19701, 19703, 19704


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


def peers(ns, cgroup, peer_script, p, bport):
    """run(scenario, port, hold=None, **kw): runs the peers (inside the
    cgroup unless where= says otherwise) and returns their report; with
    hold, a function called while every client is held after its main part
    (its connections still open)."""

    def run(scenario, port=SC_PORT, hold=None, timeout=180, **kw):
        args = {"cgroup": cgroup, "bport": bport, "pport": port, "scenario": scenario,
                "hold": hold is not None, **kw}
        proc = subprocess.Popen(["nsenter", f"--net={ns.path}", "/usr/bin/python3", peer_script,
                                 json.dumps(args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            if hold is not None:
                line = proc.stdout.readline()
                assert line == b"HELD\n", (line, proc.stderr.read().decode(errors="replace")[-3000:])
                try:
                    hold()
                finally:
                    proc.stdin.write(b"\n")
                    proc.stdin.flush()
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, (proc.returncode, err.decode(errors="replace")[-3000:])
        res = json.loads(out.decode().strip().splitlines()[-1])
        for side in ("client", "backend"):
            for i, c in enumerate(res[side]):
                assert "error" not in c, (side, i, c)
        # every connection is over: nothing left open or paired in pandit
        wait_until(lambda: all(a["active"] == 0 for a in p.stats()["apps"]), 30, 0.05,
                   "pandit's connections to close")
        return res

    return run


def black_hole(ns):
    """A target that never answers: a veth whose peer answers no ARP."""
    ns.ip("link", "add", "bh0", "type", "veth", "peer", "name", "bh1")
    ns.ip("addr", "add", "10.201.0.1/24", "dev", "bh0")
    ns.ip("link", "set", "bh0", "up")
    ns.ip("link", "set", "bh1", "up")
    return "10.201.0.2:9"


@pytest.fixture
def world(ns, cgroup, peer_script, start_pandit):
    """pandit (outside the cgroup) with an app short-circuited and one not,
    both to the same backend port (and one whose first target may be a
    black hole); run(scenario, port, **kw) runs the peers inside the cgroup
    and returns their report."""
    bport = ns.free_port()
    target = f"127.0.0.1:{bport}"
    hole = black_hole(ns)
    cfg = base_config([app("sc", [SC_PORT], [target], health_check=False),
                       app("us", [US_PORT], [target], health_check=False, local_shortcut="off"),
                       app("idle", [IDLE_PORT], [target], health_check=False, idle_timeout="1s"),
                       app("late", [LATE_PORT], [hole, target], health_check=False,
                           connect_timeout="300ms", connect_attempts=2)],
                      shortcut_cgroup=cgroup)
    p = start_pandit(cfg, in_ns=_NsEnter(ns))

    class W:
        pass

    w = W()
    w.p, w.ns, w.cgroup, w.target = p, ns, cgroup, target
    w.run = peers(ns, cgroup, peer_script, p, bport)
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


HALF_SIZES = pytest.mark.parametrize("conns,size", [(1, 3 * 1000 * 1000), (8, 16 * 1000 * 1000)],
                                     ids=["1x3MB", "8x16MB"])


@HALF_SIZES
def test_half_close_client_first(world, conns, size):
    """The client sends and shuts its write side after the short-circuit
    carried a ping-pong; the backend reads everything then the EOF, and
    answers over the still open other direction (one connection, and 8 at
    once with more than shortcut_backlog each way)."""
    before = shortcut(world.p)
    res = world.run("half_c2b", rounds=50, bytes=size, conns=conns)
    for c in res["client"]:
        assert c["rounds_ok"] == 50, c
    check_transfer(res)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == conns
    assert after["redirected_bytes"] > before["redirected_bytes"]
    check_clean(world.p)


@HALF_SIZES
def test_half_close_backend_first(world, conns, size):
    """The same the other way: the backend sends and shuts its write side;
    the client reads to the EOF, then sends its part, which arrives whole."""
    before = shortcut(world.p)
    res = world.run("half_b2c", rounds=50, bytes=size, conns=conns)
    for c in res["client"]:
        assert c["rounds_ok"] == 50, c
        assert c["end"] == "eof", c
    check_transfer(res)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == conns
    assert after["redirected_bytes"] > before["redirected_bytes"]
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
    """The same traffic (a bulk transfer each way, a ping-pong, four
    half-closed transfers) through the short-circuited app and through the
    one with local_shortcut: off gives the same byte counters, each the
    exact number of bytes sent; the off app's connections are never
    paired."""
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
        r3 = world.run("half_b2c", port=port, rounds=50, bytes=n, conns=4)
        check_transfer(r3)
        after = shortcut(p)
        if name == "sc":
            assert after["paired_total"] - before["paired_total"] == 6
        else:
            assert after["paired_total"] == before["paired_total"]
        ping_in = sum(len(b"%d:" % i + b"x" * (i % 61) + b"\n") for i in range(500))
        ping_in3 = sum(len(b"%d:" % i + b"x" * (i % 61) + b"\n") for i in range(50))
        sent[name] = (r1["client"][0]["sent_len"] + ping_in +
                      sum(c["sent_len"] + ping_in3 for c in r3["client"]),
                      r1["backend"][0]["sent_len"] + ping_in + 3 * 500 +
                      sum(b["sent_len"] + ping_in3 + 3 * 50 for b in r3["backend"]))
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


# --------------------------------------------------------------------------
# at the sizes


def map_dump(mid):
    """A map's entries as bpftool gives them (JSON)."""
    r = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def idle_maps(p):
    """Entries left in each of the short-circuit's hash maps."""
    maps = pandit_maps(p.pid)
    return {name: map_entries(maps[name])
            for name in ("shortcut_pairs", "shortcut_socks", "shortcut_where")}


def check_no_entries(p):
    """check_clean, and the receive-side map empty too once the peers'
    sockets are closed (its entries go at TCP_CLOSE)."""
    check_clean(p)
    empty = {"shortcut_pairs": 0, "shortcut_socks": 0, "shortcut_where": 0}
    try:
        wait_until(lambda: idle_maps(p) == empty, 10, 0.2, "the short-circuit's maps to be empty")
    except AssertionError as e:
        raise AssertionError(f"{e}: {idle_maps(p)}")


def test_100mb_each_way_at_once_checksummed(world):
    """100 MB of random bytes each way at once over one paired connection
    (hashed as they go on both ends): every byte arrives, in order, and is
    counted once each way; part of it went straight between the peers."""
    n = 100 * 1000 * 1000
    before = shortcut(world.p)
    res = world.run("bulk_stream", bytes=n)
    check_transfer(res)
    assert res["client"][0]["got_len"] == n
    after = shortcut(world.p)
    print("short-circuit after 100 MB each way:", json.dumps(after))
    assert after["paired_total"] - before["paired_total"] == 1
    assert after["redirected_bytes"] > before["redirected_bytes"], after
    a = find_app(world.p.stats(), "sc")
    assert (a["bytes_in"], a["bytes_out"]) == (n, n), a
    t = find_target(a, world.target)
    assert (t["bytes_in"], t["bytes_out"]) == (n, n), t
    check_no_entries(world.p)


def test_1000_concurrent_connections(world):
    """1,000 connections open at once, each with 20 round trips whose every
    reply is checked: all 1,000 are paired at the same time (2,000 pair
    entries), each one's entries show bytes that went straight between its
    peers, and everything is gone once they closed."""
    n, rounds = 1000, 20
    before = shortcut(world.p)
    seen = {}

    def look():
        s = shortcut(world.p)
        seen["paired_active"] = s["paired_active"]
        maps = pandit_maps(world.p.pid)
        seen["pairs"] = map_dump(maps["shortcut_pairs"])
        seen["socks"] = map_entries(maps["shortcut_socks"])

    res = world.run("many", conns=n, rounds=rounds, hold=look)
    for i, c in enumerate(res["client"]):
        assert c.get("rounds_ok") == rounds and c["end"] == "eof", (i, c)
    for i, b in enumerate(res["backend"]):
        assert b["end"] == "eof", (i, b)
    assert seen["paired_active"] == n, seen["paired_active"]
    assert seen["socks"] == 2 * n  # each client's and each backend's socket
    # one entry per client socket (its key's far end is the app's port) and
    # one per backend socket, each of which sent some of its 20 messages
    # straight into its peer
    pairs = [e["formatted"] for e in seen["pairs"]]
    assert len(pairs) == 2 * n
    cli = [e for e in pairs if e["key"]["remote_port"] == SC_PORT]
    assert len(cli) == n, pairs[:2]
    assert len({e["key"]["local_port"] for e in cli}) == n
    idle = [e for e in pairs if e["value"]["redirected"] == 0]
    assert not idle, (len(idle), idle[:3])
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == n
    check_no_entries(world.p)


def test_bytes_sent_before_the_pair_exists(world):
    """Each client writes 3 MB the moment it is connected and each backend a
    64 KiB banner the moment it accepts, before pandit paired the two (for
    every other connection pandit first waits 300 ms on a target that never
    answers, with the client's bytes queued meanwhile); then round trips
    that the short-circuit carries. Every byte arrives, in order, each
    way, and every connection was paired."""
    n, conns, rounds = 3 * 1000 * 1000, 6, 50
    before = shortcut(world.p)
    res = world.run("early", port=LATE_PORT, conns=conns, bytes=n, rounds=rounds)
    for i, c in enumerate(res["client"]):
        assert c["banner_ok"] and c["echo_ok"], (i, c)
        assert c.get("rounds_ok") == rounds and c["end"] == "eof", (i, c)
    for i, b in enumerate(res["backend"]):
        assert "short" not in b and b["end"] == "eof", (i, b)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == conns, after
    assert after["program"]["redirected"] - before["program"]["redirected"] >= conns * rounds, after
    a = find_app(world.p.stats(), "late")
    hole = find_target(a, "10.201.0.2:9")
    assert hole["failed"] >= 1 and hole["connections"] == 0, a  # some did wait on it
    ping_in = sum(len(b"%d:" % i + b"x" * (i % 61) + b"\n") for i in range(rounds))
    want = (conns * (n + ping_in), conns * (65536 + n + ping_in + 3 * rounds))
    assert (a["bytes_in"], a["bytes_out"]) == want, a
    check_clean(world.p)


@pytest.mark.parametrize("direction", ["down", "up"])
def test_client_killed_mid_stream(world, direction):
    """The clients' process is killed (SIGKILL) after round trips on the
    short-circuit, while every backend streams to it without end (down;
    the clients read nothing more, so they die with unread bytes) or while
    every client streams to its backend (up): each backend sees its stream
    end (a reset or a broken pipe; up: an EOF too), pandit closes every
    connection and nothing is left in the maps."""
    conns = 20
    before = shortcut(world.p)
    res = world.run("killed", conns=conns, rounds=20, dir=direction)
    ends = ("ConnectionResetError", "BrokenPipeError") + (("eof",) if direction == "up" else ())
    for i, b in enumerate(res["backend"]):
        assert b.get("end") in ends, (i, b)
        assert b["streamed"] >= 1 << 20, (i, b)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == conns, after
    assert after["redirected_bytes"] > before["redirected_bytes"], after
    check_no_entries(world.p)


def test_client_reset_many(world):
    """50 clients each reset (SO_LINGER 0) mid-conversation: every backend
    sees the end with nothing extra, and nothing is left behind."""
    before = shortcut(world.p)
    res = world.run("client_vanish", conns=50, rounds=20)
    for i, b in enumerate(res["backend"]):
        assert b["end"] in ("reset", "eof") and b["tail_len"] == 0, (i, b)
    after = shortcut(world.p)
    assert after["paired_total"] - before["paired_total"] == 50, after
    assert after["redirected_bytes"] > before["redirected_bytes"], after
    check_no_entries(world.p)


@pytest.mark.parametrize("where", ["none", "client_out", "backend_out"])
def test_peer_outside_the_cgroup_falls_back(world, where):
    """A client, a backend or both outside the cgroup: never paired, the
    refusal counted (not_local), and the connections served all the same
    on the splice path, bytes intact and counted."""
    p, conns, n = world.p, 4, 2 * 1000 * 1000
    before = shortcut(p)
    spliced = p.stats()["kernel_path"]["connections"]["spliced_total"]
    res = world.run("bulk", where=where, conns=conns, bytes=n)
    check_transfer(res)
    after = shortcut(p)
    assert after["paired_total"] == before["paired_total"], after
    assert after["redirected_bytes"] == before["redirected_bytes"], after
    assert after["refused"]["not_local"] - before["refused"]["not_local"] == conns, after
    assert p.stats()["kernel_path"]["connections"]["spliced_total"] - spliced == conns
    a = find_app(p.stats(), "sc")
    assert a["bytes_in"] == conns * n, a
    assert a["bytes_out"] == sum(n + 4096 * i for i in range(conns)), a
    check_clean(p)


@pytest.mark.parametrize("cfg", ["absent", "missing_dir"])
def test_unavailable_falls_back(ns, cgroup, peer_script, start_pandit, cfg):
    """shortcut_cgroup absent, or naming a directory that does not exist
    (pandit says why and goes on): peers in a cgroup are never paired, and
    their connections are served on the splice path, bytes intact."""
    bport = ns.free_port()
    target = f"127.0.0.1:{bport}"
    g = {} if cfg == "absent" else {"shortcut_cgroup": cgroup + "-missing"}
    p = start_pandit(base_config([app("sc", [SC_PORT], [target], health_check=False)], **g),
                     in_ns=_NsEnter(ns))
    s = shortcut(p)
    assert s["available"] is False, s
    if cfg == "missing_dir":
        assert s.get("reason"), s
    spliced = p.stats()["kernel_path"]["connections"]["spliced_total"]
    run = peers(ns, cgroup, peer_script, p, bport)
    res = run("bulk", conns=2, bytes=2 * 1000 * 1000)
    check_transfer(res)
    res = run("pingpong", rounds=200)
    assert res["client"][0]["rounds_ok"] == 200
    s = shortcut(p)
    assert s["paired_total"] == 0 and s["redirected_bytes"] == 0, s
    assert p.stats()["kernel_path"]["connections"]["spliced_total"] - spliced == 3
    assert "shortcut_pairs" not in pandit_maps(p.pid)


@pytest.mark.slow
def test_no_map_entries_left_after_10000_connections(world):
    """10,000 connections, 8 at a time, each paired and carrying two round
    trips, half of them ended by the client's FIN and half by a plain
    close: every one paired, and once they are all closed the pairs map,
    the sockets map and the receive-side map are empty."""
    n = 10000
    before = shortcut(world.p)
    res = world.run("churn", conns=n, workers=8, rounds=2, timeout=300)
    for i, c in enumerate(res["client"]):
        assert c.get("rounds_ok") == 2, (i, c)
    after = shortcut(world.p)
    print("short-circuit after 10,000 connections:", json.dumps(after))
    assert after["paired_total"] - before["paired_total"] == n, after
    assert after["program"]["redirected"] - before["program"]["redirected"] >= n, after
    check_no_entries(world.p)


def test_backend_reset_mid_stream(world):
    """20 backends each send 12 MB (more than shortcut_backlog: part of it
    goes over TCP) and reset with part of it in flight (in pandit, in the
    short-circuit's queue or in TCP's): each client reads a prefix of its
    bytes, exactly, then the reset, as on the other paths; nothing is left
    behind."""
    conns, n = 20, 12 * 1000 * 1000
    before = shortcut(world.p)
    res = world.run("backend_reset_stream", conns=conns, bytes=n)
    for i, c in enumerate(res["client"]):
        assert c["prefix_ok"], (i, c)
        assert c["end"] == "reset", (i, c)
    after = shortcut(world.p)
    print("short-circuit after the resets:", json.dumps(after), "; clients cut short:",
          sum(c["got_len"] < n for c in res["client"]))
    assert after["paired_total"] - before["paired_total"] == conns, after
    assert after["redirected_bytes"] > before["redirected_bytes"], after
    check_no_entries(world.p)


@pytest.mark.slow
def test_receivers_that_stop_reading_block_their_senders(world):
    """250 paired connections whose clients stop reading while their
    backends stream 8 MB each: as over TCP, a sender whose receiver does not
    read ends up waiting (flow control), none of them gets an error, and once
    the clients read again every byte sent arrives, once. So many full
    receive queues (shortcut_backlog, 4 MiB, each) take the host's TCP
    memory past tcp_mem's pressure mark on this machine (1.5 GB of 24 GB)
    for a few seconds; from tcp_mem[0] on the program sends by TCP, where a
    redirect would fail the send with ENOMEM (pass_pressure)."""
    conns, n = 250, 8 << 20
    before = shortcut(world.p)
    res = world.run("stall", conns=conns, rounds=5, bytes=n, block=2.0)
    enomem = [i for i, b in enumerate(res["backend"]) if b.get("enomem")]
    assert not enomem, f"{len(enomem)} of {conns} senders got ENOMEM from send()"
    # every byte sent arrives, once: the same amounts per connection (which
    # client is whose backend is not known; a backend's last send may take
    # it past n, since a send over TCP may be partial)
    got = sorted(c["got_len"] for c in res["client"])
    streamed = sorted(b["streamed"] for b in res["backend"])
    assert sum(got) == sum(streamed), (sum(got), sum(streamed))
    assert got == streamed
    after = shortcut(world.p)
    assert after["program"]["pass_pressure"] > before["program"]["pass_pressure"], after
    assert shortcut(world.p)["paired_total"] - before["paired_total"] == conns
    check_no_entries(world.p)
