"""test_dns.py - targets given by name: resolved in the background, re-resolved, late names picked up."""
# `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts for the
# daemon it starts, so names can be made to resolve for that daemon only.
import shutil
from pathlib import Path

import pytest

from helpers import app, banner_of, base_config, find_app, wait_until


@pytest.fixture
def hosts_file(ns):
    d = Path("/etc/netns") / ns.name
    d.mkdir(parents=True)
    f = d / "hosts"
    f.write_text("127.0.0.1 localhost\n")
    f.chmod(0o644)

    def write(text):
        with open(f, "r+") as fh:  # in place: the bind mount follows the inode
            fh.truncate(0)
            fh.write("127.0.0.1 localhost\n" + text)
    yield write
    shutil.rmtree(d)
    try:
        Path("/etc/netns").rmdir()  # only if nothing else uses it
    except OSError:
        pass


def test_names_are_resolved_again_and_late_names_picked_up(ns, backends, start_pandit, hosts_file):
    ns.ip("addr", "add", "127.0.0.2/8", "dev", "lo", check=False)
    r1 = backends.add("r1", "banner", addr="127.0.0.1")
    backends.add("r2", "banner", addr="127.0.0.2", port=r1.port)
    late = backends.add("late", "banner", addr="127.0.0.1")
    hosts_file("127.0.0.1 moving.test\n")
    cfg = base_config([app("moving", [20000], [f"moving.test:{r1.port}"]),
                       app("late", [20001], [f"late.test:{late.port}"])],
                      resolve_interval="200ms")
    p = start_pandit(cfg)
    wait_until(lambda: banner_of(ns, "127.0.0.1", 20000) == "r1", 10, what="moving.test to resolve")
    assert not find_app(p.stats(), "late")["targets"][0]["up"]

    hosts_file("127.0.0.2 moving.test\n127.0.0.1 late.test\n")
    wait_until(lambda: banner_of(ns, "127.0.0.1", 20000) == "r2", 15, 0.1,
               what="moving.test to be resolved again to its new address")
    wait_until(lambda: banner_of(ns, "127.0.0.1", 20001) == "late", 15, 0.1,
               what="late.test to resolve and be used")
