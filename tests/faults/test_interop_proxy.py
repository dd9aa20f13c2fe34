"""The fault proxy in front of the Linux kernel's nvmet (interop tier).

The proxy dials the host side of the guest's forwarded port like any
target.  Digest corruption both ways and a reset mid-read, seen by our host
library: detected, and corrupt data neither returned nor written.
"""

from __future__ import annotations

import pytest

from nvmecontrol.errors import NvmeControlError
from nvmecontrol.wire import nvm

from ..interop.conftest import kernel_target, linux_guest  # noqa: F401 (fixtures)
from ..interop.nvmet import Namespace, NvmetConfig, Port, Subsystem
from ..target.helpers import connect as host_connect
from ..target.helpers import run as run_cmd
from .conftest import figures
from .proxy import C2H, H2C, Fault
from .test_proxy import DATA, Via

pytestmark = pytest.mark.interop

NQN = "nqn.2014-08.org.nvmexpress.test:faults"


class KernelHandle:
    def __init__(self, host: str, port: int):
        from nvmecontrol.transport.address import Address
        self.subnqn, self.port = NQN, port
        self.address = Address(host, port, f"{host}:{port}")


@pytest.fixture
def kernel(kernel_target):  # noqa: F811
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8)])],
        ports=[Port(1, 4420, subsystems=[NQN])]))
    return KernelHandle(host, port)


def outcome(assoc, data: bytes, what: str) -> str:
    q = assoc.io[0]
    try:
        if what == "write":
            return f"status {run_cmd(q, nvm.build_write(1, 0, 32), write_data=data, timeout=5)[0].status:#x}"
        cqe, got = run_cmd(q, nvm.build_read(1, 0, 32), read_len=len(data), timeout=5)
        assert cqe.status != 0 or got == data, "a read succeeded with corrupt data"
        return f"status {cqe.status:#x}"
    except NvmeControlError as e:
        return type(e).__name__


def on_disk(kernel) -> bytes:
    assoc = host_connect(kernel, num_io_queues=1)
    try:
        cqe, got = run_cmd(assoc.io[0], nvm.build_read(1, 0, 32), read_len=len(DATA))
        assert cqe.status == 0
        return got
    finally:
        assoc.shutdown()


@pytest.mark.parametrize("fault, what", [
    (Fault("corrupt", C2H, pdu="C2HData", queue="io", spot="data"), "read"),
    # nvmet takes 16 KiB in the capsule (its IOCCSZ is larger than nvmfd's).
    (Fault("corrupt", H2C, pdu="CapsuleCmd", queue="io", nth=2, spot="data"), "write"),
    (Fault("corrupt", H2C, pdu="CapsuleCmd", queue="io", nth=2, spot="hdgst"), "write"),
    (Fault("reset", C2H, pdu="C2HData", queue="io"), "read"),
], ids=["c2h-data", "h2c-data", "h2c-hdgst", "reset-mid-read"])
def test_kernel_target_through_the_proxy(kernel, proxy_factory, fault, what):
    good = on_disk(kernel)
    proxy = proxy_factory(kernel.port, [fault])
    assoc = host_connect(Via(kernel, proxy), num_io_queues=1, hdgst=True, ddgst=True,
                         timeout_s=5)
    try:
        result = outcome(assoc, bytes(reversed(DATA)) if what == "write" else good, what)
    finally:
        assoc.close()
    after = on_disk(kernel)
    figures("interop kernel nvmet via proxy", fault=fault.describe(), fired=proxy.fired(),
            result=result)
    assert proxy.fired() == 1
    assert result != "status 0x0"  # detected
    # A corrupted write never lands: the block holds what it held.
    assert after == good
