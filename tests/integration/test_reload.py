"""test_reload.py - live reload: under traffic with no failed connection, long-lived connections outliving their config, bad configs refused."""
import re
import signal
import threading
import time

import pytest

from helpers import (app, banner_of, base_config, config_apps, echo_check, recv_all, recv_line, stats_apps,
                     wait_until)


class Clients:
    """Threads that connect to a port in a loop (connect, banner, echo,
    close) and record every failure; bounded by a deadline and a count."""

    def __init__(self, ns, port, allowed, threads=3, deadline_s=120, max_iter=100000):
        self.ns, self.port, self.allowed = ns, port, allowed
        self.ok = 0
        self.failures = []
        self.seen = set()
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.deadline = time.monotonic() + deadline_s
        self.max_iter = max_iter
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        payload = f"client {i} of port {self.port}\n".encode() * 8
        for _ in range(self.max_iter):
            if self.stop_ev.is_set() or time.monotonic() > self.deadline:
                return
            try:
                with self.ns.connect("127.0.0.1", self.port, timeout=10) as s:
                    name = recv_line(s)
                    echo_check(s, payload)
                    s.shutdown(1)
                    rest = recv_all(s)
                if name not in self.allowed() or rest:
                    raise AssertionError(f"answered by {name!r} (allowed {self.allowed()}), trailing {rest!r}")
                with self.lock:
                    self.ok += 1
                    self.seen.add(name)
            except Exception as e:  # every kind of failure counts
                with self.lock:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {type(e).__name__}: {e}")

    def count(self):
        with self.lock:
            return self.ok

    def wait_progress(self, n=20, timeout=20):
        """Until at least n more connections succeeded (traffic is really flowing)."""
        start = self.count()
        wait_until(lambda: self.count() >= start + n or self.failures, timeout,
                   what=f"{n} client connections on port {self.port}")

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "client threads did not stop"


def test_reload_under_live_traffic_fails_no_connection(ns, backends, start_pandit):
    s1, s2 = backends.add("stable1", "banner"), backends.add("stable2", "banner")
    c1, c2 = backends.add("change1", "banner"), backends.add("change2", "banner")
    x1, n1, n2 = backends.add("x1", "banner"), backends.add("new1", "banner"), backends.add("new2", "banner")

    stable = app("stable", [14000, "14001-14009"], [s1, s2])
    changing = {"targets": [c1]}

    def cfg(*extra, change=None):
        return base_config([stable, app("changing", [14200], change or changing["targets"]), *extra])

    x_app = app("x", ["14100-14109"], [x1])
    p = start_pandit(cfg(x_app), probe_ports=[14000, 14200])

    # Which target answers the changing app is checked after each change by
    # the test itself; the looping clients only insist on a clean answer.
    stable_clients = Clients(ns, 14000, lambda: {"stable1", "stable2"})
    change_clients = Clients(ns, 14200, lambda: {"change1", "change2"})
    try:
        stable_clients.wait_progress()
        change_clients.wait_progress()

        steps = [
            ("rename", cfg(x_app, app("new1", [14300], [n1]))),
            ("inplace", cfg(x_app, app("new1", [14300], [n1]), change=[c2])),
            ("hup", cfg(app("new1", [14300], [n1]), change=[c2])),
            ("rename", cfg(app("x", ["14400-14409"], [x1]), app("new1", [14300], [n1]),
                           app("new2", [14301, 14302], [n2]), change=[c1, c2])),
            ("inplace", cfg(app("x", ["14400-14409"], [x1]), app("new2", [14301, 14302], [n2]),
                            change=[c1])),
            ("hup", cfg(x_app, change=[c1])),
        ]
        gen = p.stats()["generation"]
        for round_ in range(3):
            for how, new in steps:
                want = {t.split(":")[1] for a in new["apps"] if a["name"] == "changing" for t in a["targets"]}
                want_names = {b.name for b in (c1, c2) if str(b.port) in want}
                st = p.write_config(new, how=how)
                assert st["generation"] > gen, f"generation did not advance after {how}"
                gen = st["generation"]
                stable_clients.wait_progress(10)
                # new connections follow the new config
                names = {a["name"] for a in new["apps"]}
                if "new1" in names:
                    assert banner_of(ns, "127.0.0.1", 14300) == "new1"
                else:
                    with pytest.raises(ConnectionRefusedError):
                        banner_of(ns, "127.0.0.1", 14300)
                if "new2" in names:
                    assert banner_of(ns, "127.0.0.1", 14302) == "new2"
                x_ports = next(a["ports"] for a in new["apps"] if a["name"] == "x") if "x" in names else []
                if x_ports == ["14100-14109"]:
                    assert banner_of(ns, "127.0.0.1", 14105) == "x1"
                    with pytest.raises(ConnectionRefusedError):
                        banner_of(ns, "127.0.0.1", 14405)
                elif x_ports:
                    assert banner_of(ns, "127.0.0.1", 14405) == "x1"
                    with pytest.raises(ConnectionRefusedError):
                        banner_of(ns, "127.0.0.1", 14105)
                seen = {banner_of(ns, "127.0.0.1", 14200) for _ in range(6)}
                assert seen <= want_names and seen, f"changing app answered by {seen}, want {want_names}"
                change_clients.wait_progress(5)
    finally:
        stable_clients.stop()
        change_clients.stop()

    assert stable_clients.failures == [], \
        f"{len(stable_clients.failures)} failed connections on the untouched app: {stable_clients.failures[:10]}"
    assert change_clients.failures == [], \
        f"{len(change_clients.failures)} failed connections on the changed app: {change_clients.failures[:10]}"
    assert stable_clients.seen == {"stable1", "stable2"}
    assert change_clients.seen == {"change1", "change2"}
    ok, failed = p.reloads()
    assert failed == 0 and ok >= 3 * len(steps), (ok, failed)
    print(f"clients: stable {stable_clients.ok} ok, changing {change_clients.ok} ok; reloads {ok}")


