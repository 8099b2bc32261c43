"""test_balance.py - balancing policies, failover past dead and unresolvable targets, apps with no target up."""
import collections
import socket

import pytest

from helpers import app, banner_of, base_config, find_app, find_target, recv_line, wait_until


def _spread(ns, port, n):
    return collections.Counter(banner_of(ns, "127.0.0.1", port) for _ in range(n))


def test_round_robin_spreads_evenly(ns, backends, start_pandit):
    bs = [backends.add(f"rr{i}", "banner") for i in range(3)]
    start_pandit(base_config([app("rr", [13000], bs, balance="round_robin")]), probe_ports=[13000])
    n = 90
    c = _spread(ns, 13000, n)
    assert set(c) == {b.name for b in bs}, c
    # strict rotation gives 30 each; allow for per-worker cursors and the probe
    assert min(c.values()) >= 20 and max(c.values()) <= 40, c


def test_round_robin_is_the_default(ns, backends, start_pandit):
    bs = [backends.add(f"d{i}", "banner") for i in range(3)]
    start_pandit(base_config([app("dflt", [13010], bs)]), probe_ports=[13010])
    c = _spread(ns, 13010, 60)
    assert set(c) == {b.name for b in bs} and min(c.values()) >= 12, c


def test_random_uses_every_target(ns, backends, start_pandit):
    bs = [backends.add(f"rnd{i}", "banner") for i in range(3)]
    start_pandit(base_config([app("rnd", [13020], bs, balance="random")]), probe_ports=[13020])
    c = _spread(ns, 13020, 90)
    # P(some target gets < 5 of 90) is below 1e-9 for a uniform choice
    assert set(c) == {b.name for b in bs} and min(c.values()) >= 5, c


def test_least_conn_follows_held_connections(ns, backends, start_pandit):
    bs = [backends.add(f"lc{i}", "banner") for i in range(3)]
    p = start_pandit(base_config([app("lc", [13030], bs, balance="least_conn")]))
    held = []
    try:
        for _ in range(6):
            s = ns.connect("127.0.0.1", 13030)
            held.append((s, recv_line(s)))
        c = collections.Counter(name for _, name in held)
        assert sorted(c.values()) == [2, 2, 2], f"6 held connections over 3 targets: {c}"

        # free one target completely; the next two connections must both go there
        victim = held[0][1]
        for s, name in held:
            if name == victim:
                s.close()
        held = [(s, n) for s, n in held if n != victim]
        vt = next(b for b in bs if b.name == victim).target

        def victim_idle():
            return find_target(find_app(p.stats(), "lc"), vt)["active"] == 0
        wait_until(victim_idle, 10, what=f"pandit to count 0 active connections on {vt}")
        for _ in range(2):
            s = ns.connect("127.0.0.1", 13030)
            name = recv_line(s)
            held.append((s, name))
            assert name == victim, f"least_conn picked {name}, {victim} had no connection"
    finally:
        for s, _ in held:
            s.close()


def test_failover_past_dead_and_unresolvable_targets(ns, backends, start_pandit):
    """Every client gets a working backend while some targets are dead
    (port closed) or do not resolve, from the very first connection on."""
    good = [backends.add(f"good{i}", "banner") for i in range(3)]
    dead1, dead2 = ns.free_port(), ns.free_port()
    bad = "nonexistent.invalid:80"
    p = start_pandit(base_config([
        app("dead", [13100], [f"127.0.0.1:{dead1}", good[0]], connect_attempts=3),
        app("unres", [13101], [bad, good[1]], connect_attempts=3),
        app("both", [13102], [f"127.0.0.1:{dead2}", bad, good[2]], connect_attempts=3),
    ]))
    for port, want in ((13100, "good0"), (13101, "good1"), (13102, "good2")):
        got = collections.Counter(banner_of(ns, "127.0.0.1", port) for _ in range(20))
        assert got == {want: 20}, f"port {port}: {got}"

    # health reports the dead and the unresolvable targets as down
    def marked_down():
        st = p.stats()
        return (not find_target(find_app(st, "dead"), f"127.0.0.1:{dead1}")["up"]
                and not find_target(find_app(st, "unres"), bad)["up"]
                and find_target(find_app(st, "dead"), good[0].target)["up"])
    wait_until(marked_down, 10, what="dead targets reported down, live ones up")


def test_failover_when_a_target_dies(ns, backends, start_pandit):
    b1, b2 = backends.add("dies", "banner"), backends.add("lives", "banner")
    start_pandit(base_config([app("fo", [13110], [b1, b2], connect_attempts=2)]), probe_ports=[13110])
    assert set(_spread(ns, 13110, 10)) == {"dies", "lives"}
    b1.close()
    got = _spread(ns, 13110, 30)
    assert got == {"lives": 30}, got


def _closed_promptly(ns, port):
    """Connects and expects pandit to close (FIN or RST) without data; the
    bound on the wait is a safety net, not a timing assertion."""
    s = ns.connect("127.0.0.1", port, timeout=15)
    try:
        try:
            data = s.recv(100)
        except ConnectionResetError:
            return True
        except socket.timeout:
            pytest.fail(f"port {port}: connection not closed within 15 s although no target is up")
        assert data == b"", f"port {port}: got data {data!r} from an app with no target up"
        return True
    finally:
        s.close()


def test_no_target_up_closes_the_client(ns, start_pandit):
    dead = [ns.free_port() for _ in range(2)]
    p = start_pandit(base_config([
        app("alldead", [13200], [f"127.0.0.1:{d}" for d in dead]),
        app("unres", [13201], ["nonexistent.invalid:80", "also-nonexistent.invalid:81"]),
    ]))
    before = {a: find_app(p.stats(), a)["failed"] for a in ("alldead", "unres")}
    for _ in range(5):
        for port in (13200, 13201):
            _closed_promptly(ns, port)
    # after health marked everything down, still closed (now without trying)
    wait_until(lambda: not any(t["up"] for t in find_app(p.stats(), "alldead")["targets"]), 10,
               what="targets of alldead reported down")
    for _ in range(5):
        _closed_promptly(ns, 13200)
    def failed(a):
        return find_app(p.stats(), a)["failed"] - before[a]
    wait_until(lambda: failed("alldead") >= 10 and failed("unres") >= 5, 10,
               what="the failed counters to count the closed clients")
    assert (failed("alldead"), failed("unres")) == (10, 5)


def test_failover_past_a_target_that_does_not_answer(ns, backends, start_pandit):
    """A target whose SYNs go unanswered (an address behind a veth nobody
    answers ARP on): the connect times out and the next target serves."""
    import secrets
    x = secrets.randbelow(200) + 20
    ns.ip("link", "add", "bh0", "type", "veth", "peer", "name", "bh1")
    ns.ip("addr", "add", f"10.{x}.77.1/24", "dev", "bh0")
    ns.ip("link", "set", "bh0", "up")
    ns.ip("link", "set", "bh1", "up")
    silent = f"10.{x}.77.5:80"
    good = backends.add("answers", "banner")
    p = start_pandit(base_config([app("slow", [13300], [silent, good], connect_timeout="300ms",
                                      connect_attempts=2)]))
    got = collections.Counter(banner_of(ns, "127.0.0.1", 13300, timeout=15) for _ in range(6))
    assert got == {"answers": 6}, got
    t = find_target(find_app(p.stats(), "slow"), silent)
    assert t["failed"] >= 1 and t["connections"] == 0, t
