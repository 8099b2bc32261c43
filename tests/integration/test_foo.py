"""test_foo.py - Foo apps (issue 3): the relay parses the Foo line protocol and counts it; counts compared with what real peers sent and received."""
# Every test runs in its own namespace (fixture ns). Counts are compared as
# differences from a snapshot taken once the app's ports are steered, so the
# readiness probe (a connection that says nothing) never shows in them.

import json
import socket
import subprocess
import threading
import time

import pytest

import helpers
from helpers import (PANDIT, FooServer, LineReader, ScriptServer, app, base_config, find_app,
                     foo_app, foo_client, prom_samples, recv_all, recv_exact, run, wait_until)

# The fields SIGUSR1's line starts with, in this order (issue 3).
TOP_FIELDS = ["msg_total", "msg_req", "msg_ack", "msg_nak", "request_rate_1s", "request_rate_10s",
              "response_rate_1s", "response_rate_10s"]
FOO_KEYS = set(TOP_FIELDS) | {"latency_us", "replies_unmatched", "requests_unanswered",
                              "requests_untracked", "msg_wrong_direction", "connections"}
RATES = {"request_rate_1s", "request_rate_10s", "response_rate_1s", "response_rate_10s"}

HTTP_REQ = b"GET / HTTP/1.1\r\nHost: example\r\nUser-Agent: test\r\n\r\n"


# --------------------------------------------------------------------------
# the two paths (issue 4): every test runs once with the userspace parser
# (kernel_splice: off) and once with the kernel framer (kernel_splice: auto,
# the default), and must read the same


@pytest.fixture(params=["userspace", "kernel"])
def foo_path(request):
    return request.param


@pytest.fixture
def start_pandit(start_pandit, foo_path):
    """conftest's start_pandit with every Foo app of the config put on
    foo_path; for the kernel path, checks at the end that the kernel framed
    the connections (so a silent fallback cannot pass for it)."""
    started = []

    def start(config, **kw):
        for a in (config or {}).get("apps", []):
            if a.get("protocol") == "foo" and "kernel_splice" not in a:
                a["kernel_splice"] = "off" if foo_path == "userspace" else "auto"
        p = start_pandit(config, **kw)
        started.append((p, config is not None))
        return p

    yield start
    for p, configured in started:
        if foo_path != "kernel" or not configured or not p.alive():
            continue
        st = p.stats()
        watched = sum(a["foo"]["connections"]["watched"] for a in st["apps"] if "foo" in a)
        kp = st["kernel_path"]
        if watched and kp["splice_available"]:
            # framed in the kernel, or closing before the upstream was up
            # (every connection of some tests does: then the kernel refuses)
            fb = kp["fallback"]
            assert kp["connections"]["foo_framed_total"] + fb["half_closed"] + fb["map_refused"] > 0, kp
            assert fb.get("foo_counters", 0) == 0, kp


# --------------------------------------------------------------------------
# helpers


def flat(d, prefix=""):
    """{"a.b.c": number} for every number in nested dicts."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, prefix + k + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


def counters(foo):
    """The counters of a "foo" object (rates and quantiles left out: they move with time)."""
    return {k: v for k, v in flat(foo).items()
            if k not in RATES and k not in ("latency_us.p50", "latency_us.p99")}


def delta(before, after):
    """Counter differences after - before (keys missing before count as 0)."""
    b, a = counters(before), counters(after)
    return {k: a[k] - b.get(k, 0) for k in a}


def foo_of(st, name):
    a = find_app(st, name)
    assert a["protocol"] == "foo", a
    assert FOO_KEYS <= set(a["foo"]), set(a["foo"])
    return a["foo"]


def top_of(st):
    return {k: st[k] for k in TOP_FIELDS}


def usr1(p):
    return json.loads(p.usr1())


def connect(ns, port, timeout=10.0):
    s = ns.connect("127.0.0.1", port, timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def steered(p, ports, names):
    """Waits until every port accepts connections (a connection that sends
    nothing: watched, but no message and no violation) and the apps are idle
    again; returns a SIGUSR1 snapshot to count from."""
    st = p.stats()
    accepted0 = sum(find_app(st, n)["accepted"] for n in names)
    probes = 0
    for port in ports:
        def up(port=port):
            p._check_alive()
            with p.ns.connect("127.0.0.1", port, 2.0):
                return True
        wait_until(up, 15, 0.1, f"port {port} to be steered to pandit")
        probes += 1

    # a probe may sit in the accept queue after it closed: wait until pandit
    # has taken every one, so what they cause is in the snapshot, not after it
    def taken():
        st = usr1(p)
        return st if sum(find_app(st, n)["accepted"] for n in names) >= accepted0 + probes else None
    wait_until(taken, 15, 0.1, "pandit to accept the probe connections")
    return settle(p, names)


def settle(p, names, timeout=15.0):
    """Waits until the apps have no open connection (so everything the
    connections did is counted, unanswered requests included); returns the
    SIGUSR1 JSON."""
    def idle():
        st = usr1(p)
        return st if all(find_app(st, n)["active"] == 0 for n in names) else None
    return wait_until(idle, timeout, 0.1, f"apps {names} to have no open connection")


def closed_by_peer(s, timeout=10.0):
    """True once the peer closed s (EOF or reset); bytes still arriving are read and dropped."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if s.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


def reqs(seqs, data="x"):
    return b"".join(f"REQ {i} {data}\n".encode() for i in seqs)


# --------------------------------------------------------------------------
# 1. pipelining, checked replies, counts in SIGUSR1, /stats and /metrics


