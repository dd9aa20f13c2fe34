"""The Linux kernel host stays connected while nvmfd reloads its configuration (SIGHUP).

nvmfd runs as the real daemon (``nvmfd -F -c FILE``) on the host's loopback,
which the guest reaches at 10.0.2.2; the file gains a namespace and the
daemon gets SIGHUP.  The kernel host must see the new namespace (Namespace
Attribute Changed, then its rescan) on the same controller, with no reset
or reconnect, and the data of namespace 1 untouched.
"""

from __future__ import annotations

import json
import shlex

import pytest

from tests.target.test_reload import SUB, Daemon, _nvmetcli

from .test_kernel_host_nvmfd import _block_device

pytestmark = pytest.mark.interop

HOST_FROM_GUEST = "10.0.2.2"
GUEST_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:5d0c9a1e-7b3f-4e2a-9c8d-1f2e3a4b5c6d"


def _controller(guest) -> str:
    """nvmeX of the controller connected to SUB."""
    script = (f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn)\" = "
              f"{shlex.quote(SUB)} ] && basename $c && break; done")
    out = guest.run(script).stdout.strip()
    assert out, guest.run("ls /sys/class/nvme").stdout
    return out


def _namespaces(guest, ctrl: str) -> list[str]:
    """The NSIDs the kernel host sees through ``ctrl``, by the path nodes' nsid."""
    res = guest.run(f"for n in /sys/class/nvme/{ctrl}/nvme*n*; do cat $n/nsid; done")
    return sorted(res.stdout.split())


def test_kernel_host_survives_a_reload_that_adds_a_namespace(linux_guest, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_nvmetcli(["mem:16M"])))
    d = Daemon(tmp_path, "-c", str(path))
    ctrl = None
    try:
        res = linux_guest.run(f"nvme connect -t tcp -a {HOST_FROM_GUEST} -s {d.port} "
                              f"-n {SUB} -q {GUEST_HOSTNQN}", timeout=90)
        assert res.ok, res.stderr
        ctrl = _controller(linux_guest)
        for _ in range(50):
            if _namespaces(linux_guest, ctrl) == ["1"]:
                break
            linux_guest.run("sleep 0.2", chroot=False)
        assert _namespaces(linux_guest, ctrl) == ["1"]
        dev = _block_device(linux_guest, SUB)
        write = (f"set -e; head -c 1048576 /dev/urandom > /tmp/pattern; "
                 f"dd if=/tmp/pattern of={dev} bs=1M oflag=direct status=none; echo OK")
        assert "OK" in linux_guest.run(write, chroot=False, timeout=120).stdout
        cntlid = linux_guest.run(f"cat /sys/class/nvme/{ctrl}/cntlid").stdout.strip()

        path.write_text(json.dumps(_nvmetcli(["mem:16M", "mem:8M"])))
        d.hangup_and_wait_for("configuration applied")
        for _ in range(100):
            if _namespaces(linux_guest, ctrl) == ["1", "2"]:
                break
            linux_guest.run("sleep 0.2", chroot=False)
        assert _namespaces(linux_guest, ctrl) == ["1", "2"], d.log()

        # The same controller, live, never reset; namespace 1 still holds its data.
        assert linux_guest.run(f"cat /sys/class/nvme/{ctrl}/state").stdout.strip() == "live"
        assert linux_guest.run(f"cat /sys/class/nvme/{ctrl}/cntlid").stdout.strip() == cntlid
        dmesg = linux_guest.run("dmesg | tail -40", chroot=False).stdout
        assert "resetting" not in dmesg and "reconnect" not in dmesg, dmesg
        read = (f"dd if={dev} of=/tmp/back bs=1M count=1 iflag=direct status=none && "
                f"cmp /tmp/pattern /tmp/back && echo SAME")
        assert "SAME" in linux_guest.run(read, chroot=False, timeout=120).stdout
        assert "terminated:" not in d.log()  # no association was ended
    finally:
        if ctrl is not None:
            linux_guest.run(f"nvme disconnect -n {SUB}", timeout=90)
        assert d.stop() == 0
