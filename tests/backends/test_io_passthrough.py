"""A control-socket I/O command as a data-path record (io_passthrough.IoPassthrough)."""

from __future__ import annotations

import pytest

from nvmecontrol.backends.userspace.io_passthrough import IoPassthrough
from nvmecontrol.errors import UsageError
from nvmecontrol.wire import reservations as R
from nvmecontrol.wire.capsule import SQE, encode_sqe


def test_the_record_carries_the_command_and_the_reply_copies_read_data():
    req = IoPassthrough(encode_sqe(R.build_resv_report(3, 4096)), 4096, None)
    assert (req.opc, req.nsid, req.c10, req.c11, req.c12) == (0x0E, 3, 1023, R.EDS, 0)
    assert (req.read_len, req.length, req.data, req.remaining, req.req) == (4096, 4096, None, 1,
                                                                            req)
    buf = bytearray(b"x" * 4096)
    req.buf = memoryview(buf)  # a view into a queue's receive buffer
    req.conn.reply([req])
    buf[:] = bytes(4096)  # the buffer is reused by the next receive
    assert req.wait(0) and req.read_data == b"x" * 4096


def test_write_data_is_owned():
    data = bytearray(R.encode_acquire_data(R.AcquireData(1, 2)))
    req = IoPassthrough(encode_sqe(R.build_resv_acquire(1, 0, 1)), 0, data)
    data[:] = bytes(16)
    assert req.data == R.encode_acquire_data(R.AcquireData(1, 2))
    assert not req.wait(0)


@pytest.mark.parametrize("sqe, read_len, data, said", [
    (SQE(0x0E, nsid=1, cdw13=1), 8, None, "CDW10-CDW12 only"),
    (SQE(0x0E, flags=0x41, nsid=1), 8, None, "CDW10-CDW12 only"),  # fused
    (SQE(0x0D, nsid=1), 8, b"k" * 16, "one way"),
    (SQE(0x0E, nsid=1), 2 << 20, None, "at most"),
])
def test_what_cannot_travel_is_refused(sqe, read_len, data, said):
    with pytest.raises(UsageError, match=said):
        IoPassthrough(encode_sqe(sqe), read_len, data)
    with pytest.raises(UsageError, match="64 bytes"):
        IoPassthrough(b"\0" * 63, 0, None)