def test_pipelined_counts_match_what_the_client_sent_and_received(ns, backends, start_pandit):
    srv = FooServer(ns, "--nak", "0.25")
    try:
        echo = backends.add("plain", "echo")
        p = start_pandit(base_config([foo_app("foo1", [15100], [srv.target]),
                                      foo_app("foo2", [15102], [srv.target], policy="strict"),
                                      app("plain", [15101], [srv.target]),
                                      app("other", [15103], [echo])]))
        before = steered(p, [15100, 15101, 15102], ["foo1", "foo2", "plain"])

        c1 = foo_client(ns, "127.0.0.1", 15100, conns=4, requests=500, depth=16)
        c2 = foo_client(ns, "127.0.0.1", 15102, conns=2, requests=300, depth=3,
                        extra=["--data", "héllo wörld"])
        c3 = foo_client(ns, "127.0.0.1", 15101, conns=1, requests=100, depth=4)  # tcp app: not counted
        for c, conns, n in ((c1, 4, 500), (c2, 2, 300), (c3, 1, 100)):
            assert c["errors"] == 0, c
            assert c["sent"] == conns * n, c
            assert c["acks"] + c["naks"] == c["sent"], c
        assert c1["naks"] > 0 and c1["acks"] > 0, c1  # the NAK fraction really shows

        line_st = settle(p, ["foo1", "foo2", "plain"])
        line = p.usr1()
        assert "\n" not in line
        assert line.startswith('{"msg_total":'), line[:80]
        st = json.loads(line)
        assert list(st)[:len(TOP_FIELDS)] == TOP_FIELDS, list(st)[:10]
        for k in TOP_FIELDS[:4]:
            assert type(st[k]) is int, (k, st[k])
        for k in TOP_FIELDS[4:]:
            assert type(st[k]) is float, (k, st[k])
        assert {"connections", "apps"} <= set(st)  # the L4 fields follow

        for name, c, conns in (("foo1", c1, 4), ("foo2", c2, 2)):
            d = delta(foo_of(before, name), foo_of(st, name))
            assert d["msg_req"] == c["sent"], (name, d)
            assert d["msg_ack"] == c["acks"], (name, d)
            assert d["msg_nak"] == c["naks"], (name, d)
            assert d["msg_total"] == c["sent"] + c["acks"] + c["naks"], (name, d)
            assert d["latency_us.count"] == c["sent"], (name, d)
            assert d["connections.watched"] == conns, (name, d)
            for k in ("replies_unmatched", "requests_unanswered", "requests_untracked",
                      "msg_wrong_direction", "connections.noncompliant_client",
                      "connections.noncompliant_server", "connections.closed_strict"):
                assert d[k] == 0, (name, k, d)
            assert foo_of(st, name)["connections"]["reasons"] == {}
            assert foo_of(st, name)["latency_us"]["p99"] >= foo_of(st, name)["latency_us"]["p50"] > 0

        # the top-level totals are the sum over the Foo apps
        for k in TOP_FIELDS[:4]:
            assert st[k] == foo_of(st, "foo1")[k] + foo_of(st, "foo2")[k], k
        assert st["msg_req"] - before["msg_req"] == c1["sent"] + c2["sent"]
        assert st["msg_ack"] - before["msg_ack"] == c1["acks"] + c2["acks"]
        assert st["msg_nak"] - before["msg_nak"] == c1["naks"] + c2["naks"]
        assert st["msg_total"] == st["msg_req"] + st["msg_ack"] + st["msg_nak"]
        # plain TCP apps relay the same bytes without counting them
        for name in ("plain", "other"):
            a = find_app(st, name)
            assert a["protocol"] == "tcp" and "foo" not in a, a
        assert find_app(st, "plain")["bytes_in"] > find_app(before, "plain")["bytes_in"]
        del line_st

        # /stats serves the same numbers (at rest, only the rates may move)
        web = p.stats()
        assert list(web)[:len(TOP_FIELDS)] == TOP_FIELDS
        for k in TOP_FIELDS[:4]:
            assert web[k] == st[k], k
        for name in ("foo1", "foo2"):
            assert counters(foo_of(web, name)) == counters(foo_of(st, name)), name
            assert foo_of(web, name)["latency_us"] == foo_of(st, name)["latency_us"]

        # /metrics: the pandit_foo_* families with the same values
        _, text = p.metrics()
        m = prom_samples(text)

        def sample(metric, name, **labels):
            key = (metric, frozenset({("app", name), *labels.items()}))
            assert key in m, f"no sample {metric}{{app={name},{labels}}}"
            return m[key]
        for name in ("foo1", "foo2"):
            f = foo_of(st, name)
            assert sample("pandit_foo_messages_total", name, type="req") == f["msg_req"]
            assert sample("pandit_foo_messages_total", name, type="ack") == f["msg_ack"]
            assert sample("pandit_foo_messages_total", name, type="nak") == f["msg_nak"]
            assert sample("pandit_foo_reply_latency_seconds_count", name) == f["latency_us"]["count"]
            assert sample("pandit_foo_reply_latency_seconds_bucket", name, le="+Inf") == f["latency_us"]["count"]
            assert sample("pandit_foo_replies_unmatched_total", name) == f["replies_unmatched"]
            assert sample("pandit_foo_requests_unanswered_total", name) == f["requests_unanswered"]
            assert sample("pandit_foo_requests_untracked_total", name) == f["requests_untracked"]
            assert sample("pandit_foo_messages_wrong_direction_total", name) == f["msg_wrong_direction"]
            assert sample("pandit_foo_connections_noncompliant_total", name, side="client") == 0
            assert sample("pandit_foo_connections_noncompliant_total", name, side="server") == 0
            assert sample("pandit_foo_connections_closed_strict_total", name) == 0
            for kind in ("request", "response"):
                for window in ("1s", "10s"):
                    assert sample("pandit_foo_message_rate", name, kind=kind, window=window) >= 0
        for ln in text.splitlines():
            if ln.startswith("pandit_foo_"):
                assert 'app="plain"' not in ln and 'app="other"' not in ln, ln
        assert "# TYPE pandit_foo_reply_latency_seconds histogram" in text
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# 2. framing: byte by byte, many in one write, a last line without '\n'


