"""The data path of a userspace session: one NVMe I/O queue serving NBD requests.

Shape (measured in shared/reference/performance-limits.md): blocking sockets,
batches per wakeup, zero-copy where the protocol allows.

* Each NBD connection has a reader thread that decodes every request in
  one ``recv_into``, turns them into NVMe commands (``request.Part``,
  several for a request larger than one command may carry) and submits
  them to the I/O queue the router bound it to, in one ``sendmsg``.
* Each I/O queue has a receiver thread (the queue driver's ``serve`` loop)
  that decodes every PDU of one receive and answers the NBD clients, one
  ``sendmsg`` per connection per batch.  Read data go from the NVMe receive buffer straight to the NBD
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

import itertools
import logging
import threading
from collections import deque

from nvmecontrol.errors import ConnectionLost, NvmeControlError
from nvmecontrol.nbd import protocol as N
from nvmecontrol.transport.driver import QueueDriver
from nvmecontrol.wire.qpair import Completion, ReadData, STATUS_TRANSIENT_TRANSPORT
from nvmecontrol.wire.status import (SC_AUTH_REQUIRED, SC_CAPACITY_EXCEEDED, SC_INVALID_FIELD,
                                     SC_INVALID_OPCODE, SC_LBA_RANGE, SC_NS_WRITE_PROTECTED,
                                     SC_RESERVATION_CONFLICT,
                                     SCT_COMMAND_SPECIFIC, SCT_GENERIC, decode_status, make_status)

log = logging.getLogger("nvmecontrol.session")

# A command whose data failed a digest check is retried this many times.
DIGEST_RETRIES = 3
# The controller wants the queue authenticated again (Fabrics status 91h):
# the session re-authenticates by reconnecting, and replays the command.
STATUS_AUTH_REQUIRED = make_status(SCT_COMMAND_SPECIFIC, SC_AUTH_REQUIRED)
# How long a second fail() waits for the first one's hand-back (it takes the
# session lock only briefly: this bounds a bug, not a normal wait).
HAND_BACK_WAIT_S = 5.0

_STATUS_ERRNO = {
    (SCT_GENERIC, SC_INVALID_OPCODE): N.ENOTSUP,
    (SCT_GENERIC, SC_INVALID_FIELD): N.EINVAL,
    (SCT_GENERIC, SC_LBA_RANGE): N.EINVAL,
    (SCT_GENERIC, SC_CAPACITY_EXCEEDED): N.ENOSPC,
    (SCT_GENERIC, SC_NS_WRITE_PROTECTED): N.EPERM,
    # Another host holds the reservation (Linux: BLK_STS_RESV_CONFLICT,
    # EBADE, which NBD cannot carry): not permitted, not an I/O error.
    (SCT_GENERIC, SC_RESERVATION_CONFLICT): N.EPERM,
}


def nbd_errno_for_status(status: int) -> int:
    st = decode_status(status)
    return _STATUS_ERRNO.get((st.sct, st.sc), N.EIO)


class QueueWorker:
    """One NVMe I/O queue of the data path: submission, receiver and sender.

    The queue pair's state is guarded by the driver's ``lock``; the socket's
    send side by its ``send_lock`` (inside ``driver.send``).
    """

    def __init__(self, driver: QueueDriver, index: int, *, on_lost):
        self.driver = driver
        self.qp = driver.qp
        self.lock = driver.lock
        self.index = index
        self.on_lost = on_lost  # (worker, parts, reason) -> None
        self.backlog: deque = deque()  # parts waiting for a free CID
        self.alive = True
        self.reauth = False  # a completion asked for re-authentication
        self._deferred: list = []  # outgoing the receiver may not send itself
        self._deferred_cv = threading.Condition(threading.Lock())
        self._handed_back = threading.Event()  # fail() gave the outstanding commands back
        # Silence on an I/O queue is not an error here: keep-alive decides.
        driver.set_timeout(None)
        self._receiver = threading.Thread(target=self._receive_loop, daemon=True,
                                          name=f"nvme-ioq{index}-rx")
        self._sender = threading.Thread(target=self._send_loop, daemon=True,
                                        name=f"nvme-ioq{index}-tx")

    def start(self) -> None:
        self._receiver.start()
        self._sender.start()

    # -- submission (NBD reader threads) --
    def submit(self, parts: list) -> bool:
        """Queue ``parts``; False when this queue is dead (the caller parks them)."""
        qp = self.qp
        with self.lock:
            # A queue pair the receiver found closed (peer gone, TermReq) is
            # dead even before fail() ran: submitting would raise and lose
            # the batch; the caller parks it instead.
            if not self.alive or qp.closed:
                return False
            if self.backlog:
                self.backlog.extend(parts)
                self._drain_locked()
            else:
                # The usual case: room for the whole batch, no backlog.
                queued = qp.queue_records(parts)
                if queued < len(parts):
                    self.backlog.extend(parts[queued:])
            out = qp.take_outgoing()
        if out:
            try:
                self.driver.send(out)
            except NvmeControlError as e:
                self.fail(str(e))
        return True

    def _drain_locked(self) -> None:
        qp, backlog = self.qp, self.backlog
        if backlog:
            # No more than there is room for: a deep backlog is not copied per batch.
            for _ in range(qp.queue_records(list(itertools.islice(backlog, qp.room())))):
                backlog.popleft()

    # -- the controller's side --
    def _receive_loop(self) -> None:
        try:
            self.driver.serve(self._on_batch)
        except NvmeControlError as e:
            self.fail(str(e))
        except BaseException as e:  # a bug must not strand this queue's commands
            log.exception("I/O queue %d receiver failed", self.index + 1)
            self.fail(f"internal error: {type(e).__name__}: {e}")

    def _on_batch(self) -> bool | None:
        qp = self.qp
        failed = None
        with self.lock:
            if not self.alive:
                # fail() already handed every outstanding command back to the
                # session, which replays them: completing them here too would
                # answer them twice (or a split request before all its parts).
                return False
            try:
                events = qp.receive()
            except NvmeControlError as e:
                # Commands completed earlier in this batch are no longer
                # outstanding: answer them, or nobody ever would.
                failed, events = e, getattr(e, "events", [])
            done, retry, viewed = self._deliver(events)
            if self.reauth and failed is None:
                failed = ConnectionLost("the controller asks for re-authentication"
                                        " (Authentication Required)")
            if retry:
                self.backlog.extendleft(reversed(retry))
            if self.backlog and failed is None:
                self._drain_locked()
            out = qp.take_outgoing()
        # Replies go out without the lock: submissions must not wait for an
        # NBD client to read.  The views they carry stay valid until this
        # thread's next receive.
        for conn, reqs in done.items():
            conn.reply(reqs)
        if failed is not None:
            raise failed  # fail() hands back what is still outstanding
        for req in viewed:  # reads not complete yet keep a copy
            if req.remaining and type(req.buf) is memoryview:
                req.buf = bytearray(req.buf)
        if out:
            # The receiver never blocks on sending to the controller (which
            # may be blocked sending to us): the sender thread does it.
            with self._deferred_cv:
                self._deferred.extend(out)
                self._deferred_cv.notify()

    def _deliver(self, events: list):
        """Account for ``events``: the requests they finish (by connection),
        parts to retry, and reads whose data are views into our buffer."""
        done: dict = {}
        retry = []
        viewed = []
        for ev in events:
            if type(ev) is not Completion:
                if type(ev) is ReadData:
                    self._gather(ev.tag, ev.offset, ev.data, viewed)
                continue
            _cid, cqe, part, data = ev
            if part is None:
                continue
            req = part.req
            if data is not None:
                # The usual read: all its data came with its completion.
                if req.buf is None and len(data) == req.length:
                    # Forwarded as is, no copy; complete now, so the view
                    # cannot outlive this batch (not in ``viewed``).
                    req.buf = data
                else:
                    self._gather(part, 0, data, viewed)
            status = cqe.status
            if status:
                sc = status & 0x7FF
                if ((sc == STATUS_TRANSIENT_TRANSPORT and part.retries < DIGEST_RETRIES)
                        or sc == STATUS_AUTH_REQUIRED):
                    if sc == STATUS_AUTH_REQUIRED:
                        self.reauth = True  # replayed once the session authenticated again
                    else:
                        part.retries += 1
                    if type(req.buf) is memoryview:
                        req.buf = None
                    retry.append(part)
                    continue
                if not req.error:
                    req.error = nbd_errno_for_status(status)
                    req.status = status
            req.remaining -= 1
            if req.remaining == 0:
                reqs = done.get(req.conn)
                if reqs is None:
                    done[req.conn] = [req]
                else:
                    reqs.append(req)
        return done, retry, viewed

    @staticmethod
    def _gather(part, offset: int, data, viewed: list) -> None:
        """Place read data of ``part`` at ``offset`` of its request's buffer."""
        req = part.req
        if req.buf is None and offset == 0 and len(data) == req.length:
            req.buf = data  # the whole read in one PDU: forward it as is
            viewed.append(req)
            return
        if type(req.buf) is not bytearray:
            req.buf = bytearray(req.length)
        start = part.buf_off + offset
        req.buf[start:start + len(data)] = data

    def _send_loop(self) -> None:
        while True:
            with self._deferred_cv:
                while not self._deferred and self.alive:
                    self._deferred_cv.wait()
                if not self.alive:
                    return
                out, self._deferred = self._deferred, []
            try:
                self.driver.send(out)
            except NvmeControlError as e:
                self.fail(str(e))
                return

    # -- loss --
    def outstanding_tags(self) -> list:
        """The parts sent and not yet answered (not the backlog: not sent yet)."""
        with self.lock:
            return self.qp.outstanding_tags() if self.alive else []

    def outstanding(self) -> bool:
        with self.lock:
            return bool(self.qp.outstanding or self.backlog)

    def fail(self, reason: str) -> None:
        """The connection is gone: hand back every command not completed.

        Once any call returns, the commands are with the session: a second
        caller waits for the first one's hand-back (the session counts what
        it holds right after tearing the queues down).
        """
        with self.lock:
            first = self.alive
            if first:
                self.alive = False
                parts = self.qp.outstanding_tags()
                parts.extend(self.backlog)
                self.backlog.clear()
        if not first:
            self._handed_back.wait(HAND_BACK_WAIT_S)
            return
        for p in parts:
            if type(p.req.buf) is memoryview:
                p.req.buf = None
        with self._deferred_cv:
            self._deferred_cv.notify_all()
        self.driver.abort()
        self.on_lost(self, parts, reason)
        self._handed_back.set()

    def close(self) -> None:
        """Stop without handing anything back (the session is ending)."""
        with self.lock:
            self.alive = False
        self._handed_back.set()
        with self._deferred_cv:
            self._deferred_cv.notify_all()
        self.driver.abort()
        self.driver.close()
