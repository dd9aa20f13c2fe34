"""api.open(): controllers and namespaces that a session or the kernel already holds.

Sessions are real (``connect --backend nbd`` against an in-process nvmfd);
the kernel is a fake ioctl layer over device nodes and a sysfs tree in
tmp_path, answering the passthrough ioctls the way the kernel does (the
NVMe status as a positive return value).
"""

from __future__ import annotations

import ctypes
import os

import pytest

from nvmecontrol import api
from nvmecontrol.backends import linux_admin, linux_io
from nvmecontrol.backends.admin_access import open_admin
from nvmecontrol.wire.admin import build_identify
from nvmecontrol.wire.identify import (IdentifyController, IdentifyNamespace, LbaFormat,
                                       decode_identify_controller, encode_active_nsid_list, encode_identify_controller,
                                       encode_identify_namespace)
from nvmecontrol.wire.nvm import DSM_RANGE, NvmOpc

from .backends.sessionkit import (SUBNQN, MiB, backing_file, cli_ok, connect, nbd_socket,
                                  read_all, session_guard, sessions, start_target)

assert session_guard  # autouse: no session process outlives its test

# -- sessions ---------------------------------------------------------------------------


@pytest.fixture
def session(nvmfd_factory, tmp_path):
    """Session nvmeu0 on a target with two file-backed namespaces (8 and 4 MiB)."""
    target = start_target(nvmfd_factory, [backing_file(tmp_path / "ns1.img"),
                                          backing_file(tmp_path / "ns2.img", 4 * MiB)])
    connect(target)
    yield target
    cli_ok("disconnect", "nvmeu0")


def test_open_session_controller(session):
    with api.open("nvmeu0") as ctrl:
        assert isinstance(ctrl, api.Controller)
        assert ctrl.name == "nvmeu0" and ctrl.subnqn == SUBNQN and ctrl.cntlid > 0
        assert ctrl.identify().subnqn == SUBNQN
        assert [(n.nsid, n.size, n.block_size) for n in ctrl.namespaces()] == \
            [(1, 8 * MiB, 512), (2, 4 * MiB, 512)]
        assert len(ctrl.log_page(0x02, 512)) == 512
        ctrl.set_features(0x0B, 1 << 8)  # dword 0 travels back through the control socket
        assert ctrl.get_features(0x0B) == 1 << 8
        with pytest.raises(api.NotFound):
            ctrl.namespace(9)
    assert sessions()["nvmeu0"].state != "dead"  # closing lets go, the session stays


