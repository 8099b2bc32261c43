"""test_foo_kernel.py - Foo framed in the kernel (issue 4): what only the kernel path has: its maps emptied, strict drops, bulk through the framer, the path counters."""
# test_foo.py runs every Foo test on both paths and compares the counts with
# what real peers sent; this file checks the kernel path's own promises.

import hashlib
import os
import socket
import threading
import time

import pytest

from helpers import (FooServer, ScriptServer, base_config, find_app, foo_app, recv_all, recv_exact,
                     wait_until)
from test_foo import steered
from test_splice import kernel_entries, kpath, map_entries, pandit_maps


def foo_kernel_maps(p):
    """Entries of the Foo maps of the splice program."""
    maps = pandit_maps(p.pid)
    assert {"foo_track", "foo_pending"} <= set(maps), maps
    return map_entries(maps["foo_track"]), map_entries(maps["foo_pending"])


def foo_counts(p, name):
    return find_app(p.stats(), name)["foo"]


def wait_foo_idle(p, name, timeout=30):
    wait_until(lambda: find_app(p.stats(), name)["active"] == 0, timeout,
               what=f"app {name} to have no connection open")
    wait_until(lambda: kpath(p)["map_entries"] == 0, timeout, what="the splice maps to empty")
    wait_until(lambda: foo_kernel_maps(p) == (0, 0), timeout, what="the Foo maps to empty")
    assert kernel_entries(p) == (0, 0)


def framed(p):
    return kpath(p)["connections"]["foo_framed_total"]


