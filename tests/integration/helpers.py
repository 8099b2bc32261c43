"""helpers.py - the worlds the integration tests build: network namespaces, backends, a pandit process, clients."""
# Everything here is stdlib only (Debian's /usr/bin/python3). Each object owns
# what it creates and tears it down in close()/stop(); every wait is bounded.

import ctypes
import errno
import json
import os
import queue
import re
import secrets
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# PANDIT_BIN runs the suite against another build (a sanitizer build, say)
PANDIT = Path(os.environ.get("PANDIT_BIN") or REPO / "build" / "pandit")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# Steered app ports used by the tests live below the ephemeral range
# (32768-60999), so the backends' ephemeral listening ports and pandit's
# outgoing source ports can never collide with a steered port.
APP_PORT_MIN = 10000
APP_PORT_MAX = 30000


class Timeout(AssertionError):
    pass


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a true value (returned), at most timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError, KeyError) as e:  # not ready yet
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise Timeout(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def run(cmd, check=True, timeout=30, **kw):
    return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True, **kw)


def _setns(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


class NetNS:
    """A fresh network namespace with loopback up. Sockets are created in it
    by a thread that has joined it (setns is per thread); once created, a
    socket keeps its namespace and can be used from any thread."""

    def __init__(self, prefix="pt"):
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        run(["ip", "netns", "add", self.name])
        self._alive = True
        try:
            run(["ip", "-n", self.name, "link", "set", "lo", "up"])
            self.path = f"/run/netns/{self.name}"
            self._ex = ThreadPoolExecutor(1, initializer=_setns, initargs=(self.path,))
            # fail early if the thread cannot join the namespace
            self._ex.submit(lambda: None).result(timeout=10)
        except BaseException:
            self.close()
            raise

    def ip(self, *args, check=True):
        return run(["ip", "-n", self.name, *args], check=check)

    def exec_argv(self, argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def call(self, fn, *args):
        """Runs fn(*args) on the thread that lives in this namespace."""
        return self._ex.submit(fn, *args).result(timeout=30)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        return self.call(socket.socket, family, type)

    def connect(self, host, port, timeout=5.0):
        """A TCP connection from inside this namespace (raises OSError on failure)."""
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = self.socket(fam)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s

    def free_port(self, host="127.0.0.1"):
        """A port nothing listens on (bound once then released), from the ephemeral range."""
        s = self.socket()
        try:
            s.bind((host, 0))
            return s.getsockname()[1]
        finally:
            s.close()

    def pids(self):
        r = run(["ip", "netns", "pids", self.name], check=False)
        return [int(x) for x in r.stdout.split()]

    def close(self):
        if not self._alive:
            return
        self._alive = False
        ex = getattr(self, "_ex", None)
        if ex is not None:
            ex.shutdown(wait=False)
        # Only processes the tests started live in this namespace.
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run(["ip", "netns", "del", self.name], check=False)


def veth_pair(ns_a, ns_b, addr_a, addr_b, plen=30):
    """Joins two namespaces with a veth pair; addresses only live inside them."""
    tag = secrets.token_hex(3)
    va, vb = f"pa{tag}", f"pb{tag}"
    run(["ip", "link", "add", va, "netns", ns_a.name, "type", "veth", "peer", "name", vb,
         "netns", ns_b.name])
    ns_a.ip("addr", "add", f"{addr_a}/{plen}", "dev", va)
    ns_b.ip("addr", "add", f"{addr_b}/{plen}", "dev", vb)
    ns_a.ip("link", "set", va, "up")
    ns_b.ip("link", "set", vb, "up")
    return va, vb


# --------------------------------------------------------------------------
# backends


class Backend:
    """One listening backend served by a BackendHost.

    mode "echo":   echoes everything; closes after the client's FIN once flushed.
    mode "banner": writes "<name>\\n" first, then echoes.
    mode "drain":  writes "<name>\\n", shuts down its write side at once, then
                   counts what it receives until the client's FIN.
    """

    def __init__(self, host, name, mode, sock):
        self.host = host
        self.name = name
        self.mode = mode
        self.sock = sock
        self.addr, self.port = sock.getsockname()[:2]
        self.accepted = 0
        self.active = 0
        self.bytes_received = 0
        self.drained = []  # mode drain: bytes received per finished connection
        self.open = True

    @property
    def target(self):
        return f"{self.addr}:{self.port}"

    def close(self):
        """Stops listening (new connects are refused) and resets open connections."""
        self.host._command(("close", self))
        wait_until(lambda: not self.open, 5, what=f"backend {self.name} to close")


class _Conn:
    __slots__ = ("sock", "backend", "out", "eof", "wr_shut")

    def __init__(self, sock, backend):
        self.sock = sock
        self.backend = backend
        self.out = bytearray()
        self.eof = False
        self.wr_shut = False


class BackendHost:
    """Runs any number of small TCP backends in one selector thread."""

    MAX_OUT = 256 * 1024  # stop reading while this much echo is unsent (backpressure)

    def __init__(self, ns):
        self.ns = ns
        self.sel = selectors.DefaultSelector()
        self.cmds = queue.Queue()
        self.rd, self.wr = socket.socketpair()
        self.rd.setblocking(False)
        self.sel.register(self.rd, selectors.EVENT_READ, None)
        self.backends = []
        self.conns = {}
        self.lock = threading.Lock()
        self.stopping = False
        self.error = None
        self.thread = threading.Thread(target=self._loop, name="backends", daemon=True)
        self.thread.start()

    def add(self, name, mode="banner", addr="127.0.0.1", port=0):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = self.ns.socket(fam)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(512)
        s.setblocking(False)
        b = Backend(self, name, mode, s)
        self.backends.append(b)
        self._command(("add", b))
        return b

    def _command(self, cmd):
        self.cmds.put(cmd)
        try:
            self.wr.send(b"x")
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        self._command(("stop", None))
        self.thread.join(10)
        for b in self.backends:
            b.sock.close()
        for c in list(self.conns.values()):
            c.sock.close()
        self.rd.close()
        self.wr.close()
        self.sel.close()

    # -- the loop
    def _loop(self):
        try:
            while not self.stopping:
                for key, ev in self.sel.select(0.5):
                    d = key.data
                    if d is None:
                        self._drain_cmds()
                    elif isinstance(d, Backend):
                        self._accept(d)
                    else:
                        self._io(d, ev)
        except Exception as e:  # surfaced by tests through host.error
            self.error = e
            raise

    def _drain_cmds(self):
        try:
            while self.rd.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                op, b = self.cmds.get_nowait()
            except queue.Empty:
                return
            if op == "add":
                self.sel.register(b.sock, selectors.EVENT_READ, b)
            elif op == "close":
                self.sel.unregister(b.sock)
                b.sock.close()
                for c in [c for c in self.conns.values() if c.backend is b]:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    self._close(c)
                b.open = False
            elif op == "stop":
                self.stopping = True

    def _accept(self, b):
        while True:
            try:
                s, _ = b.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE):
                    return
                raise
            s.setblocking(False)
            c = _Conn(s, b)
            with self.lock:
                b.accepted += 1
                b.active += 1
            if b.mode in ("banner", "drain"):
                c.out += (b.name + "\n").encode()
            self.conns[s.fileno()] = c
            self.sel.register(s, self._mask(c), c)
            self._io(c, 0)  # send the banner now

    def _mask(self, c):
        m = 0
        if not c.eof and len(c.out) < self.MAX_OUT:
            m |= selectors.EVENT_READ
        if c.out:
            m |= selectors.EVENT_WRITE
        return m

    def _io(self, c, ev):
        try:
            if ev & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                if data == b"":
                    c.eof = True
                elif data:
                    with self.lock:
                        c.backend.bytes_received += len(data)
                    if c.backend.mode != "drain":
                        c.out += data
            self._flush(c)
        except OSError:  # reset, broken pipe, not connected (health checks hang up at once)
            self._close(c)
            return
        if c.sock.fileno() < 0:
            return
        if c.eof and not c.out:
            self._close(c)
            return
        m = self._mask(c)
        if m == 0:  # nothing to wait for; should not happen, but never spin
            self._close(c)
            return
        self.sel.modify(c.sock, m, c)

    def _flush(self, c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                return
            del c.out[:n]
        if c.backend.mode == "drain" and not c.wr_shut:
            c.wr_shut = True
            c.sock.shutdown(socket.SHUT_WR)

    def _close(self, c):
        fd = c.sock.fileno()
        if fd < 0:
            return
        self.sel.unregister(c.sock)
        del self.conns[fd]
        c.sock.close()
        with self.lock:
            c.backend.active -= 1
            if c.backend.mode == "drain":
                c.backend.drained.append(c.backend.bytes_received)


# --------------------------------------------------------------------------
# clients


def recv_line(s, limit=4096):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            raise ConnectionError(f"EOF before end of line (got {bytes(buf)!r})")
        buf += d
        if len(buf) > limit:
            raise ValueError("line too long")
    return buf[:-1].decode()


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        if not d:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return bytes(buf)


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def banner_of(ns, host, port, timeout=5.0):
    """Connects, reads the backend's banner line and closes."""
    with ns.connect(host, port, timeout) as s:
        return recv_line(s)


def echo_check(s, payload):
    s.sendall(payload)
    got = recv_exact(s, len(payload))
    assert got == payload, "echo mismatch"


def http_get(ns, host, port, path, timeout=5.0):
    """A minimal HTTP/1.1 GET; returns (status, headers dict, body bytes)."""
    with ns.connect(host, port, timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = recv_all(s)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no end of headers in {raw[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return int(m.group(1)), headers, body


def _dechunk(raw):
    out, pos = bytearray(), 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out)
        if len(raw) < pos + size + 2 or raw[pos + size:pos + size + 2] != b"\r\n":
            raise ValueError("truncated or malformed chunk")
        out += raw[pos:pos + size]
        pos += size + 2


# --------------------------------------------------------------------------
# config files


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a double-quoted YAML scalar
    if v is None:
        return "null"
    raise TypeError(v)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts and lists; lists of scalars in flow style."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v and any(isinstance(x, (dict, list)) for x in v):
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append(f"{pad}{k}: [{', '.join(_scalar(x) for x in v)}]")
            elif isinstance(v, dict):
                out.append(f"{pad}{k}: {{}}")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)):
                sub = to_yaml(item, indent + 2)
                out.append(pad + "- " + sub[indent + 2:])
            else:
                out.append(f"{pad}- {_scalar(item)}")
    else:
        raise TypeError(obj)
    return "\n".join(out)


def ms(n):
    """A duration in the config's syntax."""
    return f"{n}ms"


def base_config(apps, **globals_):
    """A config with the settings every test wants: admin on loopback, two
    workers, quick health checks so that dead targets are noticed quickly."""
    cfg = {
        "admin": "127.0.0.1:9900",
        "workers": 2,
        "log_level": "info",
        "health_check": {
            "interval": ms(200),
            "timeout": ms(200),
            "rise": 1,
            "fall": 1,
            "backoff_min": ms(100),
            "backoff_max": ms(500),
        },
    }
    cfg.update(globals_)
    cfg["apps"] = apps
    return cfg


def app(name, ports, targets, **kw):
    a = {"name": name, "ports": ports, "targets": [t.target if isinstance(t, Backend) else t
                                                    for t in targets]}
    a.update(kw)
    return a


# --------------------------------------------------------------------------
# the daemon


class Pandit:
    """build/pandit running in a namespace with a config file in its own
    directory (world-readable: the daemon reads it again after dropping to
    nobody). stderr goes to a log file, stdout lines (SIGUSR1) to a queue."""

    def __init__(self, ns, config, fmt="yaml", admin=("127.0.0.1", 9900), args=(), relative=False):
        """config None: no -c (quick mode, args say the rest); relative: run
        in the config's directory and name the file without a directory."""
        self.ns = ns
        self.dir = Path(tempfile.mkdtemp(prefix="pandit-it-"))
        os.chmod(self.dir, 0o755)
        self.fmt = fmt
        self.path = self.dir / ("pandit.yaml" if fmt == "yaml" else "pandit.json")
        self.admin = admin
        cfg_args = []
        if config is not None:
            self.write_file(self.path, self.render(config))
            cfg_args = ["-c", self.path.name if relative else str(self.path)]
        self.log_path = self.dir / "pandit.log"
        self.log_file = open(self.log_path, "wb")
        self.lines = queue.Queue()
        argv = ns.exec_argv([str(PANDIT), *cfg_args, *args])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log_file, cwd=self.dir)
        self.pid = self.proc.pid  # `ip netns exec` execs the command in place
        self.expect_exit = False
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def render(self, config):
        if isinstance(config, str):
            return config
        if self.fmt == "yaml":
            return to_yaml(config) + "\n"
        return json.dumps(config, indent=2) + "\n"

    @staticmethod
    def write_file(path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))

    def log(self):
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def _check_alive(self):
        if not self.alive():
            raise AssertionError(f"pandit exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")

    # -- admin endpoint
    def get(self, path):
        return http_get(self.ns, self.admin[0], self.admin[1], path)

    def stats(self):
        self._check_alive()
        status, _, body = self.get("/stats")
        assert status == 200, f"GET /stats: {status}"
        return json.loads(body)

    def metrics(self):
        self._check_alive()
        status, headers, body = self.get("/metrics")
        assert status == 200, f"GET /metrics: {status}"
        return headers, body.decode()

    def wait_ready(self, timeout=15.0, probe_ports=()):
        """Until the admin endpoint answers and every probe port accepts a connection."""
        def ready():
            self._check_alive()
            return self.stats()
        if self.admin is not None:
            wait_until(ready, timeout, 0.1, "pandit's admin endpoint")
        for port in probe_ports:
            def up(port=port):
                self._check_alive()
                with self.ns.connect("127.0.0.1", port, 2.0) as s:
                    s.sendall(b"probe\n")  # banner and echo backends both answer a line
                    return recv_line(s) is not None
            wait_until(up, timeout, 0.1, f"port {port} to be steered to pandit")
        return self

    # -- signals and stdout
    def signal(self, sig):
        self._check_alive()
        os.kill(self.pid, sig)

    def usr1(self, timeout=5.0):
        """SIGUSR1, then the one JSON line pandit prints."""
        while True:  # drop anything printed before
            try:
                self.lines.get_nowait()
            except queue.Empty:
                break
        self.signal(signal.SIGUSR1)
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f"no line on stdout {timeout}s after SIGUSR1") from None
        return line

    # -- reloads
    def reload_count(self):
        r = self.stats()["reloads"]
        return r["ok"] + r["failed"]

    def reloads(self):
        r = self.stats()["reloads"]
        return r["ok"], r["failed"]

    def write_config(self, config, how="rename", expect="ok", timeout=10.0):
        """Replaces the config file and waits until pandit has processed it.

        how: "rename"  - write a temporary file and rename it over (editors)
             "inplace" - truncate and rewrite the file itself
             "hup"     - rewrite it through a hard link in another directory
                         (invisible to the directory watch) and send SIGHUP
        expect: "ok"   - wait for a good reload after which /stats shows
                         exactly the new config's apps and targets
                "fail" - wait for a refused reload
                None   - do not wait
        Returns the /stats object seen at the end of the wait (or None)."""
        text = self.render(config)
        ok0, failed0 = self.reloads()
        if how == "rename":
            tmp = self.dir / (".tmp-" + self.path.name)
            self.write_file(tmp, text)
            os.rename(tmp, self.path)
        elif how == "inplace":
            with open(self.path, "r+") as f:
                f.truncate(0)
                f.write(text)
        elif how == "hup":
            side = Path(tempfile.mkdtemp(prefix="pandit-it-side-"))
            try:
                link = side / "cfg"
                os.link(self.path, link)
                with open(link, "r+") as f:
                    f.truncate(0)
                    f.write(text)
                os.unlink(link)
            finally:
                os.rmdir(side)
            self.signal(signal.SIGHUP)
        else:
            raise ValueError(how)
        if expect is None:
            return None
        want = config_apps(config) if isinstance(config, dict) else None

        def done():
            st = self.stats()
            r = st["reloads"]
            if expect == "fail":
                return st if r["failed"] > failed0 else None
            if r["ok"] <= ok0:
                return None
            if want is not None and stats_apps(st) != want:
                return None
            return st
        return wait_until(done, timeout, 0.05, f"pandit to {'refuse' if expect == 'fail' else 'apply'} "
                          f"a config written by {how}")

    def stop(self, timeout=10.0):
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        self.log_file.close()

    def cleanup(self):
        for p in sorted(self.dir.iterdir()):
            p.unlink()
        self.dir.rmdir()


