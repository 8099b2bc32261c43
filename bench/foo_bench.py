#!/usr/bin/python3
"""foo_bench.py - the Foo benchmark: pipelined REQs through pandit (Foo parsed in userspace, Foo framed in the kernel, Foo short-circuited between local peers, tcp) vs HAProxy mode tcp vs direct; writes bench/results/foo.{md,png,json}.

Run as root: `/usr/bin/python3 bench/foo_bench.py` (options: --secs, --repeat,
--rate, --only direct,pandit-foo-kernel for a quick try, --quiet-wait). It makes a
network namespace of its own (loopback only), runs itself inside it with
--inside, then turns the JSON into foo.md, a gnuplot data file and foo.png,
and copies them to bench/results/ only when the run completed.

Inside: foo_server (the backend) and foo_client (the load) run on CPU 0, each
proxy on CPU 1 with one worker. The two -rps rows repeat the two Foo rows with
the namespace's lo RPS mask (/sys/class/net/lo/queues/rx-0/rps_cpus) set to
CPU 1 for that row only, so the receive softirq, where the kernel path's
splice program runs, moves from the sender's CPU 0 to the proxy's CPU 1; the
previous mask is written back after the row, also when it fails. The
pandit-foo-shortcut row is the kernel row with pandit's local short-circuit:
pandit gets shortcut_cgroup (a cgroup v2 directory made for the run), and that
row's foo_client and its own foo_server (port 5003, CPU 0) run inside the
cgroup while pandit stays outside it, so each connection's two far ends are
paired and the Foo messages are framed in the sender's send() and put straight
into the receiver's queue. Per setup and repetition: a closed-loop run
(connections x depth pipelined, as fast as the replies come: messages per
second at saturation) and an open-loop run at a fixed rate (latency from each
request's scheduled send time, so stalls are not hidden). Proxy CPU is
utime+stime from /proc/PID/stat around each run; whole-machine CPU is the
busy time of all CPUs from /proc/stat around each run (the kernel path's work
runs in softirq and is charged to no process). pandit's /stats kernel_path
counters are read around each run, so a Foo row that did not take the path its
name says is recorded as failed. Every number written comes from the run; a
failed measurement is recorded as failed, never filled in.
"""
import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from l4bench import PANDIT_ADMIN, kpath_delta, kpath_snapshot  # noqa: E402  (pandit's /stats kernel_path)

ROOT, BUILD, PANDIT = bl.ROOT, bl.BUILD, bl.PANDIT
FOO_SERVER = os.path.join(BUILD, "foo_server")
FOO_CLIENT = os.path.join(BUILD, "foo_client")
OUT_DIR = os.path.join(ROOT, "bench", "results")
GP = os.path.join(ROOT, "bench", "foo.gp")

CPU_PROXY = bl.CPU_PROXY   # every proxy, one worker
CPU_LOAD = bl.CPU_LOAD     # foo_client and foo_server
CLK_TCK = bl.CLK_TCK

SERVER_PORT = 5001        # foo_server on CPU 0
SERVER_XCPU_PORT = 5002   # foo_server on CPU 1 (reference without proxy)
SERVER_SC_PORT = 5003     # foo_server on CPU 0 inside the run's cgroup (the short-circuit row's backend)
FRONTS = {"pandit-foo-user": 6001, "pandit-foo-kernel": 6003, "pandit-foo-shortcut": 6006,
          "pandit-foo-user-rps": 6004, "pandit-foo-kernel-rps": 6005, "pandit-tcp": 6002, "haproxy": 7001}
SETUPS = ["direct", "direct-xcpu", "pandit-foo-user", "pandit-foo-kernel", "pandit-foo-shortcut",
          "pandit-foo-user-rps", "pandit-foo-kernel-rps", "pandit-tcp", "haproxy"]
# pandit setups: (protocol, kernel_splice; None = not set, the default auto)
PANDIT_APP = {"pandit-foo-user": ("foo", "off"), "pandit-foo-kernel": ("foo", "auto"),
              "pandit-foo-shortcut": ("foo", "auto"),
              "pandit-foo-user-rps": ("foo", "off"), "pandit-foo-kernel-rps": ("foo", "auto"),
              "pandit-tcp": ("tcp", None)}
FOO_ROWS = ("pandit-foo-user", "pandit-foo-kernel", "pandit-foo-shortcut", "pandit-foo-user-rps",
            "pandit-foo-kernel-rps")
# must be framed in the kernel
KERNEL_ROWS = ("pandit-foo-kernel", "pandit-foo-shortcut", "pandit-foo-kernel-rps")
USER_ROWS = ("pandit-foo-user", "pandit-foo-user-rps")         # must stay in the userspace parser
# rows with pandit's shortcut_cgroup set, whose foo_client and foo_server (SERVER_SC_PORT) run inside
# that cgroup (pandit outside it): the sk_msg program must have framed and short-circuited sends
SHORTCUT_ROWS = ("pandit-foo-shortcut",)
CGROUP = {"path": None, "mounted": None, "why": "not made"}   # the run's cgroup v2 directory (inside)
# rows run with Receive Packet Steering on the namespace's loopback pointed at the proxy CPU (only these)
RPS_ROWS = ("pandit-foo-user-rps", "pandit-foo-kernel-rps")
RPS_FILE = "/sys/class/net/lo/queues/rx-0/rps_cpus"   # the namespace's own lo (ip netns exec mounts its /sys)
# the aim's pairs: (placement, userspace row, kernel row)
PLACEMENTS = (("default placement (RPS off)", "pandit-foo-user", "pandit-foo-kernel"),
              (f"RPS on the proxy CPU (lo rps_cpus = CPU {CPU_PROXY})", "pandit-foo-user-rps",
               "pandit-foo-kernel-rps"))
# the short-circuit's comparison, judged like the placements: (what, userspace row, kernel-path row)
SHORTCUT_AIM = (("local short-circuit against the userspace parser, both RPS off", "pandit-foo-user",
                 "pandit-foo-shortcut"),)
LABELS = {
    "direct": "direct (no proxy)",
    "direct-xcpu": "direct, server on CPU 1 (no proxy, reference)",
    "pandit-foo-user": "pandit, protocol foo, kernel_splice off (parsed in userspace, copy relay)",
    "pandit-foo-kernel": "pandit, protocol foo, kernel_splice auto (framed in the kernel)",
    "pandit-foo-shortcut": "pandit, protocol foo, local short-circuit (client and server in shortcut_cgroup, RPS off)",
    "pandit-foo-user-rps": f"pandit, protocol foo, kernel_splice off, lo RPS to CPU {CPU_PROXY} (parsed in userspace)",
    "pandit-foo-kernel-rps": f"pandit, protocol foo, kernel_splice auto, lo RPS to CPU {CPU_PROXY} (framed in the kernel)",
    "pandit-tcp": "pandit, protocol tcp (kernel_splice default auto, no parsing)",
    "haproxy": "HAProxy (mode tcp, nbthread 1)",
}
NAK_FRACTION = 0.1   # some NAKs, so the correctness check covers msg_nak too


log = bl.make_log("foo_bench")
utc_now, loadavg, write, tail = bl.utc_now, bl.loadavg, bl.write, bl.tail
Procs, cpu_ticks, Background, other_ticks = bl.Procs, bl.cpu_ticks, bl.Background, bl.other_ticks
cmd_first_line = bl.cmd_first_line


def wait_quiet(max_s, limit_pct):
    return bl.wait_quiet(max_s, limit_pct, log)


def pandit_rev(a):
    if a.bin_dir:   # binaries built elsewhere (say, from a clean export of a commit)
        built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.path.getmtime(PANDIT)))
        return f"{a.bin_rev or 'unknown revision'} (binaries from {a.bin_dir}, pandit built {built})"
    return bl.pandit_rev(("src", "bpf", "tools"))


def use_bin_dir(d):
    """pandit, foo_client and foo_server from directory d instead of build/."""
    global PANDIT, FOO_SERVER, FOO_CLIENT
    PANDIT, FOO_SERVER, FOO_CLIENT = (os.path.join(os.path.abspath(d), n) for n in ("pandit", "foo_server", "foo_client"))