def test_long_lived_connection_survives_removal_of_its_target_and_app(ns, backends, start_pandit):
    k1, k2 = backends.add("keep1", "banner"), backends.add("keep2", "banner")
    g1 = backends.add("gone1", "banner")
    p = start_pandit(base_config([app("keep", [14500], [k1]), app("gone", [14501], [g1])]),
                     probe_ports=[14500, 14501])
    a = ns.connect("127.0.0.1", 14500, timeout=10)
    b = ns.connect("127.0.0.1", 14501, timeout=10)
    try:
        assert (recv_line(a), recv_line(b)) == ("keep1", "gone1")
        echo_check(a, b"before A\n")
        echo_check(b, b"before B\n")

        # the target of "keep" is replaced, the app "gone" removed
        p.write_config(base_config([app("keep", [14500], [k2])]), how="rename")
        for i in range(5):
            echo_check(a, f"after A {i}\n".encode() * 1000)
            echo_check(b, f"after B {i}\n".encode() * 1000)
        # new connections follow the new config
        assert banner_of(ns, "127.0.0.1", 14500) == "keep2"
        with pytest.raises(ConnectionRefusedError):
            ns.connect("127.0.0.1", 14501).close()

        # a further reload by SIGHUP does not disturb them either
        p.write_config(base_config([app("keep", [14500], [k2]), app("other", [14502], [k2])]), how="hup")
        echo_check(a, b"still A\n")
        echo_check(b, b"still B\n")
        st = p.stats()
        assert st["connections"]["active"] >= 2

        # and they end cleanly: FIN both ways
        for s in (a, b):
            s.shutdown(1)
            assert recv_all(s) == b""
    finally:
        a.close()
        b.close()
    # keep1 and gone1 are no target of anything now: nothing else connects to them
    wait_until(lambda: (k1.active, g1.active) == (0, 0), 10,
               what="the old backends to see their connections closed")


BAD_YAML = """\
admin: "127.0.0.1:9900"
workers: 2
apps:
  - name: "good"
    ports: [14600]
    targets: ["{good}"]
  - name: "dup"
    ports: [14600]
    targets: ["{good}"]
    colour: "blue"
  - name: "empty"
    ports: [14610]
    targets: []
"""
# 1-based line numbers of the errors above
BAD_LINES = {"dup_port": {5, 8}, "unknown_key": {10}, "no_targets": {13, 11, 12}}

SYNTAX_YAML = """\
admin: "127.0.0.1:9900"
apps:
  - name: "good"
    ports: [14600
    targets: ["{good}"]
"""


def _errors_in(log, start):
    """Lines after offset start shaped `...pandit.yaml:LINE:COL: message`."""
    return [(int(m.group(1)), int(m.group(2)), m.group(3))
            for m in re.finditer(r"pandit\.yaml:(\d+):(\d+): ?(.*)", log[start:])]


def test_bad_config_is_refused_and_the_old_one_keeps_serving(ns, backends, start_pandit):
    g, g2 = backends.add("good", "banner"), backends.add("good2", "banner")
    good_cfg = base_config([app("good", [14600], [g])])
    p = start_pandit(good_cfg, probe_ports=[14600])
    gen = p.stats()["generation"]
    held = ns.connect("127.0.0.1", 14600)
    try:
        assert recv_line(held) == "good"
        for how, text in (("rename", BAD_YAML), ("inplace", SYNTAX_YAML), ("hup", BAD_YAML)):
            log_at = len(p.log())
            st = p.write_config(text.format(good=g.target), how=how, expect="fail")
            assert st["generation"] == gen
            assert [a["name"] for a in st["apps"]] == ["good"]
            errs = wait_until(lambda: _errors_in(p.log(), log_at), 5,
                              what="file:line:col errors in the log")
            lines = {e[0] for e in errs}
            if text is BAD_YAML:
                for what, where in BAD_LINES.items():
                    assert lines & where, f"no error for {what} at lines {where}: {errs}"
            else:
                assert lines & {4, 5, 6}, f"syntax error not located: {errs}"
            # the old config keeps serving, old and new connections alike
            assert banner_of(ns, "127.0.0.1", 14600) == "good"
            echo_check(held, f"after bad {how}\n".encode())
            with pytest.raises(ConnectionRefusedError):
                ns.connect("127.0.0.1", 14610).close()

        # a good config afterwards is applied
        st = p.write_config(base_config([app("good", [14600], [g2]), app("more", [14611], [g])]),
                            how="rename")
        assert st["generation"] > gen
        assert banner_of(ns, "127.0.0.1", 14600) == "good2"
        assert banner_of(ns, "127.0.0.1", 14611) == "good"
        ok, failed = p.reloads()
        assert failed >= 3
        echo_check(held, b"survived all of it\n")
    finally:
        held.close()


