"""RAM namespaces lend ranges to connections sending them: writes there wait."""

from __future__ import annotations

import threading

from nvmecontrol.target.namespace import MemBackend
from nvmecontrol.wire import nvm

from .helpers import connect, run


def _write_in_thread(backend, data, offset):
    done = threading.Event()
    t = threading.Thread(target=lambda: (backend.write(data, offset), done.set()), daemon=True)
    t.start()
    return t, done


def test_a_write_into_a_lent_range_waits_until_it_is_given_back():
    b = MemBackend(1 << 20)
    b.write(b"\x01" * 8192, 0)
    sent = b.lend(0, 8192)
    t, done = _write_in_thread(b, b"\x02" * 512, 4096)
    assert not done.wait(0.3)  # still waiting: the bytes being sent are unchanged
    assert bytes(sent) == b"\x01" * 8192
    b.give_back(0, 8192)
    assert done.wait(5)
    t.join(5)
    assert bytes(b.ram[4096:4608]) == b"\x02" * 512


def test_writes_beside_a_lent_range_and_zeroes_inside_it():
    b = MemBackend(1 << 20)
    b.lend(4096, 8192)
    b.write(b"\x03" * 4096, 0)  # ends where the lent range starts: no wait
    b.write(b"\x04" * 4096, 8192)  # starts where it ends
    assert bytes(b.ram[0:4096]) == b"\x03" * 4096
    zeroed = threading.Event()
    t = threading.Thread(target=lambda: (b.write_zeroes(0, 1 << 20), zeroed.set()), daemon=True)
    t.start()
    assert not zeroed.wait(0.3)
    b.give_back(4096, 8192)
    assert zeroed.wait(5)
    t.join(5)
    assert bytes(b.ram[0:12288]) == bytes(12288)


def test_no_range_is_lent_while_a_write_waits_for_it():
    b = MemBackend(1 << 20)
    assert b.lend(0, 65536) is not None
    t, done = _write_in_thread(b, b"\x05" * 4096, 0)
    assert not done.wait(0.3)
    # The waiting writer is not starved by further reads of its blocks:
    # they are refused (the caller copies instead); other blocks still lend.
    assert b.lend(0, 4096) is None
    assert b.lend(65536, 131072) is not None
    b.give_back(0, 65536)
    assert done.wait(5)
    t.join(5)
    assert b.lend(0, 4096) is not None


def test_a_host_that_does_not_read_holds_no_other_hosts_writes(nvmfd_factory):
    """32 reads of 1 MiB that the reading host never receives: the ranges
    are lent for one send that cannot block, so another host's write to the
    same blocks is answered while that host's socket stays full."""
    h = nvmfd_factory(namespaces=("mem:64M",))
    slow = connect(h, num_io_queues=1, io_queue_size=64)
    other = connect(h, num_io_queues=1, io_queue_size=64)
    try:
        q = slow.io[0]
        for _ in range(32):
            q.qp.submit_io(int(nvm.NvmOpc.READ), 1, 0, 2048, 0,
                           read_into=memoryview(bytearray(1 << 20)))
        q.driver.flush()  # and never receive
        cqe, _ = run(other.io[0], nvm.build_write(1, 0, 8), write_data=b"x" * 4096, timeout=20)
        assert cqe.status == 0
        cqe, back = run(other.io[0], nvm.build_read(1, 0, 8), read_len=4096, timeout=20)
        assert cqe.status == 0 and back == b"x" * 4096
    finally:
        other.shutdown()
        slow.close()
