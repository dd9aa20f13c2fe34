"""Our ``resv`` on the real Linux kernel: the I/O passthrough ioctl, and nvmet without reservations.

The guest kernel (6.12) connects to nvmfd on the host as host A; our
nvmecontrol runs in the guest (``guest_cli``) on the namespace node, so
Register, Acquire, Report and Release go through NVME_IOCTL_IO_CMD and the
kernel's own association.  Host B competes by address from the test
process.  devlist -v in the guest shows what sysfs says of the namespace
(NGUID, ANA state through the path).  The guest's nvmet has no
reservations (6.12; later kernels only with resv_enable): our resv says so
cleanly.
"""

from __future__ import annotations

import json

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig

from .guest_cli import clear_guest_hosts
from .nvmet import Namespace, NvmetConfig, Port, Subsystem

pytestmark = pytest.mark.interop

HOST_FROM_GUEST = "10.0.2.2"
SUBNQN = "nqn.2014-08.org.example:resv-kernel"
NGUID = "00112233-4455-6677-8899-aabbccddeeff"
A_ID = "11111111-2222-4333-8444-555555555555"
A = f"nqn.2014-08.org.nvmexpress:uuid:{A_ID}"
B_ID = "66666666-7777-4888-9999-aaaaaaaaaaaa"
B = f"nqn.2014-08.org.nvmexpress:uuid:{B_ID}"


def cli(capsys, *argv):
    """(exit status, stdout, stderr) of our nvmecontrol on the host, in this process."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def clean_guest(linux_guest, guest_cli):
    clear_guest_hosts(linux_guest)
    yield guest_cli
    clear_guest_hosts(linux_guest)


def test_resv_through_the_kernel_io_passthrough(linux_guest, clean_guest, nvmfd_factory,
                                                capsys):
    g, gcli = linux_guest, clean_guest
    cfg = TargetConfig(
        subsystems=[SubsystemConfig(nqn=SUBNQN, allow_any_host=True,
                                    namespaces=[NamespaceConfig(1, "mem:16M", nguid=NGUID)])],
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUBNQN])])
    srv = nvmfd_factory(config=cfg)
    r = g.run(f"nvme connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} -n {SUBNQN} "
              f"-q {A} -I {A_ID}", timeout=90)
    assert r.ok, r.stderr
    listing = json.loads(gcli("devlist", "-v", "-o", "json").stdout)
    (sub,) = [s for s in listing["subsystems"] if s["subnqn"] == SUBNQN]
    (path,) = sub["paths"]
    (ns,) = path["namespaces"]
    # What sysfs says of the namespace, through devlist -v on the real kernel.
    assert ns["nguid"] == NGUID.replace("-", "")
    assert (ns["anagrpid"], ns["ana_state"]) == (1, "optimized")
    dev = ns["path"]  # /dev/nvmeXnY

    def resv(*args):
        return gcli("resv", *args, dev)

    def resv_b(*args):
        return cli(capsys, "resv", *args, "-q", B, "-I", B_ID, "-n", "1",
                   f"127.0.0.1:{srv.port}", SUBNQN)

    assert resv("register", "-k", "0xa1").rc == 0
    assert resv("acquire", "-c", "0xa1", "-t", "1").rc == 0
    assert resv_b("register", "-k", "0xb2")[0] == 0
    rc, _, err = resv_b("acquire", "-c", "0xb2", "-t", "1")
    assert rc == X.EX_IOERR and "Reservation Conflict" in err

    r = resv("report", "-e")
    assert r.rc == 0, r.stderr
    assert "Reservation Type:                 1\n" in r.stdout
    assert "Number of Registered Controllers: 2\n" in r.stdout
    st = json.loads(resv("report", "-e", "-o", "json").stdout)
    holders = [c["hostid"] for c in st["controllers"] if c["holder"]]
    assert holders == [A_ID.replace("-", "")]

    # The kernel returns the NVMe status of a failed passthrough: decoded, 74.
    r = resv("release", "-c", "0xbad", "-t", "1")
    assert r.rc == X.EX_IOERR and "Reservation Release failed: Reservation Conflict" in r.stderr
    r = resv("report")  # without -e: fabrics host identifiers are 128-bit
    assert r.rc == X.EX_IOERR and "Host Identifier Inconsistent Format" in r.stderr

    assert resv("release", "-c", "0xa1", "-t", "1").rc == 0
    assert resv_b("acquire", "-c", "0xb2", "-t", "1")[0] == 0
    st = json.loads(resv("report", "-e", "-o", "json").stdout)
    assert [c["hostid"] for c in st["controllers"] if c["holder"]] == [B_ID.replace("-", "")]


def test_resv_on_nvmet_without_reservations(kernel_target, capsys):
    nqn = "nqn.2014-08.org.example:resv-nvmet"
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(nqn, [Namespace(1, size_mib=4)])],
        ports=[Port(1, 4420, subsystems=[nqn])]))
    rc, out, err = cli(capsys, "resv", "report", "-e", "-q", A, "-I", A_ID, "-n", "1",
                       f"{host}:{port}", nqn)
    assert (rc, out) == (X.EX_UNAVAILABLE, "")
    assert "does not support reservations" in err and len(err.splitlines()) == 1
