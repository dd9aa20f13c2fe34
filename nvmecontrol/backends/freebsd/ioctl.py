"""FreeBSD ioctl numbers and argument structures for nvmf(4) and nvme(4), LP64.

FreeBSD encodes a request differently from Linux (sys/sys/ioccom.h
``_IOC``): direction in the top three bits (``IOC_VOID`` 0x20000000,
``IOC_OUT`` 0x40000000, ``IOC_IN`` 0x80000000), the argument length in 13
bits at bit 16, the group at bit 8 and the number in the low byte.  Linux
puts the direction in bits 30-31 and gives the length 14 bits.

nvmf(4) (sys/dev/nvmf/nvmf.h) passes packed nvlists in ``struct
nvmf_ioc_nv { void *data; size_t len; size_t size; }``.  For requests that
copy an nvlist out, a first call with ``size`` 0 only sets ``len`` to the
size needed, a second call with a buffer of that size fills it (libnvmf
``nvmf_read_ioc_nv``).  ``NVMF_DISCONNECT_HOST`` takes a ``const char *``:
the kernel copies in the pointer, then the string it points to.

Every system call goes through a :class:`System`, so tests can replace the
kernel and see the exact bytes handed to it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

# sys/sys/ioccom.h
IOCPARM_SHIFT = 13
IOCPARM_MASK = (1 << IOCPARM_SHIFT) - 1
IOC_VOID = 0x20000000
IOC_OUT = 0x40000000
IOC_IN = 0x80000000
IOC_INOUT = IOC_IN | IOC_OUT


def _ioc(inout: int, group: str, num: int, length: int) -> int:
    if length > IOCPARM_MASK:
        raise ValueError(f"ioctl argument of {length} bytes does not fit {IOCPARM_SHIFT} bits")
    return inout | ((length & IOCPARM_MASK) << 16) | (ord(group) << 8) | num


def _IO(group: str, num: int) -> int:
    return _ioc(IOC_VOID, group, num, 0)


def _IOR(group: str, num: int, length: int) -> int:
    return _ioc(IOC_OUT, group, num, length)


def _IOW(group: str, num: int, length: int) -> int:
    return _ioc(IOC_IN, group, num, length)


def _IOWR(group: str, num: int, length: int) -> int:
    return _ioc(IOC_INOUT, group, num, length)


# LP64 (amd64, arm64): pointers and size_t are 8 bytes.
POINTER_SIZE = 8


class NvmfIocNv(ctypes.Structure):
    """struct nvmf_ioc_nv, with explicit 64-bit fields for LP64."""

    _fields_ = [("data", ctypes.c_uint64), ("len", ctypes.c_uint64), ("size", ctypes.c_uint64)]


assert ctypes.sizeof(NvmfIocNv) == 24

# sys/dev/nvmf/nvmf.h: /dev/nvmf
NVMF_HANDOFF_HOST = _IOW("n", 200, ctypes.sizeof(NvmfIocNv))
NVMF_DISCONNECT_HOST = _IOW("n", 201, POINTER_SIZE)
NVMF_DISCONNECT_ALL = _IO("n", 202)
# ... and /dev/nvmeX
NVMF_RECONNECT_PARAMS = _IOWR("n", 203, ctypes.sizeof(NvmfIocNv))
NVMF_RECONNECT_HOST = _IOW("n", 204, ctypes.sizeof(NvmfIocNv))
NVMF_CONNECTION_STATUS = _IOWR("n", 205, ctypes.sizeof(NvmfIocNv))

# sys/dev/nvme/nvme.h: struct nvme_pt_command is a 64-byte nvme_command,
# a 16-byte nvme_completion, void *buf, uint32_t len, uint32_t is_read and
# struct mtx *driver_lock: 104 bytes on LP64.
PT_COMMAND_SIZE = 104
NVME_PASSTHROUGH_CMD = _IOWR("n", 0, PT_COMMAND_SIZE)
# struct nvme_get_nsid { char cdev[SPECNAMELEN + 1]; uint32_t nsid; } with
# SPECNAMELEN 255 (FreeBSD 13 and later).
GET_NSID_CDEV_SIZE = 256
GET_NSID_SIZE = GET_NSID_CDEV_SIZE + 4
NVME_GET_NSID = _IOR("n", 2, GET_NSID_SIZE)

# nvme_command fields the kernel copies from a passthrough request: opc,
# fuse, nsid, cdw10-15 (the rest must be zero); then the completion's cdw0
# and status, buf, len, is_read, driver_lock.
_PT = struct.Struct("<BBHIII8x16xIIIIII" "I4x4xHH" "QII8x")
assert _PT.size == PT_COMMAND_SIZE
PT_STATUS_OFFSET = 78

# A copy-out may grow between the sizing call and the fetch (a reconnect
# replaces the saved parameters): retry this many times on EFBIG.
COPYOUT_ATTEMPTS = 3


class System:
    """The few system calls the FreeBSD backend makes."""

    def open(self, path: str, flags: int = os.O_RDWR) -> int:
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def ioctl(self, fd: int, request: int, arg: bytearray | None = None) -> None:
        """``ioctl(2)``; ``arg`` is the argument buffer, updated in place on copy-out."""
        if arg is None:
            fcntl.ioctl(fd, request, 0)
        else:
            fcntl.ioctl(fd, request, arg, True)


def address_of(buf: ctypes.Array) -> int:
    return ctypes.addressof(buf)


def ioc_nv_arg(data_addr: int, length: int, size: int) -> bytearray:
    return bytearray(NvmfIocNv(data_addr, length, size))


def ioc_nv_fields(arg: bytes | bytearray) -> tuple[int, int, int]:
    """(data, len, size) of a struct nvmf_ioc_nv."""
    nv = NvmfIocNv.from_buffer_copy(bytes(arg))
    return nv.data, nv.len, nv.size


def ioc_nv_write(system: System, fd: int, request: int, payload: bytes) -> None:
    """Hand a packed nvlist to the kernel (len 0, size = its length, as libnvmf does)."""
    buf = ctypes.create_string_buffer(payload, len(payload))
    system.ioctl(fd, request, ioc_nv_arg(address_of(buf), 0, len(payload)))


def ioc_nv_read(system: System, fd: int, request: int) -> bytes:
    """Fetch a packed nvlist: size it with a zero-size call, then copy it out."""
    for _ in range(COPYOUT_ATTEMPTS):
        arg = ioc_nv_arg(0, 0, 0)
        system.ioctl(fd, request, arg)
        _data, length, _size = ioc_nv_fields(arg)
        buf = ctypes.create_string_buffer(max(length, 1))
        arg = ioc_nv_arg(address_of(buf), 0, length)
        try:
            system.ioctl(fd, request, arg)
        except OSError as e:
            if e.errno == errno.EFBIG:
                continue
            raise
        _data, copied, _size = ioc_nv_fields(arg)
        return buf.raw[:min(copied, length)]
    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))


def string_arg(text: str) -> tuple[bytearray, ctypes.Array]:
    """A ``const char *`` argument: the pointer bytes and the buffer to keep alive."""
    buf = ctypes.create_string_buffer(text.encode("utf-8", "surrogateescape"))
    return bytearray(struct.pack("<Q", address_of(buf))), buf


def pt_command(opc: int, *, nsid: int = 0, cdw: tuple[int, ...] = (), buf_addr: int = 0,
               length: int = 0, is_read: bool = True) -> bytearray:
    """A struct nvme_pt_command for an admin command."""
    cdw10_15 = (tuple(cdw) + (0,) * 6)[:6]
    return bytearray(_PT.pack(opc, 0, 0, nsid, 0, 0, *cdw10_15, 0, 0, 0,
                              buf_addr, length, 1 if is_read else 0))


def pt_completion(arg: bytes | bytearray) -> tuple[int, int]:
    """(cdw0, status) of a completed passthrough; status keeps the phase bit at 0."""
    cdw0 = struct.unpack_from("<I", arg, 64)[0]
    status = struct.unpack_from("<H", arg, PT_STATUS_OFFSET)[0]
    return cdw0, status
