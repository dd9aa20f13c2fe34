"""The public API (``nvmecontrol.api``) driven the way a program would drive it.

``ApiClient.run`` keeps ``qd`` reads in flight with ``Namespace.submit_read``
from one thread: it waits for the oldest future, takes every one completed
behind it and submits as many new ones, so the ratio to the bare loop says
what the API's convenience (futures, a receiver thread per queue) costs on
the data path.  Flush (size 0) uses
``submit_flush``.
"""

from __future__ import annotations

import time
import uuid
from collections import deque

from nvmecontrol import api

SPAN = 64 << 20  # the part of the namespace the reads walk (as bench.nvmfd_client)


class ApiClient:
    def __init__(self, port: int, subnqn: str):
        u = str(uuid.uuid4())
        self.ctrl = api.connect(f"127.0.0.1:{port}", subnqn, io_queues=1, kato=0,
                                hostnqn=f"nqn.2014-08.org.nvmexpress:uuid:{u}", hostid=u)
        self.ns = self.ctrl.namespace(1)

    def run(self, size: int, qd: int, seconds: float) -> float:
        """Reads of ``size`` bytes (0: Flush) at depth ``qd``; returns commands per second."""
        ns = self.ns
        blocks = max(size // ns.block_size, 1)
        span = min(SPAN, ns.size) // ns.block_size - blocks
        lba = 0

        def submit():
            nonlocal lba
            if not size:
                return ns.submit_flush()
            f = ns.submit_read(lba, blocks)
            lba = (lba + blocks) % span
            return f

        inflight = deque(submit() for _ in range(qd))
        done = 0
        start = time.perf_counter()
        end = start + seconds
        while True:
            # The oldest command, then every one completed behind it: a
            # program's natural batch, resubmitted together.
            inflight.popleft().result()
            n = 1
            while inflight and inflight[0].done():
                inflight.popleft().result()
                n += 1
            done += n
            if time.perf_counter() >= end:
                break
            inflight.extend(submit() for _ in range(n))
        elapsed = time.perf_counter() - start
        for f in inflight:
            f.result()
        return done / elapsed

    def close(self) -> None:
        self.ctrl.close()
