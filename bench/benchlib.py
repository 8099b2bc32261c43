"""benchlib.py - what the bench/ drivers share: processes pinned and stopped by pid, proxy CPU time, other load on the machine, the private network namespace.

Python stdlib only, imported by bench/http_bench.py, foo_bench.py and
l4bench.py. Nothing here measures on its own: it starts, stops and reads
/proc, and every number it returns comes from the kernel at that moment.
"""
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
PANDIT = os.path.join(BUILD, "pandit")

CPU_PROXY = "1"      # every proxy runs here, one worker
CPU_LOAD = "0"       # load generators and backends run here
CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_log(name):
    """A log(msg) function printing '[name HH:MM:SS] msg' to stderr."""
    def log(msg):
        print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
    return log


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- processes ---------------------------------------------------------------

class Procs:
    """Background processes started by a benchmark, pinned with taskset and
    stopped by pid (with their children: nginx and haproxy -W fork workers)."""

    def __init__(self, tmp, log=None):
        self.tmp = tmp
        self.live = []
        self.log = log or make_log("bench")

    def start(self, name, argv, cpu, env=None, combined=False):
        """Starts argv pinned to cpu; stdout to TMP/name.out, stderr to
        TMP/name.err, or both to TMP/name.log when combined. Returns the Popen
        with .name, .out_path, .err_path (the same file when combined)."""
        if combined:
            out = open(os.path.join(self.tmp, f"{name}.log"), "ab")
            err = out
        else:
            out = open(os.path.join(self.tmp, f"{name}.out"), "ab")
            err = open(os.path.join(self.tmp, f"{name}.err"), "ab")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, env=env, cwd=self.tmp)
        p.name, p.out_path, p.err_path = name, out.name, err.name
        out.close()
        err.close()
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5.0):
        if p.poll() is None:
            tree = proc_tree(p.pid)
            for pid in reversed(tree):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                for pid in proc_tree(p.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                p.wait(timeout=5)
            # workers that outlive their parent (same pids, checked still ours)
            for pid in tree[1:]:
                try:
                    if os.stat(f"/proc/{pid}/ns/net").st_ino == NETNS_INO:
                        os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, FileNotFoundError):
                    pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(self.live):
            try:
                self.stop(p)
            except Exception as e:   # keep stopping the others
                self.log(f"stopping {p.name} failed: {e}")


