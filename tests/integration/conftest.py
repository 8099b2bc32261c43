"""conftest.py - pytest fixtures for pandit's integration tests: namespaces, backends and daemons that clean up after themselves."""
import os
import subprocess

import pytest

import helpers
from helpers import PANDIT, BackendHost, NetNS, Pandit


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _pandit_runs():
    try:
        r = subprocess.run([str(PANDIT), "--help"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


@pytest.fixture(scope="session", autouse=True)
def _preconditions():
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (network namespaces, BPF)")
    ok, out = _pandit_runs()
    if not ok:
        pytest.fail(f"{PANDIT} --help does not succeed (run `make` first): {out.strip()[:500]}",
                    pytrace=False)


@pytest.fixture
def ns():
    n = NetNS()
    yield n
    n.close()


@pytest.fixture
def backends(ns):
    h = BackendHost(ns)
    yield h
    h.stop()
    if h.error:
        raise h.error


@pytest.fixture
def start_pandit(ns):
    """start_pandit(config, **kw) -> a running Pandit that is ready (admin
    endpoint answering, probe_ports steered). At teardown the daemon must
    still be alive unless the test set p.expect_exit; its log is printed
    (pytest shows it for failed tests)."""
    started = []

    def start(config, probe_ports=(), in_ns=None, **kw):
        p = Pandit(in_ns or ns, config, **kw)
        started.append(p)
        p.wait_ready(probe_ports=probe_ports)
        return p

    yield start
    died = []
    for p in started:
        if not p.expect_exit and not p.alive():
            died.append(f"pandit pid {p.pid} died during the test with {p.proc.returncode}")
        p.stop()
        log = p.log_path.read_text(errors="replace")
        print(f"---- pandit pid {p.pid} log ({p.path}) ----")
        print(log[-20000:])
        p.cleanup()
    if died:
        pytest.fail("; ".join(died), pytrace=False)


@pytest.fixture
def world(ns, backends, start_pandit):
    """Everything at once, for tests that need the lot."""
    class W:
        pass
    w = W()
    w.ns, w.backends, w.start = ns, backends, start_pandit
    return w


__all__ = ["helpers"]
