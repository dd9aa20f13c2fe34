"""ANA with the Linux kernel host: two paths to one nvmfd namespace, moved by
``nvmfd ana-state``.

The guest connects one host NQN through nvmfd's two ports (two controllers
of one subsystem), so native multipath makes one head device with two
paths.  Each state change must reach the kernel through the ANA Change
notice: the path's ``ana_state`` in sysfs and ``nvme ana-log`` follow, I/O
through the controller of an inaccessible path fails with ANA Inaccessible,
and I/O through the head device keeps working on the other path.
"""

from __future__ import annotations

import json
import re

import pytest

from nvmecontrol.target.main import main as nvmfd_main

pytestmark = pytest.mark.interop

HOST_FROM_GUEST = "10.0.2.2"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0a4a0a4a-1b2c-4d3e-8f90-123456789abc"
HOSTID = "0a4a0a4a-1b2c-4d3e-8f90-123456789abc"
# How long the kernel may take to read the ANA log after the notice (TCG is slow).
SETTLE_S = 30


def _paths(guest) -> dict[int, tuple[str, str]]:
    """trsvcid -> (controller device, ANA state) of each path of namespace 1."""
    out = guest.run("for b in /sys/block/nvme*c*n1; do [ -e $b/ana_state ] || continue; "
                    "echo \"$(cat $b/device/address) $(basename $(readlink -f $b/device)) "
                    "$(cat $b/ana_state)\"; done").stdout
    paths = {}
    for line in out.splitlines():
        m = re.search(r"trsvcid=(\d+)\S*\s+(nvme\d+)\s+(\S+)", line)
        if m:
            paths[int(m.group(1))] = ("/dev/" + m.group(2), m.group(3))
    return paths


def _wait_states(guest, want: dict[int, str]) -> dict[int, tuple[str, str]]:
    """Poll sysfs until every path of ``want`` (trsvcid -> state) shows that state."""
    paths = {}
    for _ in range(SETTLE_S * 5):
        paths = _paths(guest)
        if all(paths.get(p, ("", ""))[1] == s for p, s in want.items()):
            return paths
        guest.run("sleep 0.2", chroot=False)
    raise AssertionError(f"ANA states in sysfs: {paths}, expected {want}")


def _head(guest) -> str:
    out = guest.run("for b in /sys/block/nvme*n1; do case ${b##*/} in nvme*c*n1) continue;; "
                    "esac; echo /dev/${b##*/}; done").stdout.split()
    assert len(out) == 1, out
    return out[0]


def _ana_log_states(guest, ctrl: str) -> dict[int, str]:
    """Group -> state from ``nvme ana-log -o json`` (its key names vary between versions)."""
    r = guest.run(f"nvme ana-log {ctrl} -o json", timeout=60)
    assert r.ok, r.stderr
    found = {}

    def walk(x):
        if isinstance(x, dict):
            if "grpid" in x and "state" in x:
                found[int(x["grpid"])] = str(x["state"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(json.loads(r.stdout))
    return found


def _ana_state(srv, port: int, group: int, state: str) -> None:
    assert nvmfd_main(["ana-state", "-S", srv.socket_path, str(port), str(group), state]) == 0


def test_kernel_host_follows_ana_state(linux_guest, nvmfd_factory):
    g = linux_guest
    srv = nvmfd_factory(namespaces=["mem:16M"], addresses=("127.0.0.1", "127.0.0.1"))
    p1, p2 = srv.ports  # nvmfd portids 1 and 2
    try:
        for port in (p1, p2):
            r = g.run(f"nvme connect -t tcp -a {HOST_FROM_GUEST} -s {port} -n {srv.subnqn} "
                      f"-q {HOSTNQN} -I {HOSTID}", timeout=90)
            assert r.ok, r.stderr
        paths = _wait_states(g, {p1: "optimized", p2: "optimized"})
        c1, c2 = paths[p1][0], paths[p2][0]
        head = _head(g)

        # Port 2's path goes inaccessible: the notice makes the kernel re-read the log.
        _ana_state(srv, 2, 1, "inaccessible")
        _wait_states(g, {p1: "optimized", p2: "inaccessible"})
        assert _ana_log_states(g, c2) == {1: "inaccessible"}
        assert _ana_log_states(g, c1) == {1: "optimized"}
        g.run("head -c 4096 /dev/urandom > /tmp/ana-pattern", check=True)
        r = g.run(f"nvme read {c2} -n 1 -s 0 -c 7 -z 4096 -d /tmp/ana-out", timeout=60)
        assert not r.ok and ("0x302" in r.stderr or "INACCESSIBLE" in r.stderr.upper()), \
            r.stdout + r.stderr
        assert g.run(f"nvme read {c1} -n 1 -s 0 -c 7 -z 4096 -d /tmp/ana-out", timeout=60).ok
        # The head device writes through the optimized path.
        g.run(f"dd if=/tmp/ana-pattern of={head} bs=4096 count=1 oflag=direct status=none",
              check=True, timeout=60)

        # Swap: port 1 inaccessible, port 2 optimized; I/O moves to port 2's path.
        _ana_state(srv, 2, 1, "optimized")
        _ana_state(srv, 1, 1, "inaccessible")
        _wait_states(g, {p1: "inaccessible", p2: "optimized"})
        r = g.run(f"nvme read {c1} -n 1 -s 0 -c 7 -z 4096 -d /tmp/ana-out", timeout=60)
        assert not r.ok
        r = g.run(f"dd if={head} of=/tmp/ana-back bs=4096 count=1 iflag=direct status=none && "
                  f"cmp /tmp/ana-pattern /tmp/ana-back && echo SAME", timeout=60)
        assert r.ok and "SAME" in r.stdout, r.stderr
        # Non-optimized still serves I/O.
        _ana_state(srv, 1, 1, "non-optimized")
        _wait_states(g, {p1: "non-optimized", p2: "optimized"})
        assert g.run(f"nvme read {c1} -n 1 -s 0 -c 7 -z 4096 -d /tmp/ana-out", timeout=60).ok
    finally:
        g.run(f"nvme disconnect -n {srv.subnqn}", timeout=60)
