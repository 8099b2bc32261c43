#!/usr/bin/python3
"""http_bench.py - the HTTP/1.1 benchmark: pandit (protocol http) vs HAProxy (mode http) vs NGINX (proxy_pass) vs direct; writes bench/results/http1.{md,png,json}.

Run as root: `/usr/bin/python3 bench/http_bench.py` (options: --secs,
--repeat, --rate, --only direct,haproxy for a quick try, --out-dir). It makes
a network namespace of its own (loopback only), runs itself inside it with
--inside, then turns the JSON into http1.md, a gnuplot data file and
http1.png, and copies them to the output directory only when the run completed.

Inside: one NGINX backend serving a small body (CPU 0), wrk and h2load (CPU
0), each proxy on CPU 1 with one worker, one at a time, a fresh one per
repetition. Per setup and repetition: wrk, closed loop with keep-alive
(requests per second at saturation), then h2load --h1 at a fixed rate
(latency percentiles from its per-request log). Proxy CPU is utime+stime of
the proxy's processes (all threads) from /proc around each client run. Every
number written comes from the run; a failed measurement is recorded as
failed, never filled in.
"""
import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

OUT_DIR = os.path.join(bl.ROOT, "bench", "results")
GP = os.path.join(bl.ROOT, "bench", "http1.gp")
PANDIT = bl.PANDIT
CPU_PROXY, CPU_LOAD, CLK_TCK = bl.CPU_PROXY, bl.CPU_LOAD, bl.CLK_TCK

BACKEND_PORT = 5080
FRONTS = {"pandit": 6080, "pandit-fwd": 6081, "haproxy": 7080, "nginx": 8080}
SETUPS = ["direct", "pandit", "haproxy", "nginx", "pandit-fwd"]
LABELS = {
    "direct": "direct (no proxy)",
    "pandit": "pandit (protocol http, forwarded: false)",
    "pandit-fwd": "pandit, its default forwarded: true (adds X-Forwarded-For, Forwarded, Via)",
    "haproxy": "HAProxy (mode http)",
    "nginx": "NGINX (proxy_pass, upstream keepalive)",
}
BODY_BYTES = 128
# the backend's body: BODY_BYTES bytes ending in a newline
BODY = ("pandit-bench-" + "x" * BODY_BYTES)[:BODY_BYTES - 1] + "\n"
UPSTREAM_IDLE = 64   # idle upstream connections each proxy may keep (NGINX keepalive, pandit max_idle_upstream)

log = bl.make_log("http_bench")


# ---- configs -------------------------------------------------------------------

def backend_conf(tmp):
    """The NGINX backend: one worker, the body from memory, keep-alive with
    no request limit, no access log."""
    return "\n".join([
        "worker_processes 1;", "daemon off;", f"pid {tmp}/backend.pid;",
        f"error_log {tmp}/backend-error.log warn;",
        "events { worker_connections 4096; }",
        "http {",
        "    access_log off;",
        "    keepalive_requests 100000000;",
        "    keepalive_timeout 300s;",
        "    server {",
        f"        listen 127.0.0.1:{BACKEND_PORT} backlog=4096;",
        "        location / {",
        "            default_type text/plain;",
        f"            return 200 {json.dumps(BODY)};",
        "        }",
        "    }",
        "}", ""])


def nginx_proxy_conf(tmp, port):
    return "\n".join([
        "worker_processes 1;", "daemon off;", f"pid {tmp}/nginx-proxy.pid;",
        f"error_log {tmp}/nginx-proxy-error.log warn;",
        "events { worker_connections 4096; }",
        "http {",
        "    access_log off;",
        "    keepalive_requests 100000000;",
        "    keepalive_timeout 300s;",
        "    upstream backend {",
        f"        server 127.0.0.1:{BACKEND_PORT};",
        f"        keepalive {UPSTREAM_IDLE};",
        "        keepalive_requests 100000000;",
        "        keepalive_timeout 300s;",
        "    }",
        "    server {",
        f"        listen 127.0.0.1:{port} backlog=4096;",
        "        location / {",
        "            proxy_pass http://backend;",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "        }",
        "    }",
        "}", ""])


def haproxy_cfg(tmp, port):
    return "\n".join([
        "global", "    nbthread 1", "    maxconn 4000", f"    pidfile {tmp}/haproxy.pid", "",
        "defaults", "    mode http", "    option http-keep-alive", "    http-reuse always",
        "    timeout connect 5s", "    timeout client 60s", "    timeout server 60s",
        "    timeout http-keep-alive 300s", "",
        "listen web", f"    bind 127.0.0.1:{port}", f"    server s0 127.0.0.1:{BACKEND_PORT}", ""])


