"""test_http.py - HTTP/1.1 reverse proxy apps (protocol http): relaying, keep-alive and pooling, routing, balancing per request, hostile requests, timeouts, retries, access log, stats."""
# Backends are real: Debian's nginx (one process per backend), a Python
# http.server for what nginx cannot be told to do (checksum a body, send
# chunked, hang, reset), a websockets echo server. Each test builds them in
# its own namespace and checks what the backend saw against what the client
# got.

import hashlib
import json
import os
import re
import select
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import app, base_config, find_app, find_target, prom_samples, wait_until
import http_helpers as hh
from http_helpers import (NGINX, SMALL_BODY, HangServer, Nginx, PyHTTP, RawConn, WsEcho, curl, http_conn,
                          request, wait_http_port)

pytestmark = [
    pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason=f"{NGINX} missing: `make deps` installs nginx-light"),
    pytest.mark.skipif(hh.websockets is None, reason="python3-websockets missing: `make deps` installs it"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing: `make deps` installs it"),
]

PORT = 18080
# global health_check for tests whose dead targets must stay "up": no target
# is marked down before 1000 failures, so each request shows what pandit does
# with a refused connection
RETRY_HC = {"interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 1000,
            "backoff_min": "100ms", "backoff_max": "500ms"}


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def servers(ns):
    """A list the test appends its backends to; each is stopped at teardown."""
    made = []
    yield made
    for s in reversed(made):
        s.stop()


def nginx(ns, servers, name):
    n = Nginx(ns, name)
    servers.append(n)
    return n


def pyhttp(ns, servers, name):
    b = PyHTTP(ns, name)
    servers.append(b)
    return b


def http_app(targets, name="web", ports=(PORT,), http=None, **kw):
    """An app with protocol http; http: the app's `http` mapping."""
    a = app(name, list(ports), [t if isinstance(t, str) else t.target for t in targets],
            protocol="http", **kw)
    if http:
        a["http"] = http
    return a


def start(start_pandit, apps, ports=(PORT,), **globals_):
    p = start_pandit(base_config(apps if isinstance(apps, list) else [apps], **globals_))
    for port in ports:
        wait_http_port(p, port)
    return p


def hstats(p, name="web", routed=None):
    """The app's "http" stats object. routed: wait (5 s at most) until the
    routes' request counts add up to this, as a route counts a request once
    it is finished, which may be just after the client had its answer."""
    def get():
        a = find_app(p.stats(), name)
        assert a["protocol"] == "http", a
        return a["http"]
    if routed is not None:
        try:
            wait_until(lambda: sum(r["requests"] for r in get()["routes"]) >= routed, 5, 0.05,
                       f"{routed} finished requests counted")
        except AssertionError:
            pass  # the caller's assertion says what is wrong
    return get()


def body_name(resp):
    """The backend name at the start of an nginx/PyHTTP default answer."""
    return resp.body.split()[0].decode()


def get_on(conn, path, headers=None):
    """One request on an http.client connection: (status, headers, body)."""
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r.status, r, r.read()


def dead_target(ns):
    """host:port where nothing listens (connections refused)."""
    return f"127.0.0.1:{ns.free_port()}"


# --------------------------------------------------------------------------
# 1. relaying: bodies both ways, HEAD, chunked


