"""api.open() on the guest kernel's controller and namespace (connected by nvme-cli to nvmfd).

The snippet runs in the guest as root with this checkout's Python (the
guest_cli paths): admin commands through the admin passthrough ioctl, I/O
through NVME_IOCTL_IO_CMD; the data is then checked in nvmfd's namespace.
"""

from __future__ import annotations

import hashlib
import shlex

import pytest

pytestmark = pytest.mark.interop

HOST_FROM_GUEST = "10.0.2.2"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:4c6e2a10-7b3d-4e8f-9a1b-2c3d4e5f6a7b"

SNIPPET = """
import hashlib, os, sys
from nvmecontrol import api
ctrl_name, subnqn = sys.argv[1], sys.argv[2]
with api.open(ctrl_name) as ctrl:
    assert ctrl.subnqn == subnqn, ctrl.subnqn
    (ns,) = ctrl.namespaces()
    assert (ns.nsid, ns.size) == (1, 32 << 20), (ns.nsid, ns.size)
    try:
        ctrl.get_features(0x7E)
        raise SystemExit("Get Features 0x7e succeeded")
    except api.CommandFailed as e:
        print("status", hex(e.status & 0xFF))
    disk = None
    for name in os.listdir("/sys/block"):
        if name.startswith("nvme") and "c" not in name[4:] and \\
                open(f"/sys/block/{name}/device/subsysnqn").read().strip() == subnqn:
            disk = name
with api.open(disk) as ns:
    data = os.urandom(1 << 20)
    ns.write(0, data)
    ns.flush()
    assert ns.read(0, len(data) // ns.block_size) == data
    futures = [ns.submit_read(i * 8, 8) for i in range(64)]
    assert b"".join(bytes(f.result(timeout=30)) for f in futures) == data[:64 * 8 * ns.block_size]
    print("md5", hashlib.md5(data).hexdigest())
"""


def test_api_open_kernel_controller_and_namespace(linux_guest, guest_cli, nvmfd_factory):
    g = linux_guest
    srv = nvmfd_factory(namespaces=["mem:32M"])
    r = g.run(f"nvme connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} -n {srv.subnqn} "
              f"-q {HOSTNQN}", timeout=90)
    assert r.ok, r.stderr
    try:
        ctrls = g.run(f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/hostnqn)\" = {HOSTNQN} ] "
                      f"&& basename $c; done").stdout.split()
        assert len(ctrls) == 1, ctrls
        g.write_file("/tmp/api_open.py", SNIPPET)
        # PYTHONPATH: the venv's editable install names the host's path of
        # the checkout, which the guest sees elsewhere.
        res = g.run(f"cd {shlex.quote(guest_cli.repo)} && PYTHONPATH={shlex.quote(guest_cli.repo)} "
                    f"{shlex.quote(guest_cli.python)} "
                    f"/tmp/api_open.py {ctrls[0]} {shlex.quote(srv.subnqn)}", timeout=120)
        assert res.ok, res.stdout + res.stderr
        assert "status 0x2" in res.stdout  # Invalid Field in Command, through the ioctl
        md5 = res.stdout.split("md5 ")[1].split()[0]
    finally:
        g.run(f"nvme disconnect -n {srv.subnqn}", timeout=60)
    stored = bytearray(1 << 20)
    srv.server.subsystems[srv.subnqn].namespaces[1].backend.read_into(memoryview(stored), 0)
    assert hashlib.md5(stored).hexdigest() == md5