def proc_tree(root):
    """root and all its descendants, parents first."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out


def cpu_ticks(root):
    """utime+stime (clock ticks) of root and its descendants, all threads
    (fields 14 and 15 of stat(5) count every thread of the process)."""
    total = 0
    for pid in proc_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fl = st[st.rindex(")") + 2:].split()
        total += int(fl[11]) + int(fl[12])
    return total


def bpf_prog_stats(root):
    """{program name: (run_cnt, run_time_ns)} of the BPF programs held
    through a file descriptor by root or its descendants (bpftool reads the
    kernel's counters; they only move while kernel.bpf_stats_enabled is 1)."""
    ids = set()
    for pid in proc_tree(root):
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    ids.update(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
            except (OSError, ValueError, IndexError):
                continue
    out = {}
    for i in sorted(ids):
        r = subprocess.run(["bpftool", "prog", "show", "id", str(i), "-j"], capture_output=True, text=True)
        if r.returncode != 0:
            continue
        j = json.loads(r.stdout)
        n, t = out.get(j.get("name", str(i)), (0, 0))
        out[j.get("name", str(i))] = (n + j.get("run_cnt", 0), t + j.get("run_time_ns", 0))
    return out


class BpfStats:
    """Turns kernel.bpf_stats_enabled on for a window and back to what it
    was; .delta(root) gives {program: (runs, ns)} of root's programs over
    the window. The kernel then reads the clock twice per program run, so
    latency measured inside the window is not the latency without it."""
    PATH = "/proc/sys/kernel/bpf_stats_enabled"

    def __init__(self, root):
        self.root = root

    def __enter__(self):
        with open(self.PATH) as f:
            self.was = f.read().strip()
        with open(self.PATH, "w") as f:
            f.write("1")
        self.b = bpf_prog_stats(self.root)
        return self

    def __exit__(self, *exc):
        self.a = bpf_prog_stats(self.root)
        with open(self.PATH, "w") as f:
            f.write(self.was)
        return False

    def delta(self):
        return {k: (v[0] - self.b.get(k, (0, 0))[0], v[1] - self.b.get(k, (0, 0))[1])
                for k, v in self.a.items() if v[0] - self.b.get(k, (0, 0))[0] > 0}


# ---- a cgroup v2 directory of the run's own (short-circuit rows) --------------

def in_cgroup(argv, cg):
    """argv run by a shell that first moves itself into cgroup directory cg
    (then execs argv: same pid, so it is stopped and measured as before)."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg] + argv


def make_cgroup(tmp, name):
    """A cgroup v2 directory NAME-PID of the run's own: cgroup2 mounted under
    tmp (`ip netns exec` remounts /sys and so hides the system's mount; a
    cgroup2 mount seen elsewhere in /proc/mounts may be someone else's,
    unmounted under us), or, when that mount fails, the first cgroup2 mount
    in /proc/mounts. Returns (path, mount point we made or None); raises
    OSError or RuntimeError."""
    mounted = os.path.join(tmp, "cgroup2")
    os.makedirs(mounted, exist_ok=True)
    r = subprocess.run(["mount", "-t", "cgroup2", "none", mounted], capture_output=True, text=True, timeout=10)
    if r.returncode == 0:
        root = mounted
    else:
        mounted, root = None, None
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    root = parts[1]
                    break
        if root is None:
            raise RuntimeError(f"mount -t cgroup2: {r.stderr.strip()}, and no cgroup2 mount in /proc/mounts")
    path = os.path.join(root, f"{name}-{os.getpid()}")
    try:
        os.mkdir(path)
    except OSError:
        if mounted:
            subprocess.run(["umount", mounted], capture_output=True, timeout=10)
        raise
    return path, mounted


def remove_cgroup(path, mounted, log):
    """rmdir of the cgroup once its processes are gone (bounded), then the mount."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        try:
            os.rmdir(path)
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.2)
    else:
        log(f"cgroup {path} still busy, left behind")
    if mounted:
        r = subprocess.run(["umount", mounted], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            log(f"umount {mounted}: {r.stderr.strip()}")


def tail(path, n=6):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(l.strip() for l in f.readlines()[-n:] if l.strip())
    except OSError:
        return ""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)   # pandit reads its config again as nobody


# ---- other load on the machine -------------------------------------------------

NETNS_INO = os.stat("/proc/self/ns/net").st_ino


def busy_ticks():
    """(busy ticks of all CPUs incl. steal, ticks of the processes in this
    network namespace and the children they reaped)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    total = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]   # user nice system irq softirq steal
    ours = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}/ns/net").st_ino != NETNS_INO:
                continue
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fl = st[st.rindex(")") + 2:].split()
        ours += int(fl[11]) + int(fl[12]) + int(fl[13]) + int(fl[14])
    return total, ours


class Background:
    """CPU used by processes outside the benchmark during a window, in % of one CPU (.pct)."""

    def __enter__(self):
        self.t0, (self.b0, self.o0) = time.monotonic(), busy_ticks()
        return self

    def __exit__(self, *exc):
        b1, o1 = busy_ticks()
        dt = time.monotonic() - self.t0
        self.pct = max(0.0, ((b1 - self.b0) - (o1 - self.o0)) / CLK_TCK / dt * 100) if dt > 0 else 0.0
        return False


def stat_ticks():
    """Ticks of all CPUs from the first line of /proc/stat, as a dict: busy
    (user nice system irq softirq; guest time is inside user and nice),
    steal, idle (idle + iowait); and ctxt, the context switches of all CPUs
    since boot (its ctxt line)."""
    with open("/proc/stat") as f:
        first = f.readline()
        ctxt = next((int(line.split()[1]) for line in f if line.startswith("ctxt ")), 0)
    v = [int(x) for x in first.split()[1:9]]
    return {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "steal": v[7], "idle": v[3] + v[4], "ctxt": ctxt}


def _outside_stats():
    """(pid, comm, fields after the comm of /proc/PID/stat) of every process
    outside this network namespace (processes gone meanwhile are skipped)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}/ns/net").st_ino == NETNS_INO:
                continue
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        yield int(d), st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()


