"""Synchronous command execution on one host queue pair.

The control path (admin commands, discovery, identify, log pages) runs one
command at a time and waits for its completion; the data path of the NBD
bridge drives the queue pair directly instead.  Completions that arrive for
other commands (an Asynchronous Event Request, say) are kept until asked for.
"""

from __future__ import annotations

import threading
import time

from nvmecontrol.errors import CommandFailed, PeerTimeout
from nvmecontrol.transport.driver import QueueDriver
from nvmecontrol.wire.capsule import CQE, SQE
from nvmecontrol.wire.qpair import Completion
from nvmecontrol.wire.status import describe_status, status_is_error


class CommandError(CommandFailed):
    """A command completed with an error status; carries the CQE."""

    def __init__(self, what: str, cqe: CQE):
        super().__init__(f"{what} failed: {describe_status(cqe.status)}", cqe.status)
        self.cqe = cqe


class HostQueue:
    """Runs commands on a connected host queue pair, one at a time.

    Written against the queue-driver interface only: whatever carries the
    queue pair's bytes, this is the same.
    """

    def __init__(self, driver: QueueDriver, *, qid: int, timeout: float = 30.0,
                 deadline: float | None = None):
        self.driver = driver
        self.qid = qid
        self.timeout = timeout
        # Monotonic time by which the whole operation must be done (one-shot
        # commands): a controller answering each command just in time must
        # not stretch a discover to many times the timeout.
        self.deadline = deadline
        self._done: dict[int, CQE] = {}
        # For callers on several threads: one command at a time on this queue.
        # HostQueue does not take it itself (one-shot users have one thread).
        self.lock = threading.Lock()

    @property
    def qp(self):
        return self.driver.qp

    def submit(self, sqe: SQE, *, write_data=None, read_into=None) -> int:
        cid = self.qp.submit(sqe, write_data=write_data, read_into=read_into)
        self.driver.flush()
        return cid

    def wait(self, cid: int, *, timeout: float | None = None) -> CQE:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        overall = self.deadline is not None and self.deadline < deadline
        if overall:
            deadline = self.deadline
        while cid not in self._done:
            try:
                events = self.driver.poll(deadline)
            except PeerTimeout:
                if overall:
                    raise PeerTimeout(f"{self.driver.peer_text}: the operation did not finish "
                                      f"within {self.timeout:g} s") from None
                raise
            for ev in events:
                if type(ev) is Completion:
                    self._done[ev.cid] = ev.cqe
        return self._done.pop(cid)

    def take(self, cid: int) -> CQE | None:
        """The completion of ``cid`` if it has arrived, receiving what is there; never waits.

        For a command left outstanding (an Asynchronous Event Request): the
        caller holds whatever serialises this queue's commands.
        """
        if cid not in self._done and self.driver.wait_readable(0):
            for ev in self.driver.poll(time.monotonic() + self.timeout):
                if type(ev) is Completion:
                    self._done[ev.cid] = ev.cqe
        return self._done.pop(cid, None)

    def execute(self, sqe: SQE, what: str, *, write_data=None, read_len: int = 0,
                check: bool = True, timeout: float | None = None) -> tuple[CQE, bytes]:
        """Run one command; raise CommandError on an error status when ``check``."""
        buf = bytearray(read_len) if read_len else None
        cid = self.submit(sqe, write_data=write_data,
                          read_into=memoryview(buf) if buf is not None else None)
        cqe = self.wait(cid, timeout=timeout)
        if check and status_is_error(cqe.status):
            raise CommandError(what, cqe)
        return cqe, bytes(buf) if buf is not None else b""

    def close(self) -> None:
        self.driver.close()
