"""test_proxy.py - the data path: half-close both ways, bulk transfer with backpressure, many concurrent connections."""
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from helpers import app, base_config, echo_check, recv_all, recv_line, wait_until


def test_client_half_close_still_gets_every_byte_back(ns, backends, start_pandit):
    e = backends.add("echo", "echo")
    start_pandit(base_config([app("echo", [17000], [e])]), probe_ports=[17000])
    # small: everything is sent, then FIN; the echo of it all still arrives
    with ns.connect("127.0.0.1", 17000) as s:
        s.sendall(b"half-close me\n" * 10)
        s.shutdown(1)
        assert recv_all(s) == b"half-close me\n" * 10


def test_bulk_echo_with_backpressure_and_half_close(ns, backends, start_pandit):
    """8 MB through a proxy whose buffers are much smaller: the sender
    blocks while the reader is slow, nothing is lost, the FIN comes last."""
    e = backends.add("bulk", "echo")
    start_pandit(base_config([app("bulk", [17010], [e])]), probe_ports=[17010])
    data = os.urandom(1 << 20) * 8
    with ns.connect("127.0.0.1", 17010, timeout=30) as s:
        err = []

        def send():
            try:
                s.sendall(data)
                s.shutdown(1)
            except OSError as ex:
                err.append(ex)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = recv_all(s)
        t.join(30)
    assert not err, err
    assert len(got) == len(data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_server_half_close_lets_the_client_keep_sending(ns, backends, start_pandit):
    """The backend shuts down its side first (FIN towards the client); the
    client still sends 300 kB which all reach the backend."""
    d = backends.add("drain", "drain")
    start_pandit(base_config([app("drain", [17020], [d])]))
    with ns.connect("127.0.0.1", 17020, timeout=15) as s:
        assert recv_line(s) == "drain"
        assert s.recv(1) == b""  # the backend's FIN made it through
        before = list(d.drained)
        s.sendall(b"z" * 300000)
        s.shutdown(1)
        wait_until(lambda: len(d.drained) > len(before), 15, what="the backend to see the client's FIN")
    # drained holds the running total of bytes the backend received at each close
    assert d.drained[-1] - (d.drained[-2] if len(d.drained) > 1 else 0) == 300000


def test_many_concurrent_connections(ns, backends, start_pandit):
    bs = [backends.add(f"c{i}", "banner") for i in range(2)]
    start_pandit(base_config([app("conc", ["17100-17109"], bs)]), probe_ports=[17100])
    held = []
    try:
        for i in range(300):
            s = ns.connect("127.0.0.1", 17100 + i % 10, timeout=15)
            held.append(s)
        names = [recv_line(s) for s in held]
        assert set(names) == {"c0", "c1"}

        def talk(args):
            i, s = args
            echo_check(s, f"conn {i}\n".encode() * 50)
            s.shutdown(1)
            return recv_all(s)
        with ThreadPoolExecutor(8) as ex:
            assert all(r == b"" for r in ex.map(talk, enumerate(held)))
    finally:
        for s in held:
            s.close()


def test_max_connections_limits_an_app(ns, backends, start_pandit):
    b = backends.add("lim", "banner")
    start_pandit(base_config([app("lim", [17200], [b], max_connections=3)]))
    held = []
    try:
        for _ in range(3):
            s = ns.connect("127.0.0.1", 17200)
            assert recv_line(s) == "lim"
            held.append(s)
        extra = ns.connect("127.0.0.1", 17200, timeout=15)
        held.append(extra)
        try:
            data = extra.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b"", "a connection beyond max_connections was served"
        # once one closes, a new one is served again
        held[0].close()

        def served():
            with ns.connect("127.0.0.1", 17200) as s:
                return recv_line(s) == "lim"
        wait_until(served, 10, 0.1, what="a free slot after a close")
    finally:
        for s in held:
            s.close()


def test_idle_timeout_closes_silent_connections(ns, backends, start_pandit):
    b = backends.add("idle", "banner")
    start_pandit(base_config([app("idle", [17300], [b], idle_timeout="300ms")]))
    with ns.connect("127.0.0.1", 17300, timeout=20) as s:
        assert recv_line(s) == "idle"
        try:
            assert s.recv(1) == b""  # closed by pandit after being idle
        except ConnectionResetError:
            pass


def _ss(ns):
    import subprocess
    r = subprocess.run(ns.exec_argv(["ss", "-tnoH", "state", "established"]), capture_output=True,
                       text=True, timeout=10, check=True)
    return r.stdout.splitlines()


def test_keepalive_is_set_on_both_sides(ns, backends, start_pandit):
    b = backends.add("ka", "banner")
    start_pandit(base_config([app("ka", [17400], [b], keepalive={"idle": "7s", "interval": "3s", "count": 4}),
                              app("noka", [17401], [b], keepalive=False)]))
    with ns.connect("127.0.0.1", 17400) as s, ns.connect("127.0.0.1", 17401) as s2:
        assert recv_line(s) == "ka" and recv_line(s2) == "ka"
        cport, cport2 = s.getsockname()[1], s2.getsockname()[1]
        lines = _ss(ns)
        # pandit's accepted socket: local :17400, peer the client's port
        # (a dual-stack listener shows it as [::ffff:127.0.0.1]:17400)
        acc = [ln for ln in lines if ln.split()[2].endswith(":17400") and ln.split()[3].endswith(f":{cport}")]
        assert len(acc) == 1, lines
        assert "keepalive" in acc[0], acc[0]
        acc2 = [ln for ln in lines if ln.split()[2].endswith(":17401") and ln.split()[3].endswith(f":{cport2}")]
        assert len(acc2) == 1 and "keepalive" not in acc2[0], acc2
        # pandit's upstream sockets: peer is the backend; the one with keepalive exists
        up = [ln for ln in lines if ln.split()[3] == b.target and ln.split()[2] != f"127.0.0.1:{cport}"]
        assert len(up) >= 2, up  # (a health check may be connected too)
        assert sum("keepalive" in ln for ln in up) == 1, up
