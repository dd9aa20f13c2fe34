"""Namespaces and their backing stores: regular files, block devices, RAM.

A namespace is a byte store cut into logical blocks (512 or 4096 bytes).
Every operation works on a byte range the caller has already checked
against the namespace size, so nothing here reads or writes outside the
blocks a command names:

* Write: ``os.pwrite`` until the whole range is written (the command
  completes only after that); no read-modify-write of a larger region, so
  a crash can only affect the blocks being written.
* Flush: ``fsync``.  FUA writes are followed by ``fdatasync``.
* Write Zeroes / Deallocate: ``fallocate`` (PUNCH_HOLE for deallocation,
  ZERO_RANGE for zeroing) where the file system supports it, otherwise
  zeros are written; deallocated blocks therefore always read as zeros
  (DLFEAT 001b).
* RAM (``mem:SIZE``): a private anonymous mapping, so untouched memory costs
  nothing and deallocation gives pages back (MADV_DONTNEED).

Removal at run time: a connection thread may have looked the namespace up
just before it was removed, so the file descriptor is not closed at once
(its number could be reused by another open and a late pread would read
the wrong file): it is first redirected to the null device with ``dup2``
and closed only after :data:`CLOSE_GRACE_S`.
"""

from __future__ import annotations

import abc
import ctypes
import ctypes.util
import errno
import hashlib
import mmap
import os
import stat
import threading
import uuid as uuidmod
from dataclasses import dataclass

from nvmecontrol.errors import UsageError
from nvmecontrol.target.config import NamespaceConfig, mem_size

# fallocate(2) modes (linux/falloc.h).
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
# Zeros are written in pieces of this size when fallocate cannot help.
ZERO_CHUNK = 1 << 20
# How long a removed namespace's descriptor stays open (pointing at the
# null device) for I/O that looked it up just before the removal.
CLOSE_GRACE_S = 10.0

_ZEROS = bytes(ZERO_CHUNK)


def _load_fallocate():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    fn.restype = ctypes.c_int
    return fn


_fallocate = _load_fallocate()


def fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """True when the kernel did it; False when unsupported here (caller falls back)."""
    if _fallocate is None:
        return False
    if _fallocate(fd, mode, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
        return False
    raise OSError(err, os.strerror(err))


class Backend(abc.ABC):
    """Byte store interface; offsets and lengths are already range checked."""

    size: int
    kind: str
    writable: bool = True
    # The store's bytes when they are in our memory (RAM namespaces): the
    # I/O fast path copies reads straight from it instead of calling read_into.
    ram: memoryview | None = None

    @abc.abstractmethod
    def read_into(self, view: memoryview, offset: int) -> None:
        ...

    @abc.abstractmethod
    def write(self, data, offset: int) -> None:
        ...

    def flush(self) -> None:
        pass

    def sync_range(self) -> None:
        """Make completed writes durable (FUA, write-through)."""

    @abc.abstractmethod
    def write_zeroes(self, offset: int, length: int) -> None:
        ...

    def deallocate(self, offset: int, length: int) -> None:
        self.write_zeroes(offset, length)

    def close(self) -> None:
        """Detach at run time (I/O may still be on its way to us)."""

    def close_now(self) -> None:
        """Release at once (the daemon is stopping: no connection is left)."""
        self.close()


class MemBackend(Backend):
    """A RAM namespace.

    Large reads leave straight from the mapping (``lend``): the kernel
    copies them during ``sendmsg`` without the GIL, so a write landing in
    that range meanwhile would send a block half old, half new (NVMe keeps
    each block of a read atomic against writes).  Writes therefore wait
    while their range is lent.  A range is lent for one send that cannot
    block (``Connection.flush`` copies what did not fit), so a host that
    reads slowly cannot hold other hosts' writes; a connection never waits
    for a write while it holds ranges (it sends first), so no two
    connections can wait for each other; and no range is lent while a write
    waits for it (the read is copied instead), so writers are not starved.
    """

    kind = "mem"

    def __init__(self, size: int):
        self.size = size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        self._view = self.ram = memoryview(self._map)
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self._lent: list[tuple[int, int]] = []  # [start, end) ranges being sent
        self._waiting: list[tuple[int, int]] = []  # ranges writers wait for

    def lend(self, start: int, end: int) -> memoryview | None:
        """The bytes [start, end) for sending; no write lands there until
        ``give_back``.  None while a write waits for any of them."""
        with self._lock:
            for s, e in self._waiting:
                if s < end and start < e:
                    return None
            self._lent.append((start, end))
        return self._view[start:end]

    def give_back(self, start: int, end: int) -> None:
        with self._lock:
            self._lent.remove((start, end))
            self._returned.notify_all()

    def _wait_unlent(self, start: int, end: int) -> None:
        """Caller holds the lock: wait until no lent range overlaps [start, end)."""
        if not any(s < end and start < e for s, e in self._lent):
            return
        self._waiting.append((start, end))
        try:
            while any(s < end and start < e for s, e in self._lent):
                self._returned.wait()
        finally:
            self._waiting.remove((start, end))

    def read_into(self, view, offset):
        view[:] = self._view[offset:offset + len(view)]

    def write(self, data, offset):
        end = offset + len(data)
        with self._lock:
            if self._lent:
                self._wait_unlent(offset, end)
            self._view[offset:end] = data

    def write_zeroes(self, offset, length):
        with self._lock:
            if self._lent:
                self._wait_unlent(offset, offset + length)
            self._write_zeroes(offset, length)

    def _write_zeroes(self, offset, length):
        end = offset + length
        page = mmap.PAGESIZE
        lo = -(-offset // page) * page
        hi = end // page * page
        if hasattr(self._map, "madvise") and hi - lo >= page:
            self._zero(offset, lo)
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            self._zero(hi, end)
        else:
            self._zero(offset, end)

    def _zero(self, start, end):
        while start < end:
            n = min(end - start, ZERO_CHUNK)
            self._view[start:start + n] = _ZEROS[:n]
            start += n



class FileBackend(Backend):
    """A regular file or a block device, opened without O_DIRECT."""

    def __init__(self, path: str, *, read_only: bool):
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except OSError as e:
            raise UsageError(f"cannot open {path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISBLK(st.st_mode):
                self.kind = "blockdev"
                size = os.lseek(fd, 0, os.SEEK_END)
            elif stat.S_ISREG(st.st_mode):
                self.kind = "file"
                size = st.st_size
            else:
                raise UsageError(f"{path} is neither a regular file nor a block device")
        except BaseException:
            os.close(fd)
            raise
        self.path = path
        self.fd = fd
        self.size = size
        self.writable = not read_only

    def read_into(self, view, offset):
        fd = self.fd
        done = 0
        total = len(view)
        while done < total:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                # Past the end of a file shrunk behind our back (or a removed
                # namespace's null device): unwritten data reads as zeros.
                view[done:] = _ZEROS[:total - done] if total - done <= ZERO_CHUNK \
                    else bytes(total - done)
                return
            done += n

    def write(self, data, offset):
        fd = self.fd
        view = memoryview(data)
        while len(view):
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n

    def flush(self):
        os.fsync(self.fd)

    def sync_range(self):
        os.fdatasync(self.fd)

    def write_zeroes(self, offset, length):
        if self.kind == "file" and fallocate(self.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                             offset, length):
            return
        if fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length):
            return
        self._write_zeros(offset, length)

    def deallocate(self, offset, length):
        if fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length):
            return
        self.write_zeroes(offset, length)

    def _write_zeros(self, offset, length):
        end = offset + length
        while offset < end:
            n = min(end - offset, ZERO_CHUNK)
            self.write(_ZEROS[:n], offset)
            offset += n

    def close(self):
        """Detach now (the fd number now points at the null device), close later."""
        fd = self.fd
        try:
            null = os.open(os.devnull, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            os.close(fd)
            return
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
        t = threading.Timer(CLOSE_GRACE_S, _close_quietly, (fd,))
        t.daemon = True
        t.start()

    def close_now(self):
        _close_quietly(self.fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def open_backend(path: str, *, read_only: bool) -> Backend:
    size = mem_size(path)
    if size is not None:
        return MemBackend(size)
    return FileBackend(path, read_only=read_only)


def _derived_id(subnqn: str, nsid: int, path: str) -> uuidmod.UUID:
    """A stable identifier for a namespace without a configured UUID/NGUID.

    Derived from the subsystem NQN, NSID and device path, so a restart with
    the same configuration presents the same namespace identity to hosts
    (multipath and udev rules key on it).
    """
    return uuidmod.uuid5(uuidmod.NAMESPACE_URL, f"nvmfd:{subnqn}:{nsid}:{path}")


@dataclass(eq=False, slots=True)
class Namespace:
    nsid: int
    path: str
    backend: Backend
    block_size: int
    nblocks: int
    shift: int
    # Write protected now: what Identify (NSATTR), feature 84h and the I/O
    # checks say.  A host may set and clear it (Set Features 84h) unless the
    # namespace is exported read-only (``fixed_read_only``: nvmfd -r, ns-add
    # -r, the configuration's read_only), which it cannot lift.
    read_only: bool
    uuid: bytes
    nguid: bytes
    eui64: bytes
    # The ANA group (ana.py): its state on a controller's port decides
    # whether I/O through that controller is served.
    anagrpid: int = 1
    fixed_read_only: bool = False

    @property
    def size_bytes(self) -> int:
        return self.nblocks << self.shift


def open_namespace(cfg: NamespaceConfig, subnqn: str, *, read_only: bool = False) -> Namespace:
    """Open the backing store of ``cfg`` (UsageError when impossible)."""
    ro = read_only or cfg.read_only
    backend = open_backend(cfg.path, read_only=ro)
    try:
        return namespace_on(backend, cfg, subnqn, read_only=ro)
    except UsageError:
        backend.close_now()
        raise


def namespace_on(backend: Backend, cfg: NamespaceConfig, subnqn: str, *,
                 read_only: bool) -> Namespace:
    """The namespace ``cfg`` describes over an open ``backend`` (a reload keeps a RAM
    namespace's memory when only its settings changed)."""
    bs = cfg.block_size
    if bs not in (512, 4096):
        raise UsageError(f"block size {bs} is not 512 or 4096")
    ro = read_only
    nblocks = backend.size // bs
    if nblocks == 0:
        raise UsageError(f"{cfg.path} is smaller than one {bs}-byte block")
    derived = _derived_id(subnqn, cfg.nsid, cfg.path)
    u = uuidmod.UUID(cfg.uuid) if cfg.uuid else derived
    nguid = uuidmod.UUID(cfg.nguid).bytes if cfg.nguid else \
        hashlib.sha256(b"nguid" + derived.bytes).digest()[:16]
    eui64 = hashlib.sha256(b"eui64" + nguid).digest()[:8]
    return Namespace(nsid=cfg.nsid, path=cfg.path, backend=backend, block_size=bs,
                     nblocks=nblocks, shift=bs.bit_length() - 1, read_only=ro,
                     uuid=u.bytes, nguid=nguid, eui64=eui64, anagrpid=cfg.ana_grpid,
                     fixed_read_only=ro)
