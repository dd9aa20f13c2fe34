"""The I/O passthrough ioctl of kernel namespaces, with the kernel replaced by a fake ioctl.

The real kernel is the interop tier's (tests/interop/test_resv_nvmecontrol_kernel.py);
here: the request number, the command fields and buffer handed to the kernel, data read
back, and the kernel's positive return decoded as the NVMe status.
"""

from __future__ import annotations

import ctypes

import pytest

from nvmecontrol.backends import linux_admin as LA
from nvmecontrol.errors import CommandFailed, DeviceError
from nvmecontrol.wire import reservations as R


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A namespace node /dev/nvme0n1 (a file) and a fake ioctl recording each command."""
    (tmp_path / "nvme0n1").write_bytes(b"")
    calls = []
    answer = {"rc": 0, "data": b"", "errno": 0}

    def ioctl(fd, request, arg=0):
        if request == LA.NVME_IOCTL_ID:
            return 1
        cmd = arg
        sent = ctypes.string_at(cmd.addr, cmd.data_len) if cmd.data_len else b""
        calls.append((request, cmd.opcode, cmd.nsid, cmd.cdw10, cmd.cdw11, cmd.data_len, sent))
        if answer["errno"]:
            raise OSError(answer["errno"], "fake")
        if answer["data"]:
            ctypes.memmove(cmd.addr, answer["data"], len(answer["data"]))
        cmd.result = 0x1234
        return answer["rc"]

    monkeypatch.setattr(LA.fcntl, "ioctl", ioctl)
    kc = LA.KernelController(LA.parse_device_name("nvme0n1"), dev_root=str(tmp_path))
    yield kc, calls, answer
    kc.close()


def test_register_writes_its_keys_with_the_io_request(kernel):
    kc, calls, _ = kernel
    data = R.encode_register_data(R.RegisterData(0, 0xA1))
    dw0, out = kc.io_command(R.build_resv_register(1, R.RegisterAction.REGISTER, cptpl=3),
                             "Reservation Register", write_data=data)
    assert (dw0, out) == (0x1234, b"")
    (request, opc, nsid, cdw10, _c11, length, sent) = calls[0]
    assert request == LA.NVME_IOCTL_IO_CMD == 0xC0484E43
    assert (opc, nsid, cdw10, length, sent) == (0x0D, 1, 3 << 30, 16, data)


def test_report_reads_into_its_buffer(kernel):
    kc, calls, answer = kernel
    answer["data"] = b"\x07\x00\x00\x00\x01" + bytes(59)
    _, out = kc.io_command(R.build_resv_report(1, 64), "Reservation Report", read_len=64)
    assert len(out) == 64 and out[:5] == b"\x07\x00\x00\x00\x01"
    assert calls[0][1:6] == (0x0E, 1, 15, R.EDS, 64)


def test_status_and_errno_are_one_line_errors(kernel):
    kc, _, answer = kernel
    answer["rc"] = 0x4083  # DNR, Reservation Conflict
    with pytest.raises(CommandFailed) as e:
        kc.io_command(R.build_resv_release(1, 0, 1), "Reservation Release",
                      write_data=bytes(8))
    assert e.value.status == 0x4083
    assert str(e.value).startswith("Reservation Release failed: Reservation Conflict")
    answer["rc"], answer["errno"] = 0, 13
    with pytest.raises(DeviceError, match=r"^/dev/nvme0n1: Reservation Release: Permission"):
        kc.io_command(R.build_resv_release(1, 0, 1), "Reservation Release",
                      write_data=bytes(8))
