"""The Linux kernel as host (nvme-cli in the guest) against our nvmfd on the host.

The guest reaches the host's loopback at 10.0.2.2 (qemu user networking), so
nvmfd listens on 127.0.0.1 and the guest connects to 10.0.2.2:port.
"""

from __future__ import annotations

import hashlib
import shlex

import pytest

from .tshark import Capture, have_tshark

HOST_FROM_GUEST = "10.0.2.2"
GUEST_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:9e0c6f52-3b7d-4c1a-8e2f-6a5b4c3d2e1f"
OTHER_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:a1b2c3d4-e5f6-4711-8899-aabbccddeeff"


def _nvme(guest, args: str, **kw):
    return guest.run(f"nvme {args}", timeout=kw.pop("timeout", 90), **kw)


def _block_device(guest, nqn: str) -> str:
    """The /dev node of namespace 1 of the controller connected to ``nqn``."""
    # nvmeXcYnZ are the hidden per-path nodes of native multipath: skip them.
    script = (f"for b in /sys/block/nvme*n1; do case ${{b##*/}} in nvme*c*n1) continue;; esac; "
              f"[ \"$(cat $b/device/subsysnqn 2>/dev/null)\" = {shlex.quote(nqn)} ] && "
              f"echo /dev/$(basename $b) && break; done")
    for _ in range(50):
        out = guest.run(script).stdout.strip()
        if out:
            return out
        guest.run("sleep 0.2", chroot=False)
    raise AssertionError(f"no block device for {nqn}: {guest.run('ls /sys/block').stdout}")


@pytest.fixture
def connected(linux_guest, nvmfd_factory, request):
    """nvmfd with a 32 MiB RAM namespace, connected from the guest kernel."""
    digests = getattr(request, "param", "")
    srv = nvmfd_factory(namespaces=["mem:32M"])
    res = _nvme(linux_guest, f"connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} "
                             f"-n {srv.subnqn} -q {GUEST_HOSTNQN} {digests}")
    assert res.ok, res.stderr
    try:
        yield srv, _block_device(linux_guest, srv.subnqn)
    finally:
        _nvme(linux_guest, f"disconnect -n {srv.subnqn}")


def test_discover_from_kernel_host(linux_guest, nvmfd_factory):
    srv = nvmfd_factory(namespaces=["mem:8M"])
    res = _nvme(linux_guest, f"discover -t tcp -a {HOST_FROM_GUEST} -s {srv.port} "
                             f"-q {GUEST_HOSTNQN}")
    assert res.ok, res.stderr
    assert f"subnqn:  {srv.subnqn}" in res.stdout
    assert "trtype:  tcp" in res.stdout


@pytest.mark.parametrize("connected", ["", "-g", "-G", "-g -G"], indirect=True,
                         ids=["plain", "hdgst", "ddgst", "digests"])
def test_dd_write_read_verify(linux_guest, connected):
    srv, dev = connected
    cmd = (f"set -e; head -c 4194304 /dev/urandom > /tmp/pattern; "
           f"dd if=/tmp/pattern of={dev} bs=1M oflag=direct status=none; "
           f"dd if={dev} of=/tmp/back bs=1M count=4 iflag=direct status=none; "
           f"cmp /tmp/pattern /tmp/back && echo SAME; md5sum /tmp/pattern")
    res = linux_guest.run(cmd, chroot=False, timeout=120)
    assert res.ok and "SAME" in res.stdout, res.stderr
    # The data really reached nvmfd's namespace.
    ns = srv.server.subsystems[srv.subnqn].namespaces[1]
    stored = bytearray(4 << 20)
    ns.backend.read_into(memoryview(stored), 0)
    pattern = res.stdout.split()[-2]
    assert hashlib.md5(stored).hexdigest() == pattern


def test_fio_verify(linux_guest, connected):
    _srv, dev = connected
    res = linux_guest.run(
        f"fio --name=verify --filename={dev} --rw=randwrite --bs=4k --bsrange=512-64k "
        f"--size=8M --ioengine=psync --direct=1 --verify=crc32c --do_verify=1 "
        f"--verify_fatal=1 --iodepth=1 --output-format=terse", timeout=300)
    assert res.ok, res.stdout + res.stderr
    assert "verify" in res.stdout


