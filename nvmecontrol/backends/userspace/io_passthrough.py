"""One I/O command for the control socket, carried on a session's I/O queue.

``resv`` on a session (``nvmeuNnsM``) sends NVM command set commands that
only an I/O queue takes.  The session's I/O queues belong to the data path
(``bridge.QueueWorker``), so the command travels as the data path's own
records do: an :class:`IoPassthrough` is a request of one part, submitted
to a queue worker like an NBD request, completed by the queue's receiver,
parked and replayed across a reconnect like any NBD request, and answered
through its connection's ``reply``, which here wakes the control-socket
thread that waits for it.

A record carries CDW10-12 only (``HostQueuePair.queue_records``): a
command that needs other dwords cannot travel this way and is refused.
"""

from __future__ import annotations

import threading

from nvmecontrol.backends.userspace.request import NbdRequest
from nvmecontrol.errors import UsageError
from nvmecontrol.wire.capsule import decode_sqe

# Not an NBD command type: the data path never looks at it, logs may.
KIND_PASSTHROUGH = -1
_FUSE_MASK = 0x03  # SQE byte 1 bits 1:0
# Bounds what one control request makes the session hold (the reservation
# commands move at most a few KiB).
MAX_PASSTHROUGH_BYTES = 1 << 20


class _Waiter:
    """The "connection" of a passthrough request: the data path answers here."""

    __slots__ = ("slot", "done", "data")

    def __init__(self) -> None:
        self.slot = 0  # the router's queue slot: the first I/O queue
        self.done = threading.Event()
        self.data = b""

    def reply(self, reqs: list) -> None:
        for req in reqs:
            # Read data may be a view into the queue's receive buffer, valid
            # only until its next receive: copied before anything else runs.
            if req.buf is not None:
                self.data = bytes(req.buf)
        self.done.set()


class IoPassthrough(NbdRequest):
    """An I/O command of the control socket as a one-part data-path request.

    ``status`` is the NVMe status of a failed command when the data path
    records it beside the NBD errno (``error``), else 0.
    """

    __slots__ = ()

    def __init__(self, sqe: bytes | bytearray, read_len: int, write_data: bytes | None):
        if len(sqe) != 64:
            raise UsageError("an I/O command is 64 bytes")
        s = decode_sqe(bytes(sqe))
        if s.flags & _FUSE_MASK or s.cdw2 or s.cdw3 or s.mptr or s.cdw13 or s.cdw14 or s.cdw15:
            raise UsageError("an I/O passthrough on a session carries CDW10-CDW12 only (no "
                             "fused commands, metadata or CDW2/3/13-15)")
        if read_len and write_data:
            raise UsageError("an I/O command moves data one way")
        size = read_len or len(write_data or b"")
        if not 0 <= size <= MAX_PASSTHROUGH_BYTES:
            raise UsageError(f"an I/O passthrough moves at most {MAX_PASSTHROUGH_BYTES} bytes")
        super().__init__(_Waiter(), 0, KIND_PASSTHROUGH, 0, read_len)
        self.opc, self.nsid = s.opc, s.nsid
        self.c10, self.c11, self.c12 = s.cdw10, s.cdw11, s.cdw12
        self.data = bytes(write_data) if write_data else None
        self.read_len = read_len
        self.remaining = 1
        self.status = 0

    def wait(self, timeout: float) -> bool:
        """True once the controller answered (or the session gave up on it)."""
        return self.conn.done.wait(timeout)

    @property
    def read_data(self) -> bytes:
        return self.conn.data
