"""The public Python API: discovery, controllers and namespace I/O, for programs.

What ``nvmecontrol discover`` and ``connect`` do, as calls::

    from nvmecontrol import api

    log = api.discover("192.0.2.1:8009")
    for entry in log.entries:
        print(entry.subnqn, entry.traddr, entry.trsvcid)

    with api.connect("192.0.2.1:4420", "nqn.2014-08.org.example:disk") as ctrl:
        ns = ctrl.namespace(1)
        ns.write(0, bytes(4096))
        data = ns.read(0, 8)                            # 8 blocks
        futures = [ns.submit_read(lba, 8) for lba in range(0, 512, 8)]
        blocks = [f.result() for f in futures]          # 64 commands in flight

A :class:`Controller` owns one association: its admin queue (commands one at a
time, Keep Alive every KATO/2 from a thread of its own) and its I/O queues,
each with a receiver thread that completes the futures of the commands on it,
so a program keeps many commands in flight on several queues without threads
of its own.  Commands go out the way the NBD bridge sends them (records queued
a batch at a time, read data received straight into the caller's buffer).

Errors are the package's own families (:mod:`nvmecontrol.errors`), re-exported
here: a command that completes with an error status raises
:class:`CommandError`, whose ``status`` is the NVMe status field and whose
message names it.  Everything not named in ``__all__`` is private.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque

from nvmecontrol.errors import (CommandFailed, ConnectError, ConnectionLost, NotFound,
                                NvmeControlError, PeerTimeout, UsageError)
from nvmecontrol.host.association import Association, AssociationParams, connect_association
from nvmecontrol.host.discovery import DiscoveryLog
from nvmecontrol.host.discovery import discover as _discover
from nvmecontrol.host.queue import CommandError
from nvmecontrol.hostid import resolve_host_identity
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.transport.address import DISCOVERY_PORT, parse_address
from nvmecontrol.wire import admin as A
from nvmecontrol.wire.capsule import PSDT_SGL
from nvmecontrol.wire.identify import (CNS_ACTIVE_NSID_LIST, CNS_NAMESPACE,
                                       decode_active_nsid_list, decode_identify_namespace)
from nvmecontrol.wire.nvm import (DSM_DEALLOCATE, FUA, NvmOpc, encode_dsm_ranges)
from nvmecontrol.wire.qpair import Completion

__all__ = ["discover", "connect", "Controller", "Namespace", "IoRequest", "DiscoveryLog", "Error",
           "CommandError", "CommandFailed", "ConnectError", "ConnectionLost", "NotFound",
           "PeerTimeout", "UsageError"]

Error = NvmeControlError  # the base of every error raised here

NVME_PORT = 4420
# One Read/Write carries at most 64 Ki blocks (NLB is 16 bits) and MDTS.
_MAX_NLB = 0x10000
_PSDT_SGL = int(PSDT_SGL)


def _host(hostnqn: str | None, hostid: str | None):
    return resolve_host_identity(hostnqn, hostid)


def discover(address: str, *, hostnqn: str | None = None, hostid: str | None = None,
             timeout: float = 30.0) -> DiscoveryLog:
    """The discovery log of the controller at ``address`` (``host[:port]``, port 8009).

    The same records ``nvmecontrol discover -o json`` prints
    (``log.header``, ``log.entries``).
    """
    addr = parse_address(address, default_port=DISCOVERY_PORT)
    params = AssociationParams(timeout_s=timeout)
    log, _ = _discover(addr, _host(hostnqn, hostid), params)
    return log


def connect(address: str, subnqn: str, *, io_queues: int = 1, queue_size: int = 0,
            kato: int = 120, hdgst: bool = False, ddgst: bool = False,
            hostnqn: str | None = None, hostid: str | None = None,
            timeout: float = 30.0) -> "Controller":
    """An association with the I/O controller ``subnqn`` at ``address`` (port 4420).

    ``queue_size`` 0 takes the largest the controller allows (at most 128);
    ``kato`` is in seconds (0: no keep-alive).  A digest asked for and not
    granted is an error (:class:`nvmecontrol.errors.Unsupported`).  Use the
    controller as a context manager, or call :meth:`Controller.close`.
    """
    if subnqn == DISCOVERY_NQN:
        raise UsageError("connect() is for I/O controllers: use discover()")
    if not 1 <= io_queues <= 0xFFFF:
        raise UsageError(f"io_queues {io_queues} out of range 1..65535")
    addr = parse_address(address, default_port=NVME_PORT)
    params = AssociationParams(hdgst=hdgst, ddgst=ddgst, kato_s=kato, num_io_queues=io_queues,
                               io_queue_size=queue_size, timeout_s=timeout)
    return Controller(connect_association(addr, subnqn, _host(hostnqn, hostid), params))


class Controller:
    """One association: admin commands, keep-alive, namespaces and their I/O queues."""

    def __init__(self, assoc: Association):
        self._assoc = assoc
        self._admin_lock = threading.Lock()
        self._closed = threading.Event()
        self._queues = [_IoQueue(q.driver, i) for i, q in enumerate(assoc.io)]
        self._next_queue = itertools.count()
        self._lost: NvmeControlError | None = None
        kato = assoc.params.kato_s
        if kato:
            threading.Thread(target=self._keep_alive, args=(kato,), daemon=True,
                             name="api-keep-alive").start()

    # -- what the association is --
    @property
    def subnqn(self) -> str:
        return self._assoc.subnqn

    @property
    def cntlid(self) -> int:
        return self._assoc.cntlid

    @property
    def address(self) -> str:
        return self._assoc.peer

    def identify(self):
        """Identify Controller, decoded (``nvmecontrol.wire.identify.IdentifyController``)."""
        return self._assoc.cdata

    # -- admin commands --
    def _admin(self, sqe, what: str, *, read_len: int = 0):
        self._check()
        with self._admin_lock:
            return self._assoc.admin.execute(sqe, what, read_len=read_len)

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
        return Namespace(self, nsid, ident)

    def log_page(self, lid: int, length: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                 lsp: int = 0, rae: bool = False) -> bytes:
        """Get Log Page ``lid``: ``length`` bytes (a multiple of 4) from ``offset``."""
        g = A.GetLogPage(lid, length, offset, lsp, 0, rae, nsid)
        return self._admin(A.build_get_log_page(g), f"Get Log Page {lid:#04x}",
                           read_len=length)[1]

    def get_features(self, fid: int, *, sel: int = 0, nsid: int = 0, cdw11: int = 0) -> int:
        """Get Features ``fid``: the value (completion dword 0)."""
        cqe, _ = self._admin(A.build_get_features(fid, sel, nsid, cdw11),
                             f"Get Features {fid:#04x}")
        return cqe.dw0

    def set_features(self, fid: int, value: int, *, nsid: int = 0, save: bool = False) -> int:
        """Set Features ``fid`` to ``value``: completion dword 0."""
        cqe, _ = self._admin(A.build_set_features(fid, value, nsid, save),
                             f"Set Features {fid:#04x}")
        return cqe.dw0

    # -- keep-alive and the end --
    def _keep_alive(self, kato: int) -> None:
        while not self._closed.wait(kato / 2):
            try:
                with self._admin_lock:
                    if self._closed.is_set():
                        return
                    self._assoc.keep_alive(timeout=kato)
            except NvmeControlError as e:
                self._lost = ConnectionLost(f"{self.address}: keep-alive failed: {e}")
                for q in self._queues:
                    q.fail(self._lost)
                return

    def _check(self) -> None:
        if self._closed.is_set():
            raise ConnectionLost(f"{self.subnqn}: the controller was closed")
        if self._lost is not None:
            raise self._lost

    def _queue(self) -> "_IoQueue":
        self._check()
        if not self._queues:
            raise UsageError("this association has no I/O queues (io_queues=0)")
        return self._queues[next(self._next_queue) % len(self._queues)]

    def close(self) -> None:
        """End the association (CC.SHN, then the connections); idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        closed = ConnectionLost(f"{self.subnqn}: the controller was closed")
        for q in self._queues:
            q.fail(closed)
        with self._admin_lock:
            self._assoc.shutdown()

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Namespace:
    """Block I/O on one namespace; offsets and counts in logical blocks."""

    def __init__(self, ctrl: Controller, nsid: int, ident):
        self.controller = ctrl
        self.nsid = nsid
        self.identify = ident  # Identify Namespace, decoded
        self.block_size = ident.block_size() or 512
        self.blocks = ident.nsze
        assoc = ctrl._assoc
        mdts = assoc.cdata.mdts if assoc.cdata else 0
        page = 4096 << (assoc.cap.mpsmin if assoc.cap else 0)  # MDTS counts CAP.MPSMIN pages
        limit = (1 << mdts) * page // self.block_size if mdts else _MAX_NLB
        self.max_blocks = max(1, min(_MAX_NLB, limit))  # per command; larger I/O is split

    @property
    def size(self) -> int:
        return self.blocks * self.block_size

    def _check_range(self, lba: int, count: int) -> None:
        if count < 1 or lba < 0 or lba + count > self.blocks:
            raise UsageError(f"blocks {lba}+{count} outside namespace {self.nsid} "
                             f"({self.blocks} blocks)")

    # -- one command each, in flight together --
    def submit_read(self, lba: int, count: int, into=None) -> "IoRequest":
        """Read ``count`` blocks (at most ``max_blocks``); the future's result is the data.

        ``into`` (a writable buffer of ``count`` blocks) receives them without a
        copy and is the result.
        """
        self._check_range(lba, count)
        if count > self.max_blocks:
            raise UsageError(f"{count} blocks in one command: at most {self.max_blocks}")
        buf = bytearray(count * self.block_size) if into is None else into
        view = memoryview(buf).cast("B")
        if len(view) != count * self.block_size:
            raise UsageError(f"buffer of {len(view)} bytes for {count} blocks")
        return self.controller._queue().submit(IoRequest(
            NvmOpc.READ, self.nsid, lba, count, 0, None, view, buf, f"Read {lba}+{count}"))

    def submit_write(self, lba: int, data, *, fua: bool = False) -> "IoRequest":
        """Write ``data`` (whole blocks, at most ``max_blocks``) at ``lba``."""
        count, rest = divmod(len(memoryview(data).cast("B")), self.block_size)
        if rest:
            raise UsageError(f"{len(data)} bytes is not a multiple of the "
                             f"{self.block_size}-byte block")
        self._check_range(lba, count)
        if count > self.max_blocks:
            raise UsageError(f"{count} blocks in one command: at most {self.max_blocks}")
        return self.controller._queue().submit(IoRequest(
            NvmOpc.WRITE, self.nsid, lba, count, FUA if fua else 0, bytes(data), None, None,
            f"Write {lba}+{count}"))

    def submit_flush(self) -> "IoRequest":
        return self.controller._queue().submit(IoRequest(
            NvmOpc.FLUSH, self.nsid, 0, 0, 0, None, None, None, "Flush"))

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
        q = self.controller._queue
        _wait([q().submit(IoRequest(NvmOpc.WRITE_ZEROES, self.nsid, lba + first,
                                   min(_MAX_NLB, count - first), 0, None, None, None,
                                   f"Write Zeroes {lba + first}"))
               for first in range(0, count, _MAX_NLB)])

    def trim(self, lba: int, count: int) -> None:
        """Deallocate ``count`` blocks (Dataset Management, AD)."""
        self._check_range(lba, count)
        cmd = IoRequest(NvmOpc.DATASET_MANAGEMENT, self.nsid, 0, 0, 0,
                       encode_dsm_ranges([(lba, count)]), None, None, f"Deallocate {lba}+{count}")
        cmd.c10, cmd.c11 = 0, DSM_DEALLOCATE  # one range; Attribute - Deallocate
        self.controller._queue().submit(cmd).result()


