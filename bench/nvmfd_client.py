"""The one place the benchmark touches the host library's internals.

``NvmfdClient`` connects an association to nvmfd with our host library
(``connect_association``) and drives its first I/O queue pair directly, the
way the NBD bridge's data path does: up to QD commands in flight, every
completion of a receive handled before the resubmissions, one send per
wakeup.  It uses only

* ``assoc.io[0].qp`` (the ``HostQueuePair``): ``queue_records(...)`` of
  command records with ``read_len`` (read data as views, as the NBD bridge
  submits and receives them);
* the queue driver of that queue, ``assoc.io[0].driver``
  (``transport/driver.py``): ``flush()`` (``qp.take_outgoing()`` then one
  sendmsg) and ``poll()`` (one ``recv_into``, the decoded events);
* ``Completion`` events (``.tag``, ``.cqe.status``) and the opcodes of
  ``nvmecontrol.wire.nvm``.

If the host library changes shape, this module is the one to adapt.
"""

from __future__ import annotations

import time
import uuid

from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.nqn import nqn_from_uuid
from nvmecontrol.transport.address import Address
from nvmecontrol.wire import nvm
from nvmecontrol.wire.qpair import Completion

LBA = 512
_READ, _FLUSH = int(nvm.NvmOpc.READ), int(nvm.NvmOpc.FLUSH)
SPAN = 64 << 20  # the part of the namespace the reads walk (the suite fills the disk first)


class _Read:
    """One command record (``HostQueuePair.queue_records``): a Read, or a Flush."""

    __slots__ = ("opc", "nsid", "c10", "c11", "c12", "data", "read_len")

    def __init__(self, size: int, blocks: int):
        self.opc = _READ if size else _FLUSH
        self.nsid = 1
        self.c10 = self.c11 = 0
        self.c12 = blocks - 1 if size else 0  # NLB, 0's based
        self.data = None
        self.read_len = size


class NvmfdClient:
    """One association to nvmfd (KATO 0: it may sit idle between rounds)."""

    def __init__(self, port: int, subnqn: str, *, io_queues: int = 1, queue_size: int = 0):
        u = uuid.uuid4()
        host = HostIdentity(nqn_from_uuid(u), u, "bench", "bench")
        self.assoc = connect_association(
            Address("127.0.0.1", port, f"127.0.0.1:{port}"), subnqn, host,
            AssociationParams(num_io_queues=io_queues, io_queue_size=queue_size, kato_s=0))
        q = self.assoc.io[0]
        self.qp = q.qp
        self.io = q.driver  # what moves qp's bytes
        # As the bridge's queues: blocking, no timeout.  With one, Python
        # polls before every receive and send (twice the system calls).
        self.io.set_timeout(None)

    def run(self, size: int, qd: int, seconds: float) -> float:
        """Reads of ``size`` bytes (0: Flush) at depth ``qd``; returns commands per second.

        Commands are records queued a batch at a time (``queue_records``)
        and read data arrive as views of the receive buffer (``read_len``,
        no copy), as the NBD bridge does it.  Every completion of a receive
        is handled before the resubmissions go out in one send.
        """
        qp, driver = self.qp, self.io
        blocks = max(size // LBA, 1)
        span = SPAN // LBA - blocks
        records = [_Read(size, blocks) for _ in range(qd)]
        next_lba = 0

        def aim(batch: list) -> None:
            nonlocal next_lba
            if not size:
                return  # a Flush has no LBA
            for r in batch:
                r.c10, next_lba = next_lba, (next_lba + blocks) % span

        aim(records)
        if qp.queue_records(records) != qd:
            raise RuntimeError(f"the queue does not take {qd} commands")
        driver.flush()
        done = 0
        outstanding = qd
        start = time.perf_counter()
        end = start + seconds
        counted = elapsed = None
        while outstanding:
            free = []
            for ev in driver.poll():
                if type(ev) is not Completion:
                    continue
                if ev.cqe.status:
                    raise RuntimeError(f"nvmfd command failed: status {ev.cqe.status:#x}")
                free.append(ev.tag)
            done += len(free)
            outstanding -= len(free)
            if counted is None:
                if time.perf_counter() >= end:
                    elapsed, counted = time.perf_counter() - start, done
                elif free:
                    aim(free)
                    outstanding += qp.queue_records(free)
            driver.flush()
        return counted / elapsed

    def close(self) -> None:
        self.assoc.shutdown()
