"""test_shortcut.py - the local short-circuit (bpf/shortcut.bpf.c, src/kpath/shortcut.c) through build/shortcut_probe: a relay standing in for pandit, real loopback sockets in a namespace and a cgroup of the test's own."""
import json
import os
import subprocess
import uuid

import pytest

from helpers import REPO

PROBE = REPO / "build" / "shortcut_probe"


def _cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


@pytest.fixture
def cgroup():
    root = _cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 mount")
    if not PROBE.exists():
        pytest.fail(f"{PROBE} is missing (run `make` first)", pytrace=False)
    path = os.path.join(root, f"pandit-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    yield path
    os.rmdir(path)  # the probes have exited: the cgroup is empty


def probe(ns, cgroup, *args, expect_rc=0, timeout=120):
    """Runs the probe inside the test's namespace; returns its JSON line.
    expect_rc None: 0 or 1 (the stress exits 1 when it found bad bytes)."""
    # nsenter rather than `ip netns exec`, which remounts /sys and so hides
    # the cgroup2 mount the probe attaches to
    argv = ["nsenter", f"--net={ns.path}", str(PROBE), *args, "--cgroup", cgroup]
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    out, err = r.stdout.decode(), r.stderr.decode(errors="replace")
    ok = r.returncode in (0, 1) if expect_rc is None else r.returncode == expect_rc
    assert ok, f"rc {r.returncode}\nstdout: {out}\nstderr: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def check_clean(res):
    """Every pair entry deleted, every registered socket seen closing."""
    o = res["outcomes"]
    assert res["pairs_left"] == 0
    assert o["sock_added"] == 4 * res["conns"]
    assert o["sock_closed"] == o["sock_added"]
    assert o["sock_failed"] == 0


def test_stress_ordering_both_ways_with_half_close(ns, cgroup):
    """Random-size writes both ways with per-offset patterns, pairing before
    the first byte, mid-stream or never, half-close each way: no byte out
    of place, and the short-circuit and its ordering gate were exercised."""
    for seed in (1, 2):
        res = probe(ns, cgroup, "stress", "--conns", "200", "--bytes", "200000", "--seed", str(seed))
        assert res["bad"] == 0
        assert res["redirected_conns"] > 0
        assert res["bytes_redirected"] > 0 and res["bytes_relayed"] > 0
        assert res["outcomes"]["pass_pending"] > 0  # the gate held sends back, then opened
        assert res["outcomes"]["redirected"] > 0
        check_clean(res)


def test_stress_resets_either_side(ns, cgroup):
    """A third of the backends and a third of the clients reset midway:
    their peers read a correct prefix then an error or EOF; the others
    finish intact."""
    res = probe(ns, cgroup, "stress", "--conns", "150", "--bytes", "200000", "--seed", "3", "--reset")
    assert res["bad"] == 0
    assert res["resets"] == 100
    assert res["redirected_conns"] > 0
    check_clean(res)


def test_negative_control_without_gate_reorders(ns, cgroup):
    """The same stress with the ordering gate removed finds reordered bytes:
    the checks above can see the failure the gate prevents."""
    bad = 0
    for seed in (5, 6, 7):
        res = probe(ns, cgroup, "stress", "--conns", "100", "--bytes", "300000", "--seed", str(seed),
                    "--ungated", expect_rc=None)
        bad += res["bad"]
        if bad:
            break
    assert bad > 0


def test_pingpong_paired_goes_past_the_relay(ns, cgroup):
    """1-byte ping-pong over a connection paired before its first byte:
    every message skips the relay."""
    res = probe(ns, cgroup, "pingpong", "--mode", "paired", "--iters", "2000")
    assert res["paired"] == 1
    total = 2 * (2000 + 200)  # requests and replies, warm-up included
    assert res["redirected"] == total


def test_bulk_paired_complete(ns, cgroup):
    """200 MB one way over a connection paired before its first byte, with a
    small backlog cap: every byte arrives, part of it redirected, part
    through the relay (each byte counted once)."""
    res = probe(ns, cgroup, "bulk", "--mode", "paired", "--bytes", "200000000", "--backlog", "262144")
    assert res["paired"] == 1
    assert res["bytes"] == 200000000
    assert res["redirected"] > 0
    assert res["redirected"] + res["passed"] == res["bytes"]
