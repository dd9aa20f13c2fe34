"""The kernel host's nvme-cli reservation commands against nvmfd, two host NQNs competing.

The two hosts come in on two ports of nvmfd: nvme-cli refuses a second
controller to the same address and subsystem even with another host NQN
("already connected").
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.interop

HOST_FROM_GUEST = "10.0.2.2"
HOSTS = (
    ("nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555",
     "11111111-2222-4333-8444-555555555555"),
    ("nqn.2014-08.org.nvmexpress:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa",
     "66666666-7777-4888-9999-aaaaaaaaaaaa"),
)


def _ctrl_of(guest, hostnqn: str) -> str:
    out = guest.run(f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/hostnqn)\" = {hostnqn} ] "
                    f"&& basename $c; done").stdout.split()
    assert len(out) == 1, out
    return "/dev/" + out[0]


def _nvme(guest, args: str):
    return guest.run(f"nvme {args}", timeout=60)


def test_kernel_host_reservations_two_hosts(linux_guest, nvmfd_factory):
    g = linux_guest
    srv = nvmfd_factory(namespaces=["mem:16M"], addresses=("127.0.0.1", "127.0.0.1"))
    try:
        for (nqn, hid), port in zip(HOSTS, srv.ports):
            r = g.run(f"nvme connect -t tcp -a {HOST_FROM_GUEST} -s {port} -n {srv.subnqn} "
                      f"-q {nqn} -I {hid}", timeout=90)
            assert r.ok, r.stderr
        a, b = _ctrl_of(g, HOSTS[0][0]), _ctrl_of(g, HOSTS[1][0])
        assert _nvme(g, f"resv-register {a} -n 1 --nrkey=0xa1 --rrega=0").ok
        assert _nvme(g, f"resv-register {b} -n 1 --nrkey=0xb2 --rrega=0").ok
        assert _nvme(g, f"resv-acquire {a} -n 1 --crkey=0xa1 --rtype=1 --racqa=0").ok
        r = _nvme(g, f"resv-report {b} -n 1 --eds -o json")
        assert r.ok, r.stderr
        assert '"rtype":1' in r.stdout and '"regctl":2' in r.stdout
        assert '"hostid":"11111111222243338444555555555555"' in r.stdout
        r = _nvme(g, f"resv-acquire {b} -n 1 --crkey=0xb2 --rtype=1 --racqa=0")
        assert not r.ok and "0x4083" in r.stderr
        g.run("head -c 512 /dev/zero > /tmp/blk")
        r = _nvme(g, f"write {b} -n 1 -s 0 -c 0 -z 512 -d /tmp/blk")
        assert not r.ok and "Reservation Conflict" in r.stderr
        assert _nvme(g, f"read {b} -n 1 -s 0 -c 0 -z 512 -d /tmp/out").ok
        assert _nvme(g, f"write {a} -n 1 -s 0 -c 0 -z 512 -d /tmp/blk").ok
        r = _nvme(g, f"resv-report {a} -n 1")  # without EDS: 64-bit host IDs do not exist here
        assert not r.ok and "0x4018" in r.stderr
        assert _nvme(g, f"resv-release {a} -n 1 --crkey=0xa1 --rtype=1 --rrela=0").ok
        assert _nvme(g, f"write {b} -n 1 -s 0 -c 0 -z 512 -d /tmp/blk").ok
    finally:
        g.run(f"nvme disconnect -n {srv.subnqn}", timeout=60)  # both controllers