def pandit_yaml(port, forwarded=False):
    """pandit's config. forwarded false: no Forwarded, X-Forwarded-For and
    Via added, like HAProxy (no option forwardfor) and NGINX (no
    proxy_set_header for them) here, so every proxy rewrites the same."""
    return "\n".join([
        "workers: 1", "user: nobody", "admin: off",
        "apps:",
        "  - name: web",
        f"    ports: [{port}]",
        "    protocol: http",
        f"    targets: [\"127.0.0.1:{BACKEND_PORT}\"]",
        "    health_check: false",
        f"    http: {{max_idle_upstream: {UPSTREAM_IDLE}, forwarded: {'true' if forwarded else 'false'}}}", ""])


def pandit_unavailable(tmp):
    """None if build/pandit accepts the benchmark's protocol: http config,
    else why not (pandit --check's own message)."""
    if not os.access(PANDIT, os.X_OK):
        return "build/pandit was not built"
    cfg = os.path.join(tmp, "pandit-check.yaml")
    bl.write(cfg, pandit_yaml(FRONTS["pandit"]))
    try:
        r = subprocess.run([PANDIT, "--check", "-c", cfg], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"build/pandit --check failed: {e}"
    if r.returncode != 0:
        msg = " ".join((r.stderr or r.stdout).split())[:400]
        return f"build/pandit refuses the benchmark's `protocol: http` config (--check exit {r.returncode}): {msg}"
    return None


def start_proxy(kind, procs, tmp, tag):
    port = FRONTS[kind]
    if kind in ("pandit", "pandit-fwd"):
        cfg = os.path.join(tmp, f"{kind}-{tag}.yaml")
        bl.write(cfg, pandit_yaml(port, forwarded=kind == "pandit-fwd"))
        return procs.start(f"{kind}-{tag}", [PANDIT, "-c", cfg], CPU_PROXY)
    if kind == "haproxy":
        cfg = os.path.join(tmp, f"haproxy-{tag}.cfg")
        bl.write(cfg, haproxy_cfg(tmp, port))
        r = subprocess.run(["haproxy", "-c", "-q", "-f", cfg], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"haproxy -c: {(r.stderr or r.stdout).strip()[-300:]}")
        return procs.start(f"haproxy-{tag}", ["haproxy", "-db", "-f", cfg], CPU_PROXY)
    if kind == "nginx":
        cfg = os.path.join(tmp, f"nginx-{tag}.conf")
        bl.write(cfg, nginx_proxy_conf(tmp, port))
        return procs.start(f"nginx-{tag}", ["nginx", "-p", tmp, "-e", f"{tmp}/nginx-proxy-error.log", "-c", cfg],
                           CPU_PROXY)
    raise ValueError(kind)


# ---- clients ---------------------------------------------------------------------

def get_once(port, timeout_s=2.0):
    """One GET / through port; returns (status, body) or raises OSError/HTTPException."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        c.request("GET", "/", headers={"Host": "bench"})
        r = c.getresponse()
        return r.status, r.read().decode("latin-1")
    finally:
        c.close()


def wait_http(port, timeout_s, proc=None):
    """GET / through port answers 200 with the backend's body; returns the
    seconds waited, or None (timeout, or proc exited). Raises when it answers
    with something else."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout_s:
        try:
            status, body = get_once(port)
            if status == 200 and body == BODY:
                return time.monotonic() - t0
            last = f"status {status}, {len(body)}-byte body {body[:60]!r}"
        except (OSError, http.client.HTTPException) as e:
            last = str(e)
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.05)
    if last and last.startswith("status"):
        raise RuntimeError(f"GET / on port {port} answered {last}, not 200 with the backend's body")
    return None


UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def wrk(port, conns, secs):
    """wrk -t1 -cCONNS -dSECS --latency on CPU_LOAD; returns its numbers.
    Raises when a response was not 2xx/3xx or a socket error happened."""
    argv = ["taskset", "-c", CPU_LOAD, "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency",
            "--timeout", "5s", f"http://127.0.0.1:{port}/"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 30)
    out = r.stdout + r.stderr
    m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m),", out)
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if r.returncode != 0 or not m or not rps:
        raise RuntimeError(f"wrk failed (exit {r.returncode}): {out.strip()[-300:]}")
    res = {"requests": int(m.group(1)), "seconds": float(m.group(2)) * UNIT_US[m.group(3)] / 1e6,
           "rps": float(rps.group(1))}
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M):
        res[f"p{pct}_us"] = float(val) * UNIT_US[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["non_2xx_3xx"] = int(non2xx.group(1)) if non2xx else 0
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                    (int(x) for x in sock.groups()))) if sock else {}
    if res["non_2xx_3xx"] or any(res["socket_errors"].values()):
        raise RuntimeError(f"wrk: {res['non_2xx_3xx']} non-2xx/3xx responses, socket errors {res['socket_errors']} "
                           f"in {res['requests']} requests")
    return res


def pct(sorted_vals, p):
    """Nearest-rank percentile p (0-100) of an ascending list."""
    k = max(1, math.ceil(p / 100 * len(sorted_vals)))
    return sorted_vals[k - 1]