def test_get_and_head_equal_direct(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    p = start(start_pandit, http_app([n]))
    for path in ("/static/small.html", "/static/missing.html", "/some/path?q=1"):
        direct = request(ns, n.port, path=path)
        via = request(ns, PORT, path=path)
        assert via.status == direct.status, (path, via, direct)
        if path.startswith("/static/"):
            assert via.body == direct.body, (path, via, direct)
        else:  # "<name> <connection serial> <request count> <uri>": the serials differ
            assert via.body.split()[::3] == direct.body.split()[::3], (path, via, direct)
        assert via.header("content-type") == direct.header("content-type"), path
        assert via.header("x-backend") == "n1"
    assert request(ns, PORT, path="/static/small.html").body == SMALL_BODY

    # HEAD: the same head, no body; the connection goes on with the next request
    with RawConn(ns, PORT) as c:
        c.send(b"HEAD /static/small.html HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response("HEAD")
        assert r.status == 200 and r.body == b"", r
        assert r.header("content-length") == str(len(SMALL_BODY)), r
        c.send(b"GET /static/small.html HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == SMALL_BODY, r
        # a conditional GET: 304 has no body either
        c.send(b"GET /static/small.html HTTP/1.1\r\nHost: app.test\r\nIf-None-Match: %s\r\n\r\n"
               % r.header("etag").encode())
        r304 = c.read_response()
        assert r304.status == 304 and r304.body == b"", r304
        c.send(b"GET /static/small.html HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == SMALL_BODY, r
    wait_until(lambda: hstats(p)["requests"] == 8, 5, what="8 requests counted")


@pytest.mark.slow
def test_large_download_checksum(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n]))
    _, sha = hh.big_file()
    cp = curl(ns, "-o", "-", "-w", "", f"http://127.0.0.1:{PORT}/static/big.bin", timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert len(cp.stdout) == hh.BIG_SIZE
    assert hashlib.sha256(cp.stdout).hexdigest() == sha


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_request_body_arrives_intact(ns, servers, start_pandit, framing, tmp_path):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    data = os.urandom(5 << 20)
    f = tmp_path / "body.bin"
    f.write_bytes(data)
    extra = ["-H", "Transfer-Encoding: chunked"] if framing == "chunked" else []
    cp = curl(ns, *extra, "--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream",
              f"http://127.0.0.1:{PORT}/sha256", timeout=120)
    assert cp.returncode == 0, cp.stderr
    got = json.loads(cp.stdout)
    assert got["length"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest(), got
    # pandit relays the body with the framing the client chose
    assert got["chunked"] == (framing == "chunked"), got
    assert b.bodies == [len(data)]


def test_chunked_response_relayed(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    want = b"".join(hh.chunked_parts())
    with RawConn(ns, PORT) as c:
        for _ in range(2):  # twice on one connection: the framing's end was found
            c.send(b"GET /chunked HTTP/1.1\r\nHost: app.test\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == want, r
    cp = curl(ns, "-o", "-", f"http://127.0.0.1:{PORT}/chunked")
    assert cp.returncode == 0 and cp.stdout == want, cp.stderr


def test_close_delimited_response(ns, servers, start_pandit):
    """A response with neither Content-Length nor chunked runs until the
    target closes; the client connection then ends too."""
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    with RawConn(ns, PORT) as c:
        c.send(b"GET /close-delimited HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()  # read to EOF: the body has no length
        assert r.status == 200 and r.body == hh.close_delimited_body(), r
    assert request(ns, PORT, path="/after").status == 200


def test_upstream_closing_its_keepalive_connections(ns, servers, start_pandit):
    """nginx ends a connection after 3 requests (Connection: close) and
    closes idle ones after 1 s: pandit never sends on a connection the
    target has given up, and no request fails."""
    n = Nginx(ns, "n1", keepalive_requests=3, keepalive_timeout="1s")
    servers.append(n)
    p = start(start_pandit, http_app([n]))
    conn = http_conn(ns, PORT)
    for i in range(20):
        status, _, body = get_on(conn, f"/k{i}")
        assert status == 200, (i, body)
    # nginx logs a request once it is done, maybe after the client has its answer
    wait_until(lambda: len(n.access_lines()) == 20, 10, what="nginx to log 20 requests")
    serials = {ln.split()[0] for ln in n.access_lines()}
    assert len(serials) >= 7, serials  # nginx really closed them
    for i in range(3):  # idle past nginx's keepalive_timeout
        time.sleep(1.5)
        status, _, body = get_on(conn, f"/idle{i}")
        assert status == 200, (i, body)
    conn.close()
    assert hstats(p)["upstream_errors"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_empty_body_keeps_the_connection(ns, servers, start_pandit, method):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n]))
    with RawConn(ns, PORT) as c:
        c.send(b"%s /empty HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n" % method.encode())
        r = c.read_response()
        assert r.status == 200 and r.body.split()[-1] == b"/empty", r
        assert "close" not in (r.header("connection") or "").lower(), r
        c.send(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        try:
            r = c.read_response()
        except ConnectionError as e:
            raise AssertionError("the connection ended after a keep-alive response") from e
        assert r.status == 200 and r.body.split()[-1] == b"/next", r


def test_early_answer_before_the_request_body_ends(ns, servers, start_pandit):
    """nginx answers `return 200` without waiting for the body (which it
    discards). pandit may finish sending the body and go on, or close the
    connection: then the response must say Connection: close."""
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n]))
    body = os.urandom(1 << 20)
    with RawConn(ns, PORT, timeout=20) as c:
        # the head and half the body; the answer comes before the rest is sent
        c.send(b"POST /early HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n" % len(body)
               + body[:len(body) // 2])
        r = c.read_response("POST")
        assert r.status == 200 and r.body.split()[-1] == b"/early", r
        if "close" in (r.header("connection") or "").lower():
            assert c.closed(10)
            return
        c.send(body[len(body) // 2:])
        c.send(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        try:
            r = c.read_response()
        except ConnectionError as e:
            raise AssertionError("the connection ended after a response without Connection: close") from e
        assert r.status == 200 and r.body.split()[-1] == b"/next", r


def test_pipelined_requests_answered_in_order(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n]))
    with RawConn(ns, PORT) as c:
        c.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % i for i in range(200)))
        for i in range(200):
            r = c.read_response()
            assert r.status == 200, r
            assert r.body.split()[-1] == b"/p%d" % i, r


def test_http10_client(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([n], http={"clusters": [{"name": "py", "targets": [b.target]}],
                                            "routes": [{"path": "/chunked", "cluster": "py"}, {"path": "/"}]}))
    with RawConn(ns, PORT) as c:
        c.send(b"GET /static/small.html HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == SMALL_BODY, r
        assert "chunked" not in (r.header("transfer-encoding") or "")
        assert c.closed(10), "an HTTP/1.0 request without keep-alive ends the connection"
    # with keep-alive asked for, the connection stays
    with RawConn(ns, PORT) as c:
        for _ in range(2):
            c.send(b"GET /static/small.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == SMALL_BODY, r
            assert "keep-alive" in (r.header("connection") or "").lower(), r
    # an answer the backend would have sent chunked reaches an HTTP/1.0 client unchunked
    with RawConn(ns, PORT) as c:
        c.send(b"GET /chunked HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and "chunked" not in (r.header("transfer-encoding") or ""), r
        assert r.body == b"".join(hh.chunked_parts())


# --------------------------------------------------------------------------
# 2. keep-alive and upstream pooling


def test_keepalive_and_upstream_pooling(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    p = start(start_pandit, http_app([n]))
    before = hstats(p)
    conn = http_conn(ns, PORT)
    serials = set()
    for i in range(100):
        status, _, body = get_on(conn, f"/ka/{i}")
        assert status == 200, (i, body)
        name, serial, _, uri = body.split()
        assert name == b"n1" and uri == b"/ka/%d" % i
        serials.add(serial)
    conn.close()
    # nginx numbers its connections: 100 requests came on very few of them
    assert len(serials) <= 5, serials
    # requests of separate client connections share pooled upstream connections too
    for i in range(30):
        r = request(ns, PORT, path=f"/fresh/{i}")
        assert r.status == 200, r
        serials.add(r.body.split()[1])
    assert len(serials) <= 15, f"130 requests used {len(serials)} upstream connections"
    after = hstats(p)
    reused = after["upstream_reused"] - before["upstream_reused"]
    new = after["upstream_new"] - before["upstream_new"]
    assert reused + new >= 130, (reused, new)
    assert reused >= 100 and new <= 15, (reused, new)


def test_max_idle_upstream_zero_disables_pooling(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    p = start(start_pandit, http_app([n], http={"max_idle_upstream": 0}))
    conn = http_conn(ns, PORT)
    serials = [get_on(conn, f"/np{i}")[2].split()[1] for i in range(10)]
    conn.close()
    assert len(set(serials)) == 10, serials
    h = hstats(p)
    assert h["upstream_reused"] == 0 and h["upstream_new"] == 10, h


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers(ns, servers, start_pandit):
    """16 keep-alive clients at once over 2 targets: every answer is the one
    to its own request (no mix-up between pooled connections)."""
    a, b = nginx(ns, servers, "a"), nginx(ns, servers, "b")
    p = start(start_pandit, http_app([a, b]))
    errors = []

    def client(k):
        try:
            conn = http_conn(ns, PORT)
            for i in range(25):
                status, resp, body = get_on(conn, f"/c{k}/r{i}")
                if status != 200 or body.split()[-1] != b"/c%d/r%d" % (k, i):
                    errors.append((k, i, status, body))
            conn.close()
        except Exception as e:
            errors.append((k, repr(e)))
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    wait_until(lambda: len(a.access_lines()) + len(b.access_lines()) == 400, 10,
               what="nginx to log 400 requests")
    assert hstats(p)["requests"] == 400


def test_client_idle_timeout_closes_keepalive_connection(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n], http={"client_idle_timeout_ms": 500}))
    with RawConn(ns, PORT) as c:
        c.send(b"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert c.read_response().status == 200
        assert c.closed(10), "an idle keep-alive client connection is closed after client_idle_timeout_ms"


# --------------------------------------------------------------------------
# 3. routing


ROUTING = [
    # (host header, path, expected backend or None for 404)
    ("api.example.com", "/v1/users", "v1"),
    ("api.example.com", "/v1/admin/x", "v1"),        # first match wins over the later /v1/admin/ route
    ("api.example.com", "/v1", "api"),               # prefix "/v1/" does not match "/v1"
    ("api.example.com", "/v2/x", "api"),
    ("api.example.com:18080", "/v1/x", "v1"),        # the port is not part of the name
    ("API.Example.COM", "/v2", "api"),               # names compare case-insensitively
    ("www.example.com", "/v1/x", "wild"),
    ("a.b.example.com", "/", "wild"),
    ("www.example.com:18080", "/", "wild"),
    ("example.com", "/", None),                      # "*.example.com" needs a label before
    ("other.test", "/static-x/a", "dflt"),           # a route without host: path only
    ("other.test", "/", None),                       # no route matches
    ("127.0.0.1", "/static-x/", "dflt"),
]


def test_routing_by_host_and_path(ns, servers, start_pandit):
    bk = {name: nginx(ns, servers, name) for name in ("dflt", "api", "v1", "wild")}
    a = http_app([bk["dflt"]], http={
        "clusters": [{"name": "api", "targets": [bk["api"].target]},
                     {"name": "v1", "targets": [bk["v1"].target]},
                     {"name": "wild", "targets": [bk["wild"].target]}],
        "routes": [{"host": "api.example.com", "path": "/v1/", "cluster": "v1"},
                   {"host": "api.example.com", "path": "/v1/admin/", "cluster": "wild"},
                   {"host": "api.example.com", "cluster": "api"},
                   {"host": "*.example.com", "cluster": "wild"},
                   {"path": "/static-x/"}],  # cluster defaults to "default"
    })
    p = start(start_pandit, a)
    for host, path, want in ROUTING:
        r = request(ns, PORT, path=path, host=host)
        if want is None:
            assert r.status == 404, (host, path, r)
            assert r.header("x-backend") is None, (host, path, r)
        else:
            assert r.status == 200, (host, path, r)
            assert r.header("x-backend") == want, (host, path, r)
            assert body_name(r) == want
    # every routed request reached its backend once; the unrouted ones none
    want_logged = sum(1 for _, _, want in ROUTING if want)
    wait_until(lambda: sum(len(b.access_lines()) for b in bk.values()) >= want_logged, 10,
               what="nginx to log the routed requests")  # logged once done, maybe after the answer
    time.sleep(0.2)  # a stray request would be logged by now too
    logged = sum(len(b.access_lines()) for b in bk.values())
    assert logged == want_logged, {b.name: b.access_lines() for b in bk.values()}
    h = hstats(p, routed=len(ROUTING))
    routes = h["routes"]
    assert len(routes) == 6, routes  # five routes and the unrouted slot
    assert routes[-1]["host"] is None and routes[-1]["path"] is None
    per_route = [r["requests"] for r in routes]
    # v1 (3: /v1/users, /v1/admin/x, port), admin route 0, api 3, wild 3, static 2, unrouted 2
    assert per_route == [3, 0, 3, 3, 2, 2], routes
    assert routes[-1]["responses"]["4xx"] == 2, routes[-1]


def test_404_and_502_keep_the_client_connection(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n], http={
        "clusters": [{"name": "gone", "targets": [dead_target(ns)]}],
        "routes": [{"path": "/gone/", "cluster": "gone"}, {"host": "app.test"}]}), health_check=RETRY_HC)
    with RawConn(ns, PORT) as c:
        for host, path, want in (("other.test", "/x", 404), ("app.test", "/ok1", 200),
                                 ("app.test", "/gone/x", 502), ("app.test", "/ok2", 200)):
            c.send(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
            try:
                r = c.read_response()
            except ConnectionError as e:
                raise AssertionError(f"GET {path} (Host {host}): the connection ended instead of a {want}") from e
            assert r.status == want, (host, path, r)
            assert "close" not in (r.header("connection") or "").lower(), r
        # a refused request with a body: pandit may go on (after reading the
        # body) or close, but then it says so
        c.send(b"POST /x HTTP/1.1\r\nHost: other.test\r\nContent-Length: 5\r\n\r\nhello"
               b"GET /ok3 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 404, r
        if "close" in (r.header("connection") or "").lower():
            assert c.closed(10)
        else:
            r = c.read_response()
            assert r.status == 200 and r.body.split()[-1] == b"/ok3", r


def test_absolute_form_target_routes_by_its_authority(ns, servers, start_pandit):
    dflt, api = nginx(ns, servers, "dflt"), nginx(ns, servers, "api")
    start(start_pandit, http_app([dflt], http={
        "clusters": [{"name": "api", "targets": [api.target]}],
        "routes": [{"host": "api.example.com", "cluster": "api"}, {"path": "/"}]}))
    r = request(ns, PORT, path="http://api.example.com/headers?x=1", host="other.test")
    assert r.status == 200 and r.header("x-backend") == "api", r
    _, _, _, host, uri = r.body.decode().rstrip("\n").split("|")
    assert host == "api.example.com" and uri == "/headers?x=1", r.body  # origin-form upstream


def test_hop_by_hop_fields_not_passed_on(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b], http={"forwarded": False}))
    r = request(ns, PORT, path="/echo-headers", headers=[
        "Connection: X-Secret, keep-alive", "X-Secret: 1", "Keep-Alive: timeout=5", "TE: trailers",
        "Proxy-Connection: keep-alive", "Upgrade: something", "X-Multi: 1", "X-Multi: 2", "X-Kept: yes"])
    assert r.status == 200, r
    got = [(k.lower(), v) for k, v in json.loads(r.body)]
    names = {k for k, _ in got}
    assert not names & {"x-secret", "keep-alive", "te", "proxy-connection", "upgrade"}, got
    assert ("x-kept", "yes") in got and [v for k, v in got if k == "x-multi"] == ["1", "2"], got
    assert ("host", "app.test") in got, got


def test_large_heads_within_limits(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    # a 20 kB request field (default max_header_bytes 32k) and a 24 kB response head
    r = request(ns, PORT, path="/echo-headers", headers=["X-Large: " + "l" * 20000])
    assert r.status == 200 and ["X-Large", "l" * 20000] in json.loads(r.body), r.status
    r = request(ns, PORT, path="/bighead")
    assert r.status == 200 and r.header("x-big") == "h" * 16000 and r.body == b"big head\n", r.status


def test_no_routes_send_everything_to_default(ns, servers, start_pandit):
    n = nginx(ns, servers, "only")
    start(start_pandit, http_app([n]))
    for host in ("a.test", "b.example.com", "127.0.0.1:18080"):
        r = request(ns, PORT, path="/anything", host=host)
        assert r.status == 200 and r.header("x-backend") == "only", (host, r)


# --------------------------------------------------------------------------
# 4. balancing per request


def test_round_robin_per_request_on_one_connection(ns, servers, start_pandit):
    a, b = nginx(ns, servers, "a"), nginx(ns, servers, "b")
    start(start_pandit, http_app([a, b], balance="round_robin"))
    conn = http_conn(ns, PORT)
    names = []
    for i in range(10):
        status, resp, body = get_on(conn, f"/rr/{i}")
        assert status == 200
        names.append(resp.getheader("X-Backend"))
    conn.close()
    assert set(names) == {"a", "b"}, names
    assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), names
    assert names.count("a") == names.count("b") == 5


def test_round_robin_in_a_named_cluster(ns, servers, start_pandit):
    d, a, b = nginx(ns, servers, "d"), nginx(ns, servers, "a"), nginx(ns, servers, "b")
    start(start_pandit, http_app([d], http={
        "clusters": [{"name": "api", "targets": [a.target, b.target]}],
        "routes": [{"path": "/api/", "cluster": "api"}, {"path": "/"}]}))
    conn = http_conn(ns, PORT)
    names = [get_on(conn, "/api/x")[1].getheader("X-Backend") for _ in range(6)]
    assert sorted(names) == ["a", "a", "a", "b", "b", "b"], names
    assert get_on(conn, "/other")[1].getheader("X-Backend") == "d"
    conn.close()


def test_least_request_avoids_the_busy_target(ns, servers, start_pandit):
    a, b = pyhttp(ns, servers, "a"), pyhttp(ns, servers, "b")
    start(start_pandit, http_app([a, b], balance="least_request"))
    slow = {}

    def hold():
        c = http_conn(ns, PORT)
        s, resp, _ = get_on(c, "/hold")
        slow["status"], slow["backend"] = s, resp.getheader("X-Backend")
        c.close()
    t = threading.Thread(target=hold, daemon=True)
    t.start()
    busy = wait_until(lambda: "a" if "/hold" in a.request_paths() else
                      "b" if "/hold" in b.request_paths() else None, 10, what="the held request upstream")
    try:
        conn = http_conn(ns, PORT)
        names = [get_on(conn, f"/q{i}")[1].getheader("X-Backend") for i in range(5)]
        conn.close()
    finally:
        a.release.set()
        b.release.set()
    t.join(15)
    assert slow.get("status") == 200 and slow["backend"] == busy, slow
    assert all(n != busy for n in names), (busy, names)


# --------------------------------------------------------------------------
# 5. Forwarded, X-Forwarded-For, Via


def test_forwarded_headers_added(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n], http={"forwarded": True}))
    r = request(ns, PORT, path="/headers", host="app.test",
                headers=["X-Forwarded-For: 203.0.113.7", "Via: 1.0 upstream-proxy"])
    assert r.status == 200, r
    xff, fwd, via, host, uri = r.body.decode().rstrip("\n").split("|")
    assert [x.strip() for x in xff.split(",")] == ["203.0.113.7", "127.0.0.1"], xff
    assert re.search(r'(^|[;,\s])for="?127\.0\.0\.1"?($|[;,\s])', fwd, re.I), fwd
    assert "1.0 upstream-proxy" in via and "pandit" in via, via
    assert via.index("upstream-proxy") < via.index("pandit"), via
    assert host == "app.test" and uri == "/headers"
    # without a received X-Forwarded-For, the client address alone
    r = request(ns, PORT, path="/headers")
    xff = r.body.decode().split("|")[0]
    assert xff == "127.0.0.1", xff


def test_ipv6_client(ns, servers, start_pandit):
    """From ::1: X-Forwarded-For ::1, Forwarded for="[::1]" (RFC 7239 quoting);
    the access log goes to standard output with "-"."""
    n = nginx(ns, servers, "n1")
    p = start(start_pandit, http_app([n], http={"access_log": "-", "access_log_format": "json"}))
    while not p.lines.empty():
        p.lines.get_nowait()
    with RawConn(ns, PORT, host="::1") as c:
        c.send(b"GET /headers HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    xff, fwd, _, _, _ = r.body.decode().rstrip("\n").split("|")
    assert xff == "::1" and 'for="[::1]"' in fwd, r.body
    line = p.lines.get(timeout=10)
    o = json.loads(line)
    assert o["client"].startswith("::1") and o["target"] == "/headers" and o["status"] == 200, o


def test_forwarded_off_leaves_headers_alone(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n], http={"forwarded": False}))
    r = request(ns, PORT, path="/headers", headers=["X-Forwarded-For: 203.0.113.7"])
    xff, fwd, via, host, _ = r.body.decode().rstrip("\n").split("|")
    assert xff == "203.0.113.7" and fwd == "" and "pandit" not in via, r.body


# --------------------------------------------------------------------------
# 6. Expect: 100-continue and Upgrade


def test_expect_100_continue(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    body = os.urandom(100000)
    with RawConn(ns, PORT) as c:
        c.send(b"POST /sha256 HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n"
               b"Expect: 100-continue\r\n\r\n" % len(body))
        interim = c.read_response("POST")  # the body is held back until this arrives
        assert interim.status == 100, interim
        c.send(body)
        r = c.read_response("POST")
        while r.status == 100:  # a second 100 (pandit's and the backend's) is allowed
            r = c.read_response("POST")
        assert r.status == 200, r
        got = json.loads(r.body)
        assert got["sha256"] == hashlib.sha256(body).hexdigest() and got["length"] == len(body)
        # the connection stays usable
        c.send(b"GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert c.read_response().status == 200


def test_expect_100_continue_refused_request_gets_the_final_answer(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b], http={"routes": [{"host": "app.test"}]}))
    with RawConn(ns, PORT) as c:
        c.send(b"POST /sha256 HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 100000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 404, r  # no 100 first: the body is not wanted
        assert c.closed(10)
    assert b.requests == []


def test_websocket_upgrade_echoes_both_ways(ns, servers, start_pandit):
    ws = WsEcho(ns)
    servers.append(ws)
    p = start(start_pandit, http_app([ws.target]))
    msgs = ["hello", b"\x00\x01\x02binary", "x" * 200000, "last"]
    got, code = hh.ws_roundtrip(ns, PORT, "/ws", msgs)
    assert got == msgs
    assert code == 1000
    assert ws.paths == ["/ws"]
    # a second one on a fresh connection, and the counter
    got, _ = hh.ws_roundtrip(ns, PORT, "/ws2", ["again"])
    assert got == ["again"]
    assert hstats(p)["upgrades"] == 2


# --------------------------------------------------------------------------
# 7. hostile requests: refused before anything reaches a backend


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
HOSTILE = {
    # name: (request bytes, status)
    "cl_and_te": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "te_and_cl": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 44\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "duplicate_cl": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n"
                     b"Content-Length: 3\r\n\r\nabc", 400),
    "conflicting_cl": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n"
                       b"Content-Length: 48\r\n\r\nabc" + SMUGGLED, 400),
    "cl_list": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    "cl_sign": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: +3\r\n\r\nabc", 400),
    "cl_not_number": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3x\r\n\r\nabc", 400),
    "te_not_chunked_last": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, identity"
                            b"\r\n\r\n0\r\n\r\n", 400),
    "obs_fold": (b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-A: one\r\n  two\r\n\r\n", 400),
    "bare_cr": (b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-A: one\rtwo\r\n\r\n", 400),
    "bare_lf": (b"GET /a HTTP/1.1\nHost: app.test\n\n", 400),
    "nul_in_header": (b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-A: a\x00b\r\n\r\n", 400),
    "space_before_colon": (b"GET /a HTTP/1.1\r\nHost : app.test\r\n\r\n", 400),
    "no_host": (b"GET /a HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    "two_hosts": (b"GET /a HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n", 400),
    "garbage_line": (b"GARBAGE\r\n\r\n", 400),
    "double_space": (b"GET  /a HTTP/1.1\r\nHost: app.test\r\n\r\n", 400),
    "extra_token": (b"GET /a HTTP/1.1 x\r\nHost: app.test\r\n\r\n", 400),
    "tls_hello": (bytes.fromhex("16030100a5010000a10303") + os.urandom(64) + b"\r\n\r\n", 400),
    "too_many_headers": (b"GET /a HTTP/1.1\r\nHost: app.test\r\n"
                         + b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + b"\r\n", 431),
    "head_too_large": (b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-Big: " + b"b" * 6000 + b"\r\n\r\n", 431),
    "expect_other": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nExpect: magic\r\n\r\nabc", 417),
    "http_2_0": (b"GET /a HTTP/2.0\r\nHost: app.test\r\n\r\n", 505),
    "te_gzip_chunked": (b"POST /a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                        b"0\r\n\r\n", 501),
    "connect": (b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", 405),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_request_refused(ns, servers, start_pandit, case):
    raw, want = HOSTILE[case]
    b = pyhttp(ns, servers, "py")
    p = start(start_pandit, http_app([b], http={"max_headers": 20, "max_header_bytes": 4096}))
    before = hstats(p)
    with RawConn(ns, PORT) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == want, (case, r)
        assert c.closed(10), f"{case}: the connection must end after a {want}"
    # a good request afterwards reaches the backend, and nothing else did
    ok = request(ns, PORT, path="/good")
    assert ok.status == 200, ok
    assert b.request_paths() == ["/good"], (case, b.requests)
    after = hstats(p)
    if want != 405:  # CONNECT is well-formed: refused by pandit, not by the parser
        assert after["bad_requests"] - before["bad_requests"] == 1, (before, after)


def test_head_limits_are_exact(ns, servers, start_pandit):
    """max_headers 20 and max_header_bytes 4096 (the whole head, final CRLF
    CRLF included): at the limit 200, one over 431."""
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n], http={"max_headers": 20, "max_header_bytes": 4096}))

    def status(raw):
        with RawConn(ns, PORT) as c:
            c.send(raw)
            return c.read_response().status
    for fields, want in ((20, 200), (21, 431)):
        head = b"GET /x HTTP/1.1\r\nHost: app.test\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(fields - 1))
        assert status(head + b"\r\n") == want, fields
    base = b"GET /x HTTP/1.1\r\nHost: app.test\r\nX-Pad: \r\n\r\n"
    for size, want in ((4096, 200), (4097, 431)):
        assert status(base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(base)))) == want, size


def test_bad_chunk_size_never_completes_upstream(ns, servers, start_pandit):
    """A bad chunk size is found in the body, perhaps after the head went
    upstream: the client gets a 400 (or, once a response has started, a
    closed connection), never a 2xx, and the backend never gets a complete
    body nor the bytes after the bad chunk as a request."""
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    with RawConn(ns, PORT) as c:
        c.send(b"POST /sha256 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n" + SMUGGLED)
        try:
            r = c.read_response("POST")
        except ConnectionError:
            r = None
        if r is not None:
            assert r.status == 400, r
            assert c.closed(10)
    ok = request(ns, PORT, path="/good")
    assert ok.status == 200
    assert b.bodies == [], b.bodies
    assert "/smuggled" not in b.request_paths(), b.requests


# --------------------------------------------------------------------------
# 8. timeouts: 408 and slowloris


def test_header_timeout_408(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    p = start(start_pandit, http_app([b], http={"header_timeout_ms": 500}))
    with RawConn(ns, PORT, timeout=10) as c:
        c.send(b"GET /half HTTP/1.1\r\nHost: app.test\r\nX-Stall:")
        r = c.read_response()
        assert r.status == 408, r
        assert c.closed(10)
    assert b.requests == []
    assert hstats(p)["header_timeouts"] >= 1


def test_header_timeout_covers_a_dribbled_head(ns, servers, start_pandit):
    """A head sent a byte every 100 ms still has to be complete within the
    header timeout: resetting the clock on every byte would let slowloris in."""
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b], http={"header_timeout_ms": 500}))
    head = b"GET /dribble HTTP/1.1\r\nHost: app.test\r\nX-Pad: " + b"p" * 40 + b"\r\n\r\n"
    got = None
    with RawConn(ns, PORT, timeout=10) as c:
        try:
            for i in range(len(head)):
                if select.select([c.s], [], [], 0.1)[0]:
                    break  # an answer (the 408) or the end: stop sending
                c.send(head[i:i + 1])
        except OSError:  # closed after the 408: fine
            pass
        try:
            got = c.read_response()
        except ConnectionError:
            got = None
    assert got is not None and got.status == 408, got
    assert "/dribble" not in b.request_paths()


def test_timeouts_hold_only_for_their_phase(ns, servers, start_pandit):
    """header_timeout_ms covers a request head, response_timeout_ms a
    response head: an idle keep-alive connection, a slow request body and a
    slow response body all outlast them."""
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b], http={"header_timeout_ms": 500, "response_timeout_ms": 500}))
    with RawConn(ns, PORT) as c:
        c.send(b"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert c.read_response().status == 200
        time.sleep(1.5)  # idle between requests: client_idle_timeout_ms (60 s) applies
        c.send(b"GET /b HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body.split()[-1] == b"/b", r
        # a chunked upload over 2 s
        c.send(b"POST /sha256 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):
            time.sleep(0.25)
            c.send(b"5\r\nhello\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 200, r
        assert json.loads(r.body)["sha256"] == hashlib.sha256(b"hello" * 8).hexdigest()
        # a response whose body takes 1.5 s after its head
        c.send(b"GET /slowbody HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == hh.slow_body(), r


def test_upstream_idle_timeout_closes_pooled_connections(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    start(start_pandit, http_app([n], http={"upstream_idle_timeout_ms": 300}))
    conn = http_conn(ns, PORT)
    s1 = get_on(conn, "/1")[2].split()[1]
    s2 = get_on(conn, "/2")[2].split()[1]
    assert s1 == s2  # pooled
    time.sleep(1.5)
    s3 = get_on(conn, "/3")[2].split()[1]
    conn.close()
    assert s3 != s2, "a pooled connection idle past upstream_idle_timeout_ms was used again"


@pytest.mark.slow
def test_slowloris_does_not_block_other_clients(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b], http={"header_timeout_ms": 3000}))
    stalled = []
    try:
        for i in range(50):
            c = RawConn(ns, PORT, timeout=20)
            c.send(b"GET /stall%d HTTP/1.1\r\nHost: app.test\r\nX-A: " % i)
            stalled.append(c)
        for i in range(5):
            r = request(ns, PORT, path=f"/normal{i}")
            assert r.status == 200, r
        # then every stalled one gets its 408 (or is closed) within the timeout's reach
        for c in stalled:
            try:
                r = c.read_response()
                assert r.status == 408, r
            except ConnectionError:
                pass
    finally:
        for c in stalled:
            c.close()
    assert not any(p.startswith("/stall") for p in b.request_paths())


# --------------------------------------------------------------------------
# 9. upstream failures: 502, 503, 504


def test_502_when_the_target_refuses(ns, start_pandit):
    p = start(start_pandit, http_app([dead_target(ns)], health_check=False), health_check=RETRY_HC)
    before = hstats(p)
    r = request(ns, PORT, path="/x")
    assert r.status == 502, r
    r = request(ns, PORT, method="POST", path="/x", body=b"abc")
    assert r.status == 502, r
    after = hstats(p)
    assert after["upstream_errors"] - before["upstream_errors"] == 2, (before, after)


BAD_RESPONSES = {
    # name: the bytes a target answers with (then it closes)
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
    "bad_status": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nhi",
    "not_http": b"hello there\r\n\r\n",
    "nothing": b"",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
}


@pytest.mark.parametrize("case", sorted(BAD_RESPONSES))
def test_malformed_response_is_502(ns, servers, start_pandit, case):
    b = pyhttp(ns, servers, "py")
    p = start(start_pandit, http_app([b]))
    with RawConn(ns, PORT) as c:
        c.send(b"GET /raw?%s HTTP/1.1\r\nHost: app.test\r\n\r\n" % BAD_RESPONSES[case].hex().encode())
        r = c.read_response()
        assert r.status == 502, (case, r)
    assert hstats(p)["upstream_errors"] == 1
    r = request(ns, PORT, path="/next")
    assert r.status == 200 and r.body.split()[-1] == b"/next", r


def test_interim_1xx_and_cut_response(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    hints = (b"HTTP/1.1 103 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    with RawConn(ns, PORT) as c:
        c.send(b"GET /raw?%s HTTP/1.1\r\nHost: app.test\r\n\r\n" % hints.hex().encode())
        r = c.read_response()
        if r.status == 103:  # passed on, or dropped: either way the final answer follows intact
            r = c.read_response()
        assert r.status == 200 and r.body == b"hi", r
    # a body shorter than its Content-Length: the client connection ends before the end
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    with RawConn(ns, PORT) as c:
        c.send(b"GET /raw?%s HTTP/1.1\r\nHost: app.test\r\n\r\n" % short.hex().encode())
        with pytest.raises(ConnectionError):
            c.read_response()


def test_502_when_the_backend_resets_before_answering(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    r = request(ns, PORT, path="/reset-now")
    assert r.status == 502, r
    # the app still works
    assert request(ns, PORT, path="/fine").status == 200


def test_backend_reset_mid_response_closes_the_client(ns, servers, start_pandit):
    b = pyhttp(ns, servers, "py")
    start(start_pandit, http_app([b]))
    with RawConn(ns, PORT, timeout=15) as c:
        c.send(b"GET /reset-mid HTTP/1.1\r\nHost: app.test\r\n\r\n")
        try:
            r = c.read_response()
        except ConnectionError:
            r = None  # the head and part of the body came, then the connection ended: right
        if r is not None:
            # pandit had sent nothing yet: then it may answer 502 itself
            assert r.status == 502, r
    assert request(ns, PORT, path="/fine").status == 200


def test_every_target_unreachable_502_or_503(ns, start_pandit):
    """Refused connections on every target: 502 (connection refused on each
    attempt), or 503 while health checks have marked them all down (a
    down target is still tried now and then, after its backoff)."""
    dead = [dead_target(ns), dead_target(ns)]
    p = start(start_pandit, http_app(dead))
    wait_until(lambda: not any(find_target(find_app(p.stats(), "web"), t)["up"] for t in dead), 10,
               what="both targets marked down")
    statuses = []
    for i in range(20):
        statuses.append(request(ns, PORT, path=f"/x{i}").status)
        if statuses[-1] == 503:
            break
    assert set(statuses) <= {502, 503}, statuses
    assert 503 in statuses, statuses
    h = hstats(p)
    assert h["upstream_errors"] == statuses.count(502) and h["no_target"] == statuses.count(503), (h, statuses)


def test_504_when_the_backend_does_not_answer(ns, servers, start_pandit):
    hang = HangServer(ns)
    servers.append(hang)
    p = start(start_pandit, http_app([hang], http={"response_timeout_ms": 500}))
    with RawConn(ns, PORT, timeout=10) as c:
        c.send(b"GET /hang HTTP/1.1\r\nHost: app.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 504, r
    assert b"GET /hang HTTP/1.1" in hang.received
    assert hstats(p)["upstream_timeouts"] >= 1


@pytest.mark.slow
def test_no_connection_leaks_after_errors(ns, servers, start_pandit):
    """Three rounds of every failure kind (bad responses, resets, 504, 502,
    hostile requests, 408, clients that vanish mid-response): afterwards
    pandit has no client connection open, no target connection counted
    active, and about the file descriptors it started with."""
    b = pyhttp(ns, servers, "py")
    hang = HangServer(ns)
    servers.append(hang)
    p = start(start_pandit, http_app([b], http={
        "response_timeout_ms": 300, "header_timeout_ms": 300, "max_headers": 20, "max_header_bytes": 4096,
        "clusters": [{"name": "hang", "targets": [hang.target]}, {"name": "dead", "targets": [dead_target(ns)]}],
        "routes": [{"host": "hang.test", "cluster": "hang"}, {"host": "dead.test", "cluster": "dead"}, {"path": "/"}]}))

    def fds():
        return len(os.listdir(f"/proc/{p.pid}/fd"))
    base = fds()
    for _ in range(3):
        for raw in BAD_RESPONSES.values():
            assert request(ns, PORT, path="/raw?" + raw.hex()).status == 502
        for path in ("/reset-now", "/reset-mid"):
            try:
                request(ns, PORT, path=path)
            except ConnectionError:
                pass
        assert request(ns, PORT, path="/h", host="hang.test").status == 504
        assert request(ns, PORT, path="/d", host="dead.test").status in (502, 503)
        for raw, want in HOSTILE.values():
            with RawConn(ns, PORT) as c:
                c.send(raw)
                assert c.read_response().status == want
        with RawConn(ns, PORT) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: app.test\r\n")
            assert c.read_response().status == 408
        for _ in range(5):  # clients gone while their response is under way
            c = RawConn(ns, PORT)
            c.send(b"GET /slowbody HTTP/1.1\r\nHost: app.test\r\n\r\n")
            c.close()
    assert request(ns, PORT, path="/last").status == 200

    def settled():
        a = find_app(p.stats(), "web")
        return (a["active"] == 0 and all(t["active"] == 0 for t in a["targets"])
                and fds() <= base + 4)
    wait_until(settled, 15, 0.2, f"pandit back to no connections and about {base} fds")


# --------------------------------------------------------------------------
# 10. retries


def retry_app(live, dead):
    # no active checks and a high fall: the dead target stays "up", so round
    # robin keeps picking it and every pick shows what a retry does
    return http_app([dead, live], health_check=False)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_idempotent_requests_are_retried_on_another_target(ns, servers, start_pandit, method):
    live = pyhttp(ns, servers, "live")
    p = start(start_pandit, retry_app(live, dead_target(ns)), health_check=RETRY_HC)
    before = hstats(p)
    conn = http_conn(ns, PORT)
    for i in range(20):
        if method == "PUT":  # with a body, which arrives whole after the retry
            body = b"put %d " % i * 100
            conn.request("PUT", "/sha256", body=body)
            r = conn.getresponse()
            got = json.loads(r.read())
            assert r.status == 200 and got["sha256"] == hashlib.sha256(body).hexdigest(), (i, r.status, got)
        else:
            conn.request(method, f"/g{i}")
            r = conn.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("X-Backend") == "live", (i, r.status)
    conn.close()
    after = hstats(p)
    assert after["retries"] - before["retries"] > 0, (before, after)
    assert [m for m, _, _ in live.requests] == [method] * 20
    assert after["upstream_errors"] == 0


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_request_is_not_retried(ns, servers, start_pandit, method):
    live = pyhttp(ns, servers, "live")
    p = start(start_pandit, retry_app(live, dead_target(ns)), health_check=RETRY_HC)
    statuses = []
    for i in range(10):  # round robin: about every other one picks the dead target
        r = request(ns, PORT, method=method, path="/sha256", body=b"post %d" % i)
        statuses.append(r.status)
    assert set(statuses) == {200, 502}, statuses
    assert len(live.bodies) == statuses.count(200), (statuses, live.bodies)
    h = hstats(p)
    assert h["upstream_errors"] == statuses.count(502) and h["retries"] == 0, h


@pytest.mark.slow
def test_backend_killed_mid_traffic(ns, servers, start_pandit):
    a, b = nginx(ns, servers, "a"), nginx(ns, servers, "b")
    start(start_pandit, http_app([a, b]))
    results = []  # (phase, status or exception name)
    killed = threading.Event()
    done = threading.Event()

    def client():
        conn = None
        for i in range(400):
            if done.is_set():
                break
            try:
                if conn is None:
                    conn = http_conn(ns, PORT, timeout=10)
                status, _, _ = get_on(conn, f"/k{i}")
                # phase at the end: a request in flight at the kill counts as after
                results.append(("after" if killed.is_set() else "before", status))
            except Exception as e:  # the request in flight at the kill (reset, EOF)
                results.append(("after" if killed.is_set() else "before", type(e).__name__))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()
    t = threading.Thread(target=client, daemon=True)
    t.start()
    wait_until(lambda: len(results) >= 60, 30, what="traffic before the kill")
    killed.set()  # before the kill: whatever ends after this may have met it
    a.kill()
    n_at_kill = len(results)
    wait_until(lambda: len(results) >= n_at_kill + 150, 60, what="traffic after the kill")
    done.set()
    t.join(30)
    before = [r for ph, r in results if ph == "before"]
    after = [r for ph, r in results if ph == "after"]
    assert all(r == 200 for r in before), before
    failed = [r for r in after if r != 200]
    assert len(failed) <= 2, f"{len(failed)} of {len(after)} requests failed after the kill: {failed}"
    # the survivor answered the last ones
    assert request(ns, PORT, path="/last").header("x-backend") == "b"


# --------------------------------------------------------------------------
# 11. access log


COMBINED = re.compile(r'^(\S+) - - \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
                      r'"([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$')
JSON_FIELDS = {"time", "client", "method", "target", "protocol", "host", "status", "bytes", "duration_us",
               "referer", "user_agent", "app", "route", "upstream"}


def log_dir():
    d = Path(tempfile.mkdtemp(prefix="pandit-it-alog-"))
    os.chmod(d, 0o777)  # pandit may reopen the log after dropping privileges
    return d


def log_lines(path, n, timeout=10.0):
    """The file's lines once there are at least n (lines may be written lazily)."""
    def ready():
        if not path.exists():
            return None
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        return lines if len(lines) >= n and text.endswith("\n") else None
    return wait_until(ready, timeout, 0.1, f"{n} lines in {path}")


def logged_requests(ns):
    """Three requests on one connection; returns [(method, target, status, wire bytes)]."""
    out = []
    with RawConn(ns, PORT) as c:
        for method, target, extra in (
                ("GET", "/static/small.html", b""),
                ("GET", "/static/missing", b"Referer: http://ref.test/page\r\n"),
                ("HEAD", "/q?a=%22quoted%22&b=%5C", b'User-Agent: agent "with quotes" \\ and backslash\r\n')):
            c.send(b"%s %s HTTP/1.1\r\nHost: app.test\r\n%s\r\n" % (method.encode(), target.encode(), extra))
            r = c.read_response(method)
            out.append((method, target, r.status, r.raw_len))
    return out


def test_access_log_combined(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    d = log_dir()
    try:
        path = d / "access.log"
        start(start_pandit, http_app([n], http={"access_log": str(path), "access_log_format": "combined"}))
        sent = logged_requests(ns)
        lines = log_lines(path, 3)
        assert len(lines) == 3, lines
        for line, (method, target, status, nbytes) in zip(lines, sent):
            m = COMBINED.match(line)
            assert m, f"not a combined log line: {line!r}"
            client, _, req, st, by, ref, ua = m.groups()
            assert client == "127.0.0.1", line
            assert req == f"{method} {target} HTTP/1.1", line
            assert int(st) == status, line
            assert by != "-" and int(by) == nbytes, (line, nbytes)
        assert COMBINED.match(lines[1]).group(6) == "http://ref.test/page"
        assert COMBINED.match(lines[0]).group(6) == "-"
        ua = COMBINED.match(lines[2]).group(7)
        assert ua.startswith("agent ") and ("\\x22" in ua or '\\"' in ua), ua  # the quotes escaped
        assert [s for _, _, s, _ in sent] == [200, 404, 200]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_access_log_json(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    d = log_dir()
    try:
        path = d / "access.json"
        start(start_pandit, http_app([n], http={
            "access_log": str(path), "access_log_format": "json",
            "routes": [{"host": "app.test", "path": "/"}]}))
        sent = logged_requests(ns)
        r = request(ns, PORT, path="/nowhere", host="unrouted.test")  # 404 from pandit itself
        assert r.status == 404
        sent.append(("GET", "/nowhere", 404, r.raw_len))
        lines = log_lines(path, 4)
        assert len(lines) == 4, lines
        # a request refused by the parser (a raw quote in the target) may be
        # logged too: as a valid line
        with RawConn(ns, PORT) as c:
            c.send(b'GET /a"b\\c\x01 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: "x"\r\n\r\n')
            bad = c.read_response()
            assert bad.status == 400, bad
        request(ns, PORT, path="/static/small.html")  # a last line, so the one before is written

        def last_written():
            more = log_lines(path, 5)[4:]
            return more if json.loads(more[-1]).get("target") == "/static/small.html" else None
        more = wait_until(last_written, 10, 0.1, "the last request's log line")
        assert 1 <= len(more) <= 2, more
        for ln in more:
            o = json.loads(ln)
            assert set(o) == JSON_FIELDS and o["status"] in (400, 200), o
        objs = [json.loads(ln) for ln in lines]
        for o, (method, target, status, nbytes) in zip(objs, sent):
            assert set(o) == JSON_FIELDS, sorted(o)
            assert o["method"] == method and o["target"] == target, o
            assert o["status"] == status and o["bytes"] == nbytes, (o, nbytes)
            assert o["protocol"] == "HTTP/1.1" and o["app"] == "web", o
            assert o["client"].startswith("127.0.0.1"), o
            assert isinstance(o["duration_us"], int) and o["duration_us"] >= 0, o
            assert re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$", o["time"]), o
        for o in objs[:3]:
            assert o["host"] == "app.test" and o["upstream"] == n.target, o
            assert o["route"] == "app.test/", o
        assert objs[1]["referer"] == "http://ref.test/page" and objs[0]["referer"] is None
        assert objs[2]["user_agent"] == 'agent "with quotes" \\ and backslash', objs[2]
        assert objs[3]["host"] == "unrouted.test" and objs[3]["upstream"] is None, objs[3]
        assert objs[3]["route"] in (None, "unrouted"), objs[3]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_access_log_reopened_on_sighup(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    d = log_dir()
    try:
        path = d / "access.log"
        p = start(start_pandit, http_app([n], http={"access_log": str(path)}))
        assert request(ns, PORT, path="/before").status == 200
        assert "/before" in log_lines(path, 1)[0]
        os.rename(path, d / "access.log.1")
        reloads = p.reload_count()
        p.signal(signal.SIGHUP)
        wait_until(lambda: p.reload_count() > reloads, 10, what="the SIGHUP reload")
        assert request(ns, PORT, path="/after").status == 200
        lines = log_lines(path, 1)
        assert len(lines) == 1 and "/after" in lines[0], lines
        assert [ln for ln in (d / "access.log.1").read_text().splitlines()] == log_lines(d / "access.log.1", 1)
        assert "/after" not in (d / "access.log.1").read_text()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# 12. reload


def test_reload_changes_routes_in_place(ns, servers, start_pandit):
    a, b = nginx(ns, servers, "a"), nginx(ns, servers, "b")

    def cfg(cluster):
        return base_config([http_app([a], http={
            "clusters": [{"name": "bee", "targets": [b.target]}],
            "routes": [{"path": "/x/", "cluster": cluster}, {"path": "/"}]})])
    p = start_pandit(cfg("default"))
    wait_http_port(p, PORT)
    conn = http_conn(ns, PORT)  # kept alive across the reload
    assert get_on(conn, "/x/1")[1].getheader("X-Backend") == "a"
    assert get_on(conn, "/y0")[1].getheader("X-Backend") == "a"
    n0 = p.reload_count()
    p.write_config(cfg("bee"), expect=None)
    wait_until(lambda: p.reloads()[0] > 0 and p.reload_count() > n0, 10, what="the reload")
    assert p.reloads()[1] == 0
    conn2 = http_conn(ns, PORT)
    assert get_on(conn2, "/x/2")[1].getheader("X-Backend") == "b"
    assert get_on(conn2, "/y")[1].getheader("X-Backend") == "a"
    conn2.close()
    routes = hstats(p, routed=3)["routes"]
    assert routes[0]["cluster"] == "bee" and routes[0]["requests"] == 1, routes  # a new route
    assert routes[1]["requests"] == 2, routes  # "/" kept its count across the reload
    # the connection from before the reload still works (with either generation's routes)
    status, resp, _ = get_on(conn, "/x/3")
    assert status == 200 and resp.getheader("X-Backend") in ("a", "b")
    conn.close()


# --------------------------------------------------------------------------
# 13. /stats and /metrics


def test_stats_and_metrics(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    p = start(start_pandit, http_app([n], http={"routes": [{"path": "/api/"}, {"path": "/static/"}]}))
    for i in range(7):
        assert request(ns, PORT, path=f"/api/{i}").status == 200
    for _ in range(3):
        assert request(ns, PORT, path="/static/missing").status == 404
    assert request(ns, PORT, path="/nothing").status == 404  # no route
    h = hstats(p, routed=11)
    assert h["requests"] == 11, h
    routes = h["routes"]
    assert [(r["path"], r["cluster"]) for r in routes] == [("/api/", "default"), ("/static/", "default"),
                                                             (None, None)], routes
    api, static, unrouted = routes
    assert api["requests"] == 7 and api["responses"]["2xx"] == 7, api
    assert static["requests"] == 3 and static["responses"]["4xx"] == 3 and static["responses"]["2xx"] == 0
    assert unrouted["requests"] == 1 and unrouted["responses"]["4xx"] == 1, unrouted
    for r in routes:
        assert set(r["responses"]) >= {"1xx", "2xx", "3xx", "4xx", "5xx"}, r
        lat = r["latency_us"]
        assert {"p50", "p90", "p99"} <= set(lat), lat
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"], lat
    assert api["latency_us"]["p50"] > 0

    _, text = p.metrics()
    samples = prom_samples(text)
    req = {labels: v for (name, labels), v in samples.items() if name == "pandit_http_requests_total"}
    assert req, "no pandit_http_requests_total samples"
    assert all(("app", "web") in labels for labels in req), req
    assert sum(req.values()) == 11, req
    buckets = {labels: v for (name, labels), v in samples.items()
               if name == "pandit_http_request_duration_seconds_bucket"}
    assert buckets, "no pandit_http_request_duration_seconds_bucket samples"
    les = {dict(lb).get("le") for lb in buckets}
    assert "+Inf" in les and len(les) > 3, les
    counts = {labels: v for (name, labels), v in samples.items()
              if name == "pandit_http_request_duration_seconds_count"}
    assert sum(counts.values()) == 11, counts
    assert "# TYPE pandit_http_request_duration_seconds histogram" in text


# --------------------------------------------------------------------------
# 14. quick mode


def test_quick_mode_http(ns, servers, start_pandit):
    n = nginx(ns, servers, "n1")
    p = start_pandit(None, args=["--listen", ":18002", "--forward", n.target, "--protocol", "http"])
    wait_http_port(p, 18002)
    r = request(ns, 18002, path="/static/small.html")
    assert r.status == 200 and r.body == SMALL_BODY and r.header("x-backend") == "n1", r
    assert find_app(p.stats(), "quick")["protocol"] == "http"
