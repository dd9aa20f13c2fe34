"""The data path of a userspace session: NBD requests become NVMe I/O commands.

Shape (measured in shared/reference/performance-limits.md): blocking sockets,
batches per wakeup, zero-copy where the protocol allows.

* Each NBD connection has a reader thread that decodes every request in
  one ``recv_into``, turns them into NVMe commands (:class:`Part`, several
  for a request larger than one command may carry) and submits them to one
  I/O queue in one ``sendmsg``.
* Each I/O queue has a receiver thread that decodes every PDU of one
  ``recv_into`` and answers the NBD clients, one ``sendmsg`` per connection
  per batch.  Read data go from the NVMe receive buffer straight to the NBD
  socket when one C2HData carried the whole read (the usual case).
* A receiver never blocks on sending to the controller (the controller
  might be blocked sending to us): what it must send (H2CData after an R2T,
  commands that waited for a free CID) goes to a sender thread.

Nothing is acknowledged to an NBD client before the controller completed
the command.  When a queue's connection is lost, every command not yet
completed is handed back to the session (``on_lost``), which keeps it
parked until a new association exists and then submits it again.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque

from nvmecontrol.errors import NvmeControlError
from nvmecontrol.nbd import protocol as N
from nvmecontrol.transport.tcp import sendmsg_all
from nvmecontrol.wire.nvm import FUA, NvmOpc, encode_dsm_ranges, encode_io
from nvmecontrol.wire.qpair import Completion, ReadData, STATUS_TRANSIENT_TRANSPORT
from nvmecontrol.wire.status import (SC_CAPACITY_EXCEEDED, SC_INVALID_FIELD, SC_INVALID_OPCODE,
                                     SC_LBA_RANGE, SC_NS_WRITE_PROTECTED, SCT_GENERIC,
                                     decode_status)

log = logging.getLogger("nvmecontrol.session")

# A command whose data failed a digest check is retried this many times.
DIGEST_RETRIES = 3

_STATUS_ERRNO = {
    (SCT_GENERIC, SC_INVALID_OPCODE): N.ENOTSUP,
    (SCT_GENERIC, SC_INVALID_FIELD): N.EINVAL,
    (SCT_GENERIC, SC_LBA_RANGE): N.EINVAL,
    (SCT_GENERIC, SC_CAPACITY_EXCEEDED): N.ENOSPC,
    (SCT_GENERIC, SC_NS_WRITE_PROTECTED): N.EPERM,
}


def nbd_errno_for_status(status: int) -> int:
    st = decode_status(status)
    return _STATUS_ERRNO.get((st.sct, st.sc), N.EIO)


class NbdRequest:
    """One NBD request on its way through the bridge."""

    __slots__ = ("conn", "cookie", "kind", "offset", "length", "remaining", "error", "buf",
                 "seq")

    def __init__(self, conn, cookie: int, kind: str, offset: int, length: int, seq: int):
        self.conn = conn
        self.cookie = cookie
        self.kind = kind  # "read", "write", "flush", "trim", "zero"
        self.offset = offset
        self.length = length
        self.remaining = 0  # parts not yet completed
        self.error = 0  # NBD errno of the first failed part
        self.buf = None  # read data gathered from several PDUs or parts
        self.seq = seq  # arrival order, kept when parked commands are replayed


class Part:
    """One NVMe command of a request (the tag its queue-pair events carry)."""

    __slots__ = ("req", "opc", "nsid", "slba", "nlb", "cdw12", "data", "read_len", "buf_off",
                 "retries")

    def __init__(self, req: NbdRequest, opc: int, nsid: int, slba: int, nlb: int, *,
                 cdw12: int = 0, data=None, read_len: int = 0, buf_off: int = 0):
        self.req = req
        self.opc, self.nsid, self.slba, self.nlb, self.cdw12 = opc, nsid, slba, nlb, cdw12
        self.data = data  # write payload (owned: it must outlive a reconnect)
        self.read_len = read_len
        self.buf_off = buf_off  # where this part's read data go in req.buf
        self.retries = 0

    def sqe(self) -> bytearray:
        if self.opc == NvmOpc.DATASET_MANAGEMENT:
            # One range in the data; NR 0 (one range), AD set.
            return encode_io(self.opc, self.nsid, cdw10=0, cdw11=1 << 2)
        if self.opc == NvmOpc.FLUSH:
            return encode_io(self.opc, self.nsid)
        return encode_io(self.opc, self.nsid, self.slba, self.nlb, cdw12_flags=self.cdw12)


class Namespace:
    """What the bridge needs to map byte ranges of one namespace to LBAs."""

    __slots__ = ("nsid", "lba_size", "size", "max_cmd_bytes", "can_write_zeroes", "can_trim",
                 "read_only")

    def __init__(self, nsid: int, lba_size: int, size: int, *, max_cmd_bytes: int,
                 can_write_zeroes: bool, can_trim: bool, read_only: bool = False):
        self.nsid, self.lba_size, self.size = nsid, lba_size, size
        self.max_cmd_bytes = max_cmd_bytes
        self.can_write_zeroes, self.can_trim, self.read_only = can_write_zeroes, can_trim, read_only


# Write Zeroes and DSM ranges carry block counts; these bound one command.
_MAX_ZERO_BLOCKS = 0x10000
_MAX_TRIM_BLOCKS = 0xFFFFFFFF


def split(req: NbdRequest, ns: Namespace, data=None, fua: bool = False) -> list[Part]:
    """The NVMe commands carrying ``req`` on ``ns`` (the caller checked bounds and alignment)."""
    kind = req.kind
    if kind == "flush":
        return [Part(req, NvmOpc.FLUSH, ns.nsid, 0, 0)]
    lba = ns.lba_size
    slba, blocks = req.offset // lba, req.length // lba
    if kind == "read" or kind == "write":
        step = max(1, min(ns.max_cmd_bytes // lba, 0x10000))
        opc = NvmOpc.READ if kind == "read" else NvmOpc.WRITE
        flags = FUA if fua else 0
        parts = []
        for first in range(0, blocks, step):
            n = min(step, blocks - first)
            off, end = first * lba, (first + n) * lba
            if kind == "read":
                parts.append(Part(req, opc, ns.nsid, slba + first, n, read_len=end - off,
                                  buf_off=off))
            else:
                payload = data if n == blocks else data[off:end]
                parts.append(Part(req, opc, ns.nsid, slba + first, n, cdw12=flags, data=payload))
        return parts
    if kind == "zero":
        flags = (FUA if fua else 0)
        return [Part(req, NvmOpc.WRITE_ZEROES, ns.nsid, slba + first,
                     min(_MAX_ZERO_BLOCKS, blocks - first), cdw12=flags)
                for first in range(0, blocks, _MAX_ZERO_BLOCKS)]
    # trim: one Dataset Management range per part
    return [Part(req, NvmOpc.DATASET_MANAGEMENT, ns.nsid, slba + first, 0,
                 data=encode_dsm_ranges([(slba + first, min(_MAX_TRIM_BLOCKS, blocks - first))]))
            for first in range(0, blocks, _MAX_TRIM_BLOCKS)]


class QueueWorker:
    """One NVMe I/O queue of the data path: submission, receiver and sender."""

    def __init__(self, hq, index: int, *, on_lost, on_done):
        self.tq = hq.tq
        self.qp = hq.tq.qp
        self.sock: socket.socket = hq.tq.sock
        self.index = index
        self.on_lost = on_lost  # (worker, parts, reason) -> None
        self.on_done = on_done  # (replies: dict conn -> list of requests) -> None
        self.state_lock = threading.Lock()  # the queue pair's state
        self.send_lock = threading.Lock()  # one writer of the socket at a time
        self.backlog: deque[Part] = deque()  # waiting for a free CID
        self.alive = True
        self._deferred: list = []  # outgoing the receiver may not send itself
        self._deferred_cv = threading.Condition(threading.Lock())
        self.sock.settimeout(None)
        self._receiver = threading.Thread(target=self._receive_loop, daemon=True,
                                          name=f"nvme-ioq{index}-rx")
        self._sender = threading.Thread(target=self._send_loop, daemon=True,
                                        name=f"nvme-ioq{index}-tx")

    def start(self) -> None:
        self._receiver.start()
        self._sender.start()

    # -- submission (NBD reader threads) --
    def submit(self, parts: list[Part]) -> bool:
        """Queue ``parts``; False when this queue is dead (the caller parks them)."""
        with self.state_lock:
            if not self.alive:
                return False
            self.backlog.extend(parts)
            out = self._drain_locked()
        if out:
            try:
                with self.send_lock:
                    sendmsg_all(self.sock, out)
            except OSError as e:
                self.fail(f"send failed: {e.strerror or e}")
        return True

    def _drain_locked(self) -> list:
        qp, backlog = self.qp, self.backlog
        while backlog and qp.can_submit():
            p = backlog.popleft()
            qp.submit(p.sqe(), write_data=p.data, read_len=p.read_len, tag=p)
        return qp.take_outgoing()

    # -- the controller's side --
    def _receive_loop(self) -> None:
        qp, sock = self.qp, self.sock
        decoder = qp.decoder
        try:
            while True:
                n = sock.recv_into(decoder.get_buffer())
                if n == 0:
                    raise ConnectionResetError(0, "connection closed by the controller")
                with self.state_lock:
                    decoder.buffer_updated(n)
                    events = qp.receive()
                    done, retry, viewed = self._deliver(events)
                    if retry:
                        self.backlog.extendleft(reversed(retry))
                    out = self._drain_locked()
                # Replies go out without the lock: submissions must not wait
                # for an NBD client to read.  The views they carry stay valid
                # until this thread's next recv_into.
                if done:
                    self.on_done(done)
                for req in viewed:  # reads not complete yet keep a copy
                    if req.remaining and type(req.buf) is memoryview:
                        req.buf = bytearray(req.buf)
                if out:
                    with self._deferred_cv:
                        self._deferred.extend(out)
                        self._deferred_cv.notify()
        except (OSError, NvmeControlError) as e:
            self.fail(getattr(e, "strerror", None) or str(e) or type(e).__name__)
        except BaseException as e:  # a bug must not strand this queue's commands
            log.exception("I/O queue %d receiver failed", self.index + 1)
            self.fail(f"internal error: {type(e).__name__}: {e}")

    def _deliver(self, events: list):
        """Account for ``events``: the requests they finish (by connection),
        parts to retry, and reads whose data are views into our buffer."""
        done: dict = {}
        retry = []
        viewed = []
        for ev in events:
            part = ev.tag
            if type(ev) is ReadData:
                req = part.req
                if req.buf is None and ev.offset == 0 and len(ev.data) == req.length:
                    req.buf = ev.data  # the whole read in one PDU: forward it as is
                    viewed.append(req)
                else:
                    if type(req.buf) is not bytearray:
                        req.buf = bytearray(req.length)
                    start = part.buf_off + ev.offset
                    req.buf[start:start + len(ev.data)] = ev.data
                continue
            if type(ev) is not Completion or part is None:
                continue
            status = ev.cqe.status
            if status:
                if (status & 0x7FF) == STATUS_TRANSIENT_TRANSPORT and part.retries < DIGEST_RETRIES:
                    part.retries += 1
                    if type(part.req.buf) is memoryview:
                        part.req.buf = None
                    retry.append(part)
                    continue
                if not part.req.error:
                    part.req.error = nbd_errno_for_status(status)
            req = part.req
            req.remaining -= 1
            if req.remaining == 0:
                done.setdefault(req.conn, []).append(req)
        return done, retry, viewed

    def _send_loop(self) -> None:
        while True:
            with self._deferred_cv:
                while not self._deferred and self.alive:
                    self._deferred_cv.wait()
                if not self.alive:
                    return
                out, self._deferred = self._deferred, []
            try:
                with self.send_lock:
                    sendmsg_all(self.sock, out)
            except OSError as e:
                self.fail(f"send failed: {e.strerror or e}")
                return

    # -- loss --
    def fail(self, reason: str) -> None:
        """The connection is gone: hand back every command not completed."""
        with self.state_lock:
            if not self.alive:
                return
            self.alive = False
            parts = self.qp.outstanding_tags()
            parts.extend(self.backlog)
            self.backlog.clear()
            self.qp.closed = True
        for p in parts:
            if type(p.req.buf) is memoryview:
                p.req.buf = None
        with self._deferred_cv:
            self._deferred_cv.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.on_lost(self, parts, reason)

    def close(self) -> None:
        """Stop without handing anything back (the session is ending)."""
        with self.state_lock:
            self.alive = False
        with self._deferred_cv:
            self._deferred_cv.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

