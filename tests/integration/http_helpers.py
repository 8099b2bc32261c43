"""http_helpers.py - HTTP backends (NGINX, a Python server, a WebSocket echo) and raw HTTP/1.1 clients for test_http.py."""
# Everything runs inside the test's namespace: sockets are made by the
# namespace's thread (NetNS.socket), processes through `ip netns exec`.
# Each object owns what it creates and stops it in stop(); every wait is
# bounded.

import asyncio
import atexit
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpers import Timeout, wait_until

NGINX = "/usr/sbin/nginx"

try:
    import websockets  # python3-websockets (Debian 12: 10.4, the asyncio API)
    import websockets.exceptions
except ImportError:  # pragma: no cover - the module-level skip in test_http.py says why
    websockets = None

BIG_SIZE = 20 << 20
_big = {}


def big_file():
    """(path, sha256 hex) of a 20 MB random file, made once per session."""
    if not _big:
        d = Path(tempfile.mkdtemp(prefix="pandit-it-big-"))
        atexit.register(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        p = d / "big.bin"
        h = hashlib.sha256()
        with open(p, "wb") as f:
            for _ in range(BIG_SIZE >> 20):
                chunk = os.urandom(1 << 20)
                h.update(chunk)
                f.write(chunk)
        os.chmod(p, 0o644)
        _big["path"], _big["sha"] = p, h.hexdigest()
    return _big["path"], _big["sha"]


# --------------------------------------------------------------------------
# NGINX


SMALL_BODY = b"<html><body>small static page for pandit's tests</body></html>\n"


class Nginx:
    """Debian's nginx as one process (master_process off, so SIGKILL stops
    it all at once) in ns on 127.0.0.1:<free port>. It answers

      /static/small.html, /static/big.bin  static files (SMALL_BODY, big_file())
      /headers   "<x-forwarded-for>|<forwarded>|<via>|<host>|<request_uri>\\n"
      anything else  "<name> <connection serial> <requests on it> <request_uri>\\n"

    and every response carries X-Backend: <name>. access.log has one line
    per request: "<connection> <connection_requests> <status> <request>"."""

    def __init__(self, ns, name, keepalive_requests=100000, keepalive_timeout="120s"):
        """keepalive_*: nginx's own limits on the connections pandit keeps."""
        self.ns = ns
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"pandit-it-nginx-{name}-"))
        self.port = ns.free_port()
        www = self.dir / "www"
        www.mkdir()
        (www / "small.html").write_bytes(SMALL_BODY)
        big, _ = big_file()
        os.symlink(big, www / "big.bin")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir()
        conf = f"""
master_process off;
daemon off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format pandit '$connection $connection_requests $status "$request"';
    access_log {self.dir}/access.log pandit;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    default_type application/octet-stream;
    keepalive_requests {keepalive_requests};
    keepalive_timeout {keepalive_timeout};
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{self.port};
        server_name _;
        add_header X-Backend {name} always;
        location /static/ {{ alias {www}/; }}
        location = /headers {{
            default_type text/plain;
            return 200 "$http_x_forwarded_for|$http_forwarded|$http_via|$host|$request_uri\\n";
        }}
        location / {{
            default_type text/plain;
            return 200 "{name} $connection $connection_requests $request_uri\\n";
        }}
    }}
}}
"""
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf)
        self.err = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen(ns.exec_argv([NGINX, "-p", str(self.dir), "-c", str(self.conf)]),
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx {name} exited {self.proc.returncode}: {self.logs()}")
            with ns.connect("127.0.0.1", self.port, 1.0):
                return True
        wait_until(up, 10, 0.05, f"nginx {name} to listen")

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def logs(self):
        out = []
        for f in ("stderr.log", "error.log"):
            p = self.dir / f
            if p.exists():
                out.append(p.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def access_lines(self):
        p = self.dir / "access.log"
        return p.read_text(errors="replace").splitlines() if p.exists() else []

    def kill(self):
        """SIGKILL: the kernel closes its sockets (connections reset or ended)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# a Python HTTP/1.1 backend for what NGINX cannot be told to do


def read_chunked(rfile):
    """Reads a chunked body from a file object; returns the data (raises ValueError on bad framing)."""
    out = bytearray()
    while True:
        line = rfile.readline(4096)
        if not line.endswith(b"\r\n"):
            raise ValueError(f"bad chunk size line {line!r}")
        size = int(line[:-2].split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers up to the empty line
                t = rfile.readline(8192)
                if t == b"\r\n":
                    return bytes(out)
                if not t.endswith(b"\r\n"):
                    raise ValueError("truncated trailers")
        data = rfile.read(size)
        if len(data) != size or rfile.read(2) != b"\r\n":
            raise ValueError("truncated chunk")
        out += data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def setup(self):
        super().setup()
        srv = self.server.owner
        with srv.lock:
            srv.conns += 1
            self.conn_id = srv.conns

    def parse_request(self):
        ok = super().parse_request()
        if ok:
            srv = self.server.owner
            with srv.lock:
                srv.requests.append((self.command, self.path, dict((k.lower(), v) for k, v in self.headers.items())))
        return ok

    def _reply(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.owner.name)
        self.send_header("X-Conn", str(self.conn_id))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise ValueError(f"transfer-encoding {te!r}")
            return read_chunked(self.rfile), True
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n)
        if len(data) != n:
            raise ValueError("truncated body")
        return data, False

    def _reset(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.close_connection = True
        self.connection.close()

    def _route(self):
        srv = self.server.owner
        path = self.path.split("?")[0]
        if path == "/sha256":
            try:
                data, chunked = self._body()
            except ValueError:
                self.close_connection = True
                return
            with srv.lock:
                srv.bodies.append(len(data))
            out = json.dumps({"name": srv.name, "length": len(data), "chunked": chunked,
                              "sha256": hashlib.sha256(data).hexdigest()}).encode()
            self._reply(200, out, "application/json")
        elif path == "/chunked" and self.request_version == "HTTP/1.0":
            # an HTTP/1.0 request cannot have a chunked answer: the body ends at the close
            self.close_connection = True
            self.send_response(200)
            self.send_header("X-Backend", srv.name)
            self.end_headers()
            self.wfile.write(b"".join(chunked_parts()))
        elif path == "/chunked":
            # parts of different sizes, written one by one with flushes
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Backend", srv.name)
            self.end_headers()
            if self.command == "HEAD":
                return
            for part in chunked_parts():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
        elif path == "/slow":
            time.sleep(float(self.path.partition("ms=")[2] or 1000) / 1000)
            self._reply(200, f"{srv.name} slow\n".encode())
        elif path == "/hold":
            srv.release.wait(30)  # answers once the test says so
            self._reply(200, f"{srv.name} held\n".encode())
        elif path == "/close-delimited":
            # HTTP/1.1 response without Content-Length or chunked: the body ends at the close
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: "
                             + srv.name.encode() + b"\r\nConnection: close\r\n\r\n")
            for i in range(100):
                self.wfile.write(b"line %d of a close-delimited body\n" % i)
            self.wfile.flush()
        elif path == "/bighead":
            self._reply(200, b"big head\n", extra=[("X-Big", "h" * 16000), ("Set-Cookie", "a=" + "c" * 8000)])
        elif path == "/echo-headers":
            out = json.dumps([[k, v] for k, v in self.headers.items()]).encode()
            self._reply(200, out, "application/json")
        elif path == "/slowbody":
            # the head at once, then the body's chunks over about 1.5 s
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Backend", srv.name)
            self.end_headers()
            self.wfile.flush()
            for i in range(6):
                time.sleep(0.25)
                part = b"slow part %d\n" % i
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/raw":
            # a response written as given in the query (hex), then the connection closed
            self.close_connection = True
            self.wfile.write(bytes.fromhex(self.path.partition("?")[2]))
            self.wfile.flush()
        elif path == "/hang":
            srv.stop_event.wait(60)  # read the request, never answer
            self.close_connection = True
        elif path == "/reset-now":
            self._reset()
        elif path == "/reset-mid":
            # a head promising 1 MB, part of the body, then a reset
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.send_header("X-Backend", srv.name)
            self.end_headers()
            self.wfile.write(b"x" * 50000)
            self.wfile.flush()
            time.sleep(0.2)
            self._reset()
        else:
            self._reply(200, f"{srv.name} {self.conn_id} {self.path}\n".encode())

    def do_GET(self):
        self._route()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET


def slow_body():
    return b"".join(b"slow part %d\n" % i for i in range(6))


def close_delimited_body():
    return b"".join(b"line %d of a close-delimited body\n" % i for i in range(100))


def chunked_parts():
    """The parts /chunked sends, in order (their concatenation is the body)."""
    return [bytes([65 + i % 26]) * (1 + i * 997 % 5000) for i in range(60)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):  # resets from the proxy are normal
        pass


class PyHTTP:
    """A threaded HTTP/1.1 server (http.server) in ns on 127.0.0.1:<ephemeral>.

      POST/PUT /sha256  JSON {name, length, chunked, sha256} of the body (CL or chunked)
      GET /chunked      a chunked body (chunked_parts()) with a trailer; to an
                        HTTP/1.0 request the same body ended by closing
      GET /slow?ms=N    answers after N ms
      GET /hold         answers once .release is set
      GET /close-delimited  a body without length, ended by closing (close_delimited_body())
      GET /bighead      a response head of about 24 kB
      GET /echo-headers JSON [[name, value], ...] of the request's header fields
      GET /slowbody     the head at once, then a chunked body over 1.5 s (slow_body())
      GET /raw?<hex>    writes those bytes as the response and closes
      GET /hang         reads the request, never answers
      GET /reset-now    reads the request, resets the connection
      GET /reset-mid    head with Content-Length 1 MB, 50 kB, then a reset
      anything else     "<name> <connection id> <path>\\n"

    Expect: 100-continue is answered by http.server with a 100 Continue.
    Every response has X-Backend: <name> and X-Conn: <connection id>.
    .conns counts accepted connections, .requests holds (method, path,
    headers) of every request head it parsed, .bodies the lengths of
    the /sha256 bodies it read completely."""

    def __init__(self, ns, name):
        self.ns = ns
        self.name = name
        self.lock = threading.Lock()
        self.conns = 0
        self.requests = []
        self.bodies = []
        self.stop_event = threading.Event()
        self.release = threading.Event()
        srv = _Server(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        srv.socket.close()
        srv.socket = ns.socket()
        srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.server_bind()
        srv.server_activate()
        srv.owner = self
        self.srv = srv
        self.port = srv.server_address[1]
        self.thread = threading.Thread(target=srv.serve_forever, args=(0.1,), daemon=True)
        self.thread.start()

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def request_paths(self):
        with self.lock:
            return [p for _, p, _ in self.requests]

    def stop(self):
        self.stop_event.set()
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(5)


class HangServer:
    """Accepts, reads whatever comes, never answers (a backend that hangs)."""

    def __init__(self, ns):
        self.sock = ns.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.conns = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        while not self._stop.is_set():
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                pass
            except OSError:
                return
            else:
                s.setblocking(False)
                self.conns.append(s)
            for c in self.conns:
                try:
                    d = c.recv(65536)
                    if d:
                        self.received += d
                except (BlockingIOError, OSError):
                    pass

    def stop(self):
        self._stop.set()
        self._t.join(5)
        self.sock.close()
        for c in self.conns:
            c.close()


# --------------------------------------------------------------------------
# WebSocket echo (websockets 10.4: the asyncio API)


class WsEcho:
    """A WebSocket echo server on an asyncio loop of its own thread; every
    text or binary message comes back unchanged. .paths holds the request
    paths of the handshakes it accepted."""

    def __init__(self, ns):
        self.paths = []
        self.sock = ns.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        if not self._ready.wait(10):
            raise Timeout("websocket echo server did not start")

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    async def _echo(self, ws, path=None):
        self.paths.append(path if path is not None else getattr(ws, "path", None))
        async for msg in ws:
            await ws.send(msg)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await websockets.serve(self._echo, sock=self.sock)
            self._ready.set()
        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self):
        async def close():
            self.server.close()
            await self.server.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._t.join(10)


def ws_roundtrip(ns, port, path, messages, timeout=10.0):
    """Connects a websockets client to ws://127.0.0.1:port/path from ns, sends
    each message and reads its echo; closes cleanly. Returns (echoes,
    close code)."""
    sock = ns.connect("127.0.0.1", port, timeout)

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", sock=sock,
                                      open_timeout=timeout, close_timeout=timeout) as ws:
            got = []
            for m in messages:
                await ws.send(m)
                got.append(await asyncio.wait_for(ws.recv(), timeout))
            await ws.close()
            return got, ws.close_code
    try:
        return asyncio.run(asyncio.wait_for(run(), timeout * 3))
    finally:
        sock.close()


# --------------------------------------------------------------------------
# clients


class Resp:
    def __init__(self, status, reason, headers, body, raw_len):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name lower case, value)
        self.body = body
        self.raw_len = raw_len  # bytes of the whole response on the wire

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def __repr__(self):
        return f"<Resp {self.status} {self.reason!r} {self.headers!r} body {self.body[:200]!r}>"


class RawConn:
    """One client TCP connection from ns speaking HTTP/1.1 by hand, for
    requests no library sends (smuggling attempts, stalls, Expect)."""

    def __init__(self, ns, port, host="127.0.0.1", timeout=10.0):
        self.s = ns.connect(host, port, timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        if self.eof:
            raise ConnectionError(f"EOF (buffered {bytes(self.buf[:200])!r})")
        d = self.s.recv(65536)
        if not d:
            self.eof = True
            raise ConnectionError(f"EOF (buffered {bytes(self.buf[:200])!r})")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method="GET"):
        """The next response (a 1xx interim one too: call again for the
        final one). Raises ConnectionError on EOF before it is complete."""
        start = len(self.buf)
        consumed = 0
        status_line = self._line()
        consumed += len(status_line) + 2
        m = re.match(rb"HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise ValueError(f"bad status line {status_line!r}")
        status = int(m.group(1))
        headers = []
        while True:
            ln = self._line()
            consumed += len(ln) + 2
            if not ln:
                break
            k, _, v = ln.decode("latin-1").partition(":")
            headers.append((k.strip().lower(), v.strip()))
        r = Resp(status, (m.group(2) or b"").decode("latin-1"), headers, b"", 0)
        te = (r.header("transfer-encoding") or "").lower()
        if status < 200 or status in (204, 304) or method == "HEAD":
            body = b""
        elif "chunked" in te:
            body = bytearray()
            while True:
                ln = self._line()
                consumed += len(ln) + 2
                size = int(ln.split(b";")[0], 16)
                if size == 0:
                    while True:
                        t = self._line()
                        consumed += len(t) + 2
                        if not t:
                            break
                    break
                body += self._exact(size)
                if self._exact(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                consumed += size + 2
            body = bytes(body)
        elif r.header("content-length") is not None:
            n = int(r.header("content-length"))
            body = self._exact(n)
            consumed += n
        else:
            body = self.read_to_eof()
            consumed += len(body)
        del start
        r.body = body
        r.raw_len = consumed
        return r

    def read_to_eof(self, timeout=None):
        if timeout is not None:
            self.s.settimeout(timeout)
        out = bytes(self.buf)
        self.buf.clear()
        while not self.eof:
            d = self.s.recv(65536)
            if not d:
                self.eof = True
                break
            out += d
        return out

    def closed(self, timeout=10.0):
        """True once the peer ends the connection (EOF or reset) with no
        further bytes; False if it is still open after timeout. Bytes that
        arrive instead raise AssertionError."""
        if self.buf:
            raise AssertionError(f"unexpected bytes after the response: {bytes(self.buf[:200])!r}")
        if self.eof:
            return True
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if d:
            raise AssertionError(f"unexpected bytes after the response: {d[:200]!r}")
        self.eof = True
        return True


def request(ns, port, method="GET", path="/", host="app.test", headers=(), body=None, timeout=10.0):
    """One request on a fresh connection (Connection: close); returns a Resp."""
    with RawConn(ns, port, timeout=timeout) as c:
        h = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
        if body is not None:
            h.append(f"Content-Length: {len(body)}")
        c.send(("\r\n".join(h) + "\r\n\r\n").encode() + (body or b""))
        return c.read_response(method)


def http_conn(ns, port, timeout=30.0):
    """An http.client.HTTPConnection whose socket was made in ns."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.sock = ns.connect("127.0.0.1", port, timeout)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def curl(ns, *args, timeout=60):
    """Runs curl in ns (-s, no proxy from the environment); returns CompletedProcess (bytes)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(ns.exec_argv(["curl", "-sS", "--noproxy", "*", *args]), capture_output=True,
                          timeout=timeout, env=env)


def wait_http_port(p, port, timeout=15.0):
    """Waits until port is steered to pandit (a connection is accepted; it
    sends nothing and closes)."""
    def up():
        p._check_alive()
        with p.ns.connect("127.0.0.1", port, 2.0):
            return True
    wait_until(up, timeout, 0.1, f"port {port} to be steered to pandit")