def test_framing_split_pipelined_and_unterminated_last_line(ns, start_pandit):
    srv = FooServer(ns)

    def tail_server(s):
        # reads one request, answers it one byte per write, the last line
        # without '\n', then closes
        r = LineReader(s)
        if r.line() != b"REQ 7 x":  # the readiness probe says nothing
            return
        for b in b"ACK 6 one\nACK 7 done":
            s.sendall(bytes([b]))
            time.sleep(0.002)
        s.shutdown(socket.SHUT_WR)
        while r.line() or not r.eof:
            pass

    tail = ScriptServer(ns, tail_server)
    try:
        p = start_pandit(base_config([foo_app("f", [15200], [srv.target]),
                                      foo_app("t", [15201], [tail.target], health_check=False)]))
        before = steered(p, [15200, 15201], ["f", "t"])

        # (a) every byte its own write (and, with the pause, mostly its own read)
        msgs = [b"REQ 1 hello\n", b"REQ 2\t \tdata with  spaces \n", b"REQ 3\r\n", b"REQ 0004 \xc3\xa9t\xc3\xa9\n"]
        with connect(ns, 15200) as s:
            for m in msgs:
                for b in m:
                    s.sendall(bytes([b]))
                    time.sleep(0.001)
            r = LineReader(s)
            got = [r.line().split(b" ")[:2] for _ in msgs]
            assert got == [[b"ACK", b"1"], [b"ACK", b"2"], [b"ACK", b"3"], [b"ACK", b"4"]], got
            s.shutdown(socket.SHUT_WR)
            assert r.line() == b"" and r.eof

        # (b) many messages in one write, and the replies pipelined back
        n = 1000
        with connect(ns, 15200) as s:
            s.sendall(reqs(range(1, n + 1)))
            r = LineReader(s)
            seqs = [int(r.line().split(b" ")[1]) for _ in range(n)]
            assert seqs == list(range(1, n + 1))
            s.shutdown(socket.SHUT_WR)
            assert r.line() == b"" and r.eof

        # (c) the client's last line has no '\n': counted at EOF (foo_server answers it too)
        with connect(ns, 15200) as s:
            s.sendall(b"REQ 1 a\nREQ 2 b\nREQ 3 last")
            s.shutdown(socket.SHUT_WR)
            lines = recv_all(s).split(b"\n")
        assert [ln.split(b" ")[:2] for ln in lines if ln] == [[b"ACK", b"1"], [b"ACK", b"2"], [b"ACK", b"3"]]

        # (d) the server's last line has no '\n', its bytes come one by one
        with connect(ns, 15201) as s:
            s.sendall(b"REQ 7 x\n")
            assert recv_all(s) == b"ACK 6 one\nACK 7 done"

        st = settle(p, ["f", "t"])
        d = delta(foo_of(before, "f"), foo_of(st, "f"))
        nreq = len(msgs) + n + 3
        assert d["msg_req"] == nreq, d
        assert d["msg_ack"] == nreq, d
        assert d["msg_nak"] == 0, d
        assert d["msg_total"] == 2 * nreq, d
        assert d["latency_us.count"] == nreq, d
        assert d["requests_unanswered"] == 0 and d["replies_unmatched"] == 0, d
        assert d["connections.noncompliant_client"] == 0 and d["connections.noncompliant_server"] == 0, d

        d = delta(foo_of(before, "t"), foo_of(st, "t"))
        assert (d["msg_req"], d["msg_ack"], d["msg_total"]) == (1, 2, 3), d
        assert d["latency_us.count"] == 1 and d["replies_unmatched"] == 1, d  # ACK 6 answers nothing
        assert d["requests_unanswered"] == 0, d
        assert d["connections.noncompliant_server"] == 0, d
        assert not tail.errors, tail.errors
    finally:
        tail.stop()
        srv.stop()


# --------------------------------------------------------------------------
# 3./4. a client that stops speaking Foo: lenient relays on, strict closes


def _talk(s, data):
    s.sendall(data)
    assert recv_exact(s, len(data)) == data


def test_lenient_keeps_relaying_a_client_that_stops_speaking_foo(ns, backends, start_pandit):
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("len", [15300], [echo])]))  # policy: the default
    before = steered(p, [15300], ["len"])
    with connect(ns, 15300) as good:
        _talk(good, b"REQ 10 before\n")
        with connect(ns, 15300) as bad:
            _talk(bad, b"REQ 1 a\n")
            _talk(bad, HTTP_REQ)                        # not Foo: relayed all the same
            _talk(bad, bytes(range(256)) * 64)          # binary, NUL included
            _talk(bad, b"REQ 2 b\nREQ 3 c\n")           # valid again, no longer counted
            bad.shutdown(socket.SHUT_WR)
            assert recv_all(bad) == b""
        _talk(good, b"REQ 11 after\n")                  # the other connection still counts
        good.shutdown(socket.SHUT_WR)
        assert recv_all(good) == b""
    st = settle(p, ["len"])
    d = delta(foo_of(before, "len"), foo_of(st, "len"))
    assert d["connections.noncompliant_client"] == 1, d
    assert d["connections.noncompliant_server"] == 0, d
    assert d["connections.closed_strict"] == 0, d
    assert d.get("connections.reasons.http") == 1, d
    assert d["msg_req"] == 1 + 2, d                     # REQ 1 on bad, REQ 10 and 11 on good
    # the echo sends every REQ back: a REQ from the server is the wrong
    # direction (REQ 1's echo came before the violation; REQ 2/3's after it)
    assert d["msg_wrong_direction"] == 1 + 2, d
    assert d["msg_ack"] == 0 and d["msg_nak"] == 0, d
    # good's two REQs were never answered; bad's REQ 1 was dropped with the connection's watch
    assert d["requests_unanswered"] == 2, d
    assert d["connections.watched"] == 2, d
    assert find_app(st, "len")["failed"] == find_app(before, "len")["failed"]