def others_ticks():
    """utime+stime+cutime+cstime (ticks) summed over every process outside
    this network namespace: their own CPU and their reaped children's."""
    return sum(int(fl[11]) + int(fl[12]) + int(fl[13]) + int(fl[14])
               for _, _, fl in _outside_stats())


class MachineCPU:
    """Whole-machine CPU over a window, from /proc/stat deltas: .busy_s (CPU
    seconds of all CPUs doing anything but idling or waiting on I/O: user,
    system, irq and softirq, so kernel work done on a process's behalf
    counts wherever it ran), .steal_s (time the hypervisor gave to others,
    not counted as busy), .others_s (CPU of processes outside this network
    namespace, an estimate: what processes that lived and died inside the
    window used is seen only through their parent's reaped-children time),
    .net_s (busy_s - others_s), .ctxt (context switches on all CPUs, every
    process's and kernel thread's) and .seconds (wall time)."""

    def __enter__(self):
        self.t0, self.s0, self.o0 = time.monotonic(), stat_ticks(), others_ticks()
        return self

    def __exit__(self, *exc):
        s1, o1 = stat_ticks(), others_ticks()
        self.seconds = time.monotonic() - self.t0
        self.busy_s = (s1["busy"] - self.s0["busy"]) / CLK_TCK
        self.steal_s = (s1["steal"] - self.s0["steal"]) / CLK_TCK
        self.others_s = max(0, o1 - self.o0) / CLK_TCK
        self.net_s = max(0.0, self.busy_s - self.others_s)
        self.ctxt = s1["ctxt"] - self.s0["ctxt"]
        return False

    def as_dict(self):
        return {"busy_s": self.busy_s, "steal_s": self.steal_s, "others_s": self.others_s,
                "net_s": self.net_s, "ctxt": self.ctxt, "seconds": self.seconds}


PF_KTHREAD = 0x00200000   # stat(5) flags: a kernel thread


def outside_ticks():
    """{(pid, start time): (utime+stime ticks, is a kernel thread)} of every
    process outside this network namespace (kernel threads: kworker,
    ksoftirqd, ...; keyed by start time, not name: a kworker's name changes
    with its work)."""
    return {(pid, int(fl[19])): (int(fl[11]) + int(fl[12]), bool(int(fl[6]) & PF_KTHREAD))
            for pid, _, fl in _outside_stats()}


def outside_delta(before, after):
    """CPU seconds the processes outside this network namespace used between two
    outside_ticks() readings, pid by pid (a process that exited meanwhile drops
    out instead of making the sum negative; one that started counts whole; one
    that lived only in between is not seen): {"user_s": ..., "kthread_s": ...}."""
    user = kth = 0
    for k, (t, kt) in after.items():
        d = max(0, t - before.get(k, (0, kt))[0])
        if kt:
            kth += d
        else:
            user += d
    return {"user_s": user / CLK_TCK, "kthread_s": kth / CLK_TCK}