def _wait(futures: list) -> None:
    for f in futures:
        f.result()


class IoRequest:
    """A submitted command: a small future, completed by its queue's receiver.

    ``done()``, ``result(timeout=None)`` (the read data, or None; raises what
    the command failed with) and ``exception(timeout=None)``.  One object per
    command, which is also the record the queue pair sends
    (``HostQueuePair.queue_records``): waiting threads share their queue's
    condition instead of one lock per command.
    """

    __slots__ = ("opc", "nsid", "c10", "c11", "c12", "data", "read_len", "into", "value",
                 "what", "queue", "finished", "error")

    def __init__(self, opc, nsid, slba, nlb, flags, data, into, value, what):
        self.opc, self.nsid = int(opc), nsid
        self.c10, self.c11 = slba & 0xFFFFFFFF, slba >> 32
        self.c12 = flags | (nlb - 1 if nlb else 0)
        self.data = data
        self.into = into  # receives read data (the queue pair copies into it)
        self.read_len = 0
        self.value, self.what = value, what
        self.queue: _IoQueue | None = None
        self.finished = False
        self.error: NvmeControlError | None = None

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


class _IoQueue:
    """One I/O queue: submissions from any thread, a receiver completing futures.

    The receiver never sends itself (the controller may be blocked sending to
    us): what it must send (H2CData after an R2T, commands that waited for a
    CID) goes to a sender thread, as in the NBD bridge.
    """

    def __init__(self, driver, index: int):
        self.driver, self.qp, self.lock = driver, driver.qp, driver.lock
        self.backlog: deque = deque()  # commands waiting for a free CID
        self.failed: NvmeControlError | None = None
        self._deferred: list = []
        self._deferred_cv = threading.Condition(threading.Lock())
        self._completed = threading.Condition(threading.Lock())  # woken once per batch
        self._waiting = 0  # threads in wait_for
        driver.set_timeout(None)  # silence is the keep-alive's business
        threading.Thread(target=self._receive, daemon=True, name=f"api-ioq{index + 1}").start()
        threading.Thread(target=self._sender, daemon=True, name=f"api-ioq{index + 1}-tx").start()

    def submit(self, cmd: IoRequest) -> "IoRequest":
        with self.lock:
            if self.failed is not None:
                raise self.failed
            cmd.queue = self
            self.backlog.append(cmd)
            self._drain()
            out = self.qp.take_outgoing()
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
            self._deferred.extend(out)
            self._deferred_cv.notify()

    def _drain(self) -> None:
        """Queue what the queue has room for (caller holds the lock)."""
        qp, backlog = self.qp, self.backlog
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
        for ev in events:
            if type(ev) is Completion and ev.tag is not None:
                cmd = ev.tag
                if ev.cqe.status:
                    cmd.error = CommandError(cmd.what, ev.cqe)
                cmd.finished = True
        self._wake_waiters()
        if failed is not None:
            raise failed  # the receive loop fails every command still outstanding
        if out:
            self._defer(out)
        return True

    def _wake_waiters(self) -> None:
        if self._waiting:
            with self._completed:
                self._completed.notify_all()

    def wait_for(self, cmd: IoRequest, timeout: float | None) -> None:
        """Until ``cmd`` finished; PeerTimeout after ``timeout`` seconds."""
        with self._completed:
            self._waiting += 1
            try:
                if not self._completed.wait_for(lambda: cmd.finished, timeout):
                    raise PeerTimeout(f"{cmd.what}: not completed within {timeout:g} s")
            finally:
                self._waiting -= 1

    def _sender(self) -> None:
        while True:
            with self._deferred_cv:
                while not self._deferred and self.failed is None:
                    self._deferred_cv.wait()
                if self.failed is not None:
                    return
                out, self._deferred = self._deferred, []
            self._send(out)

    def fail(self, error: NvmeControlError) -> None:
        """The queue is gone: every command not completed fails with ``error``."""
        with self.lock:
            if self.failed is not None:
                return
            self.failed = error
            pending = self.qp.outstanding_tags() + list(self.backlog)
            self.backlog.clear()
        with self._deferred_cv:
            self._deferred_cv.notify_all()
        self.driver.abort()
        for cmd in pending:
            if not cmd.finished:
                cmd.error, cmd.finished = error, True
        with self._completed:
            self._completed.notify_all()
