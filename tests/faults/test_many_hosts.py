"""Scenario 6: many hosts at once against one nvmfd process.

32 associations (each its own host NQN) write and read back their own
region of one file-backed namespace concurrently, with data that names the
association, the block and the round, while churners connect and disconnect
in a loop (orderly shutdowns and abrupt closes).  No association may ever
read another's data or a stale round; at the end the file holds each
association's last round, and nvmfd's descriptors and threads are what they
were before anyone connected.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time

from nvmecontrol.errors import NvmeControlError
from nvmecontrol.wire import nvm

from ..backends.sessionkit import SUBNQN, backing_file, wait_for
from ..target.helpers import connect as host_connect
from ..target.helpers import make_host
from ..target.helpers import run as run_cmd
from .conftest import figures, scale
from .kit import NvmfdProcess

ASSOCIATIONS = 32
REGION = 128 * 1024  # bytes per association
SIZE = ASSOCIATIONS * REGION
LBA = 512


def piece(owner: int, rnd: int, offset: int, length: int) -> bytes:
    tag = f"a{owner} r{rnd} o{offset} ".encode()
    return (tag + hashlib.shake_128(tag).digest(length))[:length]


class Worker(threading.Thread):
    def __init__(self, target, owner: int, rounds: int):
        super().__init__(daemon=True, name=f"host-{owner}")
        self.target, self.owner, self.rounds = target, owner, rounds
        self.rng = random.Random(1506 + owner)
        self.base = owner * REGION
        self.ios = 0
        self.error: BaseException | None = None
        self.last: dict[int, bytes] = {}  # region offset -> what it holds

    def run(self):
        try:
            assoc = host_connect(self.target, num_io_queues=1, host=make_host())
            q = assoc.io[0]
            try:
                for rnd in range(self.rounds):
                    length = self.rng.choice([512, 4096, 16384])
                    off = self.rng.randrange(0, REGION - length + 1, 512)
                    data = piece(self.owner, rnd, off, length)
                    slba, nlb = (self.base + off) // LBA, length // LBA
                    cqe, _ = run_cmd(q, nvm.build_write(1, slba, nlb), write_data=data)
                    assert cqe.status == 0, f"write failed {cqe.status:#x}"
                    cqe, got = run_cmd(q, nvm.build_read(1, slba, nlb), read_len=length)
                    assert cqe.status == 0 and got == data, \
                        f"association {self.owner} round {rnd}: read back something else"
                    for k in range(off, off + length, 512):
                        self.last[k] = data[k - off:k - off + 512]
                    self.ios += 2
            finally:
                assoc.shutdown()
        except BaseException as e:  # reported by the test
            self.error = e


class Churner(threading.Thread):
    def __init__(self, target, seed: int):
        super().__init__(daemon=True, name=f"churn-{seed}")
        self.target, self.rng = target, random.Random(seed)
        self.halt = threading.Event()
        self.cycles = self.errors = 0

    def run(self):
        while not self.halt.is_set():
            try:
                assoc = host_connect(self.target, num_io_queues=self.rng.choice([0, 1]))
            except NvmeControlError:
                self.errors += 1
                continue
            if self.rng.random() < 0.5:
                assoc.shutdown()
            else:
                assoc.close()  # gone without a word
            self.cycles += 1


def test_32_hosts_with_churn(tmp_path):
    rounds = scale(100, 1000)
    disk = backing_file(tmp_path / "ns1.img", SIZE)
    nvmfd = NvmfdProcess(tmp_path, disk, SUBNQN).start()
    t0 = time.monotonic()
    try:
        # An association first, so lazily created state exists before the count.
        host_connect(nvmfd, num_io_queues=1).shutdown()
        time.sleep(0.5)
        fds0, threads0 = nvmfd.fds(), nvmfd.threads()
        workers = [Worker(nvmfd, i, rounds) for i in range(ASSOCIATIONS)]
        churners = [Churner(nvmfd, s) for s in (1, 2)]
        for t in workers + churners:
            t.start()
        peak_threads = threads0
        while any(w.is_alive() for w in workers):
            peak_threads = max(peak_threads, nvmfd.threads())
            time.sleep(0.1)
        for c in churners:
            c.halt.set()
            c.join(30)
        errors = [w.error for w in workers if w.error is not None]
        assert errors == [], errors[:3]
        # nvmfd ends abruptly closed associations when it sees the sockets close.
        wait_for(lambda: (nvmfd.fds(), nvmfd.threads()) == (fds0, threads0),
                 f"nvmfd's descriptors and threads back to {fds0}/{threads0} "
                 f"(now {nvmfd.fds()}/{nvmfd.threads()})", timeout=30)
    finally:
        nvmfd.stop()
    image = disk.read_bytes()
    for w in workers:
        for off, data in w.last.items():
            at = w.base + off
            assert image[at:at + 512] == data, f"association {w.owner}'s block at {off} changed"
    figures("6 many hosts", associations=ASSOCIATIONS, ios=sum(w.ios for w in workers),
            churn_cycles=sum(c.cycles for c in churners),
            churn_errors=sum(c.errors for c in churners),
            nvmfd_fds_before_after=f"{fds0}/{fds0}", nvmfd_threads_before_after=f"{threads0}/"
            f"{threads0}", nvmfd_threads_peak=peak_threads, cross_talk=0,
            seconds=f"{time.monotonic() - t0:.1f}")
