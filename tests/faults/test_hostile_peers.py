"""Scenario 5: hostile peers, fuzzed with a seed, over real sockets.

tests/wire/test_fuzz.py already fuzzes the sans-IO decoder and both queue-pair
state machines (110 000 inputs), and tests/target/test_fuzz.py feeds mutated
streams to a live nvmfd.  This adds the end-to-end cases: the fault proxy
sits between the host library and nvmfd and replaces one PDU of a real
exchange (a seeded pick) with a hostile one, so the peer under test meets
it in the state where it hurts:

- the host against a hostile target: C2H PDUs mutated during connect, Identify
  and a write/read with R2T and C2HData (header and data digests on, so a
  changed payload is detectable and must never come back as good data);
- nvmfd against a hostile host: H2C PDUs mutated the same way, while a
  bystander association keeps working.

Hostile PDUs: PLEN huge, below HLEN or below 8; unknown types; a TermReq in
place of any PDU; an R2T for a command never sent; C2HData/H2CData beyond the
buffer; a CapsuleResp or CapsuleCmd sent twice (CID reuse); and the generic
mutations of the wire fuzzer (bit flips, truncation, splices).  Every case
must end in success or an :class:`NvmeControlError` within its deadline,
with no other exception, no traceback in nvmfd's log, threads back to what
they were and memory bounded.

Long mode (scripts/reliability.sh --long) runs 5 000 cases each way and the
sans-IO fuzzer with 1 000 000 more inputs under another seed.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import struct
import threading
import time
from collections import Counter

import pytest

from nvmecontrol.errors import NvmeControlError
from nvmecontrol.wire import nvm

from ..target.helpers import connect as host_connect
from ..target.helpers import run as run_cmd
from ..wire import test_fuzz as wire_fuzz
from .conftest import LONG, figures, scale
from .proxy import C2H, H2C, CH, Fault

SEED = int(os.environ.get("NVMECONTROL_FUZZ_SEED", "1505"))
DATA = bytes(range(256)) * 64  # 16 KiB: more than in-capsule data, so R2T/H2CData
# A hostile case may not take longer than this (a hang is a failure, not a wait).
CASE_DEADLINE_S = 15.0
# Growth of this process's peak RSS over all cases (bounded memory).
RSS_GROWTH_LIMIT_MIB = 128


def hostile(direction: str):
    """A mutator for the proxy: one hostile replacement for a PDU."""
    c2h = direction == C2H

    def mutate(rng: random.Random, pdu: bytearray) -> bytes:
        b = bytearray(pdu)
        ptype, flags, hlen, pdo, plen = CH.unpack_from(b)
        op = rng.randrange(12)
        if op == 0:  # PLEN huge
            struct.pack_into("<I", b, 4, rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 24]))
        elif op == 1:  # PLEN below HLEN, or below the common header
            struct.pack_into("<I", b, 4, rng.choice([0, 7, max(0, hlen - 1)]))
        elif op == 2:  # an unknown PDU type
            b[0] = rng.choice([0x08, 0x0A, 0x0B, 0x10, 0x7F, 0xFF])
        elif op == 3:  # TermReq in place of this PDU
            fes = rng.choice([1, 2, 3, 4, 5, 6, 0x7F])
            t = struct.pack("<BBBBIHI10x", 0x03 if c2h else 0x02, 0, 24, 0, 24 + 8, fes, 0)
            return t + rng.randbytes(8)
        elif op == 4:  # R2T (c2h) or H2CData (h2c) for a command never sent
            cid = rng.randrange(1 << 16)
            if c2h:
                r2t = struct.pack("<BBBBIHHII4x", 0x09, 0, 24, 0, 24, cid, rng.randrange(1 << 16),
                                  0, rng.choice([512, 4096, 1 << 20]))
                return bytes(b) + r2t
            h2c = struct.pack("<BBBBIHHII4x", 0x06, 0x04, 24, 24, 24 + 64, cid,
                              rng.randrange(1 << 16), 0, 64) + bytes(64)
            return bytes(b) + h2c
        elif op == 5 and ptype in (0x06, 0x07) and len(b) >= 24:  # data beyond the buffer
            struct.pack_into("<I", b, 12, rng.choice([1 << 20, 1 << 30, 0xFFFFFFF0, 16384]))
        elif op == 6 and ptype in (0x04, 0x05):  # the same CID again
            return bytes(b) + bytes(b)
        else:  # the wire fuzzer's generic mutations
            seeds = [bytes(pdu)]
            for _ in range(rng.choice([1, 1, 2, 3])):
                b = wire_fuzz.mutate_once(rng, b, seeds)
        return bytes(b)

    return mutate


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_case(target, proxy_port: int, outcomes: Counter, *, check_data: bool) -> None:
    """Connect through the proxy, Identify, write 16 KiB and read it back."""
    handle = type("H", (), {})()
    handle.address = type(target.address)("127.0.0.1", proxy_port, f"127.0.0.1:{proxy_port}")
    handle.subnqn = target.subnqn
    t0 = time.monotonic()
    try:
        assoc = host_connect(handle, num_io_queues=1, hdgst=True, ddgst=True, timeout_s=1.0)
    except NvmeControlError as e:
        outcomes["connect: " + type(e).__name__] += 1
        return
    try:
        q = assoc.io[0]
        cqe, _ = run_cmd(q, nvm.build_write(1, 0, 32), write_data=DATA, timeout=1.0)
        cqe, got = run_cmd(q, nvm.build_read(1, 0, 32), read_len=len(DATA), timeout=1.0)
        if cqe.status == 0 and check_data:
            assert got == DATA, "a read completed successfully with wrong data"
        outcomes["io: status " + ("ok" if cqe.status == 0 else "error")] += 1
    except NvmeControlError as e:
        outcomes["io: " + type(e).__name__] += 1
    finally:
        assoc.close()
    assert time.monotonic() - t0 < CASE_DEADLINE_S, "a hostile case hung"


def fuzz_through_proxy(target, proxy_factory, direction: str, cases: int, *,
                       check_data: bool = True, every_50=None) -> Counter:
    """``cases`` associations, each with one PDU of ``direction`` replaced."""
    rng = random.Random(SEED if direction == C2H else SEED + 1)
    proxy = proxy_factory(target.port, seed=rng.randrange(1 << 30))
    outcomes: Counter = Counter()
    threads_before = threading.active_count()
    for case in range(cases):
        if every_50 is not None and case % 50 == 0:
            every_50()
        # One PDU of a random queue, among those a case has in that direction
        # (about 8 on the admin queue, 5 on the I/O queue).
        proxy.clear()
        queue = rng.choice(["admin", "io", None])
        proxy.add(Fault("mutate", direction, nth=rng.randint(1, 8 if queue == "admin" else 5),
                        queue=queue,
                        connections=range(proxy.connections, proxy.connections + 2),
                        limit=1, mutator=hostile(direction)))
        try:
            one_case(target, proxy.port, outcomes, check_data=check_data)
        except AssertionError as e:
            raise AssertionError(f"{direction} seed={SEED} case={case}: {e}\n"
                                 f"{proxy.events[-3:]}") from e
        except Exception as e:  # the invariant: nothing but NvmeControlError escapes
            raise AssertionError(f"{direction} seed={SEED} case={case}: "
                                 f"{type(e).__name__}: {e}\n{proxy.events[-3:]}") from e
    outcomes["mutations fired"] = proxy.fired()
    # The proxy's and the host library's threads are gone again.
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before, "threads left behind"
    return outcomes


def test_host_against_a_hostile_target(nvmfd_server, proxy_factory):
    cases = scale(150, 5000)
    rss0 = rss_peak_mib()
    t0 = time.monotonic()
    outcomes = fuzz_through_proxy(nvmfd_server, proxy_factory, C2H, cases)
    figures("5a host vs hostile target", cases=cases, seed=SEED,
            seconds=f"{time.monotonic() - t0:.1f}",
            rss_growth_mib=f"{rss_peak_mib() - rss0:.0f}", outcomes=dict(outcomes))
    assert outcomes["mutations fired"] >= cases * 0.9
    assert rss_peak_mib() - rss0 < RSS_GROWTH_LIMIT_MIB


def test_nvmfd_against_a_hostile_host(nvmfd_server, proxy_factory, caplog):
    caplog.set_level(logging.INFO, logger="nvmfd")
    cases = scale(150, 5000)
    bystander = host_connect(nvmfd_server, num_io_queues=1)
    t0 = time.monotonic()
    try:
        # The host behind the proxy is the victim here, not the subject: a
        # duplicated command can make its data wrong (test_duplicated_write_...).
        # The bystander reads every 50 cases: nvmfd serves it throughout (and
        # the traffic keeps its KATO from expiring in the long mode).
        def bystander_reads():
            cqe, _ = run_cmd(bystander.io[0], nvm.build_read(1, 0, 1), read_len=512)
            assert cqe.status == 0, "the bystander's read failed"

        outcomes = fuzz_through_proxy(nvmfd_server, proxy_factory, H2C, cases, check_data=False,
                                      every_50=bystander_reads)
        bystander_reads()
    finally:
        bystander.shutdown()
    figures("5b nvmfd vs hostile host", cases=cases, seed=SEED,
            seconds=f"{time.monotonic() - t0:.1f}", outcomes=dict(outcomes),
            nvmfd_threads=threading.active_count())
    assert outcomes["mutations fired"] >= cases * 0.9
    assert "Traceback" not in caplog.text
    assert "internal error" not in caplog.text
    # nvmfd (in this process) ends every hostile association, the bystander's too.
    deadline = time.monotonic() + 10
    while nvmfd_server.server.associations() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nvmfd_server.server.associations() == []


@pytest.mark.skipif(not LONG, reason="long mode only (the normal suite runs tests/wire/test_fuzz)")
def test_sans_io_fuzz_long(monkeypatch):
    """The wire fuzzer's invariant over 10^6 more inputs, under another seed."""
    monkeypatch.setattr(wire_fuzz, "CASES_PER_CONFIG", 100_000)
    monkeypatch.setattr(wire_fuzz, "SEED", SEED)
    rng = random.Random(SEED)
    counts: dict[str, int] = {}
    t0 = time.monotonic()
    for cfg in wire_fuzz.CONFIGS:
        wire_fuzz._fuzz_config(*cfg, rng, counts)
    total = sum(counts.values())
    figures("5c sans-IO fuzz", inputs=total, seed=SEED, seconds=f"{time.monotonic() - t0:.0f}",
            outcomes=counts)
    assert total >= 1_000_000