def test_strict_closes_a_client_that_stops_speaking_foo(ns, backends, start_pandit):
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("str", [15400], [echo], policy="strict")]))
    before = steered(p, [15400], ["str"])
    received0 = echo.bytes_received
    relayed = 0
    with connect(ns, 15400) as good:
        for m in (b"REQ 10 before\n",):
            _talk(good, m)
            relayed += len(m)
        with connect(ns, 15400) as bad:
            _talk(bad, b"REQ 1 a\n")
            relayed += len(b"REQ 1 a\n")
            bad.sendall(HTTP_REQ)
            assert closed_by_peer(bad), "pandit did not close the client that broke the protocol"
        with connect(ns, 15400) as later:               # a new connection is served as usual
            _talk(later, b"REQ 20 new\n")
            relayed += len(b"REQ 20 new\n")
        _talk(good, b"REQ 11 after\n")                  # the other open connection is unaffected
        relayed += len(b"REQ 11 after\n")
        good.shutdown(socket.SHUT_WR)
        assert recv_all(good) == b""
    st = settle(p, ["str"])
    d = delta(foo_of(before, "str"), foo_of(st, "str"))
    assert d["connections.closed_strict"] == 1, d
    assert d["connections.noncompliant_client"] == 1, d
    assert d["connections.noncompliant_server"] == 0, d
    assert d.get("connections.reasons.http") == 1, d
    assert d["msg_req"] == 4, d
    assert d["connections.watched"] == 3, d
    # the offending bytes were never passed on to the server
    wait_until(lambda: echo.active == 0, 10, what="the echo backend's connections to close")
    assert echo.bytes_received - received0 == relayed


# --------------------------------------------------------------------------
# 5. an overlong line is a violation


def test_overlong_line_is_a_violation(ns, backends, start_pandit):
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("len", [15500], [echo], max_line=64),
                                  foo_app("str", [15501], [echo], policy="strict", max_line=64)]))
    before = steered(p, [15500, 15501], ["len", "str"])
    at_limit = b"REQ 1 " + b"x" * 58 + b"\n"            # 64 bytes before '\n': allowed
    assert len(at_limit) == 65
    over = b"REQ 2 " + b"y" * 200 + b"\n"
    with connect(ns, 15500) as s:
        _talk(s, at_limit)
        _talk(s, over)                                  # lenient: relayed
        _talk(s, b"REQ 3\n")                            # no longer counted
    with connect(ns, 15501) as s:
        _talk(s, at_limit)
        s.sendall(b"REQ 2 " + b"z" * 100)               # no '\n' ever: seen at the 65th byte
        assert closed_by_peer(s), "strict did not close a connection with an overlong line"
    st = settle(p, ["len", "str"])
    d = delta(foo_of(before, "len"), foo_of(st, "len"))
    assert d["msg_req"] == 1, d
    assert d["connections.noncompliant_client"] == 1 and d["connections.closed_strict"] == 0, d
    assert d.get("connections.reasons.line_too_long") == 1, d
    d = delta(foo_of(before, "str"), foo_of(st, "str"))
    assert d["msg_req"] == 1, d
    assert d["connections.noncompliant_client"] == 1 and d["connections.closed_strict"] == 1, d
    assert d.get("connections.reasons.line_too_long") == 1, d


# --------------------------------------------------------------------------
# 6. messages in the wrong direction


def test_wrong_direction_is_not_counted_as_a_message(ns, start_pandit):
    seen = []

    def server(s):
        r = LineReader(s)
        if r.line() != b"REQ 1 hi":
            return
        s.sendall(b"REQ 900 from-server\nACK 1 ok\n")
        while True:
            ln = r.line()
            if r.eof and not ln:
                return
            seen.append(ln)

    srv = ScriptServer(ns, server)
    try:
        p = start_pandit(base_config([foo_app("w", [15600], [srv.target], health_check=False)]))
        before = steered(p, [15600], ["w"])
        with connect(ns, 15600) as s:
            s.sendall(b"REQ 1 hi\n")
            r = LineReader(s)
            assert r.line() == b"REQ 900 from-server"
            assert r.line() == b"ACK 1 ok"
            s.sendall(b"ACK 900 from-client\nNAK 901\n")
            s.shutdown(socket.SHUT_WR)
            assert r.line() == b"" and r.eof
        st = settle(p, ["w"])
        assert seen == [b"ACK 900 from-client", b"NAK 901"]  # relayed unchanged
        d = delta(foo_of(before, "w"), foo_of(st, "w"))
        assert (d["msg_req"], d["msg_ack"], d["msg_nak"], d["msg_total"]) == (1, 1, 0, 2), d
        assert d["msg_wrong_direction"] == 3, d
        assert d["latency_us.count"] == 1, d
        assert d["replies_unmatched"] == 0 and d["requests_unanswered"] == 0, d
        assert d["connections.noncompliant_client"] == 0 and d["connections.noncompliant_server"] == 0, d
        assert st["msg_req"] - before["msg_req"] == 1 and st["msg_ack"] - before["msg_ack"] == 1
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# 7. rates and latency


