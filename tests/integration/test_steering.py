"""test_steering.py - sk_lookup steering: many ports to their apps, unconfigured ports left alone, non-loopback traffic over veth."""
import errno
import secrets
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import (app, banner_of, base_config, echo_check, recv_line, veth_pair, wait_until, BackendHost,
                     NetNS)


def test_thousand_ports_each_reach_their_app(ns, backends, start_pandit):
    """10 apps x 100 ports (ranges, single ports, mixed): every one of the
    1,000 ports answers with the banner of its own app's backends."""
    apps, expect = [], {}
    for i in range(10):
        base = 11000 + i * 100
        b1 = backends.add(f"app{i}-a", "banner")
        b2 = backends.add(f"app{i}-b", "banner")
        if i % 3 == 0:
            ports = [f"{base}-{base + 99}"]
        elif i % 3 == 1:
            ports = list(range(base, base + 100))
        else:
            ports = [f"{base}-{base + 49}", *range(base + 50, base + 90), f"{base + 90}-{base + 99}"]
        apps.append(app(f"app{i}", ports, [b1, b2]))
        for p in range(base, base + 100):
            expect[p] = {b1.name, b2.name}
    assert len(expect) == 1000
    start_pandit(base_config(apps), probe_ports=[11000])

    def probe(port):
        return port, banner_of(ns, "127.0.0.1", port)

    with ThreadPoolExecutor(8) as ex:
        got = dict(ex.map(probe, sorted(expect)))
    wrong = {p: got[p] for p in expect if got[p] not in expect[p]}
    assert not wrong, f"{len(wrong)} ports reached the wrong backend, e.g. {list(wrong.items())[:5]}"
    # every backend answered some client (both targets of each app are used)
    assert set(got.values()) == {b.name for b in backends.backends}


def test_unconfigured_port_is_not_steered(ns, backends, start_pandit):
    """A port no app configures stays with the normal stack: a socket bound
    to it normally gets the connection, and with no socket it is refused."""
    b = backends.add("steered", "banner")
    start_pandit(base_config([app("web", [12000, "12010-12019"], [b])]), probe_ports=[12000])

    # a normal listener on a port next to the steered ones keeps its traffic
    own = ns.socket()
    own.bind(("127.0.0.1", 12005))
    own.listen(8)
    own.settimeout(5)
    try:
        c = ns.connect("127.0.0.1", 12005)
        peer, _ = own.accept()
        peer.sendall(b"plain\n")
        assert recv_line(c) == "plain"
        peer.close()
        c.close()
    finally:
        own.close()

    # nothing listening and not configured: refused by the normal stack
    for port in (12001, 12020, 29999):
        with pytest.raises(ConnectionRefusedError):
            ns.connect("127.0.0.1", port).close()

    # the steered ones still reach the app
    for port in (12000, 12010, 12019):
        assert banner_of(ns, "127.0.0.1", port) == "steered"


def test_app_port_reached_on_any_local_address(ns, backends, start_pandit):
    """Without address prefixes an app serves its ports on every local
    address of the namespace, not only the loopback one it was probed on."""
    ns.ip("addr", "add", "10.201.0.1/32", "dev", "lo")
    ns.ip("addr", "add", "127.0.0.2/8", "dev", "lo", check=False)  # usually already covered by 127/8
    b = backends.add("any", "banner")
    start_pandit(base_config([app("any", [12100], [b])]), probe_ports=[12100])
    for addr in ("127.0.0.1", "127.0.0.2", "10.201.0.1"):
        assert banner_of(ns, addr, 12100) == "any", addr


@pytest.fixture
def client_ns():
    n = NetNS("ptc")
    yield n
    n.close()


def _veth_world(ns, client_ns):
    """client_ns --veth-- ns; addresses only inside the two namespaces."""
    x, y = secrets.randbelow(200) + 20, secrets.randbelow(60)
    a_client, a_server = f"10.{x}.{y}.1", f"10.{x}.{y}.2"
    veth_pair(client_ns, ns, a_client, a_server, 30)
    return a_client, a_server


