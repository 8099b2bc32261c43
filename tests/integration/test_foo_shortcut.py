"""test_foo_shortcut.py - Foo apps on the local short-circuit: messages framed and counted in the sender's send() (bpf/foo_frame_msg.bpf.h), lines it does not frame handed to TCP and the splice framer, violations and policies as on the other paths, maps left empty."""
import json
import os
import random
import subprocess
import tempfile

import pytest

from helpers import FOO_CLIENT, FooServer, base_config, find_app, foo_app, wait_until
from test_foo_kernel import foo_kernel_maps
from test_shortcut_pandit import _NsEnter, cgroup  # noqa: F401 (fixture)
from test_splice import kpath

PORT, PORT_OFF = 19760, 19761

# A Foo client inside the cgroup: it joins the cgroup before making its
# socket, sends the scenario's chunks (each its own send(), optionally
# waiting for the replies it expects before the next), and prints what it
# read as JSON: the reply lines, and how the connection ended.
CLIENT = r'''
import json, os, socket, sys, time
A = json.loads(sys.argv[1])
with open(os.path.join(A["cgroup"], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
s = socket.create_connection(("127.0.0.1", A["port"]), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf, lines, end = b"", [], "open"


def read_until(n):
    global buf, end
    while len(lines) < n and end == "open":
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            end = "reset"
            break
        except socket.timeout:
            end = "timeout"
            break
        if not d:
            end = "eof"
            break
        buf += d
        while b"\n" in buf:
            ln, buf = buf.split(b"\n", 1)
            lines.append(ln.decode(errors="replace"))


for chunk, wait in A["chunks"]:
    time.sleep(A.get("pause", 0))
    try:
        s.sendall(chunk.encode("utf-8", "surrogateescape"))
    except OSError as e:
        end = "send: " + e.__class__.__name__
        break
    if wait:
        read_until(wait)
if A.get("read_to_end"):
    s.settimeout(5)
    read_until(1 << 30)
s.close()
print(json.dumps({"lines": lines, "end": end}))
'''


class InCgroup(_NsEnter):
    """The test's namespace, with every command run inside the cgroup."""

    def __init__(self, ns, cg):
        super().__init__(ns)
        self._cg = cg

    def exec_argv(self, argv):
        return super().exec_argv(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self._cg, *argv])


@pytest.fixture
def client_script():
    fd, path = tempfile.mkstemp(prefix="pandit-foosc-client-", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(CLIENT)
    yield path
    os.unlink(path)


@pytest.fixture
def foo_world(ns, cgroup, client_script, start_pandit):  # noqa: F811 (fixture)
    """start(policy=None, max_line=None): foo_server inside the cgroup and
    pandit outside it with a Foo app short-circuited (PORT) and one not
    (PORT_OFF, local_shortcut off); the returned object runs clients."""
    made = {}

    def start(policy=None, max_line=None):
        srv = FooServer(InCgroup(ns, cgroup), "--nak", "0.1")
        made["srv"] = srv
        cfg = base_config([foo_app("sc", [PORT], [srv.target], policy=policy, max_line=max_line,
                                   health_check=False),
                           foo_app("off", [PORT_OFF], [srv.target], policy=policy, max_line=max_line,
                                   health_check=False, local_shortcut="off")],
                          shortcut_cgroup=cgroup)
        p = start_pandit(cfg, in_ns=_NsEnter(ns))
        assert p.stats()["kernel_path"]["shortcut"]["frames_foo"] is True, p.stats()["kernel_path"]

        class W:
            pass

        w = W()
        w.p, w.srv = p, srv

        def run(chunks, port=PORT, read_to_end=False):
            args = {"cgroup": cgroup, "port": port, "chunks": chunks, "read_to_end": read_to_end}
            r = subprocess.run(["nsenter", f"--net={ns.path}", "/usr/bin/python3", client_script,
                                json.dumps(args)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-3000:]
            return json.loads(r.stdout.strip().splitlines()[-1])

        def foo_client(*args):
            argv = InCgroup(ns, cgroup).exec_argv([str(FOO_CLIENT), "-a", f"127.0.0.1:{PORT}", *args])
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
            return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])

        w.run, w.foo_client = run, foo_client
        return w

    yield start
    if "srv" in made:
        made["srv"].stop()


def foo(p, name="sc"):
    return find_app(p.stats(), name)["foo"]


def sc(p):
    return p.stats()["kernel_path"]["shortcut"]


