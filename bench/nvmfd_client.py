"""The one place the benchmark touches the host library's internals.

``NvmfdClient`` connects an association to nvmfd with our host library
(``connect_association``) and drives its first I/O queue pair directly, the
way the NBD bridge's data path does: up to QD commands in flight, every
completion of a receive handled before the resubmissions, one send per
wakeup.  It uses only

* ``assoc.io[0].qp`` (the ``HostQueuePair``): ``submit_io(...)`` with
  ``read_len`` (read data as views, as the NBD bridge uses it);
* the queue driver of that queue, ``assoc.io[0].driver``
  (``transport/driver.py``): ``flush()`` (``qp.take_outgoing()`` then one
  sendmsg) and ``poll()`` (one ``recv_into``, the decoded events);
* ``Completion`` events (``.cid``, ``.cqe.status``) and the opcodes of
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

    def _drain(self, owner: dict, resubmit=None, seconds: float = 0.0) -> tuple[int, float]:
        """Poll until ``owner`` (CID -> slot) is empty, resubmitting through
        ``resubmit(slot)`` for ``seconds``; returns (completions counted, elapsed)."""
        driver = self.io
        driver.flush()
        done = 0
        start = time.perf_counter()
        end = start + seconds
        counted, elapsed = None, None
        while owner:
            # Every completion of the batch first: the queue pair has already
            # freed their CIDs, so a resubmission may reuse one of them.
            free = []
            for ev in driver.poll():
                if type(ev) is not Completion:
                    continue
                if ev.cqe.status:
                    raise RuntimeError(f"nvmfd command failed: status {ev.cqe.status:#x}")
                free.append(owner.pop(ev.cid))
            done += len(free)
            if counted is None:
                if resubmit is not None:
                    for b in free:
                        owner[resubmit(b)] = b
                if time.perf_counter() >= end:
                    elapsed = time.perf_counter() - start
                    counted = done
            driver.flush()
        return (done, time.perf_counter() - start) if counted is None else (counted, elapsed)

    def run(self, size: int, qd: int, seconds: float) -> float:
        """Reads of ``size`` bytes (0: Flush) at depth ``qd``; returns commands per second.

        Commands are built as the bridge builds them (``submit_io``) and read
        data arrive as views of the receive buffer (``read_len``, no copy),
        as the bridge forwards them.
        """
        qp = self.qp
        blocks = max(size // LBA, 1)
        span = SPAN // LBA - blocks
        slots = list(range(qd))
        slba = [0]

        def submit(slot):
            if not size:
                return qp.submit_io(_FLUSH, 1, 0, 0, tag=slot)
            lba = slba[0]
            slba[0] = (lba + blocks) % span
            return qp.submit_io(_READ, 1, lba, blocks, read_len=size, tag=slot)

        owner = {submit(s): s for s in slots}
        done, elapsed = self._drain(owner, submit, seconds)
        return done / elapsed

    def close(self) -> None:
        self.assoc.shutdown()
