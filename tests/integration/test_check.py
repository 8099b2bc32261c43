"""test_check.py - the command line: --help, --check on good and bad files, start-up with a bad file, the Fly.io format."""
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import PANDIT, REPO, banner_of, to_yaml


@pytest.fixture
def cfgdir():
    d = Path(tempfile.mkdtemp(prefix="pandit-it-chk-"))
    os.chmod(d, 0o755)
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def _pandit(ns, *args, timeout=20):
    # even --check runs in a throwaway namespace: nothing a bug could do
    # reaches the host's network
    return subprocess.run(ns.exec_argv([str(PANDIT), *args]), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _write(d, name, text):
    p = d / name
    p.write_text(text)
    os.chmod(p, 0o644)
    return p


def _errors(stderr, name):
    """(line, col, message) of every `...name:LINE:COL: message` line."""
    return [(int(m.group(1)), int(m.group(2)), m.group(3))
            for m in re.finditer(rf"{re.escape(name)}:(\d+):(\d+): ?(.*)", stderr)]


def test_help_documents_the_flags(ns):
    r = _pandit(ns, "--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for flag in ("-c", "--check", "--help"):
        assert flag in out, f"--help does not mention {flag}"


def test_unknown_flag_is_refused(ns):
    r = _pandit(ns, "--no-such-flag")
    assert r.returncode != 0


GOOD = {
    "admin": "127.0.0.1:9900",
    "user": "nobody",
    "workers": 2,
    "log_level": "info",
    "health_check": {"interval": "1s", "timeout": "500ms", "rise": 2, "fall": 3},
    "apps": [
        {"name": "web", "ports": [8080, "9000-9099"], "targets": ["127.0.0.1:1", "localhost:2"],
         "balance": "least_conn", "connect_timeout": "1s", "idle_timeout": "1m",
         "connect_attempts": 2, "max_connections": 100},
        {"name": "v6", "ports": [443], "addresses": ["10.0.0.0/8", "::1/128"],
         "targets": ["[::1]:8443"], "balance": "random"},
    ],
}


def test_check_accepts_good_yaml_and_json(ns, cfgdir):
    for name, text in (("good.yaml", to_yaml(GOOD) + "\n"), ("good.json", json.dumps(GOOD, indent=1))):
        p = _write(cfgdir, name, text)
        r = _pandit(ns, "--check", "-c", str(p))
        assert r.returncode == 0, f"{name}: rc {r.returncode}\n{text}\nstderr: {r.stderr}"


def test_check_accepts_the_flyio_format(ns, cfgdir):
    fly = {"Apps": [{"Name": "five-thousand", "Ports": [5001, 5200],
                     "Targets": ["127.0.0.1:6001", "localhost:6002"]},
                    {"Name": "six", "Ports": [6000], "Targets": ["127.0.0.1:7001"]}]}
    p = _write(cfgdir, "fly.json", json.dumps(fly))
    r = _pandit(ns, "--check", "-c", str(p))
    assert r.returncode == 0, r.stderr


BAD = """\
admin: "127.0.0.1:9900"
workers: 2
apps:
  - name: "a"
    ports: [8080, 70000]
    targets: ["127.0.0.1:80"]
  - name: "b"
    ports: [8080]
    targets: ["127.0.0.1:80"]
    colour: "blue"
  - name: "c"
    ports: []
    targets: ["127.0.0.1:80"]
  - name: "d"
    ports: [9000]
    targets: []
  - name: "e"
    ports: [9001]
    addresses: ["10.0.0.300/8"]
    targets: ["127.0.0.1:80"]
"""
# line -> what must be reported there (every error, not just the first)
BAD_AT = {
    5: "port out of range",
    10: "unknown key",
    12: "no ports",
    16: "no targets",
    19: "malformed address",
}


def test_check_reports_every_error_with_file_line_col(ns, cfgdir):
    p = _write(cfgdir, "bad.yaml", BAD)
    r = _pandit(ns, "--check", "-c", str(p))
    assert r.returncode != 0
    errs = _errors(r.stderr, "bad.yaml")
    lines = {e[0] for e in errs}
    for line, what in BAD_AT.items():
        assert line in lines or (what == "no ports" and 11 in lines) or (what == "no targets" and 14 in lines), \
            f"{what} (line {line}) not reported: {r.stderr}"
    # the duplicate port 8080 is reported at one of its two places
    assert lines & {5, 8}, r.stderr
    assert all(c >= 1 for _, c, _ in errs)
    assert all(msg.strip() for _, _, msg in errs)


@pytest.mark.parametrize("text,line", [
    ("apps:\n  - name: \"x\"\n    ports: [80\n    targets: [\"127.0.0.1:80\"]\n", {3, 4, 5}),
    ("{\"apps\": [{\"name\": \"x\", \"ports\": [80], \"targets\": [\"127.0.0.1:80\"]}\n", {1, 2}),
    ("apps:\n  - name: \"x\"\n    ports: [80]\n    targets: [\"127.0.0.1:80\"]\n    balance: \"fastest\"\n",
     {5}),
    ("apps:\n  - name: \"x\"\n    ports: [\"90-80\"]\n    targets: [\"127.0.0.1:80\"]\n", {3}),
    ("apps:\n  - name: \"x\"\n    ports: [80]\n    targets: [\"127.0.0.1\"]\n", {4}),
    ("apps:\n  - name: \"x\"\n    ports: [80]\n    targets: [\"127.0.0.1:80\"]\n  - name: \"x\"\n"
     "    ports: [81]\n    targets: [\"127.0.0.1:80\"]\n", {2, 5}),
], ids=["yaml-syntax", "json-syntax", "bad-balance", "reversed-range", "target-without-port",
        "duplicate-name"])
def test_check_refuses_nasty_files(ns, cfgdir, text, line):
    p = _write(cfgdir, "nasty.yaml", text)
    r = _pandit(ns, "--check", "-c", str(p))
    assert r.returncode != 0, f"accepted:\n{text}"
    errs = _errors(r.stderr, "nasty.yaml")
    assert errs, f"no file:line:col message: {r.stderr!r}"
    assert {e[0] for e in errs} & line, f"error not at lines {line}: {errs}"


def test_check_on_a_missing_file(ns, cfgdir):
    r = _pandit(ns, "--check", "-c", str(cfgdir / "missing.yaml"))
    assert r.returncode != 0
    assert "missing.yaml" in r.stderr


def test_start_with_a_bad_file_fails(ns, cfgdir):
    p = _write(cfgdir, "bad.yaml", BAD)
    r = _pandit(ns, "-c", str(p), timeout=30)
    assert r.returncode != 0
    assert _errors(r.stderr, "bad.yaml"), r.stderr


def test_flyio_file_serves(ns, backends, start_pandit):
    b1, b2 = backends.add("fly1", "banner"), backends.add("fly2", "banner")
    fly = {"Apps": [{"Name": "fly", "Ports": [18000, 18001], "Targets": [b1.target, b2.target]},
                    {"Name": "other", "Ports": [18002], "Targets": [b2.target]}]}
    # admin and the rest keep their defaults (admin 127.0.0.1:9900)
    p = start_pandit(fly, fmt="json", probe_ports=[18000])
    seen = {banner_of(ns, "127.0.0.1", port) for port in (18000, 18001) for _ in range(4)}
    assert seen == {"fly1", "fly2"}
    assert banner_of(ns, "127.0.0.1", 18002) == "fly2"
    assert sorted(a["name"] for a in p.stats()["apps"]) == ["fly", "other"]


def test_quick_mode_proxies_one_port(ns, backends, start_pandit):
    b = backends.add("quick", "banner")
    start_pandit(None, args=["--listen", ":18100", "--forward", b.target], admin=None,
                 probe_ports=[18100])
    assert {banner_of(ns, "127.0.0.1", 18100) for _ in range(3)} == {"quick"}
    assert banner_of(ns, "::1", 18100) == "quick"
    with pytest.raises(ConnectionRefusedError):
        banner_of(ns, "127.0.0.1", 18101)


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*")
                                           if p.suffix in (".yaml", ".yml", ".json")))
def test_shipped_examples_are_valid(ns, example):
    path = REPO / "examples" / example
    r = _pandit(ns, "--check", "-c", str(path))
    assert r.returncode == 0, r.stderr