def wait_clean(p):
    """Every connection over, and nothing left in the pair, splice or Foo maps."""
    wait_until(lambda: all(a["active"] == 0 for a in p.stats()["apps"]), 30, 0.05,
               "pandit's connections to close")
    wait_until(lambda: sc(p)["paired_active"] == 0, 10, 0.05, "the pairs to go")
    wait_until(lambda: kpath(p)["map_entries"] == 0, 10, 0.05, "the splice maps to empty")
    wait_until(lambda: foo_kernel_maps(p) == (0, 0), 10, 0.05, "the Foo maps to empty")


def delta(a, b, *keys):
    return {k: b[k] - a[k] for k in keys}


def closed(out):
    """Whether the client saw its connection end (reset, EOF, or a failed
    send: which one depends on timing alone)."""
    return out["end"] != "open"


def req(i, data="x"):
    return f"REQ {i} {data}\n"


def test_counts_equal_what_the_peers_saw(foo_world):
    """Pipelined load from foo_client (8 connections, 64 in flight each):
    every reply right (foo_client checks type, Seq and order), pandit's
    counts equal the client's, the connections were paired, spliced and
    framed in the kernel, and most sends were framed by the short-circuit."""
    w = foo_world()
    f0, s0, k0 = foo(w.p), sc(w.p), kpath(w.p)["connections"]
    res = w.foo_client("-c", "8", "-n", "20000", "-d", "64")
    assert res["errors"] == 0 and res["sent"] == 8 * 20000, res
    assert res["acks"] + res["naks"] == res["sent"], res
    wait_clean(w.p)
    f1, s1, k1 = foo(w.p), sc(w.p), kpath(w.p)["connections"]
    d = delta(f0, f1, "msg_req", "msg_ack", "msg_nak", "replies_unmatched", "requests_unanswered",
              "requests_untracked", "requests_duplicate", "msg_wrong_direction")
    assert d == {"msg_req": res["sent"], "msg_ack": res["acks"], "msg_nak": res["naks"],
                 "replies_unmatched": 0, "requests_unanswered": 0, "requests_untracked": 0,
                 "requests_duplicate": 0, "msg_wrong_direction": 0}, d
    assert f1["latency_us"]["count"] - f0["latency_us"]["count"] == res["sent"]
    assert s1["paired_total"] - s0["paired_total"] == 8, s1
    assert k1["foo_framed_total"] - k0["foo_framed_total"] == 8, k1
    assert s1["program"]["foo_framed"] > s0["program"]["foo_framed"], s1
    assert s1["redirected_bytes"] > s0["redirected_bytes"], s1


def test_lines_it_does_not_frame_take_tcp_in_order(foo_world):
    """A long line, UTF-8, a line split across two sends and a CRLF line
    between plain ones: the short-circuit frames the plain lines, hands the
    others to TCP (the splice program frames them), and every reply comes
    in order; the counts are exact."""
    w = foo_world()
    f0, s0 = foo(w.p), sc(w.p)
    plain = "".join(req(i) for i in range(1, 51))
    chunks = [[plain, 50],
              [req(51, "y" * 200), 51],
              [req(52, "h\u00e9llo"), 52],
              ["REQ 5", 0], ["3 split\n", 53],
              ["REQ 54 crlf\r\n", 54],
              [req(55) + req(56, "z" * 100) + req(57), 57]]
    chunks += [[req(i), i] for i in range(58, 108)]
    out = w.run(chunks)
    assert out["end"] == "open", out
    seqs = [int(ln.split(" ")[1]) for ln in out["lines"]]
    assert seqs == list(range(1, 108)), out["lines"]
    assert all(ln.split(" ")[0] in ("ACK", "NAK") for ln in out["lines"]), out["lines"]
    wait_clean(w.p)
    f1, s1 = foo(w.p), sc(w.p)
    acks = sum(ln.startswith("ACK") for ln in out["lines"])
    assert delta(f0, f1, "msg_req", "msg_ack", "msg_nak") == \
        {"msg_req": 107, "msg_ack": acks, "msg_nak": 107 - acks}
    assert f1["connections"]["noncompliant_client"] == f0["connections"]["noncompliant_client"]
    assert f1["replies_unmatched"] == f0["replies_unmatched"]
    # some sends framed here, the others on TCP
    assert s1["program"]["foo_framed"] > s0["program"]["foo_framed"], s1
    assert s1["program"]["pass_foo"] > s0["program"]["pass_foo"], s1


