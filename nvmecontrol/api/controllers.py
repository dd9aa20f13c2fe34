"""Controllers and namespaces: connect(), open() and the I/O of a namespace.

The package docstring (``nvmecontrol.api``) describes what a program sees;
this module holds the three ways a Controller reaches its controller.
``discover`` is :func:`nvmecontrol.api.discovery.discover`, named here too
for the programs that found it here first.  Defaults are the option table's
(``nvmecontrol/options.py``).
"""

from __future__ import annotations

import abc
import errno as _errno
import itertools
import logging
import queue as _queue
import threading
from collections import deque

from nvmecontrol.api.admin import parse_secrets
from nvmecontrol.api.discovery import discover
from nvmecontrol.backends.admin_access import (AdminAccess, AssociationAccess, KernelAccess,
                                               SessionAccess, open_admin)
from nvmecontrol.backends.linux_admin import KernelController
from nvmecontrol.backends.linux_io import open_device, open_namespace_node
from nvmecontrol.backends.userspace.backend import UserspaceBackend
from nvmecontrol.backends.userspace.nbd_client import NbdClient
from nvmecontrol.backends.userspace.paths import export_name
from nvmecontrol.errors import (CommandFailed, ConnectError, ConnectionLost, DeviceError,
                                NotFound, NvmeControlError, PeerTimeout, UsageError)
from nvmecontrol.host.association import Association, AssociationParams, connect_association
from nvmecontrol.host.discovery import DiscoveryLog
from nvmecontrol.host.queue import CommandError
from nvmecontrol.hostid import resolve_host_identity
from nvmecontrol.nbd import protocol as _nbd
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.options import OPTIONS, default
from nvmecontrol.transport.address import IO_PORT, parse_address
from nvmecontrol.wire import admin as A
from nvmecontrol.wire.auth import asks_authentication
from nvmecontrol.wire.capsule import PSDT_SGL, SQE
from nvmecontrol.wire.identify import (CNS_ACTIVE_NSID_LIST, CNS_CONTROLLER, CNS_NAMESPACE,
                                       IDENTIFY_DATA_SIZE, decode_active_nsid_list,
                                       decode_identify_controller, decode_identify_namespace)
from nvmecontrol.wire.nvm import (DSM_DEALLOCATE, FUA, NvmOpc, decode_dsm_ranges,
                                  encode_dsm_ranges)
from nvmecontrol.wire.qpair import Completion

_log = logging.getLogger("nvmecontrol.api")

__all__ = ["discover", "connect", "open", "Controller", "Namespace", "IoRequest", "DiscoveryLog",
           "Error", "CommandError", "CommandFailed", "ConnectError", "ConnectionLost",
           "DeviceError", "NotFound", "PeerTimeout", "UsageError"]

Error = NvmeControlError  # the base of every error raised here

# One Read/Write carries at most 64 Ki blocks (NLB is 16 bits) and MDTS.
_MAX_NLB = 0x10000
_PSDT_SGL = int(PSDT_SGL)
_READ, _WRITE = int(NvmOpc.READ), int(NvmOpc.WRITE)
# Bytes one Write Zeroes or Deallocate covers: within NBD's 32-bit length.
_RANGE_BYTES = 1 << 30
# The kernel maps a passthrough's buffer into one request, which its queue
# limits (max_hw_sectors); 128 KiB fits every NVMe/TCP controller's.
KERNEL_MAX_TRANSFER = 128 * 1024
# An I/O passthrough ioctl blocks its thread until the command completes:
# this many threads keep this many commands of one namespace in flight.
KERNEL_IO_THREADS = 4


def _host(hostnqn: str | None, hostid: str | None):
    return resolve_host_identity(hostnqn, hostid)


def connect(address: str, subnqn: str, *, io_queues: int = default("num_io_queues"),
            queue_size: int = default("queue_size"), kato: int = default("kato_s"),
            hdgst: bool = default("hdgst"), ddgst: bool = default("ddgst"),
            hostnqn: str | None = OPTIONS["hostnqn"].default,
            hostid: str | None = OPTIONS["hostid"].default,
            dhchap_secret: str | None = default("dhchap_secret"),
            dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret"),
            timeout: float = default("timeout_s")) -> "Controller":
    """An association with the I/O controller ``subnqn`` at ``address`` (port 4420).

    ``queue_size`` 0 takes the largest the controller allows (at most 128);
    ``kato`` is in seconds (0: no keep-alive).  A digest asked for and not
    granted is an error (:class:`nvmecontrol.errors.Unsupported`).
    ``dhchap_secret`` (and ``dhchap_ctrl_secret`` for bidirectional
    authentication), in the ``DHHC-1:..`` form: DH-HMAC-CHAP on every queue,
    and again on a queue whose authentication the controller withdraws (its
    commands are then sent once more).  Use the controller as a context
    manager, or call :meth:`Controller.close`.
    """
    if subnqn == DISCOVERY_NQN:
        raise UsageError("connect() is for I/O controllers: use discover()")
    if not 1 <= io_queues <= 0xFFFF:
        raise UsageError(f"io_queues {io_queues} out of range 1..65535")
    addr = parse_address(address, default_port=IO_PORT)
    host_key, ctrl_key = parse_secrets(dhchap_secret, dhchap_ctrl_secret)
    params = AssociationParams(hdgst=hdgst, ddgst=ddgst, kato_s=kato, num_io_queues=io_queues,
                               io_queue_size=queue_size, timeout_s=timeout,
                               dhchap_secret=host_key, dhchap_ctrl_secret=ctrl_key)
    return Controller(_AssociationLink(connect_association(addr, subnqn, _host(hostnqn, hostid),
                                                           params)))


