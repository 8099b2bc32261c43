#!/usr/bin/python3
"""l4bench.py - the L4 benchmark: direct vs pandit (userspace relay, kernel splice) vs HAProxy vs NGINX (iperf3, sockperf, CPU, reload cost).

Run by bench/run.sh inside a network namespace it created (loopback only);
every number written to the results comes from this run. Processes started
here are stopped here (and run.sh kills whatever is left in the namespace).
pandit's own /stats (kernel_path) is read around every client run, so the
results say which path its connections really took.
"""
import argparse
import contextlib
import datetime
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BUILD, CLK_TCK, Background, BpfStats, MachineCPU, Procs as _Procs, cpu_ticks,  # noqa: E402
                      in_cgroup, make_cgroup, pandit_rev, remove_cgroup, tail, wait_quiet, write)

L4TOOL = os.path.join(BUILD, "bench", "l4tool")
PANDIT = os.path.join(BUILD, "pandit")
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

CPU_PROXY = "1"      # every proxy runs here, one worker
CPU_LOAD = "0"       # load generators and servers run here

# backends (all on CPU_LOAD)
IPERF_PORT, SOCKPERF_PORT, ECHO_PORT = 5201, 5111, 5000
# reference without proxy: servers on CPU_PROXY, clients on CPU_LOAD, so the
# cost of crossing CPUs (wake-ups, cache) shows on its own
XCPU_IPERF_PORT, XCPU_SOCKPERF_PORT = 5202, 5112
# servers for the short-circuit row: like the first ones, but started inside
# the benchmark's cgroup (a short-circuit pairs sockets of that cgroup only)
SC_IPERF_PORT, SC_SOCKPERF_PORT = 5203, 5113
RELOAD_BACKENDS = [5001, 5002, 5003, 5004]
# front ports of each proxy: (iperf, sockperf, echo probe)
FRONTS = {
    "pandit-userspace": (6201, 6111, 6000),
    "pandit-spliced": (6203, 6113, 6002),
    "pandit-auto": (6204, 6114, 6003),
    "pandit-shortcircuit": (6205, 6115, 6004),
    "haproxy": (7201, 7111, 7000),
    "haproxy-splice": (7202, 7112, 7001),
    "nginx": (8201, 8111, 8000),
    "pandit-busypoll": (6202, 6112, 6001),
    "haproxy-busypoll": (7203, 7113, 7002),
}
PANDIT_BUSY_POLL_US = 100   # pandit --busy-poll: spin this long after events before sleeping
# kernel_splice of each pandit setup (busy polling is about the userspace relay's wake-ups)
# rows whose BPF programs' own time per round trip is measured (a short
# extra sockperf run with kernel.bpf_stats_enabled on)
PROG_TIME_ROWS = ("pandit-spliced", "pandit-shortcircuit")
PANDIT_SPLICE = {"pandit-userspace": "off", "pandit-spliced": "on", "pandit-auto": "auto", "pandit-busypoll": "off",
                 "pandit-shortcircuit": "auto"}
PANDIT_ADMIN = "127.0.0.1:9900"
SETUPS = ["direct", "direct-xcpu", "pandit-userspace", "pandit-spliced", "pandit-auto", "pandit-shortcircuit",
          "haproxy", "haproxy-splice", "nginx", "pandit-busypoll", "haproxy-busypoll"]
CGROUP = {"path": None}   # the benchmark's cgroup v2 directory, once made (main)
# reload test: app i gets ports RELOAD_BASE + 4i .. +3; new ports from RELOAD_NEW
RELOAD_BASE, RELOAD_NEW = 10000, 50000
PORTS_PER_APP = 4