def test_rates_and_latency(ns, start_pandit):
    srv = FooServer(ns, "--delay-us", "3000")
    try:
        p = start_pandit(base_config([foo_app("r", [15700], [srv.target])]))
        before = steered(p, [15700], ["r"])
        assert before["request_rate_1s"] == 0.0 and before["response_rate_1s"] == 0.0
        stop = threading.Event()
        sent = [0]
        errors = []

        def traffic():
            try:
                with connect(ns, 15700) as s:
                    r = LineReader(s)
                    while not stop.is_set() and sent[0] < 20000:
                        s.sendall(f"REQ {sent[0] + 1} rate\n".encode())
                        sent[0] += 1
                        ln = r.line()
                        if ln.split(b" ")[:2] != [b"ACK", str(sent[0]).encode()]:
                            raise AssertionError(f"bad reply {ln!r} to REQ {sent[0]}")
                    s.shutdown(socket.SHUT_WR)
                    r.line()
            except Exception as e:
                errors.append(e)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        try:
            def busy():
                st = usr1(p)
                return st if min(st[k] for k in RATES) > 0 else None
            st = wait_until(busy, 20, 0.2, "all four rates to be above 0 while traffic flows")
            f = foo_of(st, "r")
            assert min(f[k] for k in RATES) > 0, f
        finally:
            stop.set()
            t.join(15)
        assert not t.is_alive() and not errors, errors
        st = settle(p, ["r"])
        f = foo_of(st, "r")
        d = delta(foo_of(before, "r"), f)
        n = sent[0]
        assert d["msg_req"] == n and d["msg_ack"] == n, (n, d)
        # a 10 s window cannot hold more than everything sent (slack: bucket edges)
        assert 0 < st["request_rate_10s"] <= n / 10 * 1.05 + 1, (n, st["request_rate_10s"])
        assert 0 <= st["response_rate_10s"] <= n / 10 * 1.05 + 1, (n, st["response_rate_10s"])
        assert st["request_rate_1s"] <= n * 1.05 + 1
        # every reply was held 3 ms by the server: a lower bound, not a timing claim
        assert d["latency_us.count"] == n, d
        assert f["latency_us"]["p50"] >= 1000, f["latency_us"]
        assert f["latency_us"]["p99"] >= f["latency_us"]["p50"]
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# 8. quick mode


@pytest.mark.parametrize("style", ["single-dash", "double-dash"])
def test_quick_mode_foo(ns, start_pandit, style):
    srv = FooServer(ns, "--nak", "0.5")
    try:
        if style == "single-dash":  # as the original task ran it
            args = ["-listen=:15800", f"-forward=127.0.0.1:{srv.port}", "-protocol=foo"]
        else:
            args = ["--listen", ":15800", "--forward", f"127.0.0.1:{srv.port}", "--protocol", "foo"]
        p = start_pandit(None, args=args)
        before = steered(p, [15800], ["quick"])
        c = foo_client(ns, "127.0.0.1", 15800, conns=3, requests=200, depth=8)
        assert c["errors"] == 0 and c["sent"] == 600, c
        st = settle(p, ["quick"])
        assert list(st)[:len(TOP_FIELDS)] == TOP_FIELDS
        assert st["msg_req"] - before["msg_req"] == c["sent"]
        assert st["msg_ack"] - before["msg_ack"] == c["acks"]
        assert st["msg_nak"] - before["msg_nak"] == c["naks"]
        assert st["msg_total"] - before["msg_total"] == c["sent"] + c["acks"] + c["naks"]
        assert [a["name"] for a in st["apps"]] == ["quick"]
        d = delta(foo_of(before, "quick"), foo_of(st, "quick"))
        assert d["msg_req"] == c["sent"] and d["connections.watched"] == 3, d
        assert d["connections.noncompliant_client"] == 0, d
    finally:
        srv.stop()


def test_quick_mode_refuses_other_protocols(ns):
    for proto, word in (("HTTP", "HTTP"), ("bogus", "bogus"), ("FOO2", "FOO2")):
        r = run(ns.exec_argv([str(PANDIT), "-listen=:15810", "-forward=127.0.0.1:1", f"-protocol={proto}"]),
                check=False, timeout=20)
        assert r.returncode == 2, (proto, r.returncode, r.stdout, r.stderr)
        assert word in r.stderr and "tcp" in r.stderr and "foo" in r.stderr, r.stderr
        assert "http" in r.stderr, r.stderr
        assert r.stdout == ""
    # --protocol belongs to quick mode; a config file sets it per app
    r = run(ns.exec_argv([str(PANDIT), "-c", "/nonexistent.yaml", "--protocol", "foo"]),
            check=False, timeout=20)
    assert r.returncode == 2 and "protocol" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# 9. reload