def config_apps(config):
    """{app name: sorted targets} of a config dict (either format)."""
    apps = config.get("apps", config.get("Apps", []))
    return {a.get("name", a.get("Name")): sorted(a.get("targets", a.get("Targets", [])))
            for a in apps}


def stats_apps(stats):
    """{app name: sorted targets} as /stats reports them."""
    return {a["name"]: sorted(t["target"] for t in a["targets"]) for a in stats["apps"]}


def find_app(stats, name):
    for a in stats["apps"]:
        if a["name"] == name:
            return a
    raise KeyError(f"app {name} not in stats: {[a['name'] for a in stats['apps']]}")


def find_target(app_stats, target):
    for t in app_stats["targets"]:
        if t["target"] == target:
            return t
    raise KeyError(f"target {target} not in app {app_stats['name']}")


def proc_status(pid):
    """/proc/PID/status as a dict."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


# --------------------------------------------------------------------------
# Foo protocol peers (issue 3): the project's foo_server / foo_client tools,
# and scripted servers for the cases those tools never produce.

FOO_SERVER = REPO / "build" / "foo_server"
FOO_CLIENT = REPO / "build" / "foo_client"


class FooServer:
    """build/foo_server in a namespace on an ephemeral loopback port. stop()
    ends it with SIGTERM and returns the counters it prints as JSON."""

    def __init__(self, ns, *args, addr="127.0.0.1"):
        self.ns = ns
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(ns.exec_argv([str(FOO_SERVER), "-l", f"{addr}:0", "-q", *args]),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err)
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            line = self.lines.get(timeout=10)
        except queue.Empty:
            self.stop()
            raise Timeout("foo_server printed no 'listening on' line") from None
        m = re.match(r"foo_server: listening on (.+):(\d+)$", line)
        if not m:
            self.stop()
            raise AssertionError(f"foo_server: unexpected first line {line!r}")
        self.addr, self.port = m.group(1), int(m.group(2))

    @property
    def target(self):
        return f"{self.addr}:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))

    def stop(self, timeout=10.0):
        """SIGTERM; returns the counters it printed (a dict) or None."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        last = None
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line.startswith("{"):
                last = json.loads(line)
        self.err.close()
        return last


