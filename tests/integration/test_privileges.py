"""test_privileges.py - after start-up pandit runs as an unprivileged user with no capabilities, and reloads still work."""
import os
import pwd

import pytest

from helpers import app, banner_of, base_config, proc_status, wait_until


def _dropped(pid, uid, gid):
    """Every thread of pid runs as uid/gid with empty capability sets."""
    bad = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        st = proc_status(f"{pid}/task/{tid}")
        uids = st["Uid"].split()
        gids = st["Gid"].split()
        if uids != [str(uid)] * 4:
            bad.append(f"thread {tid} ({st['Name']}): Uid {st['Uid']}")
        if gids != [str(gid)] * 4:
            bad.append(f"thread {tid} ({st['Name']}): Gid {st['Gid']}")
        for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            if cap in st and int(st[cap], 16) != 0:
                bad.append(f"thread {tid} ({st['Name']}): {cap} {st[cap]}")
        groups = st.get("Groups", "").split()
        if any(g != str(gid) for g in groups):
            bad.append(f"thread {tid}: supplementary groups {groups}")
    return bad


def _check_drop_and_reload(ns, backends, start_pandit, user_name, **cfg_kw):
    pw = pwd.getpwnam(user_name)
    b1, b2 = backends.add("p1", "banner"), backends.add("p2", "banner")
    p = start_pandit(base_config([app("priv", [16000], [b1])], **cfg_kw), probe_ports=[16000])
    try:
        wait_until(lambda: not _dropped(p.pid, pw.pw_uid, pw.pw_gid), 10, what="the privilege drop")
    except AssertionError:
        pytest.fail(f"privileges not dropped to {user_name}: {_dropped(p.pid, pw.pw_uid, pw.pw_gid)}")
    st = proc_status(p.pid)
    assert st["CapEff"] == "0000000000000000", st["CapEff"]

    # reloads keep working through the map descriptors held: add, change, remove
    p.write_config(base_config([app("priv", [16000], [b1]), app("added", ["16001-16003"], [b2])], **cfg_kw))
    assert banner_of(ns, "127.0.0.1", 16002) == "p2"
    p.write_config(base_config([app("priv", [16000], [b2])], **cfg_kw), how="hup")
    assert banner_of(ns, "127.0.0.1", 16000) == "p2"
    with pytest.raises(ConnectionRefusedError):
        banner_of(ns, "127.0.0.1", 16002)
    assert p.reloads()[1] == 0
    assert not _dropped(p.pid, pw.pw_uid, pw.pw_gid)


def test_drops_to_nobody_with_no_capabilities(ns, backends, start_pandit):
    _check_drop_and_reload(ns, backends, start_pandit, "nobody")


def test_drops_to_the_configured_user(ns, backends, start_pandit):
    try:
        pwd.getpwnam("daemon")
    except KeyError:
        pytest.skip("no user daemon on this machine")
    _check_drop_and_reload(ns, backends, start_pandit, "daemon", user="daemon")