def test_steering_over_veth_from_another_namespace(ns, client_ns, backends, start_pandit):
    """A client in another namespace connects over a veth pair to the
    server namespace's address: the connection is steered to pandit (not
    only loopback traffic), and the backends see pandit, not the client."""
    a_client, a_server = _veth_world(ns, client_ns)
    b1 = backends.add("v1", "banner")
    b2 = backends.add("v2", "banner")
    start_pandit(base_config([app("veth", ["12200-12209"], [b1, b2])]), probe_ports=[12200])

    seen = set()
    for port in range(12200, 12210):
        with client_ns.connect(a_server, port) as s:
            name = recv_line(s)
            assert name in ("v1", "v2")
            seen.add(name)
            echo_check(s, f"over veth to {port}\n".encode() * 100)
            assert s.getpeername() == (a_server, port)
    assert seen == {"v1", "v2"}
    # the normal stack in the client namespace is untouched: a port that is
    # not configured on the server side is refused
    with pytest.raises(ConnectionRefusedError):
        client_ns.connect(a_server, 12210).close()


def test_address_prefix_restricts_an_app(ns, client_ns, backends, start_pandit):
    """An app restricted to the veth address answers there and not on
    loopback; another app on a different port without prefixes answers on
    both."""
    a_client, a_server = _veth_world(ns, client_ns)
    only = backends.add("only-veth", "banner")
    every = backends.add("everywhere", "banner")
    start_pandit(base_config([
        app("only", [12300], [only], addresses=[f"{a_server}/32"]),
        app("every", [12301], [every]),
    ]), probe_ports=[12301])

    def wait_ok():
        with client_ns.connect(a_server, 12300) as s:
            return recv_line(s) == "only-veth"
    wait_until(wait_ok, 10, what="the prefixed app on the veth address")
    assert banner_of(client_ns, a_server, 12301) == "everywhere"
    assert banner_of(ns, "127.0.0.1", 12301) == "everywhere"
    # loopback is outside the prefix: not steered, nothing listens, refused
    with pytest.raises(OSError) as ei:
        banner_of(ns, "127.0.0.1", 12300)
    assert ei.value.errno in (errno.ECONNREFUSED, errno.ECONNRESET), ei.value


def test_ipv6_clients_are_steered(ns, backends, start_pandit):
    """Clients over IPv6 loopback reach the same app as over IPv4."""
    b = backends.add("six", "banner")
    start_pandit(base_config([app("six", [12400, "12401-12402"], [b])]), probe_ports=[12400])
    for port in (12400, 12402):
        assert banner_of(ns, "::1", port) == "six"
        assert banner_of(ns, "127.0.0.1", port) == "six"


def test_steering_takes_precedence_over_a_normal_listener(ns, backends, start_pandit):
    """A socket bound normally to a configured port gets none of its
    connections: sk_lookup hands them to pandit first."""
    b = backends.add("steer", "banner")
    squatter = ns.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        squatter.bind(("127.0.0.1", 12500))  # pandit binds no app port, so this succeeds
        squatter.listen(8)
        start_pandit(base_config([app("steer", [12500], [b])]), probe_ports=[12500])
        for _ in range(5):
            assert banner_of(ns, "127.0.0.1", 12500) == "steer"
        squatter.setblocking(False)
        with pytest.raises(BlockingIOError):
            squatter.accept()  # nothing ever reached it
    finally:
        squatter.close()


def test_targets_by_name_are_resolved(ns, backends, start_pandit):
    """A target given as a name (localhost) is resolved off the event loop
    and used."""
    b = backends.add("named", "banner", addr="127.0.0.1")
    backends.add("named6", "banner", addr="::1", port=b.port)  # whichever address is picked
    start_pandit(base_config([app("named", [12600], [f"localhost:{b.port}"])]))
    got = {banner_of(ns, "127.0.0.1", 12600) for _ in range(5)}
    assert got <= {"named", "named6"} and got, got


