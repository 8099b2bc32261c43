"""test_robustness.py - resets from either side, abandoned connections, odd app names, a deleted config file, targets coming back."""
import json
import os
import re
import socket
import struct

import pytest

from helpers import app, banner_of, base_config, echo_check, find_app, recv_line, wait_until
from test_stats import parse_prometheus

LINGER0 = struct.pack("ii", 1, 0)


def _reset(s):
    """Closes s with an RST instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    s.close()


def _rst_at_once(s):
    _reset(s)                      # RST, likely before pandit has its upstream


def _rst_with_data_in_flight(s):
    recv_line(s)
    s.sendall(b"x" * 200000)       # echoed back while the client is gone: EPIPE/ECONNRESET
    _reset(s)


def _fin_at_once(s):
    s.close()                      # FIN without a word


def _fin_after_banner(s):
    recv_line(s)
    s.shutdown(socket.SHUT_RDWR)
    s.close()


@pytest.mark.parametrize("how", [_rst_at_once, _rst_with_data_in_flight, _fin_at_once, _fin_after_banner],
                         ids=["rst-at-once", "rst-with-data-in-flight", "fin-at-once", "fin-after-banner"])
def test_clients_that_go_away_leave_nothing_behind(ns, backends, start_pandit, how):
    b = backends.add("gone", "banner")
    p = start_pandit(base_config([app("gone", [19000], [b])]), probe_ports=[19000])
    for _ in range(20):
        how(ns.connect("127.0.0.1", 19000))
    wait_until(lambda: find_app(p.stats(), "gone")["active"] == 0, 15,
               what="pandit to close every connection of the app")
    wait_until(lambda: b.active == 0, 15, what="the backend to see every connection closed")
    assert p.stats()["connections"]["active"] == 0
    # and it still serves
    assert banner_of(ns, "127.0.0.1", 19000) == "gone"


def test_backend_reset_reaches_the_client(ns, backends, start_pandit):
    b = backends.add("victim", "banner")
    p = start_pandit(base_config([app("brst", [19010], [b])]))
    s = ns.connect("127.0.0.1", 19010, timeout=15)
    try:
        assert recv_line(s) == "victim"
        echo_check(s, b"before\n")
        b.close()  # resets its open connections
        try:
            data = s.recv(100)
            assert data == b"", data
        except ConnectionResetError:
            pass
    finally:
        s.close()
    wait_until(lambda: find_app(p.stats(), "brst")["active"] == 0, 15,
               what="pandit to drop the connection")


def test_odd_app_names_render_as_valid_json_and_metrics(ns, backends, start_pandit):
    b = backends.add("odd", "banner")
    names = ['q"uo\\te', "üñí cödé", "a b{c}=d,e"]
    p = start_pandit(base_config([app(n, [19020 + i], [b]) for i, n in enumerate(names)]),
                     probe_ports=[19020])
    st = p.stats()
    assert sorted(a["name"] for a in st["apps"]) == sorted(names)
    usr1 = json.loads(p.usr1())
    assert sorted(a["name"] for a in usr1["apps"]) == sorted(names)
    _, text = p.metrics()
    _, samples = parse_prometheus(text)
    def unescape(v):  # label values escape \\, \" and \n
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
    labelled = {unescape(l["app"]) for n, l, v in samples if n == "pandit_connections_active"}
    assert labelled == set(names), labelled


def test_config_deleted_then_recreated(ns, backends, start_pandit):
    b1, b2 = backends.add("del1", "banner"), backends.add("del2", "banner")
    p = start_pandit(base_config([app("del", [19030], [b1])]), probe_ports=[19030])
    os.unlink(p.path)
    assert banner_of(ns, "127.0.0.1", 19030) == "del1"
    assert p.alive()
    new = base_config([app("del", [19030], [b2])])
    p.write_file(p.path, p.render(new))  # created afresh: IN_CLOSE_WRITE

    def applied():
        return banner_of(ns, "127.0.0.1", 19030) == "del2"
    wait_until(applied, 15, 0.1, what="the recreated config to be applied")


def test_a_target_that_comes_back_is_used_again(ns, backends, start_pandit):
    b1, b2 = backends.add("back", "banner"), backends.add("stay", "banner")
    p = start_pandit(base_config([app("back", [19040], [b1, b2])]), probe_ports=[19040])
    port = b1.port
    b1.close()
    assert {banner_of(ns, "127.0.0.1", 19040) for _ in range(10)} == {"stay"}
    wait_until(lambda: not find_app(p.stats(), "back")["targets"][0]["up"], 10,
               what="the closed target to be marked down")
    backends.add("back-again", "banner", port=port)
    wait_until(lambda: find_app(p.stats(), "back")["targets"][0]["up"], 15,
               what="the target to be marked up again by health checks")
    wait_until(lambda: "back-again" in {banner_of(ns, "127.0.0.1", 19040) for _ in range(6)}, 10,
               what="connections to reach the revived target")
