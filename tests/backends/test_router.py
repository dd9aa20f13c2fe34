"""The session's router: NBD connections bound to I/O queues at accept time."""

from __future__ import annotations

from types import SimpleNamespace

from nvmecontrol.backends.userspace.router import Router


class FakeWorker:
    def __init__(self, alive=True):
        self.alive = alive
        self.got = []

    def submit(self, parts):
        if not self.alive:
            return False
        self.got.append(parts)
        return True


def test_connections_spread_round_robin_over_the_queues():
    parked = []
    r = Router(parked.extend)
    workers = [FakeWorker(), FakeWorker()]
    r.install(workers)
    conns = [SimpleNamespace() for _ in range(4)]
    for c in conns:
        r.bind(c)
    for i, c in enumerate(conns):
        r.submit(c, [f"part{i}"])
    assert workers[0].got == [["part0"], ["part2"]]
    assert workers[1].got == [["part1"], ["part3"]]
    assert parked == []
    # A connection keeps its queue for its lifetime.
    assert r.worker_for(conns[2]) is workers[0]


def test_no_live_queue_takes_the_slow_path():
    parked = []
    r = Router(parked.extend)
    c = SimpleNamespace()
    r.bind(c)
    r.submit(c, ["a"])
    assert parked == ["a"] and r.worker_for(c) is None


def test_a_dead_queue_hands_the_batch_to_the_slow_path():
    parked = []
    r = Router(parked.extend)
    r.install([FakeWorker(alive=False)])
    c = SimpleNamespace()
    r.bind(c)
    r.submit(c, ["a", "b"])
    assert parked == ["a", "b"]


def test_clear_and_install_swap_the_queues_whole():
    parked = []
    r = Router(parked.extend)
    old = [FakeWorker()]
    r.install(old)
    assert r.clear() == tuple(old)
    new = FakeWorker()
    r.install([new])
    c = SimpleNamespace()
    r.bind(c)
    r.submit(c, ["x"])
    assert new.got == [["x"]] and old[0].got == [] and parked == []
