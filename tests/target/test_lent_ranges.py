"""RAM namespaces lend ranges to connections sending them: writes there wait."""

from __future__ import annotations

import threading

from nvmecontrol.target.namespace import MemBackend


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