def h2load_fixed(port, conns, rate, secs, warmup_s, logpath):
    """h2load --h1 at a fixed rate: conns connections, each rate/conns
    requests per second, started rate/1000 per millisecond so the sends are
    spread over each interval (bursts of rate/1000 requests every ms). Returns
    the percentiles of the per-request log without the first warmup_s seconds.
    Raises when a request failed or the rate was not held."""
    per_conn = rate // conns
    n = per_conn * conns * (secs + warmup_s)
    per_ms = max(1, round(rate / 1000))
    if os.path.exists(logpath):
        os.unlink(logpath)   # h2load appends
    argv = ["taskset", "-c", CPU_LOAD, "h2load", "--h1", "-c", str(conns), "-n", str(n), "--rps", str(per_conn),
            "-r", str(per_ms), "--rate-period", "1ms", "-T", "30", "--log-file", logpath,
            f"http://127.0.0.1:{port}/"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + warmup_s + 60)
    out = r.stdout + r.stderr
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if r.returncode != 0 or not m or not codes:
        raise RuntimeError(f"h2load failed (exit {r.returncode}): {out.strip()[-300:]}")
    total, _, done, ok, failed, errored, tmo = (int(x) for x in m.groups())
    if ok != total or int(codes.group(1)) != total:
        raise RuntimeError(f"h2load: {ok} of {total} requests succeeded ({failed} failed, {errored} errored, "
                           f"{tmo} timeout; status codes {codes.group(0)})")
    rows = []
    with open(logpath) as f:
        for line in f:
            p = line.split("\t")
            if len(p) >= 3:
                rows.append((int(p[0]), int(p[1]), int(p[2])))
    if len(rows) != total:
        raise RuntimeError(f"h2load logged {len(rows)} requests of {total}")
    bad = [s for _, s, _ in rows if s != 200]
    if bad:
        raise RuntimeError(f"h2load: {len(bad)} responses were not 200 (e.g. {bad[0]})")
    t0 = min(t for t, _, _ in rows)
    kept = [(t, d) for t, _, d in rows if t - t0 >= warmup_s * 1e6]
    lat = sorted(d for _, d in kept)
    starts = sorted(t for t, _ in kept)
    span = (starts[-1] - starts[0]) / 1e6 if len(starts) > 1 else 0
    res = {"requests": len(rows), "measured": len(lat), "warmup_s": warmup_s,
           "achieved_rps": len(lat) / span if span > 0 else None, "target_rps": per_conn * conns,
           "per_ms": per_ms, "per_conn_rps": per_conn, "elapsed_s": (max(t for t, _, _ in rows) - t0) / 1e6}
    for p in (50, 90, 99, 99.9):
        res[f"p{p:g}_us".replace(".", "")] = pct(lat, p)
    res["max_us"] = lat[-1]
    res["mean_us"] = statistics.fmean(lat)
    # how the sends bunched up: requests whose sends were within 50 us of
    # the previous one form a group; the share of requests by group size
    sizes, n_in = [], 1
    for prev, cur in zip(starts, starts[1:]):
        if cur - prev <= 50:
            n_in += 1
        else:
            sizes.append(n_in)
            n_in = 1
    sizes.append(n_in)
    by_req = sorted(x for x in sizes for _ in range(x))   # a request's view: the size of its group
    res["send_group_p50"], res["send_group_p90"] = pct(by_req, 50), pct(by_req, 90)
    # the rate held: the sends were not stretched by slow answers (h2load
    # sends a connection's next request only after its previous answer)
    if res["achieved_rps"] is None or res["achieved_rps"] < 0.95 * res["target_rps"]:
        raise RuntimeError(f"h2load sent {res['achieved_rps']} req/s, under 95% of the {res['target_rps']} asked")
    return res


# ---- one setup ---------------------------------------------------------------------

def measure(kind, procs, tmp, a, tag):
    """wrk then h2load through one setup (a fresh proxy); returns a dict."""
    p = None
    if kind == "direct":
        port = BACKEND_PORT
    else:
        port = FRONTS[kind]
        p = start_proxy(kind, procs, tmp, tag)
        if wait_http(port, 15, p) is None:
            why = bl.tail(p.err_path) or bl.tail(p.out_path)
            procs.stop(p)
            raise RuntimeError(f"{kind} did not answer GET / on port {port} within 15 s: {why}")
    res = {}
    try:
        c0 = bl.cpu_ticks(p.pid) if p else 0
        with bl.Background() as bg:
            wr = wrk(port, a.conns, a.secs)
        c1 = bl.cpu_ticks(p.pid) if p else 0
        wr["proxy_cpu_s"] = (c1 - c0) / CLK_TCK if p else None
        wr["background_pct"] = bg.pct
        res["wrk"] = wr
        c0 = bl.cpu_ticks(p.pid) if p else 0
        with bl.Background() as bg:
            h2 = h2load_fixed(port, a.conns, a.rate, a.secs, a.warmup, os.path.join(tmp, f"h2load-{kind}-{tag}.log"))
        c1 = bl.cpu_ticks(p.pid) if p else 0
        # CPU over the whole h2load run (warm-up included), per request sent in it
        h2["proxy_cpu_s"] = (c1 - c0) / CLK_TCK if p else None
        h2["background_pct"] = bg.pct
        res["fixed"] = h2
        if p and p.poll() is not None:
            raise RuntimeError(f"{kind} exited during the run: {bl.tail(p.err_path)}")
        # still the right body after the load
        if p and wait_http(port, 5, p) is None:
            raise RuntimeError(f"{kind} stopped answering GET / after the run: {bl.tail(p.err_path)}")
    finally:
        if p:
            procs.stop(p)
    return res


