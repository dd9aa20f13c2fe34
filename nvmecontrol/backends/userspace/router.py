"""Which I/O queue carries an NBD connection's requests, decided when it is accepted.

The hot path (an NBD reader thread submitting a batch) takes no session-wide
lock: the router holds the live queues as a tuple that the session replaces
whole when an association is installed or lost, and each connection keeps
the slot it was given at accept time (round robin, so NBD multi-conn
clients spread over the queues).  Only when the bound queue turns out to be
dead does a batch take the slow path: the session parks it until a new
association exists, or submits it to the new queues.
"""

from __future__ import annotations

import itertools


class Router:
    def __init__(self, slow_path):
        self.workers: tuple = ()  # the live association's QueueWorkers, or () while none
        self._slow_path = slow_path  # (parts) -> None: park or resubmit under the session lock
        self._slots = itertools.count()

    def bind(self, conn) -> None:
        """Give a newly accepted NBD connection its queue slot."""
        conn.slot = next(self._slots)

    def install(self, workers) -> None:
        self.workers = tuple(workers)

    def clear(self) -> tuple:
        workers, self.workers = self.workers, ()
        return workers

    def worker_for(self, conn):
        workers = self.workers
        return workers[conn.slot % len(workers)] if workers else None

    def submit(self, conn, parts: list) -> None:
        worker = self.worker_for(conn)
        if worker is not None and worker.submit(parts):
            return
        self._slow_path(parts)