def connect(ns, port, timeout=15.0):
    s = ns.connect("127.0.0.1", port, timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


@pytest.mark.slow
def test_maps_are_empty_after_connections_that_leave_requests_pending(ns, start_pandit):
    """10,000 connections on the kernel path, half of them closed with
    requests the server never answers: every pending entry is removed (the
    sweep), and each such request counts as unanswered, as in userspace."""
    def sink(s):
        # reads everything and answers nothing
        while s.recv(65536):
            pass

    srv = FooServer(ns)
    mute = ScriptServer(ns, sink)
    try:
        p = start_pandit(base_config([foo_app("ans", [19100], [srv.target]),
                                      foo_app("mute", [19101], [mute.target], health_check=False)]))
        steered(p, [19100, 19101], ["ans", "mute"])
        f0 = framed(p)
        before = {n: foo_counts(p, n) for n in ("ans", "mute")}
        pending = 0

        def worker(k):
            nonlocal pending
            for i in range(1250):
                port = 19100 if i % 2 == 0 else 19101
                with connect(ns, port) as s:
                    n = 1 + (i % 5)
                    s.sendall(b"".join(b"REQ %d k%d\n" % (j, k) for j in range(n)))
                    if port == 19100:
                        got = b""
                        while got.count(b"\n") < n:
                            d = s.recv(65536)
                            assert d, got
                            got += d
                    else:
                        time.sleep(0.002)  # let the REQs reach the program before the close
                        with lock:
                            pending += n
        lock = threading.Lock()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_foo_idle(p, "ans")
        wait_foo_idle(p, "mute")
        # a client that closes before the upstream is up stays in userspace (fallback half_closed)
        assert framed(p) >= f0 + 7500, kpath(p)
        m0, m1 = before["mute"], foo_counts(p, "mute")
        assert m1["msg_req"] - m0["msg_req"] == pending
        assert m1["requests_unanswered"] - m0["requests_unanswered"] == pending, m1
        a0, a1 = before["ans"], foo_counts(p, "ans")
        assert a1["requests_unanswered"] == a0["requests_unanswered"], a1
        assert a1["latency_us"]["count"] - a0["latency_us"]["count"] == a1["msg_req"] - a0["msg_req"]
        assert a1["replies_unmatched"] == a0["replies_unmatched"]
    finally:
        mute.stop()
        srv.stop()


def test_strict_violation_drops_what_follows_and_resets(ns, start_pandit):
    """Strict policy on the kernel path: the skb with the violation and
    everything after it never reach the server, and both sides are reset."""
    got = []
    done = threading.Event()

    def recorder(s):
        buf = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                s.sendall(b"".join(b"ACK %s\n" % ln.split(b" ")[1] for ln in d.split(b"\n") if ln))
        except OSError:
            pass
        got.append(buf)
        done.set()

    srv = ScriptServer(ns, recorder)
    try:
        p = start_pandit(base_config([foo_app("st", [19200], [srv.target], policy="strict",
                                              health_check=False)]))
        steered(p, [19200], ["st"])
        wait_foo_idle(p, "st")
        got.clear()
        done.clear()
        before = foo_counts(p, "st")
        f0 = framed(p)
        s = connect(ns, 19200)
        s.sendall(b"REQ 1 ok\n")
        assert recv_exact(s, 6) == b"ACK 1\n"
        assert framed(p) == f0 + 1, kpath(p)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        time.sleep(0.05)
        try:
            s.sendall(b"REQ 2 after\n")
        except OSError:
            pass
        try:
            rest = recv_all(s)
        except ConnectionResetError:
            rest = b""
        s.close()
        assert rest == b"", rest
        assert done.wait(10)
        assert got[-1] == b"REQ 1 ok\n", got
        after = wait_until(lambda: (lambda f: f if f["connections"]["closed_strict"] >
                                    before["connections"]["closed_strict"] else None)(
                                        foo_counts(p, "st")), 10, what="the strict close")
        assert after["connections"]["reasons"].get("http", 0) == \
            before["connections"].get("reasons", {}).get("http", 0) + 1, after
        assert after["connections"]["noncompliant_client"] == before["connections"]["noncompliant_client"] + 1
        assert after["msg_req"] == before["msg_req"] + 1
        assert kpath(p)["program"]["foo_violation"] >= 1, kpath(p)
        wait_foo_idle(p, "st")
    finally:
        srv.stop()


def test_bulk_both_ways_through_the_framer_is_intact(ns, backends, start_pandit):
    """100 MB of Foo lines each way at once through an echo backend: every
    byte arrives unchanged and every line is counted (the echoed REQs as
    wrong-direction messages), though the kernel holds the directions and
    hands them to userspace and back on the way. kernel_splice: on, which
    foo apps accept too."""
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("bulk", [19300], [echo], max_line=4096, kernel_splice="on")]))
    steered(p, [19300], ["bulk"])
    before = foo_counts(p, "bulk")
    f0 = framed(p)
    line_data = 1000
    n_lines = (100 << 20) // (line_data + 12)
    rnd = os.urandom(line_data * 64).hex().encode()

    def line(i):
        off = (i * 7919) % (len(rnd) - line_data)
        return b"REQ %d %s\n" % (i, rnd[off:off + line_data])

    sent = hashlib.sha256()
    recvd = hashlib.sha256()
    total = [0, 0]
    with connect(ns, 19300, timeout=120) as s:
        def reader():
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                recvd.update(d)
                total[1] += len(d)
        t = threading.Thread(target=reader)
        t.start()
        batch = []
        for i in range(n_lines):
            batch.append(line(i))
            if len(batch) == 256:
                b = b"".join(batch)
                sent.update(b)
                total[0] += len(b)
                s.sendall(b)
                batch = []
        if batch:
            b = b"".join(batch)
            sent.update(b)
            total[0] += len(b)
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)
        t.join(180)
        assert not t.is_alive()
    assert total[1] == total[0] and recvd.hexdigest() == sent.hexdigest(), total
    assert total[0] >= (100 << 20) - (1 << 20)
    wait_foo_idle(p, "bulk", timeout=60)
    after = foo_counts(p, "bulk")
    assert framed(p) == f0 + 1, kpath(p)
    assert after["msg_req"] - before["msg_req"] == n_lines
    assert after["msg_wrong_direction"] - before["msg_wrong_direction"] == n_lines
    assert after["connections"]["noncompliant_client"] == before["connections"]["noncompliant_client"]
    assert after["connections"]["noncompliant_server"] == before["connections"]["noncompliant_server"]
