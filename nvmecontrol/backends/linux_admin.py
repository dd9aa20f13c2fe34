"""Admin and I/O commands on Linux kernel controllers through the passthrough ioctls.

``identify`` and ``logpage`` on ``nvmeX``/``nvmeXnY`` send their command with
NVME_IOCTL_ADMIN_CMD (include/uapi/linux/nvme_ioctl.h) on the device node;
``resv`` sends its NVM command set commands with NVME_IOCTL_IO_CMD on a
namespace node.  The kernel carries them over its own association.  A
namespace node answers NVME_IOCTL_ID with its NSID.
"""

from __future__ import annotations

import ctypes
import fcntl
import os

from nvmecontrol.backends.names import DeviceName, parse_device_name  # noqa: F401 (re-exported)
from nvmecontrol.errors import CommandFailed, DeviceError, NotFound, UsageError
from nvmecontrol.wire import admin
from nvmecontrol.wire.capsule import SQE
from nvmecontrol.wire.identify import CNS_CONTROLLER, IDENTIFY_DATA_SIZE
from nvmecontrol.wire.status import describe_status

# _IOWR('N', 0x41, struct nvme_passthru_cmd), _IOWR('N', 0x43, ...) and _IO('N', 0x40).
NVME_IOCTL_ADMIN_CMD = 0xC0484E41
NVME_IOCTL_IO_CMD = 0xC0484E43
NVME_IOCTL_ID = 0x4E40
# Admin commands through the kernel get this long before it aborts them.
PASSTHRU_TIMEOUT_MS = 30_000



class _PassthruCmd(ctypes.Structure):
    _fields_ = [
        ("opcode", ctypes.c_uint8), ("flags", ctypes.c_uint8), ("rsvd1", ctypes.c_uint16),
        ("nsid", ctypes.c_uint32), ("cdw2", ctypes.c_uint32), ("cdw3", ctypes.c_uint32),
        ("metadata", ctypes.c_uint64), ("addr", ctypes.c_uint64),
        ("metadata_len", ctypes.c_uint32), ("data_len", ctypes.c_uint32),
        ("cdw10", ctypes.c_uint32), ("cdw11", ctypes.c_uint32), ("cdw12", ctypes.c_uint32),
        ("cdw13", ctypes.c_uint32), ("cdw14", ctypes.c_uint32), ("cdw15", ctypes.c_uint32),
        ("timeout_ms", ctypes.c_uint32), ("result", ctypes.c_uint32),
    ]


assert ctypes.sizeof(_PassthruCmd) == 72


class KernelController:
    """A controller the Linux kernel holds, addressed by its device node."""

    def __init__(self, name: DeviceName, *, dev_root: str = "/dev"):
        self.name = name
        path = os.path.join(dev_root, os.path.basename(name.path))
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"{name.path}: no such NVMe device") from None
        except PermissionError:
            raise DeviceError(f"{path}: permission denied (admin commands need root)") from None
        except OSError as e:
            raise DeviceError(f"{path}: {os.strerror(e.errno)}") from None
        self.nsid = name.nsid
        if name.nsid is not None:
            try:
                self.nsid = fcntl.ioctl(self.fd, NVME_IOCTL_ID)
            except OSError:
                pass

    def close(self) -> None:
        os.close(self.fd)

    def admin_command(self, sqe: SQE, what: str, read_len: int = 0) -> tuple[int, bytes]:
        return self._passthru(NVME_IOCTL_ADMIN_CMD, sqe, what, read_len=read_len)

    def io_command(self, sqe: SQE, what: str, *, write_data: bytes | None = None,
                   read_len: int = 0) -> tuple[int, bytes]:
        """An I/O command on this namespace node: (DW0, data read).

        The kernel takes the transfer direction from the opcode's low bits
        (01b host to controller, 10b controller to host), so one buffer
        serves either way.
        """
        return self._passthru(NVME_IOCTL_IO_CMD, sqe, what, write_data=write_data,
                              read_len=read_len)

    def _passthru(self, request: int, sqe: SQE, what: str, *, write_data: bytes | None = None,
                  read_len: int = 0) -> tuple[int, bytes]:
        if write_data is not None:
            buf = ctypes.create_string_buffer(bytes(write_data), len(write_data))
        else:
            buf = ctypes.create_string_buffer(read_len) if read_len else None
        cmd = _PassthruCmd(opcode=sqe.opc, nsid=sqe.nsid, cdw2=sqe.cdw2, cdw3=sqe.cdw3,
                           addr=ctypes.addressof(buf) if buf is not None else 0,
                           data_len=len(buf) if buf is not None else 0, cdw10=sqe.cdw10,
                           cdw11=sqe.cdw11, cdw12=sqe.cdw12, cdw13=sqe.cdw13, cdw14=sqe.cdw14,
                           cdw15=sqe.cdw15, timeout_ms=PASSTHRU_TIMEOUT_MS)
        try:
            rc = fcntl.ioctl(self.fd, request, cmd)
        except OSError as e:
            raise DeviceError(f"{self.name.path}: {what}: {os.strerror(e.errno)}") from None
        if rc > 0:
            # A positive return is the NVMe status field (SCT/SC and flags).
            status = rc & 0x7FFF
            context = "nvm" if request == NVME_IOCTL_IO_CMD else "fabrics"
            raise CommandFailed(f"{what} failed: {describe_status(status, context=context)}",
                                status)
        return cmd.result, buf.raw if buf is not None and write_data is None else b""

    def identify(self, cns: int, nsid: int = 0, cntid: int = 0) -> bytes:
        _, data = self.admin_command(admin.build_identify(cns, nsid, cntid),
                                     f"Identify CNS {cns:#04x}", IDENTIFY_DATA_SIZE)
        return data

    def identify_controller(self) -> bytes:
        return self.identify(CNS_CONTROLLER)

    def get_log_page(self, g: admin.GetLogPage) -> bytes:
        _, data = self.admin_command(admin.build_get_log_page(g), f"Get Log Page {g.lid:#04x}",
                                     g.length)
        return data


def open_kernel_controller(text: str) -> KernelController:
    name = parse_device_name(text)
    if name is None:
        raise UsageError(f"{text!r} is not an NVMe device name (nvmeX or nvmeXnY)")
    return KernelController(name)
