"""The queue-driver interface: what moves a sans-IO queue pair's bytes.

``wire.qpair`` holds the NVMe/TCP state of one queue pair and does no I/O.
A *driver* owns whatever carries its bytes (a TCP socket today) and offers
the few operations every user of a queue pair needs, so the host logic,
the NBD bridge and nvmfd share one receive/send implementation instead of
each writing a socket loop around the queue pair (libnvmf's transport
vtable plays the same part):

* ``flush()`` sends what the queue pair queued (``qp.take_outgoing()``);
* ``poll(deadline)`` receives once, runs the state machine and flushes:
  the synchronous control path (one admin command at a time);
* ``serve(on_batch)`` is the data path's receive loop: one receive per
  wakeup into the decoder's buffer, then ``on_batch()`` decodes and answers
  the whole batch (under whatever lock its owner keeps);
* ``send(buffers)`` sends buffers built elsewhere, one writer at a time, so
  a submitting thread and a receiving thread may both send;
* ``abort()`` wakes a thread blocked in ``serve`` from another thread, and
  ``close()`` releases the connection;
* ``set_timeout()`` changes how long one receive or send may block (the data
  path waits for ever: silence there is the keep-alive's business);
* ``wait_readable(timeout)`` waits, receiving nothing, until something
  arrived (or the connection ended): a thread that waits for an unsolicited
  completion (an Asynchronous Event) without holding the queue's lock.

Errors are the project's own: ``ConnectionLost`` (the peer closed or reset
the connection, a send failed), ``PeerTimeout`` (a deadline passed) and
``PeerProtocolError`` (after the driver answered with the TermReq the state
machine chose).
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # typing's, without importing typing (start-up of every command)
if TYPE_CHECKING:
    from typing import Callable

from nvmecontrol.wire.qpair import ControllerQueuePair, Established, HostQueuePair


class QueueDriver:  # a protocol (structural), written without typing
    qp: HostQueuePair | ControllerQueuePair
    timeout: float | None  # how long one receive or send may block (None: for ever)
    lock: threading.Lock  # guards the queue pair's state when several threads use it

    @property
    def peer_text(self) -> str: ...

    @property
    def established(self) -> Established | None: ...

    def flush(self) -> None: ...

    def send(self, buffers: list) -> None: ...

    def send_nowait(self, buffers: list) -> int: ...

    def poll(self, deadline: float | None = None) -> list: ...

    def serve(self, on_batch: Callable[[], bool | None], *,
              deadline: Callable[[], float | None] | None = None) -> None: ...

    def set_timeout(self, timeout: float | None) -> None: ...

    def wait_readable(self, timeout: float) -> bool: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


class Dialer:  # a protocol (structural), written without typing
    """Opens a queue pair as host and runs connection initialization (ICReq/ICResp)."""

    def __call__(self, addrinfo: list, *, timeout: float, **qp_args) -> QueueDriver: ...
