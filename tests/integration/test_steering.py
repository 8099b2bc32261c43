"""test_steering.py - sk_lookup steering: many ports to their apps, unconfigured ports left alone, non-loopback traffic over veth."""
import errno
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import app, banner_of, base_config, echo_check, recv_line, veth_pair, wait_until, NetNS


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