def test_reload_changes_policy_and_protocol_keeping_counters(ns, start_pandit):
    srv = FooServer(ns)
    try:
        cfg1 = base_config([foo_app("a", [15900], [srv.target]),
                            app("b", [15901], [srv.target])])
        p = start_pandit(cfg1)
        before = steered(p, [15900, 15901], ["a", "b"])
        c = foo_client(ns, "127.0.0.1", 15900, conns=2, requests=100, depth=4)
        foo_client(ns, "127.0.0.1", 15901, conns=1, requests=100, depth=4)
        with connect(ns, 15900) as s:                   # lenient: relayed, not closed by pandit
            s.sendall(b"REQ 1 ok\n" + HTTP_REQ)
            s.shutdown(socket.SHUT_WR)
            try:
                recv_all(s)
            except ConnectionResetError:  # foo_server may reset a client that is not speaking Foo
                pass
        st1 = settle(p, ["a", "b"])
        d1 = delta(foo_of(before, "a"), foo_of(st1, "a"))
        assert d1["msg_req"] == c["sent"] + 1, d1
        assert d1["connections.noncompliant_client"] == 1 and d1["connections.closed_strict"] == 0, d1
        assert "foo" not in find_app(st1, "b") and find_app(st1, "b")["protocol"] == "tcp"
        id_a = find_app(st1, "a")["id"]

        held = connect(ns, 15900)                        # open across the reload
        hr = LineReader(held)
        held.sendall(b"REQ 100 before\n")
        assert hr.line().startswith(b"ACK 100")
        st1 = usr1(p)

        cfg2 = base_config([foo_app("a", [15900], [srv.target], policy="strict", max_line=32),
                            foo_app("b", [15901], [srv.target])])
        p.write_config(cfg2)
        st2 = usr1(p)
        assert find_app(st2, "a")["id"] == id_a
        # not reset by the reload
        assert counters(foo_of(st2, "a")) == counters(foo_of(st1, "a"))
        # the connection opened before still counts, into the same counters
        # ... with the settings it started with: this line is over the new max_line
        held.sendall(b"REQ 101 after the reload, over 32 bytes\n")
        assert hr.line().startswith(b"ACK 101")
        held.shutdown(socket.SHUT_WR)
        assert hr.line() == b"" and hr.eof
        held.close()
        assert st2["msg_req"] == st1["msg_req"]
        b0 = foo_of(st2, "b")
        assert b0["msg_total"] == 0 and b0["connections"]["watched"] == 0, b0

        c2 = foo_client(ns, "127.0.0.1", 15900, conns=1, requests=50, depth=4)
        cb = foo_client(ns, "127.0.0.1", 15901, conns=2, requests=60, depth=2)
        with connect(ns, 15900) as s:                   # strict now
            s.sendall(b"REQ 1 ok\n")
            assert LineReader(s).line().startswith(b"ACK 1")
            s.sendall(HTTP_REQ)
            assert closed_by_peer(s)
        st3 = settle(p, ["a", "b"])
        d3 = delta(foo_of(st1, "a"), foo_of(st3, "a"))
        assert d3["msg_req"] == c2["sent"] + 1 + 1, d3
        assert d3["msg_ack"] + d3["msg_nak"] == c2["acks"] + c2["naks"] + 1 + 1, d3
        assert d3["connections.closed_strict"] == 1 and d3["connections.noncompliant_client"] == 1, d3
        assert d3["requests_unanswered"] == 0, d3
        assert foo_of(st3, "a")["msg_req"] == \
            foo_of(before, "a")["msg_req"] + c["sent"] + 1 + 2 + c2["sent"] + 1
        fb = foo_of(st3, "b")
        assert fb["msg_req"] == cb["sent"] and fb["msg_ack"] == cb["acks"], fb
        assert fb["connections"]["watched"] == 2, fb
        assert st3["msg_req"] == fb["msg_req"] + foo_of(st3, "a")["msg_req"]
        with connect(ns, 15900) as s:                   # new connections get the new max_line
            s.sendall(b"REQ 1 " + b"x" * 40 + b"\n")
            assert closed_by_peer(s)
        st4 = settle(p, ["a", "b"])
        assert foo_of(st4, "a")["connections"]["reasons"].get("line_too_long") == 1

        # an app that stops being a Foo app loses its Foo counters (the
        # totals are sums over the current Foo apps); back to foo, it starts at 0
        p.write_config(base_config([app("a", [15900], [srv.target]),
                                    foo_app("b", [15901], [srv.target])]))
        st5 = usr1(p)
        assert "foo" not in find_app(st5, "a") and find_app(st5, "a")["protocol"] == "tcp"
        assert st5["msg_req"] == foo_of(st5, "b")["msg_req"] == fb["msg_req"]
        p.write_config(cfg2)
        st6 = usr1(p)
        assert foo_of(st6, "a")["msg_total"] == 0
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# 10. unanswered requests and unmatched replies


def test_unanswered_requests_and_unmatched_replies(ns, start_pandit):
    def server(s):
        # two replies nobody asked for, then: odd Seqs answered (Seq 1
        # twice), even ones never
        s.sendall(b"ACK 77 early\nNAK 78 early\n")
        r = LineReader(s)
        while True:
            ln = r.line()
            if not ln:
                if r.eof:
                    return
                continue
            seq = int(ln.split(b" ")[1])
            if seq % 2:
                s.sendall(f"ACK {seq} ok\n".encode() * (2 if seq == 1 else 1))

    srv = ScriptServer(ns, server)
    try:
        p = start_pandit(base_config([foo_app("u", [16000], [srv.target], health_check=False)]))
        before = steered(p, [16000], ["u"])
        with connect(ns, 16000) as s:
            r = LineReader(s)
            assert r.line() == b"ACK 77 early"
            assert r.line() == b"NAK 78 early"
            s.sendall(reqs(range(1, 11)))
            got = [int(r.line().split(b" ")[1]) for _ in range(6)]
            assert got == [1, 1, 3, 5, 7, 9]
            # the connection stays open: nothing is unanswered yet
            st = usr1(p)
            assert foo_of(st, "u")["requests_unanswered"] == foo_of(before, "u")["requests_unanswered"]
            s.shutdown(socket.SHUT_WR)                  # the client closes
            assert r.line() == b"" and r.eof
        st = settle(p, ["u"])
        d = delta(foo_of(before, "u"), foo_of(st, "u"))
        assert d["msg_req"] == 10, d
        assert d["msg_ack"] == 1 + 6 and d["msg_nak"] == 1, d
        assert d["msg_total"] == 18, d
        assert d["requests_unanswered"] == 5, d         # Seq 2, 4, 6, 8, 10
        assert d["replies_unmatched"] == 3, d           # ACK 77, NAK 78, the second ACK 1
        assert d["latency_us.count"] == 5, d
        assert d["connections.noncompliant_client"] == 0 and d["connections.noncompliant_server"] == 0, d
        assert not srv.errors, srv.errors
        _, text = p.metrics()
        m = prom_samples(text)
        assert m[("pandit_foo_requests_unanswered_total", frozenset({("app", "u")}))] == \
            foo_of(st, "u")["requests_unanswered"]
        assert m[("pandit_foo_replies_unmatched_total", frozenset({("app", "u")}))] == \
            foo_of(st, "u")["replies_unmatched"]
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# what is and is not Foo, on the wire (the parser's unit tests have the full
# tables; here each case crosses the real relay on a connection of its own)