def log(msg):
    print(f"[l4bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Procs(_Procs):
    """benchlib.Procs with each process's stdout and stderr in TMP/name.log."""

    def __init__(self, tmp):
        super().__init__(tmp, log)

    def start(self, name, argv, cpu, env=None):
        return super().start(name, argv, cpu, env, combined=True)


def run(argv, timeout, cpu=CPU_LOAD, check=True, cg=None):
    if cg:
        argv = in_cgroup(argv, cg)
    r = subprocess.run(["taskset", "-c", cpu] + argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
    return r


def wait_port(port, timeout_ms, proc=None):
    """One echo round trip through port works; returns seconds waited, or
    None on timeout or when proc (the proxy) has exited."""
    t0 = time.monotonic()
    while (time.monotonic() - t0) * 1000 < timeout_ms:
        r = subprocess.run([L4TOOL, "wait", str(port), "1000"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return time.monotonic() - t0
        if proc is not None and proc.poll() is not None:
            return None
    return None


# ---- proxy configs --------------------------------------------------------

def pandit_yaml(apps, admin=PANDIT_ADMIN, kernel_splice=None, shortcut_cgroup=None):
    """apps: [(name, [ports], [targets])]; kernel_splice: None (the default,
    auto) or auto|on|off for every app; shortcut_cgroup: None or the cgroup
    whose local peers every app may short-circuit (local_shortcut: auto)."""
    lines = ["workers: 1", "user: nobody", f'admin: "{admin}"']
    if shortcut_cgroup:
        lines.append(f"shortcut_cgroup: {json.dumps(shortcut_cgroup)}")
    lines.append("apps:")
    for name, ports, targets in apps:
        lines.append(f"  - name: {name}")
        lines.append(f"    ports: [{', '.join(str(p) for p in ports)}]")
        lines.append(f"    targets: [{', '.join(json.dumps(t) for t in targets)}]")
        # like the HAProxy and NGINX configs here: no active checks
        lines.append("    health_check: false")
        if kernel_splice:
            lines.append(f"    kernel_splice: {kernel_splice}")
        if shortcut_cgroup:
            lines.append("    local_shortcut: auto")
    return "\n".join(lines) + "\n"


def haproxy_cfg(apps, tmp, splice=False, master_sock=False, busy=False):
    g = ["global", "    nbthread 1", "    maxconn 2000", f"    pidfile {tmp}/haproxy.pid"]
    if busy:
        g.append("    busy-polling")
    if master_sock:
        # HAProxy's documented seamless-reload setup: listeners handed to the new worker
        g.append(f"    stats socket {tmp}/haproxy-admin.sock mode 600 level admin expose-fd listeners")
    d = ["defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 60s", "    timeout server 60s"]
    if splice:
        d.append("    option splice-auto")
    out = g + [""] + d + [""]
    for name, ports, targets in apps:
        out.append(f"listen {name}")
        out.extend(f"    bind 127.0.0.1:{p}" for p in ports)
        out.extend(f"    server s{i} {t}" for i, t in enumerate(targets))
    return "\n".join(out) + "\n"


def nginx_conf(apps, tmp):
    out = [f"load_module {NGINX_STREAM_MODULE};", "worker_processes 1;", "daemon off;",
           f"pid {tmp}/nginx.pid;", f"error_log {tmp}/nginx-error.log warn;",
           "events { worker_connections 4096; }", "stream {"]
    for name, ports, targets in apps:
        out.append(f"    upstream {name} {{")
        out.extend(f"        server {t};" for t in targets)
        out.append("    }")
        out.append("    server {")
        out.extend(f"        listen 127.0.0.1:{p};" for p in ports)
        out.append(f"        proxy_pass {name};")
        out.append("    }")
    out.append("}")
    return "\n".join(out) + "\n"


def bench_apps(fronts, shortcut=False):
    pi, ps, pe = fronts
    ip, sp = (SC_IPERF_PORT, SC_SOCKPERF_PORT) if shortcut else (IPERF_PORT, SOCKPERF_PORT)
    return [("iperf", [pi], [f"127.0.0.1:{ip}"]),
            ("sockperf", [ps], [f"127.0.0.1:{sp}"]),
            ("probe", [pe], [f"127.0.0.1:{ECHO_PORT}"])]


# ---- starting each proxy --------------------------------------------------

def start_proxy(kind, procs, tmp, apps, tag):
    """Starts a proxy for apps; returns the Popen. Raises on a failed start."""
    if kind in PANDIT_SPLICE:
        cfg = os.path.join(tmp, f"{kind}-{tag}.yaml")
        write(cfg, pandit_yaml(apps, kernel_splice=PANDIT_SPLICE[kind],
                               shortcut_cgroup=CGROUP["path"] if kind == "pandit-shortcircuit" else None))
        extra = ["--busy-poll", str(PANDIT_BUSY_POLL_US)] if kind == "pandit-busypoll" else []
        return procs.start(f"{kind}-{tag}", [PANDIT, "-c", cfg] + extra, CPU_PROXY)
    if kind in ("haproxy", "haproxy-splice", "haproxy-busypoll"):
        cfg = os.path.join(tmp, f"{kind}-{tag}.cfg")
        write(cfg, haproxy_cfg(apps, tmp, splice=kind == "haproxy-splice", busy=kind == "haproxy-busypoll"))
        run(["haproxy", "-c", "-q", "-f", cfg], timeout=120, cpu=CPU_PROXY)
        return procs.start(f"{kind}-{tag}", ["haproxy", "-db", "-f", cfg], CPU_PROXY)
    if kind == "nginx":
        cfg = os.path.join(tmp, f"nginx-{tag}.conf")
        write(cfg, nginx_conf(apps, tmp))
        return procs.start(f"nginx-{tag}", ["nginx", "-p", tmp, "-e", f"{tmp}/nginx-error.log", "-c", cfg],
                           CPU_PROXY)
    raise ValueError(kind)


def pandit_unavailable():
    """None if build/pandit looks runnable, else the reason."""
    if not os.access(PANDIT, os.X_OK):
        return "build/pandit was not built"
    try:
        r = subprocess.run([PANDIT, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"build/pandit --help failed: {e}"
    if r.returncode != 0:
        return f"build/pandit --help exited {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"
    return None


# ---- measurements -----------------------------------------------------------

def iperf(port, streams, secs, cg=None):
    r = run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs), "-P", str(streams), "-J"],
            timeout=secs + 30, check=False, cg=cg)
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 printed no JSON (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    if "error" in j:
        raise RuntimeError(f"iperf3: {j['error']}")
    s = j["end"]["sum_received"]
    return {"gbps": s["bits_per_second"] / 1e9, "bytes": s["bytes"], "seconds": s["seconds"]}


PCT_RE = re.compile(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")
TOTAL_RE = re.compile(r"\[Total Run\].*?ReceivedMessages=(\d+)")


def sockperf(port, secs, cg=None):
    r = run(["sockperf", "ping-pong", "--tcp", "-i", "127.0.0.1", "-p", str(port), "-m", "64",
             "-t", str(secs), "--full-rtt"], timeout=secs + 30, check=False, cg=cg)
    out = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    pct = {float(a): float(b) for a, b in PCT_RE.findall(out)}
    tot = TOTAL_RE.search(out)
    if r.returncode != 0 or 50.0 not in pct or 99.9 not in pct or not tot:
        raise RuntimeError(f"sockperf failed (exit {r.returncode}): {out.strip()[-300:]}")
    return {"p50": pct[50.0], "p99": pct[99.0], "p999": pct[99.9], "round_trips": int(tot.group(1))}


# ---- pandit's own account: /stats, kernel_path ---------------------------------

# kernel_path numbers that are gauges (now, not since start); every other number is a counter
KPATH_GAUGES = ("connections.spliced_active", "connections.userspace_active", "map_entries",
                "shortcut.paired_active")


def pandit_stats():
    """pandit's GET /stats as a dict; raises RuntimeError when it cannot be read."""
    try:
        with urllib.request.urlopen(f"http://{PANDIT_ADMIN}/stats", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"pandit /stats: {e}")


def flat(d, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}, numbers only."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


def kpath_snapshot():
    """Numbers of /stats kernel_path (flattened), plus connections.accepted and
    splice_available; {"error": ...} when pandit has no kernel_path section."""
    st = pandit_stats()
    kp = st.get("kernel_path")
    if not isinstance(kp, dict):
        return {"error": "no kernel_path section in /stats"}
    snap = flat(kp)
    snap["splice_available"] = bool(kp.get("splice_available"))
    sc = kp.get("shortcut")
    if isinstance(sc, dict):
        snap["shortcut_available"] = bool(sc.get("available"))
        if sc.get("reason"):
            snap["shortcut_reason"] = str(sc["reason"])
    snap["accepted"] = st.get("connections", {}).get("accepted", 0)
    return snap


def kpath_delta(before, after):
    """What moved between two snapshots: the counters' increase (program
    outcomes and fallbacks included), connections accepted meanwhile."""
    if "error" in before or "error" in after:
        return {"error": before.get("error") or after.get("error")}
    d = {}
    for k, v in after.items():
        if k not in KPATH_GAUGES and isinstance(v, (int, float)) and not isinstance(v, bool):
            d[k] = v - before.get(k, 0)
        elif not isinstance(v, (int, float)) or isinstance(v, bool):
            d[k] = v   # availability and its reason, as they are after the run
    return d


class KpathWatch:
    """Around one client run through pandit: kernel_path before and after, and
    one reading halfway through (connections on each path while it runs)."""

    def __init__(self, secs):
        self.mid_after = secs / 2
        self.mid = None

    def _sample(self):
        if not self.stop.wait(self.mid_after):
            try:
                s = kpath_snapshot()
                self.mid = {k: s.get(k) for k in ("connections.spliced_active", "connections.userspace_active",
                                                  "shortcut.paired_active")}
            except RuntimeError as e:
                self.mid = {"error": str(e)}

    def __enter__(self):
        self.before = kpath_snapshot()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._sample, daemon=True)
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        if exc[0] is None:
            self.after = kpath_snapshot()
        return False

    def result(self):
        return {"delta": kpath_delta(self.before, self.after), "mid": self.mid}


def measure_setup(kind, procs, tmp, secs, tag):
    """One pass of every measurement through one setup; returns a dict."""
    res = {}
    p = None
    if kind == "direct":
        ports = (IPERF_PORT, SOCKPERF_PORT, ECHO_PORT)
    elif kind == "direct-xcpu":
        ports = (XCPU_IPERF_PORT, XCPU_SOCKPERF_PORT, ECHO_PORT)
    else:
        ports = FRONTS[kind]
        if kind == "pandit-shortcircuit" and not CGROUP["path"]:
            raise RuntimeError(f"no cgroup for the short-circuit: {CGROUP.get('why')}")
        p = start_proxy(kind, procs, tmp, bench_apps(ports, shortcut=kind == "pandit-shortcircuit"), tag)
        if wait_port(ports[2], 15000, p) is None:
            log_tail = tail(p.out_path)
            procs.stop(p)
            raise RuntimeError(f"{kind} did not answer on port {ports[2]} within 15 s: {log_tail}")
    is_pandit = kind in PANDIT_SPLICE
    cg = CGROUP["path"] if kind == "pandit-shortcircuit" else None   # clients join it too

    def client_run(fn):
        """fn() inside every meter; returns its dict with cpu_s (the proxy's
        utime+stime), machine (whole-machine CPU), background_pct, kpath."""
        c0 = cpu_ticks(p.pid) if p else 0
        with Background() as bg, (KpathWatch(secs) if is_pandit else contextlib.nullcontext()) as kw, \
                MachineCPU() as mc:
            out = fn()
        c1 = cpu_ticks(p.pid) if p else 0
        out["cpu_s"] = (c1 - c0) / CLK_TCK if p else None
        out["machine"] = mc.as_dict()
        out["background_pct"] = bg.pct
        if kw:
            out["kpath"] = kw.result()
        return out

    try:
        for streams in (1, 8):
            res[f"iperf{streams}"] = client_run(lambda: iperf(ports[0], streams, secs, cg))
        res["sockperf"] = client_run(lambda: sockperf(ports[1], secs, cg))
        if kind in PROG_TIME_ROWS:
            # apart from the measured run: the kernel's run-time counters
            # cost two clock reads per program run
            with BpfStats(p.pid) as st:
                rt = sockperf(ports[1], 1, cg)["round_trips"]
            res["prog_time"] = {"round_trips": rt,
                                "progs": {k: {"runs": n, "ns": t} for k, (n, t) in st.delta().items()}}
        if p and p.poll() is not None:
            raise RuntimeError(f"{kind} exited during the run: {tail(p.out_path)}")
        if is_pandit:
            res["kpath_final"] = kpath_snapshot()
    finally:
        if p:
            procs.stop(p)
    if is_pandit:
        res["path"] = path_verdict(kind, res)
    return res


def path_verdict(kind, res):
    """Which path the run's connections took, from pandit's own counters:
    {"spliced": n, "accepted": n, "fallback": {...}, "held": n, "ok": bool,
    "note": text}. ok says the row is what its name claims (every
    connection spliced for kernel_splice: on, none for off)."""
    spliced = accepted = held = resumed = bulk = paired = 0
    sc_why = None
    fallback = {}
    errors = []
    for k in ("iperf1", "iperf8", "sockperf"):
        d = res[k]["kpath"]["delta"]
        if "error" in d:
            errors.append(d["error"])
            continue
        spliced += d.get("connections.spliced_total", 0)
        accepted += d.get("accepted", 0)
        held += d.get("held", 0)
        resumed += d.get("resumed", 0)
        bulk += d.get("bulk_to_userspace", 0)
        paired += d.get("shortcut.paired_total", 0)
        if d.get("shortcut_available") is False:
            sc_why = d.get("shortcut_reason", "unavailable")
        for fk, fv in d.items():
            if fk.startswith("fallback.") and fv:
                fallback[fk[len("fallback."):]] = fallback.get(fk[len("fallback."):], 0) + fv
    v = {"spliced": spliced, "accepted": accepted, "held": held, "resumed": resumed, "bulk_to_userspace": bulk,
         "paired": paired, "fallback": fallback}
    if errors:
        v["ok"], v["note"] = False, f"pandit's kernel_path counters could not be read: {errors[0]}"
    elif kind == "pandit-shortcircuit":
        v["ok"] = accepted > 0 and paired == accepted
        v["note"] = (f"{paired} of {accepted} connections short-circuited" if paired else
                     f"NOT short-circuited: 0 of {accepted} connections paired"
                     + (f" (short-circuit unavailable: {sc_why})" if sc_why else ""))
        v["note"] += f", {spliced} spliced"
    elif PANDIT_SPLICE[kind] == "auto":
        v["ok"] = True   # auto promises no path; the counters say which it took
        v["note"] = f"{spliced} of {accepted} connections spliced"
    elif PANDIT_SPLICE[kind] == "on":
        v["ok"] = accepted > 0 and spliced == accepted
        v["note"] = (f"{spliced} of {accepted} connections spliced" if spliced else
                     f"NOT spliced: 0 of {accepted} connections on the kernel path"
                     + (f" (fallbacks: {fallback})" if fallback else ""))
    else:
        v["ok"] = spliced == 0
        v["note"] = f"{spliced} of {accepted} connections spliced"
    return v


def summarize(runs):
    """Median over repeats of rates and percentiles; CPU summed over repeats."""
    if not runs:
        return None
    s = {}
    for streams in (1, 8):
        key = f"iperf{streams}"
        s[f"gbps{streams}"] = statistics.median(r[key]["gbps"] for r in runs)
        s[f"gbps{streams}_all"] = [round(r[key]["gbps"], 2) for r in runs]
        cpu = [r[key]["cpu_s"] for r in runs]
        byts = sum(r[key]["bytes"] for r in runs)
        s[f"cpu_per_gb{streams}"] = sum(cpu) / (byts / 1e9) if cpu[0] is not None else None
        # share of its CPU the proxy used while iperf3 ran
        s[f"cpu_util{streams}"] = (sum(cpu) / sum(r[key]["seconds"] for r in runs) * 100
                                   if cpu[0] is not None else None)
        # whole machine (every process and the kernel), and the same less other processes' CPU
        s[f"machine_cpu_per_gb{streams}"] = sum(r[key]["machine"]["busy_s"] for r in runs) / (byts / 1e9)
        s[f"machine_net_cpu_per_gb{streams}"] = sum(r[key]["machine"]["net_s"] for r in runs) / (byts / 1e9)
        s[f"machine_steal_s{streams}"] = sum(r[key]["machine"]["steal_s"] for r in runs)
    for k in ("p50", "p99", "p999"):
        s[k] = statistics.median(r["sockperf"][k] for r in runs)
    cpu = [r["sockperf"]["cpu_s"] for r in runs]
    rts = sum(r["sockperf"]["round_trips"] for r in runs)
    s["cpu_per_100k_rt"] = sum(cpu) / (rts / 1e5) if cpu[0] is not None else None
    s["machine_cpu_per_100k_rt"] = sum(r["sockperf"]["machine"]["busy_s"] for r in runs) / (rts / 1e5)
    s["ctxt_per_rt"] = sum(r["sockperf"]["machine"]["ctxt"] for r in runs) / rts if rts else None
    pt = [r["prog_time"] for r in runs if "prog_time" in r]
    if pt:
        ptr = sum(x["round_trips"] for x in pt)
        names = sorted({k for x in pt for k in x["progs"]})
        s["prog_time"] = {k: {"runs_per_rt": sum(x["progs"].get(k, {}).get("runs", 0) for x in pt) / ptr,
                              "us_per_rt": sum(x["progs"].get(k, {}).get("ns", 0) for x in pt) / ptr / 1000}
                          for k in names} if ptr else {}
    s["round_trips"] = rts
    if "path" in runs[0]:
        s["path"] = {"spliced": sum(r["path"]["spliced"] for r in runs),
                     "accepted": sum(r["path"]["accepted"] for r in runs),
                     "held": sum(r["path"]["held"] for r in runs),
                     "resumed": sum(r["path"]["resumed"] for r in runs),
                     "bulk_to_userspace": sum(r["path"].get("bulk_to_userspace", 0) for r in runs),
                     "paired": sum(r["path"].get("paired", 0) for r in runs),
                     "ok": all(r["path"]["ok"] for r in runs),
                     "notes": [r["path"]["note"] for r in runs]}
        fb = {}
        for r in runs:
            for k, v in r["path"]["fallback"].items():
                fb[k] = fb.get(k, 0) + v
        s["path"]["fallback"] = fb
        # per client run: spliced / accepted, held, program outcomes (summed over repeats)
        per = {}
        for k in ("iperf1", "iperf8", "sockperf"):
            acc = {}
            for r in runs:
                for dk, dv in r[k]["kpath"]["delta"].items():
                    if isinstance(dv, (int, float)) and not isinstance(dv, bool):
                        acc[dk] = acc.get(dk, 0) + dv
            acc["mid"] = [r[k]["kpath"]["mid"] for r in runs]
            # bytes the client run moved one way (iperf3: received by the server; sockperf: 64 B each way per round trip)
            acc["bytes_moved"] = sum(r[k]["bytes"] if k != "sockperf" else r[k]["round_trips"] * 128 for r in runs)
            per[k] = acc
        s["path"]["per_run"] = per
    bg = [r[k]["background_pct"] for r in runs for k in ("iperf1", "iperf8", "sockperf")]
    s["background_pct_median"], s["background_pct_max"] = statistics.median(bg), max(bg)
    return s


# ---- reload cost ------------------------------------------------------------

def reload_apps(n_apps, extra_ports=0, changed=None):
    apps = []
    for i in range(n_apps):
        ports = [RELOAD_BASE + PORTS_PER_APP * i + k for k in range(PORTS_PER_APP)]
        if i == changed:
            ports += [RELOAD_NEW + k for k in range(extra_ports)]
        b = RELOAD_BACKENDS
        apps.append((f"app{i}", ports, [f"127.0.0.1:{b[i % len(b)]}", f"127.0.0.1:{b[(i + 1) % len(b)]}"]))
    return apps


def reload_probe(new_port, hammer_port, src, dst, sig_pid, timeout_ms, after_ms):
    argv = [L4TOOL, "reload", "--port", str(new_port), "--hammer", str(hammer_port), "--rename", src, dst,
            "--timeout-ms", str(timeout_ms), "--after-ms", str(after_ms), "--warmup-ms", "500",
            "--interval-us", "500"]
    if sig_pid:
        argv += ["--signal", str(sig_pid)]
    r = run(argv, timeout=timeout_ms / 1000 + after_ms / 1000 + 30, check=False)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"l4tool reload failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")


def reload_test(kind, procs, tmp, n_apps, rounds):
    """Starts kind with n_apps apps, then rounds times adds one port to one app
    by renaming a new file over the config (HAProxy: plus SIGUSR2 to its
    master). Returns a dict; raises on a failed start."""
    changed = n_apps // 3
    hammer_port = RELOAD_BASE + PORTS_PER_APP * (2 * n_apps // 3)   # an untouched app's port
    last_port = RELOAD_BASE + PORTS_PER_APP * n_apps - 1
    ext = "yaml" if kind == "pandit" else "cfg"
    cfg = os.path.join(tmp, f"reload-{kind}.{ext}")

    def render(extra):
        apps = reload_apps(n_apps, extra, changed)
        if kind == "pandit":
            return pandit_yaml(apps)
        return haproxy_cfg(apps, tmp, master_sock=True)

    t = time.monotonic()
    write(cfg, render(0))
    gen_s = time.monotonic() - t
    if kind == "pandit":
        argv = [PANDIT, "-c", cfg]
    else:
        argv = ["haproxy", "-W", "-db", "-f", cfg]
    t0 = time.monotonic()
    p = procs.start(f"reload-{kind}-{n_apps}", argv, CPU_PROXY)
    res = {"apps": n_apps, "ports": n_apps * PORTS_PER_APP, "config_bytes": os.path.getsize(cfg),
           "config_gen_s": gen_s, "rounds": []}
    try:
        # started: the first and the last app's ports answer
        if wait_port(RELOAD_BASE, 120000, p) is None or wait_port(last_port, 30000, p) is None:
            raise RuntimeError(f"{kind} with {n_apps} apps did not answer: {tail(p.out_path)}")
        res["startup_s"] = time.monotonic() - t0
        for k in range(1, rounds + 1):
            nxt = cfg + ".next"
            write(nxt, render(k))
            r = reload_probe(RELOAD_NEW + k - 1, hammer_port, nxt, cfg, p.pid if kind != "pandit" else None,
                             timeout_ms=60000 if kind != "pandit" else 10000,
                             after_ms=2000 if kind != "pandit" else 1000)
            log(f"  {kind} reload {k}: {r}")
            res["rounds"].append(r)
            if p.poll() is not None:
                raise RuntimeError(f"{kind} exited during reload {k}: {tail(p.out_path)}")
            if not r["answered"]:
                break
    finally:
        procs.stop(p, wait=10)
    if kind == "pandit":
        # pandit's own account of each reload, when its log has one
        with open(p.out_path, errors="replace") as f:
            res["pandit_log"] = [{"parse_build_ms": float(m.group(1)), "apply_ms": float(m.group(2))}
                                 for m in re.finditer(r"parse\+build ([0-9.]+) ms, apply ([0-9.]+) ms", f.read())]
    return res


def reload_summary(res):
    rs = [r for r in res["rounds"] if r["answered"]]
    out = dict(res)
    out["answered"] = len(rs) == len(res["rounds"]) and len(rs) > 0
    out["reload_ms_median"] = statistics.median(r["reload_ms"] for r in rs) if rs else None
    out["reload_ms_max"] = max(r["reload_ms"] for r in rs) if rs else None
    out["hammer_ok"] = sum(r["hammer_ok"] for r in res["rounds"])
    out["hammer_fail"] = sum(r["hammer_fail"] for r in res["rounds"])
    kinds = {}
    for r in res["rounds"]:
        for k, v in r["hammer_fail_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    out["hammer_fail_kinds"] = kinds
    return out


def haproxy_reload_sizes(n_target):
    """Sizes to try for HAProxy, largest first: the target, then what the fd
    limit allows (one fd per bound port plus two per connection), smaller."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    fit = (nofile - 2 * 2000 - 500) // PORTS_PER_APP
    sizes = [n_target]
    for n in (fit, fit // 2, 1000):
        if 0 < n < sizes[-1]:
            sizes.append(n // 100 * 100)
    return sizes, nofile


def shortcircuit_status(tmp, pandit_why):
    """Why the short-circuit row (sock_ops + sk_msg between local peers) has
    no numbers: pandit's own answer to a config with local_shortcut."""
    if pandit_why:
        return pandit_why
    cfg = os.path.join(tmp, "shortcircuit-check.yaml")
    write(cfg, pandit_yaml([("probe", [6003], [f"127.0.0.1:{ECHO_PORT}"])]).rstrip("\n")
          + "\n    local_shortcut: auto\n")
    r = subprocess.run([PANDIT, "--check", "-c", cfg], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        msg = " ".join((r.stderr or r.stdout).split())
        msg = re.sub(r"^\S+:\d+:\d+: ", "", msg).split(" (known keys")[0][:200]
        return f"not implemented in pandit yet (pandit --check: {msg})"
    return None


# ---- main -------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", required=True, help="results JSON file")
    ap.add_argument("--secs", type=int, default=3, help="seconds of each iperf3 and sockperf run")
    ap.add_argument("--repeat", type=int, default=2, help="passes over every setup (interleaved)")
    ap.add_argument("--reload-apps", type=int, default=10000)
    ap.add_argument("--reload-rounds", type=int, default=3)
    ap.add_argument("--only", default="", help=f"comma list of setups, of {','.join(SETUPS)}")
    ap.add_argument("--skip-reload", action="store_true")
    ap.add_argument("--quiet-wait", type=float, default=15,
                    help="seconds in all to wait for other processes on the machine to go quiet")
    ap.add_argument("--quick", action="store_true",
                    help="a short try: --secs 2 --repeat 1 --skip-reload --quiet-wait 5")
    a = ap.parse_args()
    if a.quick:
        a.secs, a.repeat, a.skip_reload, a.quiet_wait = 2, 1, True, 5
    t_start = time.monotonic()

    # as many fds as we may have (HAProxy binds one per port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {int(CPU_LOAD)})

    procs = Procs(a.tmp)
    results = {"pandit_busy_poll_us": PANDIT_BUSY_POLL_US,
               "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
               "pandit_rev": pandit_rev(),
               "secs": a.secs, "repeat": a.repeat, "setups": {}, "not_run": {}, "errors": [], "reload": {}}

    def on_signal(sig, frame):
        procs.stop_all()
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    setups = list(SETUPS)
    if a.only:
        unknown = set(a.only.split(",")) - set(SETUPS)
        if unknown:
            ap.error(f"--only: unknown setups {sorted(unknown)}")
        setups = [s for s in setups if s in a.only.split(",")]
    why = pandit_unavailable()
    if why:
        for s in PANDIT_SPLICE:
            if s in setups:
                results["not_run"][s] = why
                setups.remove(s)
        log(f"pandit not run: {why}")
    results["not_implemented"] = {}
    if "pandit-shortcircuit" in setups:
        sc_why = shortcircuit_status(a.tmp, why)
        if sc_why:
            results["not_implemented"]["pandit-shortcircuit"] = sc_why
            setups.remove("pandit-shortcircuit")
        else:
            try:
                CGROUP["path"], CGROUP["mounted"] = make_cgroup(a.tmp, "pandit-l4bench")
                log(f"cgroup for the short-circuit: {CGROUP['path']}")
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
                results["not_run"]["pandit-shortcircuit"] = f"no cgroup v2 directory for the short-circuit: {e}"
                setups.remove("pandit-shortcircuit")
    try:
        procs.start("iperf3-server", ["iperf3", "-s", "-p", str(IPERF_PORT)], CPU_LOAD)
        procs.start("sockperf-server", ["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p", str(SOCKPERF_PORT)],
                    CPU_LOAD)
        procs.start("iperf3-server-xcpu", ["iperf3", "-s", "-p", str(XCPU_IPERF_PORT)], CPU_PROXY)
        procs.start("sockperf-server-xcpu", ["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p",
                                             str(XCPU_SOCKPERF_PORT)], CPU_PROXY)
        if CGROUP["path"]:
            cg = CGROUP["path"]
            procs.start("iperf3-server-sc", in_cgroup(["iperf3", "-s", "-p", str(SC_IPERF_PORT)], cg), CPU_LOAD)
            procs.start("sockperf-server-sc", in_cgroup(["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p",
                                                         str(SC_SOCKPERF_PORT)], cg), CPU_LOAD)
        procs.start("echo", [L4TOOL, "echo", str(ECHO_PORT)] + [str(p) for p in RELOAD_BACKENDS], CPU_LOAD)
        if wait_port(ECHO_PORT, 5000) is None:
            raise RuntimeError("echo backend did not start")
        time.sleep(0.5)   # iperf3 and sockperf servers listening

        runs = {s: [] for s in setups}
        quiet_budget = a.quiet_wait
        for rep in range(a.repeat):
            for s in list(setups):
                log(f"run {rep + 1}/{a.repeat}: {s}")
                if quiet_budget > 0:
                    t = time.monotonic()
                    wait_quiet(min(20, quiet_budget), 15.0, log)
                    quiet_budget -= time.monotonic() - t
                try:
                    r = measure_setup(s, procs, a.tmp, a.secs, f"r{rep}")
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"{s} failed: {e}")
                    results["errors"].append({"setup": s, "repeat": rep + 1, "error": str(e)[-500:]})
                    continue
                log(f"  {s}: {r['iperf1']['gbps']:.2f} / {r['iperf8']['gbps']:.2f} Gbit/s, "
                    f"p50 {r['sockperf']['p50']} us; machine CPU {r['iperf1']['machine']['busy_s']:.2f} / "
                    f"{r['iperf8']['machine']['busy_s']:.2f} s; background CPU "
                    f"{max(r[k]['background_pct'] for k in ('iperf1', 'iperf8', 'sockperf')):.0f}%"
                    + (f"; path: {r['path']['note']}" if "path" in r else ""))
                runs[s].append(r)
        results["raw"] = runs
        for s in setups:
            if runs[s]:
                results["setups"][s] = summarize(runs[s])
            elif s not in results["not_run"] and a.repeat > 0:
                first = next((e["error"] for e in results["errors"] if e["setup"] == s), "")
                results["not_run"][s] = f"every run failed: {first}"

        if not a.skip_reload:
            if why:
                results["reload"]["pandit"] = {"not_run": why}
            else:
                log(f"reload: pandit, {a.reload_apps} apps")
                try:
                    results["reload"]["pandit"] = reload_summary(
                        reload_test("pandit", procs, a.tmp, a.reload_apps, a.reload_rounds))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"pandit reload failed: {e}")
                    results["reload"]["pandit"] = {"not_run": str(e)}
            sizes, nofile = haproxy_reload_sizes(a.reload_apps)
            attempts = []
            for n in sizes:
                log(f"reload: haproxy, {n} apps")
                try:
                    results["reload"]["haproxy"] = reload_summary(
                        reload_test("haproxy", procs, a.tmp, n, a.reload_rounds))
                    break
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"haproxy with {n} apps failed: {e}")
                    attempts.append({"apps": n, "error": str(e)[-300:]})
            else:
                results["reload"]["haproxy"] = {"not_run": "HAProxy failed at every size tried"}
            results["reload"]["haproxy"]["failed_sizes"] = attempts
            # pandit again at HAProxy's size, when that had to be smaller
            hn = results["reload"]["haproxy"].get("apps")
            if hn and hn != a.reload_apps and "not_run" not in results["reload"]["pandit"]:
                log(f"reload: pandit, {hn} apps (HAProxy's size)")
                try:
                    results["reload"][f"pandit-{hn}"] = reload_summary(
                        reload_test("pandit", procs, a.tmp, hn, a.reload_rounds))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"pandit reload at {hn} apps failed: {e}")
                    results["reload"][f"pandit-{hn}"] = {"not_run": str(e)}
            results["reload"]["nofile"] = nofile
    finally:
        procs.stop_all()
        if CGROUP["path"]:
            remove_cgroup(CGROUP["path"], CGROUP.get("mounted"), log)
    results["elapsed_s"] = round(time.monotonic() - t_start, 1)
    log(f"took {results['elapsed_s']:.0f} s")
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    log(f"results in {a.out}")


if __name__ == "__main__":
    main()