def test_sighup_without_change_keeps_everything(ns, backends, start_pandit):
    b = backends.add("same", "banner")
    p = start_pandit(base_config([app("same", [14700], [b])]), probe_ports=[14700])
    held = ns.connect("127.0.0.1", 14700)
    try:
        assert recv_line(held) == "same"
        ok0, failed0 = p.reloads()
        p.signal(signal.SIGHUP)
        wait_until(lambda: p.reloads()[0] > ok0, 10, what="a reload after SIGHUP")
        assert p.reloads()[1] == failed0
        echo_check(held, b"unchanged\n")
        assert banner_of(ns, "127.0.0.1", 14700) == "same"
    finally:
        held.close()


def test_reload_moves_ports_between_apps(ns, backends, start_pandit):
    """Swapping two apps' ports in one reload: new connections follow at once."""
    a, b = backends.add("A", "banner"), backends.add("B", "banner")
    p = start_pandit(base_config([app("a", [14800, "14810-14819"], [a]), app("b", [14801], [b])]),
                     probe_ports=[14800, 14801])
    p.write_config(base_config([app("a", [14801], [a]), app("b", [14800, "14810-14819"], [b])]))
    assert banner_of(ns, "127.0.0.1", 14800) == "B"
    assert banner_of(ns, "127.0.0.1", 14801) == "A"
    assert {banner_of(ns, "127.0.0.1", port) for port in range(14810, 14820)} == {"B"}


def test_reload_with_a_relative_config_path(ns, backends, start_pandit):
    """-c pandit.yaml (no directory): the watch is on the working directory."""
    b1, b2 = backends.add("rel1", "banner"), backends.add("rel2", "banner")
    p = start_pandit(base_config([app("rel", [14900], [b1])]), relative=True, probe_ports=[14900])
    p.write_config(base_config([app("rel", [14900], [b2])]), how="rename")
    assert banner_of(ns, "127.0.0.1", 14900) == "rel2"
    p.write_config(base_config([app("rel", [14900], [b1]), app("rel2", [14901], [b2])]), how="inplace")
    assert banner_of(ns, "127.0.0.1", 14900) == "rel1"
    assert banner_of(ns, "127.0.0.1", 14901) == "rel2"


def test_a_storm_of_writes_ends_on_the_last_config(ns, backends, start_pandit):
    """30 writes without waiting, by rename and in place: whatever pandit
    makes of the ones in between, it settles on the last one and lives."""
    bs = [backends.add(f"s{i}", "banner") for i in range(3)]
    p = start_pandit(base_config([app("storm", [14950], [bs[0]])]), probe_ports=[14950])
    last = None
    for i in range(30):
        last = base_config([app("storm", [14950], [bs[i % 3]]), app(f"extra{i}", [14960 + i % 5], [bs[0]])])
        p.write_config(last, how="rename" if i % 2 else "inplace", expect=None)
    wait_until(lambda: stats_apps(p.stats()) == config_apps(last), 15, 0.1,
               what="pandit to settle on the last config")
    assert banner_of(ns, "127.0.0.1", 14950) == bs[29 % 3].name
    assert banner_of(ns, "127.0.0.1", 14960 + 29 % 5) == "s0"


def test_reload_changes_an_apps_limit(ns, backends, start_pandit):
    b = backends.add("lim", "banner")
    p = start_pandit(base_config([app("lim", [14990], [b], max_connections=1)]), probe_ports=[14990])
    # the probe's slot is given back once pandit has seen its close
    wait_until(lambda: p.stats()["connections"]["active"] == 0, 10, what="the probe to be closed")
    held = [ns.connect("127.0.0.1", 14990)]
    try:
        assert recv_line(held[0]) == "lim"
        extra = ns.connect("127.0.0.1", 14990, timeout=15)
        try:
            assert extra.recv(10) == b""
        except ConnectionResetError:
            pass
        extra.close()
        p.write_config(base_config([app("lim", [14990], [b], max_connections=3)]))
        for _ in range(2):
            s = ns.connect("127.0.0.1", 14990)
            held.append(s)
            assert recv_line(s) == "lim"
        echo_check(held[0], b"the first one is still there\n")
    finally:
        for s in held:
            s.close()