def random_sends(rng, n):
    """n REQs as chunks of a random mix: plain lines alone or several to a
    send, long lines, UTF-8 Data, CR LF, blanks, 19-digit Seqs, lines cut
    across sends; some sends wait for every reply so far (the gate reopens
    only once the server has read what went over TCP)."""
    lines = []
    for i in range(1, n + 1):
        kind = rng.randrange(8)
        seq = i if kind != 5 else i + 10 ** 18
        data = {0: "x", 1: "y" * rng.randrange(60, 300), 2: "h\u00e9llo \u2603", 3: "crlf",
                4: "a b\tc", 5: "big", 6: "", 7: "z" * rng.randrange(1, 40)}[kind]
        sep = "\t" if rng.randrange(4) == 0 else " "
        end = "\r\n" if kind == 3 else "\n"
        lines.append(f"REQ{sep}{seq}{(' ' + data) if data else ''}{end}")
    chunks, i = [], 0
    while i < n:
        k = min(n - i, rng.choice((1, 1, 2, 5, 20)))
        text = "".join(lines[i:i + k])
        i += k
        wait = i if rng.randrange(3) == 0 or i == n else 0
        if rng.randrange(6) == 0 and len(text) > 3:
            cut = rng.randrange(1, len(text))
            chunks += [[text[:cut], 0], [text[cut:], wait]]
        else:
            chunks.append([text, wait])
    return chunks


def test_random_traffic_counts_as_on_the_userspace_path(foo_world):
    """A random mix of sends (seeded): the replies, in order, and every
    count are the same through the short-circuit as through the app that
    is not paired, and both match what was sent."""
    w = foo_world()
    chunks = random_sends(random.Random(4242), 600)
    result = {}
    for name, port in (("sc", PORT), ("off", PORT_OFF)):
        f0, s0 = foo(w.p, name), sc(w.p)
        out = w.run(chunks, port=port)
        wait_clean(w.p)
        f1, s1 = foo(w.p, name), sc(w.p)
        d = delta(f0, f1, "msg_req", "msg_ack", "msg_nak", "replies_unmatched", "requests_unanswered",
                  "msg_wrong_direction")
        d["latency_count"] = f1["latency_us"]["count"] - f0["latency_us"]["count"]
        d["noncompliant"] = f1["connections"]["noncompliant_client"] - f0["connections"]["noncompliant_client"]
        seqs = [int(ln.split()[1]) for ln in out["lines"]]
        # foo_server NAKs a random tenth: pandit's split is the client's
        acks = sum(ln.startswith("ACK ") for ln in out["lines"])
        assert (d.pop("msg_ack"), d.pop("msg_nak")) == (acks, len(out["lines"]) - acks), (name, d)
        result[name] = (out["end"], seqs, d, s1["program"]["foo_framed"] - s0["program"]["foo_framed"],
                        s1["program"]["pass_foo"] - s0["program"]["pass_foo"])
    sc_end, sc_seqs, sc_d, framed, passed = result["sc"]
    off_end, off_seqs, off_d, off_framed, _ = result["off"]
    assert (sc_end, sc_seqs, sc_d) == (off_end, off_seqs, off_d), result
    assert sc_end == "open" and len(sc_seqs) == 600, result
    assert sc_d["msg_req"] == 600 and sc_d["latency_count"] == 600 and sc_d["noncompliant"] == 0
    assert framed > 0 and passed > 0 and off_framed == 0, result


VIOLATIONS = pytest.mark.parametrize("bad,reason,max_line", [
    ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http", None),
    (req(21, "w" * 40), "line_too_long", 32),
], ids=["http", "line_too_long"])


@VIOLATIONS
def test_strict_violation_after_short_circuited_messages(foo_world, bad, reason, max_line):
    """Strict: messages short-circuited, then a violation. The line goes to
    TCP, the splice program finds it, nothing from it on reaches the
    server, both sides are reset, and the counts are those of the
    userspace path on the same traffic (the app with local_shortcut off)."""
    w = foo_world(policy="strict", max_line=max_line)
    chunks = [[req(i), i] for i in range(1, 21)] + [[bad, 0], [req(22), 0]]
    result = {}
    for name, port in (("sc", PORT), ("off", PORT_OFF)):
        f0 = foo(w.p, name)
        out = w.run(chunks, port=port, read_to_end=True)
        wait_until(lambda: foo(w.p, name)["connections"]["closed_strict"] >
                   f0["connections"]["closed_strict"], 10, 0.05, "the strict close")
        wait_clean(w.p)
        f1 = foo(w.p, name)
        result[name] = (len(out["lines"]), closed(out),
                        delta(f0, f1, "msg_req", "msg_total"),
                        f1["connections"]["reasons"].get(reason, 0) - f0["connections"]["reasons"].get(reason, 0),
                        f1["connections"]["noncompliant_client"] - f0["connections"]["noncompliant_client"])
    assert result["sc"] == result["off"], result
    assert result["sc"][0] == 20 and result["sc"][1] is True, result
    assert result["sc"][2]["msg_req"] == 20 and result["sc"][3] == 1 and result["sc"][4] == 1, result
    # the server never saw the violation nor what followed: 20 REQs each
    counts = w.srv.stop()
    assert counts and counts["reqs"] == 40, counts