def test_stopping_pandit_releases_its_ports(ns, backends, start_pandit):
    """SIGTERM: pandit exits 0 and its ports go back to the normal stack
    (refused, not black-holed); likewise after SIGKILL of a second one."""
    b = backends.add("bye", "banner")
    p = start_pandit(base_config([app("bye", [12700], [b])]), probe_ports=[12700])
    p.expect_exit = True
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0, p.log()[-2000:]
    with pytest.raises(ConnectionRefusedError):
        ns.connect("127.0.0.1", 12700).close()

    p2 = start_pandit(base_config([app("bye", [12700], [b])]), probe_ports=[12700])
    p2.expect_exit = True
    p2.proc.kill()
    p2.proc.wait(15)
    wait_until(lambda: _refused(ns, 12700), 10, what="port 12700 to be released after SIGKILL")


def _refused(ns, port):
    try:
        ns.connect("127.0.0.1", port).close()
    except ConnectionRefusedError:
        return True
    return False


def test_many_apps_and_every_port(ns, backends, start_pandit):
    """10,000 apps over 65,534 ports (every port but the admin's), with the
    backends in another namespace behind a veth pair so that no backend or
    health-check port is itself steered. A sample of ports reaches the right
    app, and a one-app reload applies."""
    far = NetNS("ptb")
    try:
        x, y = secrets.randbelow(200) + 20, secrets.randbelow(60) + 100
        near_a, far_a = f"10.{x}.{y}.1", f"10.{x}.{y}.2"
        veth_pair(ns, far, near_a, far_a, 30)
        host = BackendHost(far)
        try:
            bs = [host.add(f"far{i}", "banner", addr=far_a) for i in range(10)]
            ports = [p for p in range(1, 65536) if p != 9900]
            n_apps = 10000
            per = len(ports) // n_apps
            apps, owner = [], {}
            for i in range(n_apps):
                chunk = ports[i * per:(i + 1) * per] if i < n_apps - 1 else ports[i * per:]
                # ranges where contiguous, single ports otherwise
                spec, lo = [], chunk[0]
                for a, b_ in zip(chunk, chunk[1:] + [None]):
                    if b_ != a + 1:
                        spec.append(f"{lo}-{a}" if a > lo else a)
                        lo = b_
                apps.append(app(f"app{i:05d}", spec, [bs[i % 10]]))
                for p in chunk:
                    owner[p] = i
            assert len(owner) == 65534
            cfg = base_config(apps)
            cfg["health_check"]["interval"] = "5s"  # 10 shared targets only, but keep it quiet
            pd = start_pandit(cfg, probe_ports=[])
            sample = sorted(set([1, 2, 80, 443, 9899, 9901, 32768, 65535] +
                                [secrets.randbelow(65535) + 1 for _ in range(300)]) - {9900})
            wait_until(lambda: banner_of(ns, "127.0.0.1", 1), 10, what="port 1 to answer")
            for port in sample:
                want = f"far{owner[port] % 10}"
                got = banner_of(ns, "127.0.0.1", port)
                assert got == want, f"port {port} (app{owner[port]:05d}) answered by {got}, want {want}"
            st = pd.stats()
            assert len(st["apps"]) == n_apps
            # one app changes its target: applied, and only that app's ports move
            i = owner[443]
            apps[i] = app(apps[i]["name"], apps[i]["ports"], [bs[(i + 1) % 10]])
            pd.write_config(cfg, timeout=30)
            assert banner_of(ns, "127.0.0.1", 443) == f"far{(i + 1) % 10}"
            assert banner_of(ns, "127.0.0.1", 80) == f"far{owner[80] % 10}"
        finally:
            host.stop()
    finally:
        far.close()
