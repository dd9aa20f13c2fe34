"""nvmfd accepts what nvmet accepts (issue 11): headers whose extra fields mean nothing."""

from __future__ import annotations

from nvmecontrol.wire import nvm
from nvmecontrol.wire.admin import build_keep_alive

from .helpers import connect, run, sc


def _patched(q, sqe, offset: int, value: int, **kw):
    """Submit ``sqe`` with byte ``offset`` of its common header set to ``value``."""
    cid = q.qp.submit(sqe, **kw)
    q.qp.outgoing[0][offset] = value  # the capsule's header (CH + SQE)
    q.driver.flush()
    return q.wait(cid, timeout=5)


def test_capsule_with_pdo_but_no_data_is_served(nvmfd_server):
    """A host that sets PDO 72 (PLEN 72) on a capsule without in-capsule data,
    as one third-party host library does: nvmet serves it, nvmfd did not."""
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        assert run(q, nvm.build_write(1, 3, 1), write_data=b"p" * 512)[0].status == 0
        buf = bytearray(512)
        cqe = _patched(q, nvm.build_read(1, 3, 1), 3, 72, read_into=memoryview(buf))
        assert sc(cqe) == (0, 0, False) and bytes(buf) == b"p" * 512
        # And on the admin queue: Keep Alive with PDO 72.
        assert sc(_patched(a.admin, build_keep_alive(), 3, 72)) == (0, 0, False)
    finally:
        a.shutdown()


def test_reserved_flag_bits_on_a_capsule_are_ignored(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        # LAST_PDU and SUCCESS mean nothing on a CapsuleCmd.
        cqe = _patched(a.io[0], nvm.build_flush(1), 1, 0x0C)
        assert sc(cqe) == (0, 0, False)
    finally:
        a.shutdown()
