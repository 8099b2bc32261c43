"""test_stats.py - SIGUSR1 JSON and the admin endpoint (/stats, /metrics) against what the test did."""
import json
import math
import re

from helpers import app, base_config, echo_check, find_app, find_target, recv_all, wait_until

TOP_KEYS = {"uptime_s", "generation", "connections", "reloads", "steering", "apps"}
APP_KEYS = {"name", "id", "accepted", "active", "failed", "bytes_in", "bytes_out",
            "connect_latency_us", "targets"}
TARGET_KEYS = {"target", "up", "connections", "active", "failed", "bytes_in", "bytes_out"}


def _traffic(ns, port, sizes):
    """One connection per size: send that many bytes, read the echo, close cleanly."""
    for i, n in enumerate(sizes):
        with ns.connect("127.0.0.1", port) as s:
            echo_check(s, bytes([65 + i % 26]) * n)
            s.shutdown(1)
            assert recv_all(s) == b""
    return sum(sizes)


def _idle(p, name):
    return find_app(p.stats(), name)["active"] == 0


def test_sigusr1_prints_one_json_line_with_matching_counters(ns, backends, start_pandit):
    e1 = backends.add("e1", "echo")
    other = backends.add("other", "echo")
    p = start_pandit(base_config([app("count", [15000], [e1]), app("quiet", [15001], [other])]),
                     probe_ports=[15000])
    wait_until(lambda: _idle(p, "count"), 10, what="the probe connection to be closed")
    before = json.loads(p.usr1())
    sizes = [1, 100, 1000, 10000, 65536, 300000, 7]
    total = _traffic(ns, 15000, sizes)

    def settled():
        st = json.loads(p.usr1())
        a = find_app(st, "count")
        return st if a["active"] == 0 and a["bytes_out"] - find_app(before, "count")["bytes_out"] >= total else None
    wait_until(settled, 10, 0.1, "the counters to settle")

    line = p.usr1()
    assert "\n" not in line
    st = json.loads(line)
    assert isinstance(st, dict) and TOP_KEYS <= set(st), set(st)
    assert st["generation"] >= 1 and st["uptime_s"] >= 0
    assert {"accepted", "active", "no_app"} <= set(st["connections"])
    assert {"ok", "failed", "last_apply_us"} <= set(st["reloads"])
    a0, a1 = find_app(before, "count"), find_app(st, "count")
    assert APP_KEYS <= set(a1), set(a1)
    n = len(sizes)
    assert a1["accepted"] - a0["accepted"] == n
    assert a1["active"] == 0
    assert a1["failed"] == a0["failed"]
    assert a1["bytes_in"] - a0["bytes_in"] == total
    assert a1["bytes_out"] - a0["bytes_out"] == total
    t0, t1 = find_target(a0, e1.target), find_target(a1, e1.target)
    assert TARGET_KEYS <= set(t1), set(t1)
    assert t1["up"] is True
    assert t1["connections"] - t0["connections"] == n
    assert t1["bytes_in"] - t0["bytes_in"] == total
    assert t1["bytes_out"] - t0["bytes_out"] == total
    assert t1["failed"] == t0["failed"]
    assert st["connections"]["accepted"] - before["connections"]["accepted"] == n
    lat0, lat1 = a0["connect_latency_us"], a1["connect_latency_us"]
    assert isinstance(lat1, dict)
    if "count" in lat1:
        assert lat1["count"] - lat0["count"] == n
    # the untouched app saw nothing
    q0, q1 = find_app(before, "quiet"), find_app(st, "quiet")
    assert (q1["accepted"], q1["bytes_in"], q1["bytes_out"]) == (q0["accepted"], q0["bytes_in"], q0["bytes_out"])
    assert q1["id"] != a1["id"]
    # the admin endpoint serves the same numbers
    web = p.stats()
    wa = find_app(web, "count")
    for k in ("accepted", "active", "failed", "bytes_in", "bytes_out"):
        assert wa[k] == a1[k], k


# -- Prometheus text format

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _labels(s):
    out, pos = {}, 0
    s = s or ""
    while pos < len(s):
        m = _LABEL.match(s, pos)
        assert m, f"bad label set {s!r} at {pos}"
        assert m.group(1) not in out, f"label {m.group(1)} twice in {s!r}"
        out[m.group(1)] = m.group(2)
        pos = m.end()
    return out


def _value(v):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    return float(v)