VALID = [
    (b"REQ 1\r\n", "CRLF"),
    (b"REQ 18446744073709551615 max\n", "the largest Seq"),
    (b"REQ\t5\t data with\ttabs \n", "tabs as whitespace"),
    (b"REQ 6 \n", "empty Data"),
    (b"REQ 0007 x\n", "leading zeros"),
    ("REQ 8 ünïcødé ✓ 𝄞\n".encode(), "UTF-8 Data"),
]
INVALID = [
    (HTTP_REQ, "http"),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "type"),  # a TLS ClientHello
    (b"req 1 lower case\n", "type"),
    (b"REQ x\n", "seq"),
    (b"REQ -1\n", "seq"),
    (b"REQ 123456789012345678901\n", "seq"),  # 21 digits
    (b"REQ 18446744073709551616\n", "seq"),  # 2^64
    (b"\n", "empty"),
    (b"REQ 1 \xff\xfe\n", "utf8"),
    (b"REQ 1 \xed\xa0\x80\n", "utf8"),  # a surrogate
    (b"REQ 1 a\x00b\n", "nul"),
]


def test_valid_and_invalid_messages_on_the_wire(ns, backends, start_pandit):
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("v", [16500], [echo])]))
    before = steered(p, [16500], ["v"])
    for data, what in VALID + INVALID:
        with connect(ns, 16500) as s:
            _talk(s, data)  # lenient: everything is relayed unchanged
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"", what
    st = settle(p, ["v"])
    d = delta(foo_of(before, "v"), foo_of(st, "v"))
    assert d["msg_req"] == len(VALID), d
    assert d["connections.noncompliant_client"] == len(INVALID), d
    assert d["connections.noncompliant_server"] == 0, d
    want = {}
    for _, reason in INVALID:
        want[reason] = want.get(reason, 0) + 1
    got = {k.split(".")[-1]: v for k, v in d.items() if k.startswith("connections.reasons.") and v}
    assert got == want, (got, want)
    assert d["connections.watched"] == len(VALID) + len(INVALID), d
    _, text = p.metrics()
    m = prom_samples(text)
    for reason, n in want.items():
        assert m[("pandit_foo_violations_total", frozenset({("app", "v"), ("reason", reason)}))] == n
    assert m[("pandit_foo_connections_noncompliant_total",
              frozenset({("app", "v"), ("side", "client")}))] == len(INVALID)


def test_line_cut_at_eof(ns, backends, start_pandit):
    """At EOF a last line without '\\n' is a message if it has a Seq digit,
    else (cut inside Type or before Seq) a violation."""
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("e", [16600], [echo])]))
    before = steered(p, [16600], ["e"])
    for data in (b"REQ 1\nREQ 2 last", b"REQ 1\nREQ 3", b"REQ 1\nRE", b"REQ 1\nREQ "):
        with connect(ns, 16600) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == data
    st = settle(p, ["e"])
    d = delta(foo_of(before, "e"), foo_of(st, "e"))
    assert d["msg_req"] == 2 + 2 + 1 + 1, d
    assert d["connections.noncompliant_client"] == 2, d
    assert d.get("connections.reasons.truncated") == 2, d


# --------------------------------------------------------------------------
# the server side breaking the protocol


@pytest.mark.parametrize("policy", ["lenient", "strict"])
def test_server_breaking_the_protocol_is_counted_on_its_side(ns, start_pandit, policy):
    def server(s):
        r = LineReader(s)
        if not r.line():
            return
        s.sendall(b"ACK 1 ok\n")
        if r.line() != b"REQ 2 y":  # the ACK is through before the garbage comes
            return
        s.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        while r.line() or not r.eof:
            pass

    srv = ScriptServer(ns, server)
    try:
        p = start_pandit(base_config([foo_app("s", [16100], [srv.target], policy=policy,
                                              health_check=False)]))
        before = steered(p, [16100], ["s"])
        with connect(ns, 16100) as s:
            s.sendall(b"REQ 1 x\n")
            r = LineReader(s)
            assert r.line() == b"ACK 1 ok"
            s.sendall(b"REQ 2 y\n")
            if policy == "lenient":
                assert r.line() == b"HTTP/1.1 200 OK\r"  # relayed
                assert r.line() == b"\r"
                s.shutdown(socket.SHUT_WR)
                assert r.line() == b"" and r.eof
            else:
                assert closed_by_peer(s)
        st = settle(p, ["s"])
        d = delta(foo_of(before, "s"), foo_of(st, "s"))
        assert d["connections.noncompliant_server"] == 1 and d["connections.noncompliant_client"] == 0, d
        assert d["connections.closed_strict"] == (1 if policy == "strict" else 0), d
        assert (d["msg_req"], d["msg_ack"]) == (2, 1), d
        assert d.get("connections.reasons.type") == 1, d
        assert d["requests_unanswered"] == 0, d  # REQ 2's watch ended with the violation
        assert not srv.errors, srv.errors
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# configuration


def test_bad_foo_settings_are_refused(ns, backends, start_pandit):
    echo = backends.add("echo", "echo")
    p = start_pandit(base_config([foo_app("a", [16700], [echo])]))
    steered(p, [16700], ["a"])
    bad = [
        ([foo_app("a", [16700], [echo], policy="paranoid")], "policy"),
        ([foo_app("a", [16700], [echo], max_line=0)], "max_line"),
        ([foo_app("a", [16700], [echo], max_line="lots")], "max_line"),
        ([app("a", [16700], [echo], protocol="https")], "protocol"),
        ([app("a", [16700], [echo], protocol="FOO")], "protocol"),
        ([app("a", [16700], [echo], foo={"policy": "strict"})], "protocol: foo"),
    ]
    for apps, word in bad:
        path = p.dir / "check.yaml"
        p.write_file(path, p.render(base_config(apps)))
        r = run(ns.exec_argv([str(PANDIT), "--check", "-c", str(path)]), check=False, timeout=20)
        path.unlink()
        assert r.returncode == 1, (apps, r.stderr)
        assert word in r.stderr, (word, r.stderr)
        # a reload with it is refused and the running config keeps working
        p.write_config(base_config(apps), expect="fail")
        with connect(ns, 16700) as s:
            _talk(s, b"REQ 1 still\n")
    st = usr1(p)
    assert find_app(st, "a")["protocol"] == "foo"
    assert p.reloads()[0] == 0