# ---- clients and proxies -----------------------------------------------------

PR_SET_TIMERSLACK = 29
LIBC = ctypes.CDLL(None, use_errno=True)


def tight_timers():
    """In the client's child before exec: timer slack 1 ns instead of the
    default 50 us, so the open-loop client wakes at its schedule (the slack is
    inherited across exec). Same client setting for every setup."""
    LIBC.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def foo_client(port, conns, depth, secs, rate=None, cg=None):
    """One foo_client run against 127.0.0.1:port on CPU_LOAD (inside cgroup
    directory cg when given); returns its JSON (plus exit status). Raises when
    it printed nothing usable."""
    argv = [FOO_CLIENT, "-a", f"127.0.0.1:{port}", "-c", str(conns),
            "-d", str(depth), "-n", "0", "--duration", str(secs), "--timeout", str(secs + 20)]
    if rate:
        argv += ["--rate", str(rate)]
    argv = ["taskset", "-c", CPU_LOAD] + (bl.in_cgroup(argv, cg) if cg else argv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 40, preexec_fn=tight_timers)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        j = json.loads(line)
    except json.JSONDecodeError:
        raise RuntimeError(f"foo_client printed no JSON (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    j["exit"] = r.returncode
    if r.returncode != 0 or j.get("errors"):
        raise RuntimeError(f"foo_client exit {r.returncode}, {j.get('errors')} errors: "
                           f"{j.get('first_error', r.stderr.strip()[-300:])}")
    return j


def wait_answer(port, timeout_s, proc=None):
    """One REQ/ACK through port works (foo_client -n 1); seconds waited or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        r = subprocess.run([FOO_CLIENT, "-a", f"127.0.0.1:{port}", "-c", "1", "-n", "1", "--timeout", "1"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            return time.monotonic() - t0
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def pandit_yaml(protocol, kernel_splice, port, shortcut_cgroup=None, target=SERVER_PORT):
    """shortcut_cgroup: None, or the cgroup whose local peers pandit may
    short-circuit (the app's local_shortcut left at its default, auto)."""
    ks = f", kernel_splice: {kernel_splice}" if kernel_splice else ""
    sc = f"shortcut_cgroup: {json.dumps(shortcut_cgroup)}\n" if shortcut_cgroup else ""
    return ("workers: 1\n"
            "user: nobody\n"
            f"admin: \"{PANDIT_ADMIN}\"\n"
            "health_check: {interval: 60s}\n"
            + sc +
            "apps:\n"
            f"  - {{name: foo, ports: [{port}], protocol: {protocol}{ks}, "
            f"targets: [\"127.0.0.1:{target}\"], health_check: false}}\n")


def haproxy_cfg(port, tmp):
    return "\n".join([
        "global", "    nbthread 1", "    maxconn 2000", f"    pidfile {tmp}/haproxy.pid", "",
        "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 60s", "    timeout server 60s", "",
        "listen foo", f"    bind 127.0.0.1:{port}", f"    server s0 127.0.0.1:{SERVER_PORT}", ""])


def start_proxy(kind, procs, tmp, tag):
    port = FRONTS[kind]
    if kind.startswith("pandit"):
        cfg = os.path.join(tmp, f"{kind}-{tag}.yaml")
        if kind in SHORTCUT_ROWS:
            write(cfg, pandit_yaml(*PANDIT_APP[kind], port, shortcut_cgroup=CGROUP["path"], target=SERVER_SC_PORT))
        else:
            write(cfg, pandit_yaml(*PANDIT_APP[kind], port))
        return procs.start(f"{kind}-{tag}", [PANDIT, "-c", cfg], CPU_PROXY)
    if kind == "haproxy":
        cfg = os.path.join(tmp, f"haproxy-{tag}.cfg")
        write(cfg, haproxy_cfg(port, tmp))
        r = subprocess.run(["haproxy", "-c", "-q", "-f", cfg], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"haproxy -c: {(r.stderr or r.stdout).strip()[-300:]}")
        return procs.start(f"haproxy-{tag}", ["haproxy", "-db", "-f", cfg], CPU_PROXY)
    raise ValueError(kind)


def pandit_counters(p, timeout_s=5.0):
    """SIGUSR1 to pandit, then its new JSON line from stdout: (msg_req, msg_ack, msg_nak)."""
    with open(p.out_path) as f:
        before = f.read().count("\n")
    os.kill(p.pid, signal.SIGUSR1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        with open(p.out_path) as f:
            lines = f.read().split("\n")
        if len(lines) - 1 > before:
            j = json.loads(lines[before])
            return j["msg_req"], j["msg_ack"], j["msg_nak"]
        time.sleep(0.05)
    raise RuntimeError("pandit printed no statistics within 5 s of SIGUSR1")


def path_check(kind, conns, delta):
    """Did the connections of one foo_client run take the path kind names?
    From pandit's kernel_path counters moved during the run: (ok, note)."""
    if "error" in delta:
        return False, f"pandit's kernel_path counters could not be read: {delta['error']}"
    framed = delta.get("connections.foo_framed_total", 0)
    spliced = delta.get("connections.spliced_total", 0)
    fb = {k[len("fallback."):]: v for k, v in delta.items() if k.startswith("fallback.") and v}
    note = (f"{framed} of the client's {conns} connections framed in the kernel, {spliced} spliced, "
            f"{delta.get('accepted', 0)} accepted" + (f", fallbacks {fb}" if fb else ""))
    if kind in SHORTCUT_ROWS:
        sc_framed = delta.get("shortcut.program.foo_framed", 0)
        note += (f"; short-circuit: {delta.get('shortcut.paired_total', 0)} connections paired, sk_msg "
                 f"foo_framed {sc_framed} sends (pass_foo {delta.get('shortcut.program.pass_foo', 0)}, "
                 f"redirected {delta.get('shortcut.program.redirected', 0)})")
        refused = {k[len("shortcut.refused."):]: v for k, v in delta.items()
                   if k.startswith("shortcut.refused.") and v}
        if refused:
            note += f", refused {refused}"
        if delta.get("shortcut_available") is False:
            note += f" (short-circuit unavailable: {delta.get('shortcut_reason', 'no reason given')})"
        return framed == conns and sc_framed > 0, note
    if kind in KERNEL_ROWS:
        return framed == conns, note
    if kind in USER_ROWS:
        return framed == 0 and spliced == 0, note
    return True, note   # pandit-tcp: auto promises no path; the counters say which it took


def rps_read():
    """The namespace's lo RPS mask (hex CPU mask, 0 = RPS off)."""
    with open(RPS_FILE) as f:
        return f.read().strip()


def rps_write(mask):
    with open(RPS_FILE, "w") as f:
        f.write(mask + "\n")


def measure(kind, procs, tmp, a, tag):
    """One setup's runs; for an RPS row the namespace's lo RPS mask points at
    CPU_PROXY from before its proxy starts until after it stopped, then the
    previous mask is written back (also when the row fails)."""
    if kind not in RPS_ROWS:
        mask = rps_read()
        res = measure_row(kind, procs, tmp, a, tag)
        res["rps_cpus"] = mask
        return res
    prev = rps_read()
    want = format(1 << int(CPU_PROXY), "x")
    rps_write(want)
    try:
        got = rps_read()
        if int(got.replace(",", ""), 16) != int(want, 16):
            raise RuntimeError(f"lo rps_cpus reads {got} after writing {want}")
        res = measure_row(kind, procs, tmp, a, tag)
        res["rps_cpus"] = got
        return res
    finally:
        rps_write(prev)


def measure_row(kind, procs, tmp, a, tag):
    """One ping-pong, one closed-loop and one open-loop run through one setup."""
    p = None
    if kind == "direct":
        port = SERVER_PORT
    elif kind == "direct-xcpu":
        port = SERVER_XCPU_PORT
    else:
        port = FRONTS[kind]
        if kind in SHORTCUT_ROWS and not CGROUP.get("ready"):
            raise RuntimeError(f"the short-circuit row cannot run: {CGROUP['why']}")
        p = start_proxy(kind, procs, tmp, tag)
        if wait_answer(port, 15, p) is None:
            why = tail(p.err_path)
            procs.stop(p)
            raise RuntimeError(f"{kind} did not answer on port {port} within 15 s: {why}")
    is_pandit, is_foo = kind in PANDIT_APP, kind in FOO_ROWS
    cg = CGROUP["path"] if kind in SHORTCUT_ROWS else None   # the row's foo_client runs inside it too
    res = {}
    try:
        counts = pandit_counters(p) if is_foo else None
        for phase, conns, depth, secs, rate in (("pingpong", 1, 1, a.pingpong_secs, None),
                                                ("closed", a.conns, a.depth, a.secs, None),
                                                ("open", a.conns, a.depth, a.secs, a.rate)):
            kp0 = kpath_snapshot() if is_pandit else None
            c0, o0 = cpu_ticks(p.pid) if p else 0, bl.outside_ticks()
            with Background() as bg, bl.MachineCPU() as mc, bl.PerCPU() as pc:
                j = foo_client(port, conns, depth, secs, rate, cg)
            c1, o1 = cpu_ticks(p.pid) if p else 0, bl.outside_ticks()
            j["background_pct"] = bg.pct
            j["proxy_cpu_s"] = (c1 - c0) / CLK_TCK if p else None
            j["machine"] = mc.as_dict()
            # processes outside the benchmark pid by pid: other user processes, kernel threads
            j["machine"].update(bl.outside_delta(o0, o1))
            j["cpu_busy_pct"], j["cpu_softirq_pct"] = pc.busy_pct, pc.softirq_pct
            if is_foo:
                now = pandit_counters(p)
                j["pandit_delta"] = {"msg_req": now[0] - counts[0], "msg_ack": now[1] - counts[1],
                                     "msg_nak": now[2] - counts[2]}
                counts = now
            if is_pandit:
                # every connection of the run has had its answers, so it took its path before
                # foo_client exited; the wait covers /stats lagging behind a close
                t0 = time.monotonic()
                while True:
                    d = kpath_delta(kp0, kpath_snapshot())
                    ok, note = path_check(kind, j["conns"], d)
                    if ok or time.monotonic() - t0 > 2:
                        break
                    time.sleep(0.1)
                j["kpath"] = {k: v for k, v in d.items() if v}
                j["path_ok"], j["path_note"] = ok, note
                if not ok:
                    where = ("the local short-circuit" if kind in SHORTCUT_ROWS else
                             "the kernel path" if kind in KERNEL_ROWS else "the userspace parser")
                    raise RuntimeError(f"{phase} run did not run on {where}: {note}")
            res[phase] = j
        if p and p.poll() is not None:
            raise RuntimeError(f"{kind} exited during the run: {tail(p.err_path)}")
    finally:
        if p:
            procs.stop(p)
    return res


def inside(a):
    os.sched_setaffinity(0, {int(CPU_LOAD)})
    procs = Procs(a.tmp, log)
    res = {"started": utc_now(), "pandit_rev": pandit_rev(a), "secs": a.secs, "repeat": a.repeat,
           "conns": a.conns, "depth": a.depth, "pingpong_secs": a.pingpong_secs, "rate": a.rate, "nak_fraction": NAK_FRACTION,
           "quiet": {"pct": a.quiet_pct, "start_s": a.start_wait, "each_s": a.quiet_wait_each, "total_s": a.quiet_wait},
           "loadavg_start": loadavg(), "raw": {}, "errors": [], "quiet_waits": []}

    def on_signal(sig, frame):
        procs.stop_all()
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    setups = [s for s in SETUPS if not a.only or s in a.only.split(",")]
    if a.start_wait > 0:
        pct, waited = wait_quiet(a.start_wait, a.quiet_pct)
        res["start_wait"] = {"waited_s": round(waited, 1), "background_pct": round(pct, 1)}
        log(f"start: waited {waited:.0f} s for a quiet machine (other load {pct:.0f}% of a CPU)")
    others0, t_others0 = other_ticks(), time.monotonic()
    if any(s in SHORTCUT_ROWS for s in setups):
        try:
            CGROUP["path"], CGROUP["mounted"] = bl.make_cgroup(a.tmp, "pandit-foo-bench")
            log(f"cgroup for the short-circuit: {CGROUP['path']}")
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
            CGROUP["why"] = f"no cgroup v2 directory could be made: {e}"   # the row's runs fail with this
            log(f"short-circuit row: {CGROUP['why']}")
        res["shortcut_cgroup"] = {"path": CGROUP["path"], "mounted": CGROUP["mounted"],
                                  "error": None if CGROUP["path"] else CGROUP["why"]}
    try:
        procs.start("foo-server", [FOO_SERVER, "-l", f"127.0.0.1:{SERVER_PORT}", "--nak", str(NAK_FRACTION), "-q"],
                    CPU_LOAD)
        procs.start("foo-server-xcpu", [FOO_SERVER, "-l", f"127.0.0.1:{SERVER_XCPU_PORT}", "--nak",
                                        str(NAK_FRACTION), "-q"], CPU_PROXY)
        for port in (SERVER_PORT, SERVER_XCPU_PORT):
            if wait_answer(port, 5) is None:
                raise RuntimeError(f"foo_server on port {port} did not answer")
        if CGROUP["path"]:
            # the short-circuit row's backend, inside the cgroup (its peer, the row's foo_client, too);
            # when it does not come up only that row fails
            sc = procs.start("foo-server-sc", bl.in_cgroup([FOO_SERVER, "-l", f"127.0.0.1:{SERVER_SC_PORT}", "--nak",
                                                         str(NAK_FRACTION), "-q"], CGROUP["path"]), CPU_LOAD)
            if wait_answer(SERVER_SC_PORT, 5, sc) is None:
                CGROUP["why"] = (f"foo_server in the cgroup did not answer on port {SERVER_SC_PORT}: "
                                 f"{tail(sc.err_path)}")
                log(f"short-circuit row: {CGROUP['why']}")
                procs.stop(sc)
            else:
                CGROUP["ready"] = True
        runs = {s: [] for s in setups}
        budget = a.quiet_wait
        for rep in range(a.repeat):
            for s in setups:
                if budget > 0:
                    pct, waited = wait_quiet(min(a.quiet_wait_each, budget), a.quiet_pct)
                    budget -= waited
                    res["quiet_waits"].append({"setup": s, "repeat": rep + 1, "waited_s": round(waited, 1),
                                               "background_pct": round(pct, 1)})
                log(f"run {rep + 1}/{a.repeat}: {s}")
                try:
                    r = measure(s, procs, a.tmp, a, f"r{rep}")
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                    log(f"  {s} failed: {e}")
                    res["errors"].append({"setup": s, "repeat": rep + 1, "error": str(e)[-500:]})
                    continue
                cl, op = r["closed"], r["open"]
                log(f"  {s}: {cl['msgs_per_s']:.0f} msg/s closed loop, whole-machine CPU "
                    f"{machine_per_m(cl):.3f} s per million msgs; at {a.rate}/s p50 {op['p50_us']} us "
                    f"p99 {op['p99_us']} us; other load {max(cl['background_pct'], op['background_pct']):.0f}%"
                    + (f"; {cl['path_note']}" if "path_note" in cl else ""))
                runs[s].append(r)
        res["raw"] = runs
    finally:
        procs.stop_all()
        if CGROUP["path"]:
            bl.remove_cgroup(CGROUP["path"], CGROUP["mounted"], log)
    t_others = time.monotonic() - t_others0
    res["other_top"] = bl.other_top(others0, other_ticks(), t_others)
    res["loadavg_end"] = loadavg()
    res["finished"] = utc_now()
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)


# ---- report --------------------------------------------------------------------

def machine_per_m(x, key="busy_s"):
    """Whole-machine CPU seconds per million messages of one foo_client run: busy_s, all CPUs;
    net_s, less other processes (kernel threads kept when the run recorded them: they may be doing
    the kernel path's own work)."""
    m = x["machine"]
    v = m[key]
    if key == "net_s" and "user_s" in m:
        v = max(0.0, m["busy_s"] - m["user_s"])
    return v / ((x["acks"] + x["naks"]) / 1e6)


def summarize(runs):
    s = {"n": len(runs)}
    cl = [r["closed"] for r in runs]
    op = [r["open"] for r in runs]
    s["mps"] = statistics.median(x["msgs_per_s"] for x in cl)
    s["mps_all"] = [round(x["msgs_per_s"]) for x in cl]
    for k in ("p50_us", "p99_us", "p999_us"):
        s[f"closed_{k}"] = statistics.median(x[k] for x in cl)
    for k in ("p50_us", "p99_us", "p999_us", "max_us"):
        s[f"open_{k}"] = statistics.median(x[k] for x in op)
    s["open_p99_all"] = [x["p99_us"] for x in op]
    s["open_mps"] = statistics.median(x["msgs_per_s"] for x in op)
    pp = [r["pingpong"] for r in runs]
    for k in ("p50_us", "p99_us", "p999_us"):
        s[f"pp_{k}"] = statistics.median(x[k] for x in pp)
    s["pp_rts"] = statistics.median(x["msgs_per_s"] for x in pp)
    if cl[0]["proxy_cpu_s"] is not None:
        # CPU per million messages from each run, then the median
        s["cpu_per_m_closed"] = statistics.median(x["proxy_cpu_s"] / ((x["acks"] + x["naks"]) / 1e6) for x in cl)
        s["cpu_per_m_open"] = statistics.median(x["proxy_cpu_s"] / ((x["acks"] + x["naks"]) / 1e6) for x in op)
        s["cpu_busy_closed"] = statistics.median(x["proxy_cpu_s"] / x["elapsed_s"] * 100 for x in cl)
        s["cpu_per_m_closed_all"] = [round(x["proxy_cpu_s"] / ((x["acks"] + x["naks"]) / 1e6), 3) for x in cl]
    if all("machine" in x for x in cl + op):
        s["machine_per_m_closed"] = statistics.median(machine_per_m(x) for x in cl)
        s["machine_net_per_m_closed"] = statistics.median(machine_per_m(x, "net_s") for x in cl)
        s["machine_per_m_open"] = statistics.median(machine_per_m(x) for x in op)
        s["machine_per_m_closed_all"] = [round(machine_per_m(x), 3) for x in cl]
        s["machine_net_per_m_closed_all"] = [round(machine_per_m(x, "net_s"), 3) for x in cl]
        # busy share of the whole machine (all CPUs) in the saturation runs, and the steal seen
        s["machine_busy_pct_closed"] = statistics.median(
            x["machine"]["busy_s"] / x["machine"]["seconds"] / (os.cpu_count() or 1) * 100 for x in cl)
        s["steal_s_closed"] = sum(x["machine"]["steal_s"] for x in cl)
        if all("kthread_s" in x["machine"] for x in cl):
            # kernel threads' CPU during the saturation runs, % of one CPU (median)
            s["kthread_pct_closed"] = statistics.median(x["machine"]["kthread_s"] / x["machine"]["seconds"] * 100
                                                        for x in cl)
    if all("cpu_busy_pct" in x for x in cl):
        # each CPU's busy and softirq share in the saturation runs, medians (CPU_LOAD, CPU_PROXY)
        for key in ("cpu_busy_pct", "cpu_softirq_pct"):
            s[key] = {c: statistics.median(x[key].get(c, 0.0) for x in cl) for c in (CPU_LOAD, CPU_PROXY)}
    if "kpath" in cl[0]:
        s["spliced_closed"] = sum(x["kpath"].get("connections.spliced_total", 0) for x in cl)
    if "path_note" in cl[0]:
        s["path_notes"] = [f"{ph} run {i + 1}: {r[ph]['path_note']}" for i, r in enumerate(runs)
                           for ph in ("pingpong", "closed", "open")]
    bg = [x["background_pct"] for x in cl + op + pp]
    s["bg_median"], s["bg_max"] = statistics.median(bg), max(bg)
    if all("rps_cpus" in r for r in runs):
        s["rps_cpus"] = sorted({r["rps_cpus"] for r in runs})   # the lo RPS mask each repetition ran with
    return s


def fmt(v, nd=0):
    return "-" if v is None else f"{v:,.{nd}f}"


def report(j, out_md, out_dat):
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    S = {s: summarize(j["raw"][s]) for s in SETUPS if j["raw"].get(s)}
    L = []
    w = L.append
    w("# Foo benchmark: pandit (Foo in userspace, Foo in the kernel) vs HAProxy (mode tcp) vs direct")
    w("")
    w(f"Generated by bench/foo_bench.py from {j['started']} to {j['finished']}. Every number here comes from "
      "that run; the raw data (every run, every field foo_client printed) is in [foo.json](foo.json), the "
      "chart in [foo.png](foo.png).")
    w("")
    w("## Machine and versions")
    w("")
    w(f"- CPU: {model}, {os.cpu_count()} cores; kernel {platform.release()}")
    w(f"- {cmd_first_line(['haproxy', '-v'])}")
    w(f"- pandit git rev {j['pandit_rev']}; foo_client and foo_server (tools/) from the same tree")
    w(f"- Load average at the start {j['loadavg_start']}, at the end {j['loadavg_end']}")
    w("")
    w("## Method")
    w("")
    w("- Everything runs in a network namespace made for the run, over loopback (127.0.0.1).")
    w(f"- Backend: `foo_server --nak {j['nak_fraction']}` (answers each REQ at once, a {j['nak_fraction']:.0%} "
      "share with NAK), pinned to CPU 0. Load: `foo_client` (one thread), pinned to CPU 0 as well; it checks "
      "every reply (type, Seq, order) and a run with any error counts as failed. Each proxy is pinned to CPU 1 "
      "with one worker, one at a time: pandit `workers: 1` with the app's `protocol: foo` and "
      "`kernel_splice: off` (the userspace parser: every line parsed and counted by the daemon, copy relay), "
      "the same app with `kernel_splice: auto`, the default (the connection is spliced in the kernel and the "
      "splice program frames, checks and counts every Foo message; the daemon does not see the bytes), "
      "`protocol: tcp` (no parsing, `kernel_splice` left at its default, auto), and HAProxy `mode tcp`, "
      "`nbthread 1`, defaults otherwise (no splice). No active health checks anywhere.")
    w(f"- Local short-circuit, in the row \"{LABELS['pandit-foo-shortcut']}\" only: the kernel row's app "
      "(`protocol: foo`, `kernel_splice: auto`, `local_shortcut` left at its default, auto; one worker, pandit on "
      f"CPU {CPU_PROXY}, RPS off, a front port of its own) with `shortcut_cgroup` in pandit's config set to a "
      "cgroup v2 directory made for the run (cgroup2 mounted under the run's scratch directory, since "
      "`ip netns exec` hides the system's mount; removed, and unmounted, after the run). That row's foo_client "
      f"and a foo_server of its own (port {SERVER_SC_PORT}, the same `--nak` share, pinned to CPU {CPU_LOAD} like "
      "the other backend; the client pinned like the others) are moved into that cgroup before they exec, "
      "while pandit runs outside it. pandit pairs each connection's two far ends, the client's socket and the "
      "backend's (both local, both in the cgroup): from then on an sk_msg program frames and counts each Foo "
      "message in the sender's send() and puts it straight into the receiver's receive queue, skipping TCP and "
      "pandit's own sockets; the connection is still spliced and framed in the kernel for whatever goes over "
      "TCP (before the pairing, for instance). The framing of the paired sends thus runs in the sending "
      "process's context (foo_client's or foo_server's, on their CPU), not in softirq and not in pandit.")
    w(f"- Receive Packet Steering (RPS), in the two rows named \"lo RPS to CPU {CPU_PROXY}\" only: the same two Foo "
      f"apps (kernel_splice off, and auto), but with the namespace's loopback RPS mask "
      f"(`/sys/class/net/lo/queues/rx-0/rps_cpus`) set to CPU {CPU_PROXY}, the proxy's, written before the row's "
      "proxy starts and set back to the value it had before (in the new namespace 0, RPS off) after the row, "
      "also when the row fails. Loopback hands every segment it sends straight to the receive path on the sending "
      "CPU; without RPS the receive softirq (TCP receive processing and, on the kernel path, the splice program "
      "that frames, checks, counts and redirects the Foo messages) therefore runs on the CPU of whichever task "
      f"sent, for foo_client's and foo_server's segments CPU {CPU_LOAD}. With the mask, every segment received on "
      f"the namespace's lo is queued to CPU {CPU_PROXY}'s backlog and processed in softirq there, so the kernel "
      f"path's work runs on the proxy's CPU as the userspace proxy's work does, instead of on CPU {CPU_LOAD} next "
      "to the load. It moves the receive processing of every segment (both hops, both directions) in the "
      "userspace row alike, which is why both Foo rows are measured with it and the aim is judged per placement. "
      "Every other row runs with RPS off; the mask each row ran with is read from that file and listed below.")
    w("- Which path pandit's connections took comes from its own `/stats` (`kernel_path`), read before and "
      "after every client run: in the kernel row `connections.foo_framed_total` must have grown by exactly the "
      "number of connections foo_client made, in the userspace row `foo_framed_total` and "
      "`spliced_total` must not have moved; otherwise the run is recorded as failed (did not run on the path "
      "its row names) and not counted. In the short-circuit row, in addition, the short-circuit program's "
      "`shortcut.program.foo_framed` (sends framed and short-circuited) must have grown in every run, ping-pong "
      "included; its pairings (`shortcut.paired_total`), `pass_foo` and `redirected` are listed with it. "
      "The counts and any `fallback.*` are listed below.")
    w("- A message is one REQ line (`REQ <seq> hello`) and its reply (`ACK <seq> ok` or `NAK <seq> no`).")
    w(f"- Saturation (closed loop): `foo_client -c {j['conns']} -d {j['depth']} -n 0 --duration {j['secs']}`: "
      f"{j['conns']} connections, each with {j['depth']} REQs in flight, for {j['secs']} s; messages per second "
      "= replies received per second of the run. Latency under saturation is mostly queueing (depth / rate) "
      "and is listed below the table only for completeness.")
    w(f"- Latency (open loop): `foo_client -c {j['conns']} -d {j['depth']} -n 0 --duration {j['secs']} "
      f"--rate {j['rate']}`: {j['rate']:,} REQs per second in all, spread evenly over the connections; each "
      "latency is measured from the request's scheduled send time, so a stall in the path shows in the "
      "percentiles instead of silently delaying the next sends (no coordinated omission). The client sends "
      "from a timerfd (its timer slack set to 1 ns), so between sends the CPUs may go idle and waking up is "
      "part of every latency here, for every setup alike; the direct row's p50 here against its ping-pong "
      "p50 shows what that costs on this machine.")
    w(f"- Round trip (ping-pong): `foo_client -c 1 -d 1 -n 0 --duration {j['pingpong_secs']}`: one connection, "
      "the next REQ as soon as the reply is in (one message in flight, the CPUs hardly idle). Added "
      "latency = setup p50 minus direct p50.")
    w("- Proxy CPU: utime+stime of the proxy process (all threads) from /proc/PID/stat before and after each "
      "client run, divided by the messages of that run; busy % = CPU seconds per second of the closed-loop run "
      "(100% = the proxy's CPU is saturated). For the kernel row most of the work is not in this column: the "
      "splice program runs in softirq, which is charged to no process (on loopback it runs in the context of "
      "whichever task sends, here mostly foo_client and foo_server on CPU 0).")
    w("- Whole-machine CPU: busy time of all CPUs from the first line of /proc/stat (user, nice, system, irq, "
      "softirq; not idle, iowait or steal) before and after each saturation run, divided by the messages of "
      "that run. It holds everything: client, server, proxy, the kernel's TCP work and the splice program, "
      "so it is the fair cost per message between the two Foo rows; it also holds whatever other jobs on the "
      "shared machine did meanwhile, so the second figure subtracts the CPU of the user processes outside the "
      "benchmark, pid by pid from their /proc/PID/stat (a process that started and ended within a run is not "
      "seen, so its CPU stays in; their softirq work is not subtracted). Kernel threads (kworker, ksoftirqd) "
      "are kept in it: on the kernel path some of the path's own work (a socket's queued redirects) runs in "
      "them, and their share is listed per row below.")
    w("- Per CPU: each CPU's busy and softirq share from its cpuN line of /proc/stat around each run, to see "
      "on which CPU the work landed (the kernel path's is charged to no process).")
    w(f"- Each setup was measured {j['repeat']} times, interleaved (setup order repeated); the tables show medians, "
      "with every run listed below. A fresh proxy is started for each repetition.")
    w("- The row \"direct, server on CPU 1\" has no proxy: foo_server runs on the proxies' CPU, the client on "
      "CPU 0. It shows what crossing CPUs alone does. In the \"direct\" row client and server share CPU 0, and "
      "in the proxied rows CPU 0 also carries both, so CPU 0 may be the limit rather than the proxy; "
      "compare the busy % column.")
    q = j["quiet"]
    w(f"- The machine is shared with other jobs. Before each setup the run waited for other processes to use less "
      f"than {q['pct']:g}% of a CPU over a second (at most {q['each_s']:g} s per setup, {q['total_s']:g} s in all, "
      f"and up to {q['start_s']:g} s before the first); the last column shows what they used during the "
      "measurements (busy time from /proc/stat, steal included, minus this benchmark's processes). Kernel "
      "threads and softirq count as other load there, so on the rows spliced in the kernel that column also "
      "holds the path's own work done outside the benchmark's processes.")
    w("")
    w("## Results")
    w("")
    w("| setup | msgs/s at saturation | proxy CPU busy at saturation | proxy CPU s per million msgs (saturation / fixed rate) "
      "| whole-machine CPU s per million msgs at saturation (all / less other processes) "
      f"| p50 / p99 / p99.9 at {j['rate']:,}/s (us) | max at fixed rate (us) | ping-pong p50 / p99 (us) "
      "| added ping-pong p50 vs direct (us) | other load, % of a CPU (median / max) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    dat = ["# setup mps open_p50 open_p99 open_p999 cpu_per_m_closed cpu_per_m_open pp_p50 pp_p99 machine_per_m_closed"]
    d = S.get("direct")
    for s in SETUPS:
        if s not in S:
            continue
        x = S[s]
        cpu = "-" if x.get("cpu_per_m_closed") is None else \
            f"{fmt(x['cpu_per_m_closed'], 3)} / {fmt(x['cpu_per_m_open'], 3)}"
        busy = "-" if x.get("cpu_busy_closed") is None else f"{fmt(x['cpu_busy_closed'])}%"
        mach = "-" if x.get("machine_per_m_closed") is None else \
            f"{fmt(x['machine_per_m_closed'], 3)} / {fmt(x['machine_net_per_m_closed'], 3)}"
        w(f"| {LABELS[s]} | {fmt(x['mps'])} | {busy} | {cpu} | {mach} | {fmt(x['open_p50_us'], 1)} / "
          f"{fmt(x['open_p99_us'], 1)} / {fmt(x['open_p999_us'], 1)} | {fmt(x['open_max_us'], 1)} | "
          f"{fmt(x['pp_p50_us'], 1)} / {fmt(x['pp_p99_us'], 1)} | "
          f"{fmt(x['pp_p50_us'] - d['pp_p50_us'], 1) if d and s != 'direct' else '-'} | "
          f"{fmt(x['bg_median'])} / {fmt(x['bg_max'])} |")
        cm = x.get("cpu_per_m_closed")
        co = x.get("cpu_per_m_open")
        mm = x.get("machine_per_m_closed")
        dat.append(f"\"{s}\" {x['mps']:.1f} {x['open_p50_us']:.2f} {x['open_p99_us']:.2f} {x['open_p999_us']:.2f} "
                   f"{'NaN' if cm is None else f'{cm:.4f}'} {'NaN' if co is None else f'{co:.4f}'} "
                   f"{x['pp_p50_us']:.2f} {x['pp_p99_us']:.2f} {'NaN' if mm is None else f'{mm:.4f}'}")
    w("")
    for s in SETUPS:
        if s in S:
            x = S[s]
            line = (f"- {LABELS[s]}: {x['n']} runs; msgs/s {x['mps_all']}; p99 at the fixed rate "
                    f"{x['open_p99_all']} us")
            if x.get("cpu_per_m_closed_all"):
                line += f"; proxy CPU s per million msgs at saturation {x['cpu_per_m_closed_all']}"
            if x.get("machine_per_m_closed_all"):
                line += (f"; whole-machine CPU s per million msgs at saturation {x['machine_per_m_closed_all']} "
                         f"(less other processes {x['machine_net_per_m_closed_all']}; machine busy "
                         f"{fmt(x['machine_busy_pct_closed'])}% of all CPUs, steal {x['steal_s_closed']:.2f} s)")
            if x.get("kthread_pct_closed") is not None:
                line += f"; kernel threads at saturation {fmt(x['kthread_pct_closed'])}% of a CPU"
            if x.get("cpu_busy_pct"):
                line += (f"; busy at saturation CPU {CPU_LOAD} (load) {fmt(x['cpu_busy_pct'][CPU_LOAD])}% "
                         f"(softirq {fmt(x['cpu_softirq_pct'][CPU_LOAD])}%), CPU {CPU_PROXY} (proxy) "
                         f"{fmt(x['cpu_busy_pct'][CPU_PROXY])}% (softirq {fmt(x['cpu_softirq_pct'][CPU_PROXY])}%)")
            if x.get("rps_cpus"):
                line += f"; namespace lo rps_cpus during the row {'/'.join(x['rps_cpus'])}"
            line += (f"; latency at saturation (queueing, depth {j['depth']}) p50 {fmt(x['closed_p50_us'])} us, "
                     f"p99 {fmt(x['closed_p99_us'])} us; ping-pong {fmt(x['pp_rts'])} round trips/s")
            w(line)
    for s in SETUPS:
        if s not in S and (not j.get("only") or s in j["only"]):
            w(f"- {LABELS[s]}: no successful run")
    for e in j["errors"]:
        w(f"- {LABELS.get(e['setup'], e['setup'])}, repetition {e['repeat']} failed and is not counted: "
          f"{' '.join(e['error'].split())}")
    w("")
    w("## Correctness")
    w("")
    for row in FOO_ROWS:
        pf = j["raw"].get(row, [])
        if not pf:
            w(f"- {LABELS[row]}: no run completed, so pandit's counters were not checked.")
            continue
        ok, checks, parts = True, 0, []
        for i, r in enumerate(pf):
            for ph in ("pingpong", "closed", "open"):
                c, d = r[ph], r[ph]["pandit_delta"]
                good = d["msg_req"] == c["sent"] and d["msg_ack"] == c["acks"] and d["msg_nak"] == c["naks"]
                ok &= good
                checks += 1
                parts.append(f"{ph} run {i + 1}: sent {c['sent']:,} / msg_req {d['msg_req']:,}, acks {c['acks']:,} / "
                             f"msg_ack {d['msg_ack']:,}, naks {c['naks']:,} / msg_nak {d['msg_nak']:,}"
                             f"{'' if good else ' MISMATCH'}")
        w(f"- {LABELS[row]}: pandit's SIGUSR1 counters (read before and after each foo_client run: ping-pong, "
          "closed and open loop; on the kernel path they include the splice program's counts"
          + (", here also the short-circuit's sk_msg program's" if row in SHORTCUT_ROWS else "") + ") against what "
          f"foo_client sent and received: **{'all ' + str(checks) + ' equal' if ok else 'MISMATCH'}**.")
        for part in parts:
            w(f"  - {part}")
    w("")
    w("foo_client itself found no wrong, missing or out-of-order reply in any run counted above (a run with "
      "an error is listed as failed).")
    w("")
    w("## Which path pandit's connections took")
    w("")
    w("From pandit's `/stats` `kernel_path`, the change over each foo_client run (a row whose connections did not "
      "all take the path it names is failed and listed under the results, not counted):")
    w("")
    for row in PANDIT_APP:
        for note in S.get(row, {}).get("path_notes", []):
            w(f"- {LABELS[row]}, {note}")
    w("")
    w("## The aim")
    w("")
    w("Issue 4's aim: Foo on the kernel path at least as many messages per second as the userspace handler, at "
      "less CPU (whole machine) per message.")
    w("")
    w("Judged twice, from the same run, with each placement of the receive processing (see the method): "
      "the kernel row against the userspace row measured with the same placement.")
    w("")
    # the short-circuit row only when this run had it (a results JSON from before it has no such row)
    comparisons = PLACEMENTS + tuple(c for c in SHORTCUT_AIM if c[2] in j["raw"])
    if len(comparisons) > len(PLACEMENTS):
        w("The local short-circuit row is held to the same aim, Foo on a kernel path: at least the userspace "
          "handler's messages/s at less CPU (whole-machine CPU per message); judged against the userspace row with "
          "the same placement (RPS off), from the same run.")
        w("")
    verdicts = []
    for place, urow, krow in comparisons:
        # what the kernel-path row is called in the lines below
        kn, kpn = ("short-circuit", "the short-circuit") if krow in SHORTCUT_ROWS else ("kernel", "the kernel path")
        w(f"### {place[0].upper() + place[1:]}")
        w("")
        ku, kk = S.get(urow), S.get(krow)
        if not ku or not kk:
            verdicts.append((place, None))
            w("Not decided in this run: " + " and ".join(LABELS[r] for r in (urow, krow) if r not in S)
              + " had no successful run.")
            w("")
        else:
            faster = kk["mps"] >= ku["mps"]
            cheaper = kk["machine_per_m_closed"] < ku["machine_per_m_closed"]
            cheaper_net = kk["machine_net_per_m_closed"] < ku["machine_net_per_m_closed"]
            w(f"- Messages per second at saturation (median of {kk['n']} / {ku['n']} runs): {kn} "
              f"{fmt(kk['mps'])}, userspace {fmt(ku['mps'])} ({(kk['mps'] / ku['mps'] - 1) * 100:+.1f}%): "
              f"**{'at least as many' if faster else 'fewer'}**. Every run: {kn} {kk['mps_all']}, userspace "
              f"{ku['mps_all']}.")
            w(f"- Whole-machine CPU seconds per million messages at saturation: {kn} "
              f"{fmt(kk['machine_per_m_closed'], 3)}, userspace {fmt(ku['machine_per_m_closed'], 3)} "
              f"({(kk['machine_per_m_closed'] / ku['machine_per_m_closed'] - 1) * 100:+.1f}%): "
              f"**{'lower' if cheaper else 'not lower'}**; less other processes' CPU: {kn} "
              f"{fmt(kk['machine_net_per_m_closed'], 3)}, userspace {fmt(ku['machine_net_per_m_closed'], 3)} "
              f"({'lower' if cheaper_net else 'not lower'}).")
            w(f"- pandit's own process CPU per million messages at saturation: {kn} "
              f"{fmt(kk['cpu_per_m_closed'], 3)}, userspace {fmt(ku['cpu_per_m_closed'], 3)} (the {kn} row's "
              "framing is not in its process, see the method).")
            w(f"- Ping-pong round trip p50: {kn} {fmt(kk['pp_p50_us'], 1)} us, userspace {fmt(ku['pp_p50_us'], 1)} us; "
              f"at {j['rate']:,}/s p99: {kn} {fmt(kk['open_p99_us'], 1)} us, userspace {fmt(ku['open_p99_us'], 1)} us.")
            w("")
            verdicts.append((place, faster and cheaper))
            w(f"**In this run ({place}) the aim was {'met' if faster and cheaper else 'not met'}**"
              + ("." if faster and cheaper else
                 ": " + "; ".join(t for t, bad in ((f"fewer messages per second on {kpn}", not faster),
                                                   (f"{kpn}'s whole-machine CPU per message was not lower",
                                                    not cheaper)) if bad) + "."))
            w("")
            full = [r for r in (urow, krow) if S[r]["machine_busy_pct_closed"] >= 95]
            if full:
                pcts = ", ".join(f"{S[r]['machine_busy_pct_closed']:.0f}%" for r in full)
                w("In the saturation runs of " + " and ".join(LABELS[r] for r in full) + " the whole machine was busy "
                  f"nearly all the time ({pcts} of both "
                  "CPUs): the whole-machine figure then is about CPUs x seconds / messages, the inverse of the "
                  "messages/s column, whatever the path costs; the figure less other processes is the better "
                  "estimate of the path's own cost there.")
                w("")
            if kk.get("cpu_busy_pct") and ku.get("cpu_busy_pct"):
                w(f"Where the CPU went in the saturation runs (CPU {CPU_LOAD}, with foo_client and foo_server / CPU "
                  f"{CPU_PROXY}, the proxy's): {kn} row {kk['cpu_busy_pct'][CPU_LOAD]:.0f}% / "
                  f"{kk['cpu_busy_pct'][CPU_PROXY]:.0f}% busy (softirq {kk['cpu_softirq_pct'][CPU_LOAD]:.0f}% / "
                  f"{kk['cpu_softirq_pct'][CPU_PROXY]:.0f}%), userspace row {ku['cpu_busy_pct'][CPU_LOAD]:.0f}% / "
                  f"{ku['cpu_busy_pct'][CPU_PROXY]:.0f}% (softirq {ku['cpu_softirq_pct'][CPU_LOAD]:.0f}% / "
                  f"{ku['cpu_softirq_pct'][CPU_PROXY]:.0f}%); see Reading it.")
                w("")
            busy_bg = max(kk["bg_max"], ku["bg_max"])
            if busy_bg >= j["quiet"]["pct"]:
                kt = ""
                if kk.get("kthread_pct_closed") is not None:
                    kt = (f" Kernel threads (counted in it) used {kk['kthread_pct_closed']:.0f}% / "
                          f"{ku['kthread_pct_closed']:.0f}% of a CPU in the saturation runs ({kn} / userspace row): "
                          + ("on the kernel path that is likely the path's own work (redirects queued to a "
                             "worker), not another job's (inferred, not traced)." if krow not in SHORTCUT_ROWS else
                             "the short-circuit's sk_msg program runs in the senders' send(), not in them; whose "
                             "work it was is not traced."))
                w(f"Processes outside the benchmark used up to {busy_bg:.0f}% of a CPU during these two rows' runs "
                  f"(median {kk['bg_median']:.0f}% / {ku['bg_median']:.0f}%, {kn} / userspace).{kt} Every run is "
                  "listed above.")
                w("")
    if verdicts:
        w("Summary: " + "; ".join(f"{place}: " + ("not decided (a row had no successful run)" if v is None
                                                  else f"**{'met' if v else 'not met'}**")
                                  for place, v in verdicts) + ".")
        w("")
        ud, kr = S.get("pandit-foo-user"), S.get("pandit-foo-kernel-rps")
        if ud and kr and kr.get("machine_per_m_closed") and ud.get("machine_per_m_closed"):
            w(f"Across placements (information, not the aim's comparison): the kernel row with RPS moved "
              f"{fmt(kr['mps'])} msgs/s at {fmt(kr['machine_per_m_closed'], 3)} whole-machine CPU s per million, "
              f"the userspace row with the default placement {fmt(ud['mps'])} at "
              f"{fmt(ud['machine_per_m_closed'], 3)} ({(kr['mps'] / ud['mps'] - 1) * 100:+.1f}% msgs/s, "
              f"{(kr['machine_per_m_closed'] / ud['machine_per_m_closed'] - 1) * 100:+.1f}% CPU per message).")
            w("")
    w("## Other load on the machine")
    w("")
    w(f"- Load average {j['loadavg_start']} at the start, {j['loadavg_end']} at the end.")
    waits = j.get("quiet_waits", [])
    if waits:
        long_waits = [q for q in waits if q["waited_s"] > 1.5]
        w(f"- Waits for a quiet machine before a setup: {len(waits)}, of which {len(long_waits)} longer than a "
          f"second (total {sum(q['waited_s'] for q in waits):.0f} s); the other load seen just before each "
          f"setup: median {statistics.median(q['background_pct'] for q in waits):.0f}%, max "
          f"{max(q['background_pct'] for q in waits):.0f}% of a CPU.")
    if j.get("start_wait"):
        w(f"- At the start the run waited {j['start_wait']['waited_s']:.0f} s for a quiet machine (other load then "
          f"{j['start_wait']['background_pct']:.0f}% of a CPU).")
    top = [(c, p) for c, p in j.get("other_top", []) if p >= 0.5]
    if top:
        w("- Processes visible from here (outside the benchmark, alive through the whole run) by CPU used, % of "
          "one CPU averaged over the run: " + ", ".join(f"{c} {p}%" for c, p in top) + ".")
    else:
        w("- No process visible from the benchmark's PID namespace used 0.5% of a CPU or more over the run; the "
          "other load measured above comes from processes not visible here (other jobs on the same machine) "
          "or from short-lived ones.")
    w("")
    w("## Reading it")
    w("")
    # the kernel row's proxy process does little of its work (softirq), so its process CPU says nothing of its ceiling
    # nor does a spliced pandit-tcp's (kernel_splice auto: the counters say whether it was spliced)
    prox = [s for s in ("pandit-foo-user", "pandit-foo-user-rps", "pandit-tcp", "haproxy")
            if s in S and S[s].get("cpu_per_m_closed") and not S[s].get("spliced_closed")]
    if prox:
        busiest = max(S[s]["cpu_busy_closed"] for s in prox)
        if busiest < 95:
            w(f"- In the saturation runs no proxy whose work is in its process used its whole CPU (the busiest at "
              f"{busiest:.0f}%): the load side "
              "(foo_client and foo_server sharing CPU 0, and other jobs where the other load column is high) set the pace, so the messages/s column measures this "
              "machine's client and server with each proxy in the path more than the proxies' own ceilings. The "
              "userspace proxies' own cost is the CPU column; its inverse (messages per second of one proxy CPU, derived, "
              "assuming the cost per message stays flat up to a full CPU) is: " +
              ", ".join(f"{LABELS[s]} {1 / S[s]['cpu_per_m_closed']:.2f} million" for s in prox) + ".")
        else:
            w(f"- In the saturation runs the busiest proxy used {busiest:.0f}% of its CPU: it, not the load side, "
              "set the pace of its row.")
    pcs = [s for s in SETUPS if s in S and S[s].get("cpu_busy_pct")]
    if pcs:
        w(f"- Each CPU's busy share during the saturation runs (median; CPU {CPU_LOAD} carries foo_client and "
          f"foo_server, CPU {CPU_PROXY} the proxy; other jobs on either count too): " +
          ", ".join(f"{LABELS[s]} {S[s]['cpu_busy_pct'][CPU_LOAD]:.0f}% / {S[s]['cpu_busy_pct'][CPU_PROXY]:.0f}% "
                    f"(softirq {S[s]['cpu_softirq_pct'][CPU_LOAD]:.0f}% / {S[s]['cpu_softirq_pct'][CPU_PROXY]:.0f}%)"
                    for s in pcs) + ".")
        kk = S.get("pandit-foo-kernel")
        if kk and kk.get("cpu_busy_pct"):
            lo, px = kk["cpu_busy_pct"][CPU_LOAD], kk["cpu_busy_pct"][CPU_PROXY]
            w(f"- In the kernel row without RPS CPU {CPU_LOAD} was {lo:.0f}% busy and CPU {CPU_PROXY} (pandit's) {px:.0f}%: "
              "the splice program runs where the segments are received, and on loopback that is the sending "
              f"task's CPU, so with this pinning the framing lands on CPU {CPU_LOAD} next to foo_client and "
              "foo_server (inferred from the per-CPU shares, not traced)"
              + (f"; CPU {CPU_LOAD} being full, it and not pandit set the kernel row's pace, and the proxy CPU "
                 "stayed mostly unused." if lo >= 95 and px < 50 else "."))
        kr = S.get("pandit-foo-kernel-rps")
        if kr and kr.get("cpu_busy_pct"):
            lo, px = kr["cpu_busy_pct"][CPU_LOAD], kr["cpu_busy_pct"][CPU_PROXY]
            sl, sp = kr["cpu_softirq_pct"][CPU_LOAD], kr["cpu_softirq_pct"][CPU_PROXY]
            w(f"- In the kernel row with RPS CPU {CPU_LOAD} was {lo:.0f}% busy (softirq {sl:.0f}%) and CPU "
              f"{CPU_PROXY} {px:.0f}% (softirq {sp:.0f}%): with the namespace's loopback steering its receive "
              f"processing to CPU {CPU_PROXY}, the softirq in which the splice program runs "
              + ("moved there" if sp > sl else f"did not move there (softirq not higher on CPU {CPU_PROXY})")
              + " (inferred from the per-CPU shares, not traced).")
        ks = S.get("pandit-foo-shortcut")
        if ks and ks.get("cpu_busy_pct"):
            lo, px = ks["cpu_busy_pct"][CPU_LOAD], ks["cpu_busy_pct"][CPU_PROXY]
            sl, sp = ks["cpu_softirq_pct"][CPU_LOAD], ks["cpu_softirq_pct"][CPU_PROXY]
            vs = ""
            if kk and kk.get("machine_per_m_closed") and ks.get("machine_per_m_closed"):
                vs = (f" Against the kernel row without RPS (spliced, framed in softirq): {fmt(ks['mps'])} against "
                      f"{fmt(kk['mps'])} msgs/s, {ks['machine_per_m_closed']:.3f} against "
                      f"{kk['machine_per_m_closed']:.3f} whole-machine CPU s per million messages (less other "
                      f"processes {ks['machine_net_per_m_closed']:.3f} against {kk['machine_net_per_m_closed']:.3f}).")
            w(f"- In the short-circuit row CPU {CPU_LOAD} was {lo:.0f}% busy (softirq {sl:.0f}%) and CPU "
              f"{CPU_PROXY} (pandit's) {px:.0f}% (softirq {sp:.0f}%): the sk_msg program runs in the sender's "
              f"send(), so with this pinning the paired sends are framed in foo_client's and foo_server's context "
              f"on CPU {CPU_LOAD} and reach the receiver without TCP or pandit (where the time went is inferred "
              "from the per-CPU shares and the program's counters, not traced)." + vs)
        tc = S.get("pandit-tcp")
        if kk and tc and tc.get("spliced_closed") and kk.get("machine_per_m_closed") and tc.get("machine_per_m_closed"):
            w(f"- The same splice without framing (the protocol tcp row, its connections spliced too) cost "
              f"{tc['machine_per_m_closed']:.3f} whole-machine CPU s per million messages against the kernel "
              f"Foo row's {kk['machine_per_m_closed']:.3f} (less other processes {tc['machine_net_per_m_closed']:.3f} "
              f"against {kk['machine_net_per_m_closed']:.3f}): the difference, about "
              f"{kk['machine_per_m_closed'] - tc['machine_per_m_closed']:.2f} us of CPU per message "
              "(a REQ and its reply), is what framing, checking and counting in the kernel added here (derived "
              "from two rows, not measured on its own).")
    else:
        mb = [(s, S[s]["machine_busy_pct_closed"]) for s in SETUPS if s in S and "machine_busy_pct_closed" in S[s]]
        if mb:
            w("- Share of the whole machine (both CPUs) busy during the saturation runs, median: " +
              ", ".join(f"{LABELS[s]} {v:.0f}%" for s, v in mb) + " (this run recorded no per-CPU shares: near "
              "50% may be one CPU full and the other idle).")
    w(f"- At the fixed rate each connection carries one REQ every {j['conns'] / j['rate'] * 1e6:.0f} us, so there "
      "is little to batch: a read likely holds one message and a wake-up serves few (inferred from the schedule, "
      "not measured), while under saturation one read carries many; that would explain why the CPU per message at the "
      "fixed rate is many times the saturated one, for every proxy.")
    w("- Medians of a few runs on a shared 2-CPU virtual machine: differences of a few percent, and tail "
      "latencies in the milliseconds during a run with other load, are noise; every run is listed above. "
      "Nothing here is tuned per proxy.")
    with open(out_md, "w") as f:
        f.write("\n".join(L) + "\n")
    with open(out_dat, "w") as f:
        f.write("\n".join(dat) + "\n")


def render(j, tmp):
    """foo.md, foo.dat and foo.png in tmp from the results j."""
    bl.render_report("foo", j, tmp, report, GP, f"{j['rate']:,} msg/s")


def rerender(path, out_dir):
    """--report: foo.md and foo.png again from a results JSON (no measuring)."""
    bl.rerender_report("foo", path, out_dir, render, log)


# ---- outside: the namespace and the files ---------------------------------------

def outside(a, argv):
    if os.geteuid() != 0:
        sys.exit("foo_bench: needs root (network namespace, BPF)")
    for t in ("haproxy", "gnuplot", "taskset", "ip"):
        if not shutil.which(t):
            sys.exit(f"foo_bench: {t} missing (make deps)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("foo_bench: needs 2 CPUs (proxy on CPU 1, load on CPU 0)")
    if not a.no_build:
        r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "all"], stdout=sys.stderr)
        if r.returncode != 0:
            log("make all failed; using the existing build/")
    for b in (PANDIT, FOO_SERVER, FOO_CLIENT):
        if not os.access(b, os.X_OK):
            sys.exit(f"foo_bench: {b} not built")
    tmp = tempfile.mkdtemp(prefix="pandit-foo.")
    os.chmod(tmp, 0o755)   # pandit reads its config again as nobody
    jpath = os.path.join(tmp, "foo.json")
    try:
        rc = bl.run_in_netns("pandit-foo", tmp, [sys.executable, os.path.abspath(__file__), "--inside", "--tmp", tmp,
                                                 "--json", jpath] + argv, 1500, log)
        if rc != 0 or not os.path.exists(jpath):
            sys.exit(f"foo_bench: the run failed (exit {rc}); results not written")
        with open(jpath) as f:
            j = json.load(f)
        j["only"] = a.only.split(",") if a.only else None
        with open(jpath, "w") as f:
            json.dump(j, f, indent=1)
        render(j, tmp)
        os.makedirs(a.out_dir, exist_ok=True)
        for n in ("foo.json", "foo.md", "foo.png"):
            shutil.copy(os.path.join(tmp, n), os.path.join(a.out_dir, n))
        log(f"wrote {a.out_dir}/foo.md, foo.png, foo.json")
    finally:
        if not a.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=int, default=5, help="seconds of each client run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pingpong-secs", type=int, default=2, help="seconds of the 1 conn x depth 1 run")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--rate", type=int, default=50000, help="open-loop REQs per second in all")
    ap.add_argument("--only", default="", help="comma list of setups: " + ",".join(SETUPS))
    ap.add_argument("--start-wait", type=float, default=60, help="seconds to wait for a quiet machine at the start")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds in all to wait for a quiet machine before the setups")
    ap.add_argument("--quiet-wait-each", type=float, default=10, help="at most this long before one setup")
    ap.add_argument("--quiet-pct", type=float, default=15, help="quiet: other processes under this %% of a CPU")
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--no-build", action="store_true", help="do not run make all first")
    ap.add_argument("--bin-dir", help="run pandit, foo_client and foo_server from this directory (implies --no-build)")
    ap.add_argument("--bin-rev", default="", help="with --bin-dir: what it was built from, for the report")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--report", metavar="JSON", help="only write foo.md and foo.png from a results JSON")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bin_dir:
        use_bin_dir(a.bin_dir)
        a.no_build = True
    if a.inside:
        inside(a)
        return
    if a.report:
        rerender(a.report, a.out_dir)
        return
    # options passed on to the inside run
    fwd = ["--secs", str(a.secs), "--pingpong-secs", str(a.pingpong_secs), "--repeat", str(a.repeat), "--conns", str(a.conns), "--depth", str(a.depth),
           "--rate", str(a.rate), "--start-wait", str(a.start_wait), "--quiet-wait", str(a.quiet_wait), "--quiet-wait-each", str(a.quiet_wait_each),
           "--quiet-pct", str(a.quiet_pct)]
    if a.only:
        fwd += ["--only", a.only]
    if a.bin_dir:
        fwd += ["--bin-dir", os.path.abspath(a.bin_dir), "--bin-rev", a.bin_rev]
    outside(a, fwd)


if __name__ == "__main__":
    main()