def percpu_ticks():
    """{cpu number: (busy ticks, softirq ticks)} from the cpuN lines of
    /proc/stat; busy as in stat_ticks (user nice system irq softirq)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                if out:
                    break
                continue
            name, *v = line.split()
            v = [int(x) for x in v[:8]]
            out[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6], v[6])
    return out


class PerCPU:
    """Each CPU over a window, from /proc/stat deltas: .busy_pct and
    .softirq_pct ({cpu number as a string: % of that CPU's time}); softirq is
    where the kernel's network receive path (and BPF programs on it) runs."""

    def __enter__(self):
        self.t0, self.c0 = time.monotonic(), percpu_ticks()
        return self

    def __exit__(self, *exc):
        c1 = percpu_ticks()
        dt = (time.monotonic() - self.t0) * CLK_TCK
        self.busy_pct, self.softirq_pct = {}, {}
        for c, (b, si) in c1.items():
            if c in self.c0 and dt > 0:
                self.busy_pct[str(c)] = min(100.0, (b - self.c0[c][0]) / dt * 100)
                self.softirq_pct[str(c)] = min(100.0, (si - self.c0[c][1]) / dt * 100)
        return False


def wait_quiet(max_s, limit_pct, log=None):
    """Waits at most max_s for the rest of the machine to use less than
    limit_pct of one CPU over a second; returns (last reading, seconds waited)."""
    t0 = time.monotonic()
    while True:
        with Background() as bg:
            time.sleep(1)
        waited = time.monotonic() - t0
        if bg.pct < limit_pct or waited >= max_s:
            return bg.pct, waited
        if log:
            log(f"  machine busy ({bg.pct:.0f}% of a CPU used outside the benchmark, load {loadavg()}), waiting")


def other_ticks():
    """{(pid, comm): ticks} of every process outside this network namespace."""
    return {(pid, comm): int(fl[11]) + int(fl[12]) for pid, comm, fl in _outside_stats()}


def other_top(before, after, seconds, n=8):
    """[[comm, % of a CPU]] of the processes alive in both other_ticks()
    readings, busiest first."""
    top = {}
    for k, v in after.items():
        if k in before and v > before[k]:
            top[k[1]] = top.get(k[1], 0) + v - before[k]
    return sorted(([c, round(t / CLK_TCK / seconds * 100, 1)] for c, t in top.items()), key=lambda x: -x[1])[:n]


# ---- the machine and the tree --------------------------------------------------

def cmd_first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((r.stdout + r.stderr).strip().splitlines() or ["unknown"])[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine(tools):
    """{cpu, cores, kernel, and the first line of each `tool` command in tools
    ({key: argv})}, recorded at the time of the run."""
    m = {"cpu": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release()}
    for k, argv in tools.items():
        m[k] = cmd_first_line(argv)
    return m


def pandit_rev(paths=("src", "bpf")):
    """The git revision of the tree, whether paths had uncommitted changes,
    and when build/pandit was built."""
    def git(*args):
        r = subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True, timeout=10)
        return r.stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", *paths):
        rev += f" (plus uncommitted changes in {', '.join(p + '/' for p in paths)})"
    try:
        built = datetime.datetime.fromtimestamp(os.path.getmtime(PANDIT), datetime.timezone.utc)
        rev += f", build/pandit built {built.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    except OSError:
        pass
    return rev


# ---- the network namespace -------------------------------------------------------

def run_in_netns(prefix, tmp, argv, timeout_s, log):
    """Makes a network namespace PREFIX-PID (loopback up, ephemeral ports
    50100-65535 so they never collide with a benchmark's ports), runs argv in
    it (bounded by timeout_s), then kills by pid whatever is left in it and
    deletes it. Returns argv's exit status."""
    ns = f"{prefix}-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=50100 65535"],
                       check=True)
        log(f"namespace {ns}, scratch {tmp}")
        r = subprocess.run(["timeout", str(int(timeout_s)), "ip", "netns", "exec", ns] + argv)
        return r.returncode
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:   # whatever the inside run left behind (it stops its own)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def render_report(name, j, tmp, report, gp, rate_label):
    """NAME.md, NAME.dat and NAME.png in tmp from the results j: report(j, md, dat)
    writes the table and the chart data, gnuplot script gp the chart."""
    md, dat, png = (os.path.join(tmp, f"{name}.{e}") for e in ("md", "dat", "png"))
    report(j, md, dat)
    subprocess.run(["gnuplot", "-e", f"datafile='{dat}'; outfile='{png}'; rate='{rate_label}'", gp],
                   check=True)


def rerender_report(name, path, out_dir, render, log):
    """--report: NAME.md and NAME.png again from a results JSON (no measuring);
    render(j, tmp) writes them into a scratch directory."""
    with open(path) as f:
        j = json.load(f)
    tmp = tempfile.mkdtemp(prefix=f"pandit-{name}-report.")
    try:
        render(j, tmp)
        os.makedirs(out_dir, exist_ok=True)
        for n in (f"{name}.md", f"{name}.png"):
            shutil.copy(os.path.join(tmp, n), os.path.join(out_dir, n))
        log(f"wrote {out_dir}/{name}.md, {name}.png from {path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