# --------------------------------------------------------------------------
# many requests waiting, and the same Seq twice


def test_many_outstanding_requests_and_duplicate_seqs(ns, start_pandit):
    n = 5000  # more than a connection tracks (4096): the rest are untracked

    def server(s):
        # reads every request before answering any, so all wait at once in pandit
        r = LineReader(s)
        seqs = []
        while len(seqs) < n:
            ln = r.line()
            if not ln and r.eof:
                return
            seqs.append(int(ln.split(b" ")[1]))
        s.sendall(b"".join(f"ACK {q}\n".encode() for q in seqs))
        # then: REQ 7 twice (a duplicate), both answered
        for _ in range(2):
            assert r.line() == b"REQ 7 again"
        s.sendall(b"ACK 7\nACK 7\n")
        while r.line() or not r.eof:
            pass

    srv = ScriptServer(ns, server, timeout=30)
    try:
        p = start_pandit(base_config([foo_app("m", [16800], [srv.target], health_check=False)]))
        before = steered(p, [16800], ["m"])
        with connect(ns, 16800, timeout=30) as s:
            s.sendall(reqs(range(1, n + 1), data="w"))
            r = LineReader(s)
            assert [int(r.line().split(b" ")[1]) for _ in range(n)] == list(range(1, n + 1))
            s.sendall(b"REQ 7 again\nREQ 7 again\n")
            assert [r.line(), r.line()] == [b"ACK 7", b"ACK 7"]
            s.shutdown(socket.SHUT_WR)
            assert r.line() == b"" and r.eof
        st = settle(p, ["m"])
        d = delta(foo_of(before, "m"), foo_of(st, "m"))
        assert d["msg_req"] == n + 2 and d["msg_ack"] == n + 2, d
        assert d["requests_untracked"] == n - 4096, d
        assert d["latency_us.count"] == 4096 + 2, d
        assert d["requests_duplicate"] == 1, d
        # replies to untracked requests use those up instead of counting as unmatched
        assert d["replies_unmatched"] == 0 and d["requests_unanswered"] == 0, d
        assert not srv.errors, srv.errors
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# a backend killed mid-traffic


def test_backend_killed_mid_traffic(ns, start_pandit):
    srv = FooServer(ns)
    spare = FooServer(ns)
    try:
        p = start_pandit(base_config([foo_app("k", [16900], [srv.target])]))
        before = steered(p, [16900], ["k"])
        argv = ns.exec_argv([str(helpers.FOO_CLIENT), "-a", "127.0.0.1:16900", "-c", "4", "-n", "0",
                             "-d", "8", "--duration", "30", "--timeout", "40"])
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: usr1(p)["msg_req"] - before["msg_req"] > 2000, 20, 0.1,
                       "traffic through pandit")
            srv.proc.kill()  # SIGKILL: the server's sockets are closed by the kernel
            out, err = client.communicate(timeout=60)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(5)
        assert client.returncode == 1, (out, err)  # it saw its connections die
        c = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
        assert c["errors"] > 0 and c["sent"] > 0, c
        st = settle(p, ["k"])
        d = delta(foo_of(before, "k"), foo_of(st, "k"))
        # pandit counted what it relayed: every REQ it saw got a reply or is unanswered
        assert d["msg_req"] >= c["acks"] + c["naks"], (d, c)
        # (a reply pandit counted may die in its buffer with the reset it passes on)
        assert d["msg_ack"] >= c["acks"] and d["msg_nak"] >= c["naks"], (d, c)
        assert d["msg_req"] == d["msg_ack"] + d["msg_nak"] + d["requests_unanswered"], d
        assert d["replies_unmatched"] == 0 and d["requests_untracked"] == 0, d
        assert d["connections.noncompliant_client"] == 0 and d["connections.noncompliant_server"] == 0, d
        # the app still works once it has a live target again
        p.write_config(base_config([foo_app("k", [16900], [spare.target])]))
        c2 = foo_client(ns, "127.0.0.1", 16900, conns=2, requests=100, depth=4)
        assert c2["errors"] == 0
    finally:
        spare.stop()
        srv.stop()


# --------------------------------------------------------------------------
# load: many connections over both workers, and lines longer than the buffer


@pytest.mark.parametrize("buffer_size,data", [("64k", "hello"), ("1k", "d" * 1500)],
                         ids=["many-connections", "lines-longer-than-the-buffer"])
def test_counts_stay_exact_under_load(ns, start_pandit, buffer_size, data):
    srv = FooServer(ns, "--nak", "0.1")
    try:
        p = start_pandit(base_config([foo_app("h", [17100], [srv.target])], buffer_size=buffer_size))
        before = steered(p, [17100], ["h"])
        conns, n = (64, 1000) if len(data) < 100 else (8, 300)
        c = foo_client(ns, "127.0.0.1", 17100, conns=conns, requests=n, depth=32,
                       extra=["--threads", "2", "--data", data])
        assert c["errors"] == 0 and c["sent"] == conns * n, c
        st = settle(p, ["h"])
        d = delta(foo_of(before, "h"), foo_of(st, "h"))
        assert (d["msg_req"], d["msg_ack"], d["msg_nak"]) == (c["sent"], c["acks"], c["naks"]), (d, c)
        assert d["latency_us.count"] == c["sent"], d
        assert d["connections.watched"] == conns, d
        for k in ("requests_unanswered", "replies_unmatched", "requests_untracked",
                  "connections.noncompliant_client", "connections.noncompliant_server"):
            assert d[k] == 0, (k, d)
    finally:
        srv.stop()