def test_open_session_namespace_block_io(session):
    data = os.urandom(3 * MiB)  # more than one NBD request's worth is not needed: any size
    with api.open("nvmeu0ns1") as ns:
        assert isinstance(ns, api.Namespace) and (ns.nsid, ns.blocks) == (1, 8 * MiB // 512)
        ns.write(100, data)
        ns.flush()
        assert ns.read(100, len(data) // 512) == data
        buf = bytearray(4096)
        assert ns.readinto(100, buf) == 4096 and bytes(buf) == data[:4096]
        ns.write_zeroes(100, 8)
        ns.trim(108, 8)
        assert ns.read(100, 8) == bytes(4096)
    # What the export holds, through another NBD client of the session.
    seen = read_all(nbd_socket(), 8 * MiB)
    assert seen[100 * 512:100 * 512 + 4096] == bytes(4096)
    assert seen[116 * 512:100 * 512 + len(data)] == data[16 * 512:]


def test_open_session_many_commands_in_flight(session):
    blocks = [os.urandom(4096) for _ in range(128)]
    with api.open("/dev/nvmeu0n2") as ns:  # the kernel-style spelling, /dev/ included
        assert ns.nsid == 2
        writes = [ns.submit_write(i * 8, b) for i, b in enumerate(blocks)]
        assert all(w.result(timeout=30) is None for w in writes)
        reads = [ns.submit_read(i * 8, 8) for i in range(128)]
        assert [bytes(r.result(timeout=30)) for r in reads] == blocks
        assert ns.submit_flush().result(timeout=30) is None


def test_session_errors_are_one_line(session):
    with api.open("nvmeu0") as ctrl:
        ns = ctrl.namespace(1)
        with pytest.raises(api.UsageError, match="outside namespace 1"):
            ns.read(ns.blocks, 1)
        with pytest.raises(api.CommandFailed) as e:
            ctrl.get_features(0x7E)
        assert e.value.status & 0xFF == 0x02 and "Invalid Field" in str(e.value)
        assert "\n" not in str(e.value)
    with pytest.raises(api.ConnectionLost, match="closed"):
        ns.read(0, 1)
    with pytest.raises(api.ConnectionLost, match="closed"):
        ctrl.get_features(0x0B)


def test_session_io_error_names_the_errno(nvmfd_factory):
    target = start_target(nvmfd_factory, ["mem:4M", "mem:4M"])
    with target.control() as c:  # namespace 2 write-protected: its export is read-only
        c.request("ns-remove", nsid=2)
        c.request("ns-add", device="mem:4M", nsid=2, read_only=True)
    connect(target)
    try:
        with api.open("nvmeu0ns2") as ns:
            with pytest.raises(api.DeviceError, match="Write 0\\+8 failed on ns2: EPERM"):
                ns.write(0, bytes(4096))
            assert ns.read(0, 8) == bytes(4096)  # the connection goes on
    finally:
        cli_ok("disconnect", "nvmeu0")


def test_unknown_names(session):
    with pytest.raises(api.NotFound, match="nvmeu5"):
        api.open("nvmeu5")
    with pytest.raises(api.UsageError, match="not a controller or namespace name"):
        api.open("sda1")
    with pytest.raises(api.NotFound):
        api.open("nvmeu0ns7")  # the session has no namespace 7


# -- the kernel, faked ----------------------------------------------------------------------

class FakeKernel:
    """Passthrough ioctls on /dev/nvme0 and /dev/nvme0n1..n2 (files under tmp_path)."""

    BLOCK = 4096
    BLOCKS = 256

    def __init__(self, root):
        self.dev = root / "dev"
        self.dev.mkdir()
        for node in ("nvme0", "nvme0n1", "nvme0n2"):
            (self.dev / node).write_bytes(b"")
        for disk, nsid in (("nvme0n1", 1), ("nvme0n2", 2)):
            d = root / "sys/class/nvme/nvme0" / disk
            d.mkdir(parents=True)
            (d / "nsid").write_text(f"{nsid}\n")
        self.store = {1: bytearray(self.BLOCK * self.BLOCKS), 2: bytearray(self.BLOCK * self.BLOCKS)}
        self.features = {}
        self.commands = []  # (node, opcode)

    def ioctl(self, fd, request, arg=0):
        node = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if request == linux_admin.NVME_IOCTL_ID:
            return int(node.rsplit("n", 1)[1])
        cmd = arg
        self.commands.append((node, cmd.opcode))
        if request == linux_admin.NVME_IOCTL_ADMIN_CMD:
            return self.admin(cmd)
        assert request == linux_admin.NVME_IOCTL_IO_CMD and node != "nvme0"
        return self.io(cmd)

    def _give(self, cmd, data: bytes) -> None:
        ctypes.memmove(cmd.addr, data, min(len(data), cmd.data_len))

    def admin(self, cmd) -> int:
        if cmd.opcode == 0x06:  # Identify
            cns = cmd.cdw10 & 0xFF
            if cns == 0x01:
                self._give(cmd, encode_identify_controller(IdentifyController(
                    mn="fake", subnqn="nqn.2014-08.org.example:kernel", cntlid=7, mdts=3)))
            elif cns == 0x02:
                self._give(cmd, encode_active_nsid_list(sorted(self.store)))
            elif cns == 0x00:
                if cmd.nsid not in self.store:
                    self._give(cmd, bytes(4096))
                else:
                    self._give(cmd, encode_identify_namespace(IdentifyNamespace(
                        nsze=self.BLOCKS, ncap=self.BLOCKS, lbaf=[LbaFormat(0, 12, 0)])))
            return 0
        if cmd.opcode == 0x0A:  # Get Features
            if cmd.cdw10 & 0xFF not in self.features:
                return 0x4002  # DNR | Invalid Field in Command
            cmd.result = self.features[cmd.cdw10 & 0xFF]
            return 0
        if cmd.opcode == 0x09:  # Set Features
            self.features[cmd.cdw10 & 0xFF] = cmd.cdw11
            return 0
        return 0x4001  # Invalid Command Opcode

    def io(self, cmd) -> int:
        store = self.store[cmd.nsid]
        slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1
        at, size = slba * self.BLOCK, nlb * self.BLOCK
        if cmd.opcode in (NvmOpc.READ, NvmOpc.WRITE, NvmOpc.WRITE_ZEROES) \
                and at + size > len(store):
            return 0x4080  # LBA Out of Range
        if cmd.opcode == NvmOpc.READ:
            assert cmd.data_len == size
            self._give(cmd, bytes(store[at:at + size]))
        elif cmd.opcode == NvmOpc.WRITE:
            assert cmd.data_len == size
            store[at:at + size] = ctypes.string_at(cmd.addr, size)
        elif cmd.opcode == NvmOpc.WRITE_ZEROES:
            store[at:at + size] = bytes(size)
        elif cmd.opcode == NvmOpc.DATASET_MANAGEMENT:
            _, count, first = DSM_RANGE.unpack(ctypes.string_at(cmd.addr, DSM_RANGE.size))
            store[first * self.BLOCK:(first + count) * self.BLOCK] = bytes(count * self.BLOCK)
        elif cmd.opcode != NvmOpc.FLUSH:
            return 0x4001
        return 0


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    fake = FakeKernel(tmp_path)
    monkeypatch.setattr(linux_io, "DEV_ROOT", str(fake.dev))
    monkeypatch.setattr(linux_io, "SYSROOT", str(tmp_path))
    monkeypatch.setattr(linux_admin.fcntl, "ioctl", fake.ioctl)
    return fake


def test_open_kernel_controller(kernel):
    with api.open("nvme0") as ctrl:
        assert (ctrl.name, ctrl.subnqn, ctrl.cntlid) == ("nvme0", "nqn.2014-08.org.example:kernel", 7)
        assert [(n.nsid, n.block_size, n.blocks) for n in ctrl.namespaces()] == \
            [(1, 4096, 256), (2, 4096, 256)]
        ctrl.set_features(0x0B, 0x100)
        assert ctrl.get_features(0x0B) == 0x100  # dword 0 of the ioctl's result
        with pytest.raises(api.CommandFailed) as e:
            ctrl.get_features(0x7E)
        assert e.value.status == 0x4002 and "Invalid Field in Command" in str(e.value)
        ns2 = ctrl.namespace(2)
        ns2.write(3, b"\x5a" * 8192)
    assert kernel.store[2][3 * 4096:5 * 4096] == b"\x5a" * 8192
    # Admin commands on the controller node, NVM commands on the namespace's node.
    assert ("nvme0n2", NvmOpc.WRITE) in kernel.commands
    assert all(node != "nvme0" for node, op in kernel.commands if op == NvmOpc.WRITE)


def test_open_kernel_namespace_io(kernel):
    data = os.urandom(256 * 1024)  # above the 32 KiB MDTS (3, 4 KiB pages): split
    with api.open("/dev/nvme0n1") as ns:
        assert (ns.nsid, ns.max_blocks) == (1, 8)
        ns.write(10, data)
        ns.flush()
        assert ns.read(10, len(data) // 4096) == data
        futures = [ns.submit_read(10 + i, 1) for i in range(64)]
        assert b"".join(bytes(f.result(timeout=10)) for f in futures) == data
        ns.write_zeroes(10, 2)
        ns.trim(12, 2)
        assert ns.read(10, 4) == bytes(4 * 4096)
        with pytest.raises(api.UsageError):
            ns.read(ns.blocks, 1)
    writes = [op for node, op in kernel.commands if op == NvmOpc.WRITE]
    assert len(writes) == len(data) // (8 * 4096)


def test_kernel_command_error_carries_the_status(kernel):
    kernel.BLOCKS = 1 << 20  # the namespace claims more than the store holds
    with api.open("nvme0n1") as ns:
        with pytest.raises(api.CommandFailed) as e:
            ns.read(1000, 1)
    assert e.value.status == 0x4080 and "LBA Out of Range" in str(e.value)
    assert "\n" not in str(e.value)


def test_kernel_missing_node(kernel):
    with pytest.raises(api.NotFound, match="nvme3"):
        api.open("nvme3")
    with api.open("nvme0") as ctrl:
        os.unlink(kernel.dev / "nvme0n2")
        with pytest.raises(api.NotFound):
            ctrl.namespace(2)


# -- open_admin: the one way the CLI and the API run admin commands ---------------------------

def test_open_admin_kernel_and_unknown(kernel):
    with open_admin("nvme0n2") as access:
        assert (access.kind, access.nsid) == ("kernel", 2)
        dw0, data = access.admin_command(build_identify(0x01), "Identify", read_len=4096)
        assert dw0 == 0 and decode_identify_controller(data).cntlid == 7
    with pytest.raises(api.UsageError):
        open_admin("nvme0x")


def test_cli_device_goes_through_open_admin(kernel):
    from nvmecontrol.cli.device import ConnectOptions, open_controller

    with open_controller("nvme0n2", None, ConnectOptions()) as ctrl:
        assert ctrl.nsid == 2
        ident = ctrl.identify_controller()
        assert ident.data.cntlid == 7 and decode_identify_controller(ident.raw) == ident.data
    assert [op for node, op in kernel.commands] == [0x06]  # one Identify, on the node named
    with pytest.raises(api.UsageError, match="nvme0 is a device"):
        open_controller("nvme0", "nqn.2014-08.org.example:x", ConnectOptions())


def test_cli_identify_on_a_session(session):
    from .backends.sessionkit import cli

    rc, out, err = cli("identify", "-o", "json", "nvmeu0")
    assert rc == 0, err
    assert SUBNQN in out
    rc, _, err = cli("identify", "nvmeu0", SUBNQN)
    assert rc != 0 and "nvmeu0 is a session" in err