def inside(a):
    os.sched_setaffinity(0, {int(CPU_LOAD)})
    procs = bl.Procs(a.tmp, log)
    res = {"started": bl.utc_now(), "pandit_rev": bl.pandit_rev(), "secs": a.secs, "repeat": a.repeat,
           "conns": a.conns, "rate": a.rate, "warmup_s": a.warmup, "body_bytes": BODY_BYTES,
           "upstream_idle": UPSTREAM_IDLE,
           "quiet": {"pct": a.quiet_pct, "start_s": a.start_wait, "each_s": a.quiet_wait_each, "total_s": a.quiet_wait},
           "loadavg_start": bl.loadavg(), "raw": {}, "errors": [], "not_run": {}, "quiet_waits": [],
           "configs": {"backend": backend_conf("TMP"), "haproxy": haproxy_cfg("TMP", FRONTS["haproxy"]),
                       "nginx": nginx_proxy_conf("TMP", FRONTS["nginx"]), "pandit": pandit_yaml(FRONTS["pandit"]),
                       "pandit-fwd": pandit_yaml(FRONTS["pandit-fwd"], True)}}

    def on_signal(sig, frame):
        procs.stop_all()
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    setups = [s for s in SETUPS if not a.only or s in a.only.split(",")]
    if "pandit" in setups or "pandit-fwd" in setups:
        why = pandit_unavailable(a.tmp)
        if why:
            log(f"pandit not run: {why}")
            for s in ("pandit", "pandit-fwd"):
                if s in setups:
                    res["not_run"][s] = why
                    setups.remove(s)
    if a.start_wait > 0:
        pct_, waited = bl.wait_quiet(a.start_wait, a.quiet_pct, log)
        res["start_wait"] = {"waited_s": round(waited, 1), "background_pct": round(pct_, 1)}
        log(f"start: waited {waited:.0f} s for a quiet machine (other load {pct_:.0f}% of a CPU)")
    others0, t_others0 = bl.other_ticks(), time.monotonic()
    try:
        bcfg = os.path.join(a.tmp, "backend.conf")
        bl.write(bcfg, backend_conf(a.tmp))
        be = procs.start("backend", ["nginx", "-p", a.tmp, "-e", f"{a.tmp}/backend-error.log", "-c", bcfg], CPU_LOAD)
        if wait_http(BACKEND_PORT, 10, be) is None:
            raise RuntimeError(f"the NGINX backend did not answer: {bl.tail(be.err_path)}")
        runs = {s: [] for s in setups}
        budget = a.quiet_wait
        for rep in range(a.repeat):
            for s in setups:
                if budget > 0:
                    pct_, waited = bl.wait_quiet(min(a.quiet_wait_each, budget), a.quiet_pct, log)
                    budget -= waited
                    res["quiet_waits"].append({"setup": s, "repeat": rep + 1, "waited_s": round(waited, 1),
                                               "background_pct": round(pct_, 1)})
                log(f"run {rep + 1}/{a.repeat}: {s}")
                try:
                    r = measure(s, procs, a.tmp, a, f"r{rep}")
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                    log(f"  {s} failed: {e}")
                    res["errors"].append({"setup": s, "repeat": rep + 1, "error": str(e)[-500:]})
                    continue
                wr, fx = r["wrk"], r["fixed"]
                cpu = "" if wr["proxy_cpu_s"] is None else \
                    f", proxy CPU {wr['proxy_cpu_s'] / wr['requests'] * 1e6:.1f} us/req"
                log(f"  {s}: wrk {wr['rps']:.0f} req/s{cpu}; at {a.rate}/s p50 {fx['p50_us']} us "
                    f"p99 {fx['p99_us']} us p99.9 {fx['p999_us']} us; other load "
                    f"{max(wr['background_pct'], fx['background_pct']):.0f}%")
                runs[s].append(r)
        res["raw"] = runs
        for s in setups:
            if not runs[s] and a.repeat > 0:
                res["not_run"][s] = "every run failed (see errors)"
        if be.poll() is not None:
            raise RuntimeError(f"the NGINX backend exited: {bl.tail(be.err_path)}")
    finally:
        procs.stop_all()
    t_others = time.monotonic() - t_others0
    res["other_top"] = bl.other_top(others0, bl.other_ticks(), t_others)
    res["loadavg_end"] = bl.loadavg()
    res["finished"] = bl.utc_now()
    res["machine"] = bl.machine({"haproxy": ["haproxy", "-v"], "nginx": ["nginx", "-v"], "wrk": ["wrk", "-v"],
                                 "h2load": ["h2load", "--version"]})
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)