def test_refused_host(linux_guest, nvmfd_factory):
    srv = nvmfd_factory(namespaces=["mem:8M"], allow_hosts=[OTHER_HOSTNQN])
    res = _nvme(linux_guest, f"connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} "
                             f"-n {srv.subnqn} -q {GUEST_HOSTNQN}")
    assert not res.ok
    dmesg = linux_guest.run("dmesg | tail -20", chroot=False).stdout
    # The kernel logs the Connect status: 16772 = 0x4184, Connect Invalid Host with DNR.
    assert "is not allowed" in dmesg and "ret=16772" in dmesg, res.stderr + dmesg


def test_tshark_reads_kernel_host_and_nvmfd(linux_guest, nvmfd_factory):
    if not have_tshark():
        pytest.skip("tshark not installed")
    srv = nvmfd_factory(namespaces=["mem:8M"])
    cap = Capture(srv.port)
    try:
        with cap:
            res = _nvme(linux_guest, f"connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} "
                                     f"-n {srv.subnqn} -q {GUEST_HOSTNQN} -g -G")
            assert res.ok, res.stderr
            dev = _block_device(linux_guest, srv.subnqn)
            linux_guest.run(f"dd if=/dev/urandom of={dev} bs=64k count=16 oflag=direct && "
                            f"dd if={dev} of=/dev/null bs=64k count=16 iflag=direct",
                            chroot=False, check=True, timeout=120)
            _nvme(linux_guest, f"disconnect -n {srv.subnqn}")
        types = set(cap.pdu_types())
        assert {"0", "1", "4", "5", "7"} <= types, types
        assert cap.problems() == []
    finally:
        cap.cleanup()


def test_nvmetcli_config_discovered_by_kernel_host(linux_guest, nvmfd_factory):
    """An nvmetcli saved config (two subsystems, a restricted host, a referral) served by
    nvmfd: the kernel host's discovery shows exactly what its host NQN may see."""
    from nvmecontrol.target.config import load_nvmetcli

    open_nqn = "nqn.2014-08.org.example:cfg-open"
    locked_nqn = "nqn.2014-08.org.example:cfg-locked"
    config = load_nvmetcli({
        "hosts": [{"nqn": OTHER_HOSTNQN}],
        "ports": [{"portid": 1,
                   "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                            "trsvcid": "0", "treq": "not specified"},
                   "subsystems": [open_nqn, locked_nqn],
                   "referrals": [{"name": "ref", "enable": 1,
                                  "addr": {"trtype": "tcp", "adrfam": "ipv4",
                                           "traddr": "192.0.2.33", "trsvcid": "8009",
                                           "treq": "not specified", "portid": 2}}]}],
        "subsystems": [
            {"nqn": open_nqn, "allowed_hosts": [], "attr": {"allow_any_host": "1"},
             "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "mem:8M"}}]},
            {"nqn": locked_nqn, "allowed_hosts": [OTHER_HOSTNQN],
             "attr": {"allow_any_host": "0"},
             "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "mem:4M"}}]},
        ],
    })
    srv = nvmfd_factory(config=config)

    def subnqns(hostnqn: str) -> list[str]:
        res = _nvme(linux_guest, f"discover -t tcp -a {HOST_FROM_GUEST} -s {srv.port} "
                                 f"-q {hostnqn}")
        assert res.ok, res.stderr
        return sorted(line.split()[-1] for line in res.stdout.splitlines()
                      if line.startswith("subnqn:"))

    discovery = "nqn.2014-08.org.nvmexpress.discovery"
    assert subnqns(GUEST_HOSTNQN) == sorted([open_nqn, discovery])
    assert subnqns(OTHER_HOSTNQN) == sorted([open_nqn, locked_nqn, discovery])
    res = _nvme(linux_guest, f"discover -t tcp -a {HOST_FROM_GUEST} -s {srv.port} "
                             f"-q {GUEST_HOSTNQN}")
    assert "traddr:  192.0.2.33" in res.stdout and "trsvcid: 8009" in res.stdout