def test_lenient_violation_lets_bytes_flow_uncounted(foo_world):
    """Lenient: after a violation pandit counts nothing more and relays on;
    the connection is non-compliant; lines, ends and counts are those of
    the userspace path on the same traffic (foo_server itself hangs up on
    the bad line)."""
    w = foo_world(policy="lenient")
    chunks = ([[req(i), i] for i in range(1, 11)] + [["REQ x not a seq\n", 10]] +
              [[req(i), i] for i in range(11, 21)])
    result = {}
    for name, port in (("sc", PORT), ("off", PORT_OFF)):
        f0 = foo(w.p, name)
        out = w.run(chunks, port=port)
        wait_clean(w.p)
        f1 = foo(w.p, name)
        result[name] = ([ln.split(" ")[1] for ln in out["lines"]], closed(out),
                        delta(f0, f1, "msg_req", "msg_total"),
                        f1["connections"]["noncompliant_client"] - f0["connections"]["noncompliant_client"])
    assert result["sc"] == result["off"], result
    assert result["sc"][0][:10] == [str(i) for i in range(1, 11)], result
    assert result["sc"][2]["msg_req"] == 10 and result["sc"][3] == 1, result


# A backend that reads everything and answers nothing (inside the cgroup):
# it prints its port, then serves until killed.
SINK = r'''
import socket, threading
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print(ls.getsockname()[1], flush=True)


def drain(c):
    while c.recv(65536):
        pass
    c.close()


while True:
    c, _ = ls.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
'''


def test_requests_left_pending_at_close_are_unanswered(ns, cgroup, client_script, start_pandit):  # noqa: F811
    """Requests framed by the short-circuit that the server never answers
    count as unanswered when the connection closes, and their entries
    leave the kernel's maps (the daemon's sweep), as on the spliced path."""
    sink = subprocess.Popen(InCgroup(ns, cgroup).exec_argv(["/usr/bin/python3", "-c", SINK]),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(sink.stdout.readline())
        p = start_pandit(base_config([foo_app("sc", [PORT], [f"127.0.0.1:{port}"], health_check=False)],
                                     shortcut_cgroup=cgroup), in_ns=_NsEnter(ns))
        f0, s0 = foo(p), sc(p)
        # sends of plain messages 20 ms apart (the connection is spliced,
        # then its sends are framed and short-circuited), then the client goes
        chunks = [["".join(req(i) for i in range(k, k + 10)), 0] for k in range(1, 41, 10)]
        args = {"cgroup": cgroup, "port": PORT, "chunks": chunks, "pause": 0.02}
        r = subprocess.run(["nsenter", f"--net={ns.path}", "/usr/bin/python3", client_script,
                            json.dumps(args)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-3000:]
        sink.kill()
        wait_clean(p)
        f1, s1 = foo(p), sc(p)
        assert s1["program"]["foo_framed"] > s0["program"]["foo_framed"], s1
        assert delta(f0, f1, "msg_req", "requests_unanswered", "msg_ack", "msg_nak") == \
            {"msg_req": 40, "requests_unanswered": 40, "msg_ack": 0, "msg_nak": 0}
    finally:
        sink.kill()
        sink.wait()


def test_not_paired_when_foo_stays_in_userspace(ns, cgroup, start_pandit):  # noqa: F811 (fixture)
    """kernel_splice: off keeps a Foo app's parsing in userspace: its
    connections are not paired (their sends would skip the parser), and
    the counts stay exact."""
    srv = FooServer(InCgroup(ns, cgroup), "--nak", "0.1")
    try:
        p = start_pandit(base_config([foo_app("us", [PORT], [srv.target], health_check=False,
                                              kernel_splice="off")], shortcut_cgroup=cgroup),
                         in_ns=_NsEnter(ns))
        s0, f0 = sc(p), foo(p, "us")
        argv = InCgroup(ns, cgroup).exec_argv([str(FOO_CLIENT), "-a", f"127.0.0.1:{PORT}", "-c", "2", "-n",
                                               "500", "-d", "8"])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
        res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
        wait_until(lambda: find_app(p.stats(), "us")["active"] == 0, 30, 0.05, "the connections to close")
        s1, f1 = sc(p), foo(p, "us")
        assert s1["paired_total"] == s0["paired_total"], s1
        assert f1["msg_req"] - f0["msg_req"] == res["sent"] == 1000
        assert f1["msg_ack"] - f0["msg_ack"] == res["acks"]
    finally:
        srv.stop()