# ---- report ------------------------------------------------------------------------

def summarize(runs):
    s = {"n": len(runs)}
    wr = [r["wrk"] for r in runs]
    fx = [r["fixed"] for r in runs]
    s["rps"] = statistics.median(x["rps"] for x in wr)
    s["rps_all"] = [round(x["rps"]) for x in wr]
    for k in ("p50_us", "p99_us"):
        s[f"wrk_{k}"] = statistics.median(x[k] for x in wr) if all(k in x for x in wr) else None
    for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
        s[f"fixed_{k}"] = statistics.median(x[k] for x in fx)
    s["fixed_p99_all"] = [x["p99_us"] for x in fx]
    s["fixed_p999_all"] = [x["p999_us"] for x in fx]
    s["fixed_rps"] = statistics.median(x["achieved_rps"] for x in fx)
    if wr[0]["proxy_cpu_s"] is not None:
        s["cpu_us_wrk"] = statistics.median(x["proxy_cpu_s"] / x["requests"] * 1e6 for x in wr)
        s["cpu_us_wrk_all"] = [round(x["proxy_cpu_s"] / x["requests"] * 1e6, 2) for x in wr]
        s["cpu_us_fixed"] = statistics.median(x["proxy_cpu_s"] / x["requests"] * 1e6 for x in fx)
        s["cpu_busy_wrk"] = statistics.median(x["proxy_cpu_s"] / x["seconds"] * 100 for x in wr)
    bg = [x["background_pct"] for x in wr + fx]
    s["bg_median"], s["bg_max"] = statistics.median(bg), max(bg)
    return s


def fmt(v, nd=0):
    return "-" if v is None else f"{v:,.{nd}f}"