def open(name: str) -> "Controller | Namespace":  # noqa: A001 - the API's verb
    """A controller or namespace that the kernel or a userspace session already holds.

    ``nvme0`` / ``nvmeu0`` give a :class:`Controller`; ``nvme0n1`` /
    ``nvmeu0ns1`` (or ``nvmeu0n1``) give that :class:`Namespace`, whose
    ``controller`` is closed with it.  ``/dev/`` in front is accepted.
    A name of neither form is a :class:`UsageError`; a device or session
    that does not exist, :class:`NotFound`.
    """
    access = open_admin(name)
    try:
        link = _KernelLink(access) if isinstance(access, KernelAccess) else _SessionLink(access)
        ctrl = Controller(link)
    except BaseException:
        access.close()
        raise
    if access.nsid is None:
        return ctrl
    try:
        ns = ctrl.namespace(access.nsid)
    except BaseException:
        ctrl.close()
        raise
    ns._owns_controller = True
    return ns


class Controller:
    """One controller: admin commands, its namespaces and their I/O."""

    def __init__(self, link: "_Link"):
        self._link = link
        self._admin_lock = threading.Lock()
        self._closed = threading.Event()
        self._channels: list = []  # the namespaces' I/O, closed with the controller
        link.start(self._admin_lock)

    # -- what the controller is --
    @property
    def name(self) -> str:
        """What it was opened as: the address (connect), the device or session name (open)."""
        return self._link.name

    @property
    def subnqn(self) -> str:
        return self._link.subnqn

    @property
    def cntlid(self) -> int:
        return self._link.cntlid

    @property
    def address(self) -> str:
        """The controller's address (connect), else the name it was opened as."""
        return self._link.address

    def identify(self):
        """Identify Controller, decoded (``nvmecontrol.wire.identify.IdentifyController``)."""
        return self._link.cdata

    # -- admin commands --
    def _admin(self, sqe, what: str, *, read_len: int = 0) -> tuple[int, bytes]:
        """(completion dword 0, data): one admin command at a time."""
        self._check()
        with self._admin_lock:
            # On our own association, Authentication Required (the controller
            # withdrew it) makes the admin queue authenticate again and the
            # command is retried once (AssociationAccess).
            return self._link.access.admin_command(sqe, what, read_len=read_len)

    def namespaces(self) -> list["Namespace"]:
        """The active namespaces, in NSID order."""
        _, raw = self._admin(A.build_identify(CNS_ACTIVE_NSID_LIST), "Identify active NSIDs",
                             read_len=4096)
        return [self.namespace(nsid) for nsid in decode_active_nsid_list(raw)]

    def namespace(self, nsid: int) -> "Namespace":
        """Namespace ``nsid``; :class:`NotFound` when it is not active."""
        if not 1 <= nsid <= 0xFFFFFFFE:
            raise UsageError(f"namespace ID {nsid} out of range 1..0xfffffffe")
        _, raw = self._admin(A.build_identify(CNS_NAMESPACE, nsid), f"Identify namespace {nsid}",
                             read_len=4096)
        ident = decode_identify_namespace(raw)
        if not ident.nsze:
            raise NotFound(f"namespace {nsid} is not active on {self.subnqn}")
        block_size = ident.block_size() or 512
        channel = self._link.channel(nsid, block_size)
        self._channels.append(channel)
        return Namespace(self, nsid, ident, block_size, channel)

    def log_page(self, lid: int, length: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                 lsp: int = 0, rae: bool = False) -> bytes:
        """Get Log Page ``lid``: ``length`` bytes (a multiple of 4) from ``offset``."""
        g = A.GetLogPage(lid, length, offset, lsp, 0, rae, nsid)
        return self._admin(A.build_get_log_page(g), f"Get Log Page {lid:#04x}",
                           read_len=length)[1]

    def get_features(self, fid: int, *, sel: int = 0, nsid: int = 0, cdw11: int = 0) -> int:
        """Get Features ``fid``: the value (completion dword 0)."""
        dw0, _ = self._admin(A.build_get_features(fid, sel, nsid, cdw11),
                             f"Get Features {fid:#04x}")
        return dw0

    def set_features(self, fid: int, value: int, *, nsid: int = 0, save: bool = False) -> int:
        """Set Features ``fid`` to ``value``: completion dword 0."""
        dw0, _ = self._admin(A.build_set_features(fid, value, nsid, save),
                             f"Set Features {fid:#04x}")
        return dw0

    # -- the end --
    def _check(self) -> None:
        if self._closed.is_set():
            raise ConnectionLost(f"{self.name}: the controller was closed")
        if self._link.lost is not None:
            raise self._link.lost

    def close(self) -> None:
        """Let go of the controller; idempotent.

        An association of ours ends (CC.SHN, then the connections); a kernel
        controller or a session stays, only our file descriptors and
        connections close.  Commands still in flight fail with ConnectionLost.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        closed = ConnectionLost(f"{self.name}: the controller was closed")
        for channel in self._channels:
            channel.close(closed)
        with self._admin_lock:
            self._link.close(closed)

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Namespace:
    """Block I/O on one namespace; offsets and counts in logical blocks."""

    def __init__(self, ctrl: Controller, nsid: int, ident, block_size: int, channel):
        self.controller = ctrl
        self.nsid = nsid
        self.identify = ident  # Identify Namespace, decoded
        self.block_size = block_size
        self.blocks = ident.nsze
        self._io = channel
        # Per command; larger I/O is split.
        self.max_blocks = max(1, min(_MAX_NLB, channel.max_bytes // block_size))
        self._owns_controller = False  # open("nvme0n1"): closing the namespace closes it
        # Blocks per Write Zeroes (NLB is 16 bits) and per Deallocate range:
        # NBD's TRIM / WRITE_ZEROES carry a 32-bit byte length.
        self._trim_step = max(1, _RANGE_BYTES // block_size)
        self._zero_step = min(_MAX_NLB, self._trim_step)

    @property
    def size(self) -> int:
        return self.blocks * self.block_size

    def close(self) -> None:
        """For a namespace from :func:`open`: close its controller (else nothing)."""
        if self._owns_controller:
            self.controller.close()

    def __enter__(self) -> "Namespace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_range(self, lba: int, count: int) -> None:
        if count < 1 or lba < 0 or lba + count > self.blocks:
            raise UsageError(f"blocks {lba}+{count} outside namespace {self.nsid} "
                             f"({self.blocks} blocks)")

    def _submit(self, cmd: "IoRequest") -> "IoRequest":
        self.controller._check()
        return self._io.submit(cmd)

    # -- one command each, in flight together --
    def submit_read(self, lba: int, count: int, into=None) -> "IoRequest":
        """Read ``count`` blocks (at most ``max_blocks``); the future's result is the data.

        ``into`` (a writable buffer of ``count`` blocks) receives them without a
        copy and is the result.
        """
        self._check_range(lba, count)
        if count > self.max_blocks:
            raise UsageError(f"{count} blocks in one command: at most {self.max_blocks}")
        if into is None:
            buf = bytearray(count * self.block_size)
            view = memoryview(buf)
        else:
            buf, view = into, memoryview(into).cast("B")
            if len(view) != count * self.block_size:
                raise UsageError(f"buffer of {len(view)} bytes for {count} blocks")
        return self._submit(IoRequest(_READ, self.nsid, lba, count, 0, None, view, buf, None))

    def submit_write(self, lba: int, data, *, fua: bool = False) -> "IoRequest":
        """Write ``data`` (whole blocks, at most ``max_blocks``) at ``lba``."""
        count, rest = divmod(len(memoryview(data).cast("B")), self.block_size)
        if rest:
            raise UsageError(f"{len(data)} bytes is not a multiple of the "
                             f"{self.block_size}-byte block")
        self._check_range(lba, count)
        if count > self.max_blocks:
            raise UsageError(f"{count} blocks in one command: at most {self.max_blocks}")
        return self._submit(IoRequest(_WRITE, self.nsid, lba, count, FUA if fua else 0,
                                      bytes(data), None, None, None))

    def submit_flush(self) -> "IoRequest":
        return self._submit(IoRequest(NvmOpc.FLUSH, self.nsid, 0, 0, 0, None, None, None,
                                      "Flush"))

    # -- synchronous, any size --
    def read(self, lba: int, count: int) -> bytes:
        buf = bytearray(count * self.block_size)
        self.readinto(lba, buf)
        return bytes(buf)

    def readinto(self, lba: int, buf) -> int:
        """Fill ``buf`` (whole blocks) from ``lba``; returns the bytes read."""
        view = memoryview(buf).cast("B")
        count, rest = divmod(len(view), self.block_size)
        if rest or not count:
            raise UsageError(f"a buffer of {len(view)} bytes is not whole blocks")
        self._check_range(lba, count)
        bs, step = self.block_size, self.max_blocks
        _wait([self.submit_read(lba + first, min(step, count - first),
                                view[first * bs:(first + min(step, count - first)) * bs])
               for first in range(0, count, step)])
        return len(view)

    def write(self, lba: int, data, *, fua: bool = False) -> None:
        """Write ``data`` (whole blocks, any size) at ``lba``."""
        view = memoryview(data).cast("B")
        if not len(view):
            raise UsageError("nothing to write")
        bs, step = self.block_size, self.max_blocks * self.block_size
        _wait([self.submit_write(lba + off // bs, view[off:off + step], fua=fua)
               for off in range(0, len(view), step)])

    def flush(self) -> None:
        self.submit_flush().result()

    def write_zeroes(self, lba: int, count: int) -> None:
        self._check_range(lba, count)
        step = self._zero_step
        _wait([self._submit(IoRequest(NvmOpc.WRITE_ZEROES, self.nsid, lba + first,
                                      min(step, count - first), 0, None, None, None,
                                      f"Write Zeroes {lba + first}"))
               for first in range(0, count, step)])

    def trim(self, lba: int, count: int) -> None:
        """Deallocate ``count`` blocks (Dataset Management, AD)."""
        self._check_range(lba, count)
        cmds = []
        for first in range(lba, lba + count, self._trim_step):
            n = min(self._trim_step, lba + count - first)
            cmd = IoRequest(NvmOpc.DATASET_MANAGEMENT, self.nsid, 0, 0, 0,
                            encode_dsm_ranges([(first, n)]), None, None, f"Deallocate {first}+{n}")
            cmd.c10, cmd.c11 = 0, DSM_DEALLOCATE  # one range; Attribute - Deallocate
            cmds.append(self._submit(cmd))
        _wait(cmds)


def _wait(futures: list) -> None:
    for f in futures:
        f.result()


# -- the three ways to a controller ------------------------------------------------------

class _Link(abc.ABC):
    """How a Controller reaches its controller: admin access, I/O channels, the end.

    ``lost`` is the error that ended it under us (None while it works).
    """

    access: AdminAccess
    name = subnqn = address = ""
    cntlid = 0
    cdata = None
    lost: NvmeControlError | None = None

    def start(self, admin_lock: threading.Lock) -> None:
        """Begin what runs beside the caller (our association's keep-alive)."""

    @abc.abstractmethod
    def channel(self, nsid: int, block_size: int):
        """The I/O channel of namespace ``nsid``: ``submit(IoRequest)``, ``max_bytes``, ``close``."""

    def close(self, error: NvmeControlError) -> None:
        self.access.close()

    def _learn_identity(self) -> None:
        """Identify Controller through the admin access (kernel and session links)."""
        _, raw = self.access.admin_command(A.build_identify(CNS_CONTROLLER),
                                           "Identify controller", read_len=IDENTIFY_DATA_SIZE)
        self.cdata = decode_identify_controller(raw)
        self.subnqn = self.cdata.subnqn
        self.cntlid = self.cdata.cntlid


class _AssociationLink(_Link):
    """An association of ours: its I/O queues and the keep-alive are ours to run."""

    def __init__(self, assoc: Association):
        self.assoc = assoc
        self.name = self.address = assoc.peer
        self.access = AssociationAccess(assoc.peer, assoc)
        self.subnqn, self.cntlid, self.cdata = assoc.subnqn, assoc.cntlid, assoc.cdata
        self.queues = [_IoQueue(q.driver, i, assoc=assoc, qid=q.qid)
                       for i, q in enumerate(assoc.io)]
        self._next_queue = itertools.count()
        self._admin_lock: threading.Lock | None = None
        self._stop = threading.Event()
        mdts = assoc.cdata.mdts if assoc.cdata else 0
        page = 4096 << (assoc.cap.mpsmin if assoc.cap else 0)  # MDTS counts CAP.MPSMIN pages
        self.max_bytes = (1 << mdts) * page if mdts else 1 << 62
        self.kato = assoc.params.kato_s

    def start(self, admin_lock: threading.Lock) -> None:
        self._admin_lock = admin_lock
        if self.kato:
            threading.Thread(target=self._keep_alive, daemon=True, name="api-keep-alive").start()

    def _keep_alive(self) -> None:
        kato = self.kato
        while not self._stop.wait(kato / 2):
            try:
                with self._admin_lock:
                    if self._stop.is_set():
                        return
                    self.assoc.keep_alive(timeout=kato)
            except NvmeControlError as e:
                self.lost = ConnectionLost(f"{self.address}: keep-alive failed: {e}")
                for q in self.queues:
                    q.fail(self.lost)
                return

    def channel(self, nsid: int, block_size: int) -> "_QueueChannel":
        if not self.queues:
            raise UsageError("this association has no I/O queues (io_queues=0)")
        return _QueueChannel(self)

    def close(self, error: NvmeControlError) -> None:
        self._stop.set()
        for q in self.queues:
            q.fail(error)
        self.assoc.shutdown()


class _QueueChannel:
    """A namespace's commands on the association's I/O queues, round robin."""

    def __init__(self, link: _AssociationLink):
        self._queues, self._next = link.queues, link._next_queue
        self.max_bytes = link.max_bytes

    def submit(self, cmd: "IoRequest") -> "IoRequest":
        queues = self._queues
        return queues[next(self._next) % len(queues)].submit(cmd)

    def close(self, error: NvmeControlError) -> None:
        """The queues are the association's: they end with it."""


class _KernelLink(_Link):
    """A controller of the Linux kernel: passthrough ioctls on its device nodes."""

    def __init__(self, access: KernelAccess):
        self.access = access
        self.name = self.address = access.name
        self._device = access.device
        self._learn_identity()

    def channel(self, nsid: int, block_size: int) -> "_KernelChannel":
        dev = self._device
        if dev.nsid == nsid:
            # The namespace node we were opened on: a descriptor of its own.
            node = open_device(dev.name)
        else:
            node = open_namespace_node(dev.name.controller, nsid)
        mdts = self.cdata.mdts if self.cdata else 0
        limit = (1 << mdts) * 4096 if mdts else KERNEL_MAX_TRANSFER
        return _KernelChannel(node, min(limit, KERNEL_MAX_TRANSFER))


class _SessionLink(_Link):
    """A userspace session: its control socket, and its NBD export per namespace."""

    def __init__(self, access: SessionAccess):
        self.access = access
        self.name = self.address = access.name
        self._nbd_socket = str(UserspaceBackend(environ=access.environ).paths(access.name).nbd)
        self._learn_identity()

    def channel(self, nsid: int, block_size: int) -> "_NbdChannel":
        return _NbdChannel(self._nbd_socket, export_name(nsid), block_size)


# -- futures and the channels that complete them -----------------------------------------

class _Completions:
    """Where threads wait for the commands of one queue or channel (one condition)."""

    def __init__(self) -> None:
        self._completed = threading.Condition(threading.Lock())  # woken once per batch
        self._waiting = 0  # threads in wait_for

    def _wake_waiters(self) -> None:
        if self._waiting:
            with self._completed:
                self._completed.notify_all()

    def wait_for(self, cmd: "IoRequest", timeout: float | None) -> None:
        """Until ``cmd`` finished; PeerTimeout after ``timeout`` seconds."""
        with self._completed:
            self._waiting += 1
            try:
                if not self._completed.wait_for(lambda: cmd.finished, timeout):
                    raise PeerTimeout(f"{cmd.what}: not completed within {timeout:g} s")
            finally:
                self._waiting -= 1

    def _finish(self, cmd: "IoRequest", error: NvmeControlError | None) -> None:
        cmd.error = error
        with self._completed:
            cmd.finished = True
            self._completed.notify_all()


def _slba(cmd: "IoRequest") -> int:
    return cmd.c10 | cmd.c11 << 32


def _nlb(cmd: "IoRequest") -> int:
    return (cmd.c12 & 0xFFFF) + 1


class _KernelChannel(_Completions):
    """A namespace's NVM commands through NVME_IOCTL_IO_CMD, from a few threads.

    The kernel completes them on its own I/O queues; an NVMe error status
    comes back as the ioctl's return value (``CommandFailed`` with it).
    """

    def __init__(self, node: KernelController, max_bytes: int):
        super().__init__()
        self.node, self.max_bytes = node, max_bytes
        self._todo: _queue.SimpleQueue = _queue.SimpleQueue()
        self._failed: NvmeControlError | None = None
        self._threads = [threading.Thread(target=self._work, daemon=True,
                                          name=f"api-ioctl{i}")
                         for i in range(KERNEL_IO_THREADS)]
        for t in self._threads:
            t.start()

    def submit(self, cmd: "IoRequest") -> "IoRequest":
        if self._failed is not None:
            raise self._failed
        cmd.queue = self
        self._todo.put(cmd)
        return cmd

    def _work(self) -> None:
        while True:
            cmd = self._todo.get()
            if cmd is None:
                return
            if self._failed is not None:
                self._finish(cmd, self._failed)
                continue
            sqe = SQE(cmd.opc, nsid=cmd.nsid, cdw10=cmd.c10, cdw11=cmd.c11, cdw12=cmd.c12)
            try:
                read_len = len(cmd.into) if cmd.into is not None else 0
                _, data = self.node.io_command(sqe, cmd.what, write_data=cmd.data,
                                               read_len=read_len)
                if read_len:
                    cmd.into[:] = data
                self._finish(cmd, None)
            except NvmeControlError as e:
                self._finish(cmd, e)
            except Exception as e:  # a bug of ours: this command fails, the worker goes on
                self._finish(cmd, _internal_error(cmd.what, e))

    def close(self, error: NvmeControlError) -> None:
        self._failed = error
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join()
        while True:  # what the workers left when they stopped
            try:
                cmd = self._todo.get_nowait()
            except _queue.Empty:
                break
            if cmd is not None and not cmd.finished:
                self._finish(cmd, error)
        self.node.close()


class _NbdChannel(_Completions):
    """A namespace's commands as NBD requests on the session's export, pipelined.

    NBD replies carry an errno, not the NVMe status (the session logs that):
    a failed command raises DeviceError naming the errno.
    """

    def __init__(self, socket_path: str, export: str, block_size: int):
        super().__init__()
        self.export, self.block_size = export, block_size
        self.client = NbdClient.connect_unix(socket_path, export, on_reply=self._on_reply,
                                             on_lost=self._on_lost)
        self.max_bytes = self.client.info.max_block // block_size * block_size

    def submit(self, cmd: "IoRequest") -> "IoRequest":
        cmd.queue = self
        bs, opc = self.block_size, cmd.opc
        if opc == NvmOpc.READ:
            self.client.send(_nbd.CMD_READ, _slba(cmd) * bs, len(cmd.into), cmd, into=cmd.into)
        elif opc == NvmOpc.WRITE:
            flags = _nbd.CMD_FLAG_FUA if cmd.c12 & FUA else 0
            self.client.send(_nbd.CMD_WRITE, _slba(cmd) * bs, len(cmd.data), cmd,
                             data=cmd.data, flags=flags)
        elif opc == NvmOpc.FLUSH:
            self.client.send(_nbd.CMD_FLUSH, 0, 0, cmd)
        elif opc == NvmOpc.WRITE_ZEROES:
            self.client.send(_nbd.CMD_WRITE_ZEROES, _slba(cmd) * bs, _nlb(cmd) * bs, cmd)
        elif opc == NvmOpc.DATASET_MANAGEMENT:
            ((slba, nlb),) = decode_dsm_ranges(cmd.data, 1)
            self.client.send(_nbd.CMD_TRIM, slba * bs, nlb * bs, cmd)
        else:
            raise UsageError(f"{cmd.what}: not a command an NBD export carries")
        return cmd

    def _on_reply(self, cmd: "IoRequest", error: int) -> None:
        failed = None
        if error:
            name = _errno.errorcode.get(error, str(error))
            failed = DeviceError(f"{cmd.what} failed on {self.export}: {name} (NBD carries "
                                 "no NVMe status; the session's log names it)")
        self._finish(cmd, failed)

    def _on_lost(self, error: NvmeControlError, cmds: list) -> None:
        for cmd in cmds:
            self._finish(cmd, error)

    def close(self, error: NvmeControlError) -> None:
        self.client.close()


def _internal_error(where: str, e: BaseException) -> NvmeControlError:
    """What the commands a failed thread of ours leaves behind fail with."""
    _log.error("%s: internal error", where, exc_info=e)
    return NvmeControlError(f"{where}: internal error: {type(e).__name__}: {e}")


class IoRequest:
    """A submitted command: a small future, completed by its queue's receiver.

    ``done()``, ``result(timeout=None)`` (the read data, or None; raises what
    the command failed with) and ``exception(timeout=None)``.  One object per
    command, which is also the record the queue pair sends
    (``HostQueuePair.queue_records``): waiting threads share their queue's
    condition instead of one lock per command.
    """

    __slots__ = ("opc", "nsid", "c10", "c11", "c12", "data", "read_len", "into", "value",
                 "_what", "queue", "finished", "error", "retried")

    def __init__(self, opc, nsid, slba, nlb, flags, data, into, value, what):
        self.opc, self.nsid = int(opc), nsid
        self.c10, self.c11 = slba & 0xFFFFFFFF, slba >> 32
        self.c12 = flags | (nlb - 1 if nlb else 0)
        self.data = data
        self.into = into  # receives read data (the queue pair copies into it)
        self.read_len = 0
        self.value = value
        self._what = what  # None: a Read or Write, named from its fields when needed
        self.queue: _IoQueue | None = None
        self.finished = False
        self.error: NvmeControlError | None = None
        self.retried = False  # sent again after a re-authentication (once at most)

    @property
    def what(self) -> str:
        """The command as messages name it ("Read 8+8")."""
        if self._what is None:
            name = "Read" if self.opc == _READ else "Write"
            return f"{name} {self.c10 | self.c11 << 32}+{(self.c12 & 0xFFFF) + 1}"
        return self._what

    def done(self) -> bool:
        return self.finished

    def exception(self, timeout: float | None = None) -> NvmeControlError | None:
        if not self.finished:
            self.queue.wait_for(self, timeout)
        return self.error

    def result(self, timeout: float | None = None):
        error = self.exception(timeout)
        if error is not None:
            raise error
        return self.value


class _IoQueue(_Completions):
    """One I/O queue: submissions from any thread, a receiver completing futures.

    The receiver never sends itself (the controller may be blocked sending to
    us): what it must send (H2CData after an R2T, commands that waited for a
    CID) goes to a sender thread, as in the NBD bridge.

    Authentication Required (the controller withdrew the queue's
    authentication, its keys for this host changed): with a host secret, the
    refused commands are held, not failed, and a thread of their own (the
    receiver keeps receiving) holds back new commands, waits until the
    queue has nothing in flight, runs a new DH-HMAC-CHAP transaction on it
    through the queue (``Association.authenticate_with``) and sends the
    refused commands again, once; if the transaction fails they fail with
    its reason.  As ``Association.execute`` does for admin commands.
    """

    def __init__(self, driver, index: int, *, assoc: Association | None = None, qid: int = 0):
        super().__init__()
        self.driver, self.qp, self.lock = driver, driver.qp, driver.lock
        self.backlog: deque = deque()  # commands waiting for a free CID
        self.failed: NvmeControlError | None = None
        self._deferred: list = []
        self._deferred_cv = threading.Condition(threading.Lock())
        self.name = f"api-ioq{index + 1}"
        # Re-authentication (see the class notes): the association, the
        # commands refused meanwhile with their completions, the
        # transaction's own commands (they alone are sent while it runs).
        self._assoc, self._qid = assoc, qid
        self._refused: list = []
        self._authenticating = False
        self._urgent: deque = deque()
        driver.set_timeout(None)  # silence is the keep-alive's business
        threading.Thread(target=self._receive, daemon=True, name=self.name).start()
        threading.Thread(target=self._sender, daemon=True, name=f"{self.name}-tx").start()

    def submit(self, cmd: IoRequest) -> "IoRequest":
        qp = self.qp
        with self.lock:
            if self.failed is not None:
                raise self.failed
            cmd.queue = self
            if self.backlog or self._authenticating or not qp.room():
                self.backlog.append(cmd)
                self._drain()
            else:  # the usual case: straight into the queue pair
                qp.queue_command(cmd.opc, _PSDT_SGL, cmd.nsid, 0, 0, 0, cmd.c10, cmd.c11,
                                 cmd.c12, 0, 0, 0, cmd.data, cmd.into, 0, cmd)
            out = qp.take_outgoing()
            # Alone on the queue: send now (latency).  Else the sender thread
            # takes it, with whatever else was submitted meanwhile: one
            # sendmsg for a burst of submissions (throughput).
            alone = self.qp.outstanding <= 1 and not self._deferred
        if out:
            if alone:
                self._send(out)
            else:
                self._defer(out)
        return cmd

    def _defer(self, out: list) -> None:
        with self._deferred_cv:
            # The sender waits only while the list is empty: one wake-up per
            # burst of submissions, not one per command.
            if not self._deferred:
                self._deferred_cv.notify()
            self._deferred.extend(out)

    def _drain(self) -> None:
        """Queue what the queue has room for (caller holds the lock)."""
        qp, backlog = self.qp, self.backlog
        if self._authenticating:
            urgent = self._urgent
            while urgent and qp.room():
                cmd = urgent.popleft()
                qp.queue_command(cmd.opc, _PSDT_SGL, cmd.nsid, 0, 0, 0, cmd.c10, cmd.c11,
                                 cmd.c12, 0, 0, 0, cmd.data, cmd.into, 0, cmd)
            return
        while backlog:
            room = qp.room()
            if not room:
                return
            cmd = backlog[0]
            if cmd.into is not None:
                # A buffer to receive into: the general path takes it.
                qp.queue_command(cmd.opc, _PSDT_SGL, cmd.nsid, 0, 0, 0, cmd.c10, cmd.c11,
                                 cmd.c12, 0, 0, 0, cmd.data, cmd.into, 0, cmd)
                backlog.popleft()
                continue
            # The records up to the next read (which needs the general path).
            batch = list(itertools.takewhile(lambda c: c.into is None,
                                             itertools.islice(backlog, room)))
            for _ in range(qp.queue_records(batch)):
                backlog.popleft()

    def _send(self, out: list) -> None:
        try:
            self.driver.send(out)
        except NvmeControlError as e:
            self.fail(e)

    def _receive(self) -> None:
        try:
            self.driver.serve(self._on_batch)
        except NvmeControlError as e:
            self.fail(e)
        except BaseException as e:  # a bug of ours must not leave callers waiting for ever
            self.fail(_internal_error(f"I/O queue {self.name} receiver", e))

    def _on_batch(self) -> bool:
        failed = None
        with self.lock:
            if self.failed is not None:
                return False
            try:
                events = self.qp.receive()
            except NvmeControlError as e:
                # Commands completed before the bad PDU are no longer
                # outstanding: finish them here, or nobody would.
                failed, events = e, getattr(e, "events", [])
            if self.backlog and failed is None:
                self._drain()
            out = self.qp.take_outgoing()
        refused = None
        for ev in events:
            if type(ev) is Completion and ev.tag is not None:
                cmd = ev.tag
                status = ev.cqe.status
                if status:
                    if not cmd.retried and asks_authentication(status) and self._can_reauth():
                        if refused is None:
                            refused = []
                        refused.append((cmd, ev.cqe))
                        continue
                    cmd.error = CommandError(cmd.what, ev.cqe)
                cmd.finished = True
        if refused is not None:
            self._hold_refused(refused)
        self._wake_waiters()
        if failed is not None:
            raise failed  # the receive loop fails every command still outstanding
        if out:
            self._defer(out)
        return True

    def _sender(self) -> None:
        try:
            while True:
                with self._deferred_cv:
                    while not self._deferred and self.failed is None:
                        self._deferred_cv.wait()
                    if self.failed is not None:
                        return
                    out, self._deferred = self._deferred, []
                self._send(out)
        except BaseException as e:  # as in _receive
            self.fail(_internal_error(f"I/O queue {self.name} sender", e))

    # -- re-authentication (see the class notes) --
    def _can_reauth(self) -> bool:
        assoc = self._assoc
        return assoc is not None and assoc.params.dhchap_secret is not None

    def _hold_refused(self, refused: list) -> None:
        """Keep commands refused with Authentication Required; start the transaction."""
        with self.lock:
            if self.failed is not None:
                error = self.failed
            else:
                error = None
                self._refused.extend(refused)
                start, self._authenticating = not self._authenticating, True
        if error is not None:
            for cmd, _ in refused:
                cmd.error, cmd.finished = error, True
            return
        if start:
            threading.Thread(target=self._reauthenticate, daemon=True,
                             name=f"{self.name}-auth").start()

    def _reauthenticate(self) -> None:
        timeout = self._assoc.params.timeout_s
        try:
            # Every command sent before has its answer: no refusal comes after.
            with self._completed:
                self._waiting += 1
                try:
                    quiet = self._completed.wait_for(
                        lambda: self.failed is not None or not self.qp.outstanding, timeout)
                finally:
                    self._waiting -= 1
            if self.failed is not None:
                return
            if not quiet:
                raise PeerTimeout(f"queue {self._qid}: commands still in flight after "
                                  f"{timeout:g} s")
            self._assoc.authenticate_with(self._execute_now, self._qid)
            error = None
        except NvmeControlError as e:
            error = e
        with self.lock:
            if self.failed is not None:
                return  # fail() finished the refused commands
            refused, self._refused = self._refused, []
            self._authenticating = False
            if error is None:
                for cmd, _ in reversed(refused):
                    cmd.retried = True
                    self.backlog.appendleft(cmd)
            self._drain()
            out = self.qp.take_outgoing()
        if error is not None:
            for cmd, cqe in refused:
                cmd.error = CommandError(cmd.what, cqe)
                cmd.error.args = (f"{cmd.error.args[0]}; authenticating queue {self._qid} "
                                  f"again failed: {error}",)
                cmd.error.__cause__ = error
                cmd.finished = True
            self._wake_waiters()
        if out:
            self._send(out)

    def _execute_now(self, sqe, what: str, *, write_data=None, read_len: int = 0) -> bytes:
        """One command of the transaction, ahead of everything held back."""
        buf = bytearray(read_len) if read_len else None
        cmd = IoRequest(sqe.opc, sqe.nsid, 0, 0, 0, write_data,
                        memoryview(buf) if buf is not None else None, None, what)
        cmd.c10, cmd.c11, cmd.c12 = sqe.cdw10, sqe.cdw11, sqe.cdw12
        cmd.retried = True
        with self.lock:
            if self.failed is not None:
                raise self.failed
            cmd.queue = self
            self._urgent.append(cmd)
            self._drain()
            out = self.qp.take_outgoing()
        if out:
            self._send(out)
        cmd.result(self._assoc.params.timeout_s)
        return bytes(buf) if buf is not None else b""

    def fail(self, error: NvmeControlError) -> None:
        """The queue is gone: every command not completed fails with ``error``."""
        with self.lock:
            if self.failed is not None:
                return
            self.failed = error
            pending = (self.qp.outstanding_tags() + list(self.backlog) + list(self._urgent)
                       + [cmd for cmd, _ in self._refused])
            self.backlog.clear()
            self._urgent.clear()
            self._refused = []
        with self._deferred_cv:
            self._deferred_cv.notify_all()
        self.driver.abort()
        for cmd in pending:
            if not cmd.finished:
                cmd.error, cmd.finished = error, True
        with self._completed:
            self._completed.notify_all()