def foo_client(ns, host, port, conns=1, requests=100, depth=1, extra=(), timeout=60, check=True):
    """Runs build/foo_client to completion in ns; returns its JSON summary.
    check: the client must exit 0 (every reply checked: type, Seq, order)."""
    argv = ns.exec_argv([str(FOO_CLIENT), "-a", f"{host}:{port}", "-c", str(conns),
                         "-n", str(requests), "-d", str(depth), "--timeout", str(timeout), *extra])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    if check and r.returncode != 0:
        raise AssertionError(f"foo_client exited {r.returncode}: {r.stdout.strip()} {r.stderr.strip()[-2000:]}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"foo_client printed no JSON: {r.stdout!r} {r.stderr[-2000:]!r}")
    return json.loads(lines[-1])


class ScriptServer:
    """A listening socket in ns whose connections each run handler(sock) on a
    thread of their own (sock has a timeout; it is closed after handler
    returns). Handler exceptions other than resets and timeouts are kept in
    .errors for the test to check. Connections that say nothing (readiness
    probes, health checks) reach the handler too."""

    def __init__(self, ns, handler, addr="127.0.0.1", timeout=10.0):
        self.ns = ns
        self.handler = handler
        self.timeout = timeout
        self.sock = ns.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.addr, self.port = self.sock.getsockname()[:2]
        self.errors = []
        self.handled = 0
        self._stop = threading.Event()
        self._threads = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def target(self):
        return f"{self.addr}:{self.port}"

    def _accept(self):
        while not self._stop.is_set():
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(self.timeout)
            t = threading.Thread(target=self._run, args=(s,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, s):
        try:
            self.handler(s)
        except (ConnectionError, socket.timeout):  # probes and resets: the test judges by counts
            pass
        except Exception as e:  # surfaced by the test through .errors
            self.errors.append(e)
        finally:
            s.close()
            self.handled += 1

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for t in self._threads:
            t.join(5)


class LineReader:
    """Reads '\\n'-terminated lines from a socket, buffering what follows."""

    def __init__(self, sock):
        self.s = sock
        self.buf = bytearray()
        self.eof = False

    def line(self, limit=1 << 20):
        """The next line without its '\\n'; at EOF the rest (maybe b"") and eof set."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return out
            if self.eof:
                out = bytes(self.buf)
                self.buf.clear()
                return out
            d = self.s.recv(65536)
            if not d:
                self.eof = True
            self.buf += d
            if len(self.buf) > limit:
                raise ValueError("line too long")


def foo_app(name, ports, targets, policy=None, max_line=None, **kw):
    """An app with protocol foo (policy / max_line only when given)."""
    a = app(name, ports, targets, protocol="foo", **kw)
    foo = {}
    if policy is not None:
        foo["policy"] = policy
    if max_line is not None:
        foo["max_line"] = max_line
    if foo:
        a["foo"] = foo
    return a


def prom_samples(text):
    """{(metric name, frozenset of (label, value))): float} from Prometheus text."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', ln)
        if not m:
            raise ValueError(f"bad sample line {ln!r}")
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out