def report(j, out_md, out_dat):
    S = {s: summarize(j["raw"][s]) for s in SETUPS if j["raw"].get(s)}
    m = j["machine"]
    L = []
    w = L.append
    w("# HTTP/1.1 benchmark: pandit vs HAProxy vs NGINX vs direct")
    w("")
    w(f"Generated by bench/http_bench.py (part of `make bench`) from {j['started']} to {j['finished']}. Every "
      "number here comes from that run; the raw data (every run) is in [http1.json](http1.json), the chart in "
      "[http1.png](http1.png).")
    w("")
    w("## Machine and versions")
    w("")
    w(f"- CPU: {m['cpu']}, {m['cores']} cores; kernel {m['kernel']}")
    w(f"- {m['haproxy']}")
    w(f"- {m['nginx']} (Debian nginx-light; the backend and the NGINX proxy)")
    w(f"- {m['wrk']}; {m['h2load']}")
    w(f"- pandit git rev {j['pandit_rev']}")
    w(f"- Load average at the start {j['loadavg_start']}, at the end {j['loadavg_end']}")
    w("")
    w("## Method")
    w("")
    w("- Everything runs in a network namespace made for the run, over loopback (127.0.0.1).")
    w(f"- Backend: NGINX, `worker_processes 1`, answering every `GET /` with a {j['body_bytes']}-byte body from "
      "memory (`return 200`), keep-alive without a request limit, no access log; pinned to CPU 0. The same "
      "backend serves every setup.")
    w(f"- Proxies, one at a time, each pinned to CPU 1 (`taskset -c 1`) with one worker, keep-alive on both "
      f"sides and idle upstream connections reused: pandit `workers: 1`, the app's `protocol: http`, "
      f"`http: {{max_idle_upstream: {j['upstream_idle']}, forwarded: false}}`; HAProxy `mode http`, `nbthread 1`, "
      f"`option http-keep-alive`, `http-reuse always`; NGINX `worker_processes 1`, `proxy_pass` to an upstream "
      f"with `keepalive {j['upstream_idle']}`, `proxy_http_version 1.1`, `proxy_set_header Connection \"\"`. "
      "No access logs, no health checks, request limits per connection lifted; everything else is each "
      "proxy's default. None of these adds X-Forwarded-For, Forwarded or Via (HAProxy without `option "
      "forwardfor`, NGINX without `proxy_set_header` for them, pandit with `forwarded: false`), so each "
      "rewrites the same; the last row is pandit with its default `forwarded: true` (it adds all three to "
      "each request, and Via to each response), for context. The configs are in the JSON (`configs`). A "
      "fresh proxy is started for each repetition.")
    w("- Direct: the clients talk to the backend itself (no proxy).")
    w(f"- Requests per second: `wrk -t1 -c{j['conns']} -d{j['secs']}s --latency`, pinned to CPU 0 (it shares "
      f"CPU 0 with the backend): {j['conns']} keep-alive connections, each sending its next request as soon "
      "as the previous answer is in (closed loop). A run with any non-2xx/3xx answer or socket error counts as "
      "failed.")
    per_conn = j["rate"] // j["conns"]
    fx_all = [r["fixed"] for runs in j["raw"].values() for r in runs if "send_group_p50" in r.get("fixed", {})]
    groups = ""
    if fx_all:
        groups = (f"The sends still bunch up, as h2load's log shows: counting requests sent within 50 us "
                  f"of each other as a group, half the requests were in groups of "
                  f"{statistics.median(x['send_group_p50'] for x in fx_all):g} or fewer and 90% in groups of "
                  f"{statistics.median(x['send_group_p90'] for x in fx_all):g} or fewer (medians over all runs). ")
    w(f"- Latency at a fixed rate: `h2load --h1 -c {j['conns']} --rps {per_conn} -r {max(1, round(j['rate'] / 1000))} "
      f"--rate-period 1ms -n N --log-file F`, pinned to CPU 0: {j['conns']} keep-alive connections, each sending "
      f"{per_conn} requests per second, {j['rate']:,} in all; the connections are started "
      f"{max(1, round(j['rate'] / 1000))} per millisecond so that their sends spread over each interval. "
      f"{groups}Percentiles (nearest rank) of "
      f"the per-request times in h2load's log, from sending a request to the end of its response, over "
      f"{j['secs']} s after {j['warmup_s']} s of warm-up (dropped). h2load sends a connection's next request "
      "only once the previous answer is in, so a stall longer than a connection's interval "
      f"({1000 / per_conn:.0f} ms) would delay later sends rather than show in full; a run that fell under 95% of "
      "the rate counts as failed, and every answer must be a 200.")
    w("- Proxy CPU per request: utime+stime of the proxy's processes (all threads; NGINX master and worker) "
      "from /proc/PID/stat before and after each client run, divided by that run's requests; busy % = CPU "
      "seconds per second of the wrk run (100% = the proxy's CPU is saturated).")
    w(f"- Each setup was measured {j['repeat']} time{'s' if j['repeat'] != 1 else ''}, interleaved (the setup order repeated); the tables show "
      "medians, with every run listed below.")
    q = j["quiet"]
    w(f"- The machine is shared with other jobs. Before each setup the run waited for other processes to use less "
      f"than {q['pct']:g}% of a CPU over a second (at most {q['each_s']:g} s per setup, {q['total_s']:g} s in all, "
      f"and up to {q['start_s']:g} s before the first); the last column shows what they used during the "
      "measurements (busy time from /proc/stat, steal included, minus this benchmark's processes).")
    w("")
    w("## Results")
    w("")
    w(f"| setup | requests/s (wrk, {j['conns']} conns) | proxy CPU busy under wrk | proxy CPU us per request "
      f"(wrk / fixed rate) | p50 / p90 / p99 / p99.9 at {j['rate']:,}/s (us) | max at fixed rate (us) "
      "| wrk latency p50 / p99 (us, closed loop) | other load, % of a CPU (median / max) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    dat = ["# setup rps p50 p90 p99 p999 cpu_us_wrk cpu_us_fixed"]
    for s in SETUPS:
        if s not in S:
            if s in j["not_run"]:
                w(f"| {LABELS[s]} | not run | | | | | | |")
            continue
        x = S[s]
        cpu = "-" if x.get("cpu_us_wrk") is None else f"{fmt(x['cpu_us_wrk'], 2)} / {fmt(x['cpu_us_fixed'], 2)}"
        busy = "-" if x.get("cpu_busy_wrk") is None else f"{fmt(x['cpu_busy_wrk'])}%"
        w(f"| {LABELS[s]} | {fmt(x['rps'])} | {busy} | {cpu} | {fmt(x['fixed_p50_us'])} / {fmt(x['fixed_p90_us'])} / "
          f"{fmt(x['fixed_p99_us'])} / {fmt(x['fixed_p999_us'])} | {fmt(x['fixed_max_us'])} | "
          f"{fmt(x['wrk_p50_us'])} / {fmt(x['wrk_p99_us'])} | {fmt(x['bg_median'])} / {fmt(x['bg_max'])} |")
        cw, cf = x.get("cpu_us_wrk"), x.get("cpu_us_fixed")
        dat.append(f"\"{s}\" {x['rps']:.1f} {x['fixed_p50_us']} {x['fixed_p90_us']} {x['fixed_p99_us']} "
                   f"{x['fixed_p999_us']} {'NaN' if cw is None else f'{cw:.3f}'} {'NaN' if cf is None else f'{cf:.3f}'}")
    w("")
    for s in SETUPS:
        if s in S:
            x = S[s]
            line = f"- {LABELS[s]}: {x['n']} run{'s' if x['n'] != 1 else ''}; requests/s {x['rps_all']}"
            if x.get("cpu_us_wrk_all"):
                line += f"; proxy CPU us per request under wrk {x['cpu_us_wrk_all']}"
            line += (f"; at the fixed rate p99 {x['fixed_p99_all']} us, p99.9 {x['fixed_p999_all']} us, "
                     f"{fmt(x['fixed_rps'])} requests/s sent (median)")
            w(line)
    for s, why in j["not_run"].items():
        w(f"- {LABELS.get(s, s)} not run: {why}")
    for e in j["errors"]:
        w(f"- {LABELS.get(e['setup'], e['setup'])}, repetition {e['repeat']} failed and is not counted: "
          f"{' '.join(e['error'].split())}")
    w("")
    w("## Aims (the issue)")
    w("")
    bgs = [x["bg_median"] for x in S.values()]
    if bgs and max(bgs) > 25:
        w(f"Caution: other processes on this shared machine used up to {max(bgs):.0f}% of a CPU (median over a "
          "setup's measurements) while this run measured, so the comparisons below carry that noise; the CPU "
          "per request is the least disturbed figure.")
        w("")
    w("| aim | measured | met |")
    w("|---|---|---|")
    p, h = S.get("pandit"), S.get("haproxy")
    if p and h:
        ratio = p["rps"] / h["rps"]
        w(f"| requests/s >= 1.3x HAProxy's | pandit {fmt(p['rps'])}, HAProxy {fmt(h['rps'])}: {ratio:.2f}x | "
          f"{'yes' if ratio >= 1.3 else 'no'} |")
        w(f"| p99 at {j['rate']:,}/s lower than HAProxy's | pandit {fmt(p['fixed_p99_us'])} us, HAProxy "
          f"{fmt(h['fixed_p99_us'])} us | {'yes' if p['fixed_p99_us'] < h['fixed_p99_us'] else 'no'} |")
        if p.get("cpu_us_wrk") and h.get("cpu_us_wrk"):
            w(f"| (context) proxy CPU per request under wrk | pandit {p['cpu_us_wrk']:.2f} us at "
              f"{p['cpu_busy_wrk']:.0f}% busy, HAProxy {h['cpu_us_wrk']:.2f} us at {h['cpu_busy_wrk']:.0f}% busy: "
              f"HAProxy needs {h['cpu_us_wrk'] / p['cpu_us_wrk']:.2f}x pandit's CPU per request | - |")
        pf = S.get("pandit-fwd")
        if pf:
            w(f"| (context) the same with pandit's default `forwarded: true` | {pf['rps'] / h['rps']:.2f}x HAProxy's "
              f"requests/s; p99 {fmt(pf['fixed_p99_us'])} us | - |")
    else:
        why = "pandit not run (see above)" if "pandit" in j["not_run"] else \
            "HAProxy not run (see above)" if "haproxy" in j["not_run"] else "pandit or HAProxy has no successful run"
        w(f"| requests/s >= 1.3x HAProxy's | not measured: {why} | - |")
        w(f"| p99 at {j['rate']:,}/s lower than HAProxy's | not measured | - |")
    w("")
    w("## Other load on the machine")
    w("")
    waits = j.get("quiet_waits", [])
    if waits:
        long_waits = [q for q in waits if q["waited_s"] > 1.5]
        w(f"- Waits for a quiet machine before a setup: {len(waits)}, of which {len(long_waits)} longer than a "
          f"second (total {sum(q['waited_s'] for q in waits):.0f} s); the other load seen just before each setup: "
          f"median {statistics.median(q['background_pct'] for q in waits):.0f}%, max "
          f"{max(q['background_pct'] for q in waits):.0f}% of a CPU.")
    top = [(c, pc) for c, pc in j.get("other_top", []) if pc >= 0.5]
    if top:
        w("- Processes visible from here (outside the benchmark, alive through the whole run) by CPU used, % of one "
          "CPU averaged over the run: " + ", ".join(f"{c} {pc}%" for c, pc in top) + ".")
    w("")
    w("## Reading it")
    w("")
    prox = [s for s in ("pandit", "haproxy", "nginx", "pandit-fwd") if s in S and S[s].get("cpu_busy_wrk") is not None]
    if prox:
        busiest = max(S[s]["cpu_busy_wrk"] for s in prox)
        least = min(S[s]["cpu_busy_wrk"] for s in prox)
        if least >= 90:
            w(f"- Under wrk every proxy used {least:.0f}% or more of its CPU: the proxy, not the load side, set the "
              "pace, so the requests/s column compares the proxies' own ceilings on one CPU.")
        else:
            used = f"{least:.0f}%" if round(least) == round(busiest) else f"{least:.0f}% to {busiest:.0f}%"
            w(f"- Under wrk the proxies used {used} of their CPU. A proxy well under 100% was not the only limit "
              f"of its row: with {j['conns']} connections in a closed loop the rate is {j['conns']} divided by the "
              "round trip, which also holds wrk and the backend on CPU 0, the wake-ups across the two CPUs and "
              "any other load, so that row's requests/s understates what the proxy alone could do. The proxies' "
              "own cost is the CPU per request "
              "column; its inverse (requests per second of one proxy CPU, derived, assuming the cost per request "
              "stays flat up to a full CPU) is: " +
              ", ".join(f"{LABELS[s]} {1e6 / S[s]['cpu_us_wrk']:,.0f}" for s in prox) + ".")
    w(f"- At the fixed rate each connection carries one request every {1000 / per_conn:.0f} ms, so a wake-up "
      "serves few requests; the CPU per request there is higher than under wrk for every proxy.")
    w("- Medians of a few runs on a shared 2-CPU virtual machine: differences of a few percent, and tail "
      "latencies of milliseconds in a run with other load, are noise; every run is listed above.")
    with open(out_md, "w") as f:
        f.write("\n".join(L) + "\n")
    with open(out_dat, "w") as f:
        f.write("\n".join(dat) + "\n")


def render(j, tmp):
    """http1.md, http1.dat and http1.png in tmp from the results j."""
    bl.render_report("http1", j, tmp, report, GP, f"{j['rate']:,} req/s")


def rerender(path, out_dir):
    """--report: http1.md and http1.png again from a results JSON (no measuring)."""
    bl.rerender_report("http1", path, out_dir, render, log)


# ---- outside: the namespace and the files ------------------------------------------

def outside(a, argv):
    if os.geteuid() != 0:
        sys.exit("http_bench: needs root (network namespace, BPF)")
    for t in ("haproxy", "nginx", "wrk", "h2load", "gnuplot", "taskset", "ip"):
        if not shutil.which(t):
            sys.exit(f"http_bench: {t} missing (make deps)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("http_bench: needs 2 CPUs (proxy on CPU 1, load on CPU 0)")
    if not a.no_build:
        r = subprocess.run(["make", "--no-print-directory", "-C", bl.ROOT, "all"], stdout=sys.stderr)
        if r.returncode != 0:
            log("make all failed; using the existing build/")
    tmp = tempfile.mkdtemp(prefix="pandit-http.")
    os.chmod(tmp, 0o755)   # pandit reads its config again as nobody
    jpath = os.path.join(tmp, "http1.json")
    try:
        rc = bl.run_in_netns("pandit-http", tmp, [sys.executable, os.path.abspath(__file__), "--inside",
                                                  "--tmp", tmp, "--json", jpath] + argv, 900, log)
        if rc != 0 or not os.path.exists(jpath):
            sys.exit(f"http_bench: the run failed (exit {rc}); results not written")
        with open(jpath) as f:
            j = json.load(f)
        j["only"] = a.only.split(",") if a.only else None
        with open(jpath, "w") as f:
            json.dump(j, f, indent=1)
        render(j, tmp)
        os.makedirs(a.out_dir, exist_ok=True)
        for n in ("http1.json", "http1.md", "http1.png"):
            shutil.copy(os.path.join(tmp, n), os.path.join(a.out_dir, n))
        log(f"wrote {a.out_dir}/http1.md, http1.png, http1.json")
    finally:
        if not a.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=int, default=7, help="seconds of each wrk run and each measured h2load run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of h2load's log dropped at the start")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50, help="keep-alive connections of wrk and h2load")
    ap.add_argument("--rate", type=int, default=5000, help="fixed rate of h2load, requests per second in all "
                    "(a multiple of --conns)")
    ap.add_argument("--only", default="", help="comma list of setups: " + ",".join(SETUPS))
    ap.add_argument("--start-wait", type=float, default=20, help="seconds to wait for a quiet machine at the start")
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="seconds in all to wait for a quiet machine before the setups")
    ap.add_argument("--quiet-wait-each", type=float, default=10, help="at most this long before one setup")
    ap.add_argument("--quiet-pct", type=float, default=15, help="quiet: other processes under this %% of a CPU")
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--no-build", action="store_true", help="do not run make all first")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--report", metavar="JSON", help="only write http1.md and http1.png from a results JSON")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rate % a.conns or a.rate < a.conns:
        ap.error("--rate must be a positive multiple of --conns")
    if a.inside:
        inside(a)
        return
    if a.report:
        rerender(a.report, a.out_dir)
        return
    fwd = ["--secs", str(a.secs), "--warmup", str(a.warmup), "--repeat", str(a.repeat), "--conns", str(a.conns),
           "--rate", str(a.rate), "--start-wait", str(a.start_wait), "--quiet-wait", str(a.quiet_wait),
           "--quiet-wait-each", str(a.quiet_wait_each), "--quiet-pct", str(a.quiet_pct)]
    if a.only:
        fwd += ["--only", a.only]
    outside(a, fwd)


if __name__ == "__main__":
    main()