def test_duplicated_write_never_makes_a_read_succeed_without_data(nvmfd_server, proxy_factory):
    """A Write (R2T path) sent twice on the wire (CID reuse while outstanding).

    nvmfd answers the copy with Command ID Conflict (0x4003) under CID 0 and
    sends R2T for the original; the host completes its Write with the error
    and reuses CID 0 for the Read; the original Write's success (still CID 0)
    then arrives and the host takes it as the Read's completion although no
    C2HData came: status 0, buffer never filled.  A Read must not succeed
    without its data, whatever the peer does.
    """
    direct = host_connect(nvmfd_server, num_io_queues=1)
    try:
        assert run_cmd(direct.io[0], nvm.build_write(1, 0, 32), write_data=DATA)[0].status == 0
    finally:
        direct.shutdown()
    other = bytes(reversed(DATA))
    results = Counter()
    for attempt in range(20):
        proxy = proxy_factory(nvmfd_server.port, [
            Fault("mutate", H2C, pdu="CapsuleCmd", queue="io", nth=2,
                  mutator=lambda rng, b: bytes(b) + bytes(b))])
        handle = type("H", (), {"subnqn": nvmfd_server.subnqn})()
        handle.address = type(nvmfd_server.address)("127.0.0.1", proxy.port, "proxy")
        assoc = host_connect(handle, num_io_queues=1, hdgst=True, ddgst=True, timeout_s=1.0)
        try:
            q = assoc.io[0]
            run_cmd(q, nvm.build_write(1, 0, 32), write_data=other, timeout=1.0)
            cqe, got = run_cmd(q, nvm.build_read(1, 0, 32), read_len=len(DATA), timeout=1.0)
            results["read status ok" if cqe.status == 0 else "read status error"] += 1
            if cqe.status == 0:
                assert got in (DATA, other), f"attempt {attempt}: a Read succeeded with " \
                    f"data the namespace never held ({got[:8]!r}...)"
        except NvmeControlError as e:
            results[type(e).__name__] += 1
        finally:
            assoc.close()
            proxy.stop()
    figures("5d duplicated write", attempts=20, outcomes=dict(results))