def parse_prometheus(text):
    """Checks the exposition format strictly and returns
    (types {family: type}, samples [(name, labels, value)])."""
    types, helps, samples = {}, {}, []
    assert text.endswith("\n"), "exposition must end with a newline"
    for i, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                fam, typ = parts[2], parts[3] if len(parts) > 3 else ""
                assert re.fullmatch(_NAME, fam), f"line {i}: bad family name {fam!r}"
                assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), f"line {i}: {line!r}"
                assert fam not in types, f"line {i}: TYPE of {fam} given twice"
                assert not any(s[0] == fam or s[0].startswith(fam + "_") and s[0][len(fam):] in
                               ("_bucket", "_sum", "_count") for s in samples), \
                    f"line {i}: TYPE of {fam} after its samples"
                types[fam] = typ
            elif len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE.match(line)
        assert m, f"line {i} is not `name{{labels}} value`: {line!r}"
        name, labels, value = m.group(1), _labels(m.group(2)), m.group(3)
        try:
            v = _value(value)
        except ValueError:
            raise AssertionError(f"line {i}: bad value {value!r}") from None
        samples.append((name, labels, v))
    return types, samples


def _family(types, name):
    if name in types:
        return name
    for suf in ("_bucket", "_sum", "_count", "_total", "_created"):
        if name.endswith(suf) and name[: -len(suf)] in types:
            return name[: -len(suf)]
    return None


def test_metrics_are_valid_prometheus_text(ns, backends, start_pandit):
    e1 = backends.add("m1", "echo")
    dead = ns.free_port()
    p = start_pandit(base_config([app("met", [15100], [e1, f"127.0.0.1:{dead}"]),
                                  app("met2", ["15101-15102"], [e1])]),
                     probe_ports=[15100])
    sizes = [10, 2000, 40000]
    total = _traffic(ns, 15100, sizes)
    wait_until(lambda: _idle(p, "met") and find_app(p.stats(), "met")["bytes_out"] >= total, 10,
               what="the counters to settle")

    headers, text = p.metrics()
    assert headers.get("content-type", "").startswith("text/plain"), headers
    types, samples = parse_prometheus(text)
    assert samples, "no samples"
    for name, labels, v in samples:
        assert _family(types, name), f"sample {name} has no # TYPE"
        assert not math.isnan(v), name

    # required families, with the documented types
    required = {
        "pandit_uptime_seconds": "gauge",
        "pandit_config_generation": "gauge",
        "pandit_reloads_total": "counter",
        "pandit_process_connections_accepted_total": "counter",
        "pandit_process_connections_active": "gauge",
        "pandit_connections_accepted_total": "counter",
        "pandit_connections_active": "gauge",
        "pandit_connections_failed_total": "counter",
        "pandit_bytes_total": "counter",
        "pandit_connect_latency_seconds": "histogram",
        "pandit_target_up": "gauge",
        "pandit_target_connections_accepted_total": "counter",
        "pandit_target_connections_active": "gauge",
        "pandit_target_connections_failed_total": "counter",
        "pandit_target_bytes_total": "counter",
        "pandit_target_connect_latency_seconds": "histogram",
    }
    for fam, typ in required.items():
        assert types.get(fam) == typ, f"family {fam}: type {types.get(fam)!r}, want {typ}"

    def one(name, **labels):
        got = [v for n, l, v in samples if n == name and l == labels]
        assert len(got) == 1, f"{name}{labels}: {len(got)} samples"
        return got[0]

    # the values agree with /stats
    st = p.stats()
    a = find_app(st, "met")
    t = find_target(a, e1.target)
    assert one("pandit_connections_accepted_total", app="met") == a["accepted"] >= len(sizes)
    assert one("pandit_connections_active", app="met") == 0
    assert one("pandit_bytes_total", app="met", direction="in") == a["bytes_in"] >= total
    assert one("pandit_bytes_total", app="met", direction="out") == a["bytes_out"] >= total
    assert one("pandit_target_connections_accepted_total", app="met", target=e1.target) == t["connections"]
    assert one("pandit_target_bytes_total", app="met", target=e1.target, direction="in") == t["bytes_in"]
    assert one("pandit_connect_latency_seconds_count", app="met") == a["accepted"]
    assert one("pandit_config_generation") == st["generation"]
    assert one("pandit_connections_accepted_total", app="met2") == 0
    # every app and every target of the config is there
    assert {l.get("app") for n, l, v in samples if n == "pandit_connections_active"} == {"met", "met2"}
    assert {(l["app"], l["target"]) for n, l, v in samples if n == "pandit_target_up"} == \
        {("met", e1.target), ("met", f"127.0.0.1:{dead}"), ("met2", e1.target)}
    # health: the live target is up, the dead one down
    wait_until(lambda: not find_target(find_app(p.stats(), "met"), f"127.0.0.1:{dead}")["up"], 10,
               what="the dead target to be marked down")
    _, text = p.metrics()
    types, samples = parse_prometheus(text)
    assert one("pandit_target_up", app="met", target=e1.target) == 1
    assert one("pandit_target_up", app="met", target=f"127.0.0.1:{dead}") == 0

    # unknown paths and methods are refused, not served
    status, _, _ = p.get("/nope")
    assert status == 404
