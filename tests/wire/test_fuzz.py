"""Seeded fuzz invariant for the PDU decoder and the queue-pair state machines.

Hostile bytes must end in events, a wait for more bytes, or
:class:`PeerProtocolError` (whose FES/FEI make a valid TermReq) -- never any
other exception, and never a hang.  A received TermReq legitimately ends in
:class:`ConnectionLost`, the state machine's way of reporting it.

Inputs start from valid encoded PDUs of every type for each role, before
and after the IC exchange and with each digest combination, then are
mutated (bit flips, byte replacement, truncation, duplication, random
PLEN/HLEN/PDO and PSH fields, concatenation) and fed in random chunk sizes.
Everything is count-based and seeded: a failure names its seed and case, and
reruns identically.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import time

import pytest

from nvmecontrol.errors import ConnectionLost, PeerProtocolError
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import SQE, encode_sqe
from nvmecontrol.wire.qpair import (Command, Completion, ControllerQueuePair, Established,
                                    HostQueuePair, WriteData, termreq_for)

SEED = int(os.environ.get("NVMECONTROL_FUZZ_SEED", "20240517"))
CASES_PER_CONFIG = 10_000  # 10 state-machine configurations + the bare decoder: 110 000 inputs
MAX_DATA_SEED = 6000

READ = SQE(opc=0x02, nsid=1)
WRITE = SQE(opc=0x01, nsid=1)
WDATA = bytes(i & 0xFF for i in range(10000))
VALID_FES = {int(f) for f in P.FES}
EVENT_TYPES = (Established, Completion, Command, WriteData)


def j(bufs) -> bytes:
    return P.join(bufs)


def dgst_bits(hdgst, ddgst) -> int:
    return (P.DGST_HDGST if hdgst else 0) | (P.DGST_DDGST if ddgst else 0)


def cqe_bytes(cid, status=0, sqhd=0) -> bytes:
    return struct.pack("<IIHHHH", 0, 0, sqhd, 0, cid, status << 1)


def sqe_bytes(opc, cid, length=0, sgl_type=0x5A) -> bytes:
    raw = encode_sqe(SQE(opc=opc, cid=cid))
    struct.pack_into("<I", raw, 32, length)
    raw[39] = sgl_type
    return bytes(raw)


# --- seed corpora --------------------------------------------------------------------

def host_seeds(hdgst, ddgst) -> list[bytes]:
    """What a controller sends a host after the IC exchange (CIDs 0-2 outstanding)."""
    kw = dict(hdgst=hdgst, ddgst=ddgst)
    seeds = [
        j(P.encode_capsule_resp(cqe_bytes(2), hdgst=hdgst)),
        j(P.encode_capsule_resp(cqe_bytes(2, status=0x4002, sqhd=3), hdgst=hdgst)),
        # A read's data, then its response (a response alone would leave it unfilled).
        j(P.encode_c2h_data(P.C2HData(0, 0, bytes(range(64)), True, False), **kw))
        + j(P.encode_capsule_resp(cqe_bytes(0), hdgst=hdgst)),
        j(P.encode_c2h_data(P.C2HData(0, 0, bytes(range(64)), True, False), **kw)),
        j(P.encode_c2h_data(P.C2HData(0, 0, bytes(range(64)), True, True), **kw)),
        j(P.encode_c2h_data(P.C2HData(0, 0, b"a" * 32, False), **kw))
        + j(P.encode_c2h_data(P.C2HData(0, 32, b"b" * 32, True), **kw)),
        j(P.encode_c2h_data(P.C2HData(0, 0, b"p" * 16, True), hdgst=hdgst, ddgst=ddgst, pda=3)),
        j(P.encode_r2t(P.R2T(1, 0, 0, 10000), hdgst=hdgst)),
        j(P.encode_r2t(P.R2T(1, 5, 4096, 100), hdgst=hdgst)),
        P.encode_termreq(P.TermReq(1, 2, b"x" * 24, h2c=False)),
        P.encode_icresp(P.ICResp(0, dgst_bits(hdgst, ddgst), 4096)),
        j(P.encode_capsule_cmd(sqe_bytes(1, 0), b"c" * 8, **kw)),  # wrong direction
        j(P.encode_h2c_data(P.H2CData(1, 0, 0, b"h" * 8), **kw)),  # wrong direction
    ]
    return seeds


def ctrl_seeds(hdgst, ddgst) -> list[bytes]:
    """What a host sends a controller after the IC exchange (an R2T is out for CID 1)."""
    kw = dict(hdgst=hdgst, ddgst=ddgst)
    return [
        j(P.encode_capsule_cmd(sqe_bytes(0x18, 4), None, **kw)),
        j(P.encode_capsule_cmd(sqe_bytes(0x01, 5, 100, 0x01), bytes(range(100)), **kw)),
        j(P.encode_capsule_cmd(sqe_bytes(0x01, 6, 64, 0x01), b"z" * 64, hdgst=hdgst,
                               ddgst=ddgst, pda=0)),
        j(P.encode_h2c_data(P.H2CData(1, 0, 0, WDATA[:4096], False), **kw))
        + j(P.encode_h2c_data(P.H2CData(1, 0, 4096, WDATA[4096:MAX_DATA_SEED], True), **kw)),
        j(P.encode_h2c_data(P.H2CData(1, 0, 0, WDATA[:4096], False), **kw)),
        P.encode_termreq(P.TermReq(2, 0, b"", h2c=True)),
        P.encode_icreq(P.ICReq(0, dgst_bits(hdgst, ddgst), 0)),
        j(P.encode_capsule_resp(cqe_bytes(0), hdgst=hdgst)),  # wrong direction
        j(P.encode_r2t(P.R2T(1, 0, 0, 10), hdgst=hdgst)),  # wrong direction
    ]


def host_pre_seeds() -> list[bytes]:
    """What a controller might send a host that has just sent ICReq (asking for both digests)."""
    out = []
    for dg in (0, 1, 2, 3):
        resp = P.encode_icresp(P.ICResp(dg % 4 and 3, dg, 8192))
        after = host_seeds(bool(dg & 1), bool(dg & 2))
        out.append(resp)
        out.append(resp + after[0] + after[8])
    out += [P.encode_termreq(P.TermReq(6, 8, h2c=False)),
            j(P.encode_capsule_resp(cqe_bytes(0))),
            P.encode_icreq(P.ICReq())]
    return out


def ctrl_pre_seeds() -> list[bytes]:
    out = []
    for dg in (0, 1, 2, 3):
        req = P.encode_icreq(P.ICReq(dg * 2, dg, 1))
        after = ctrl_seeds(bool(dg & 1), bool(dg & 2))
        out.append(req)
        out.append(req + after[0] + after[1])
    out += [P.encode_termreq(P.TermReq(1, 0, h2c=True)),
            j(P.encode_capsule_cmd(sqe_bytes(0x7F, 0), b"x" * 1024)),
            P.encode_icresp(P.ICResp())]
    return out


# --- states ----------------------------------------------------------------------------

def new_host(connected: bool, hdgst: bool, ddgst: bool) -> HostQueuePair:
    h = HostQueuePair(queue_size=8, hdgst=True if not connected else hdgst,
                      ddgst=True if not connected else ddgst, buffer_size=512)
    h.start()
    h.take_outgoing()
    if connected:
        h.decoder.feed(P.encode_icresp(P.ICResp(0, dgst_bits(hdgst, ddgst), 4096)))
        h.receive()
        h.submit(READ, read_into=memoryview(bytearray(64)))  # CID 0
        h.submit(WRITE, write_data=WDATA)  # CID 1, waits for R2T
        h.submit(SQE(opc=0x18))  # CID 2
        h.take_outgoing()
    return h


def new_ctrl(connected: bool, hdgst: bool, ddgst: bool) -> ControllerQueuePair:
    c = ControllerQueuePair(maxh2cdata=4096, max_icd=8192, buffer_size=512)
    if connected:
        c.decoder.feed(P.encode_icreq(P.ICReq(0, dgst_bits(hdgst, ddgst), 0)))
        c.receive()
        c.decoder.feed(j(P.encode_capsule_cmd(sqe_bytes(0x01, 1, MAX_DATA_SEED), None,
                                              hdgst=hdgst, ddgst=ddgst)))
        c.receive()
        c.request_data(1, MAX_DATA_SEED)
        c.take_outgoing()
    return c


# --- mutations -------------------------------------------------------------------------

def _plen_choices(rng, b):
    n = len(b)
    return rng.choice([0, 1, 7, 8, 23, 24, 72, 128, 152, 153, n - 1, n + 1, n - 4, n + 4,
                       rng.randrange(0, 2 * n + 16), rng.getrandbits(32), 0xFFFFFFFF,
                       rng.randrange(0, 1 << 16)]) & 0xFFFFFFFF


def mutate_once(rng: random.Random, b: bytearray, seeds: list[bytes]) -> bytearray:
    op = rng.randrange(14)
    n = len(b)
    if n == 0:
        return bytearray(rng.choice(seeds))
    hot = min(n, 32)
    if op == 0:  # bit flips, mostly in the headers
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(hot) if rng.random() < 0.7 else rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # byte replacement
        i = rng.randrange(hot) if rng.random() < 0.7 else rng.randrange(n)
        b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif op == 2:  # truncation
        del b[rng.randrange(n):]
    elif op == 3:  # duplicate a slice in place
        i = rng.randrange(n)
        k = rng.randint(1, min(64, n - i))
        b[i:i] = b[i:i + k]
    elif op == 4 and n >= 8:  # PLEN
        struct.pack_into("<I", b, 4, _plen_choices(rng, b))
    elif op == 5 and n >= 3:  # HLEN
        b[2] = rng.choice([0, 8, 23, 24, 25, 72, 128, 255, rng.randrange(256)])
    elif op == 6 and n >= 4:  # PDO
        b[3] = rng.choice([0, 1, 24, 28, 32, 72, 76, 80, 128, 152, 255, rng.randrange(256)])
    elif op == 7:  # type and flags
        b[0] = rng.randrange(16) if rng.random() < 0.9 else rng.randrange(256)
        if n > 1 and rng.random() < 0.5:
            b[1] = rng.randrange(16)
    elif op == 8 and n >= 20:  # PSH fields: CCCID, TTAG, DATAO, DATAL / IC fields
        field = rng.choice([(8, "<H"), (10, "<H"), (12, "<I"), (16, "<I"), (10, "<B"), (11, "<B")])
        off, fmt = field
        size = struct.calcsize(fmt)
        val = rng.choice([0, 1, 2, 4095, 4096, 8192, 10000, rng.getrandbits(8 * size)])
        struct.pack_into(fmt, b, off, val & ((1 << (8 * size)) - 1))
    elif op == 9:  # concatenate another (maybe mutated) PDU
        other = bytearray(rng.choice(seeds))
        if rng.random() < 0.5:
            other = mutate_once(rng, other, seeds)
        if rng.random() < 0.8:
            b += other
        else:
            b[0:0] = other
    elif op == 10:  # insert random bytes
        i = rng.randrange(n + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    elif op == 11:  # delete a slice
        i = rng.randrange(n)
        del b[i:i + rng.randint(1, 16)]
    elif op == 12:  # the whole PDU twice
        b += bytes(b)
    else:  # corrupt digests / data near the end
        i = n - 1 - rng.randrange(min(n, 8))
        b[i] ^= 0xFF
    return b


def mutated(rng: random.Random, seeds: list[bytes]) -> bytes:
    b = bytearray(rng.choice(seeds))
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        b = mutate_once(rng, b, seeds)
    return bytes(b)


def chunk_sizes(rng: random.Random, n: int):
    mode = rng.random()
    if mode < 0.5:
        yield n
        return
    pos = 0
    while pos < n:
        if mode < 0.6 and n <= 200:
            k = 1
        else:
            k = rng.choice([1, 3, 8, 9, 24, 64, 500, 4096])
        yield k
        pos += k


# --- the invariant ----------------------------------------------------------------------

class Failure(Exception):
    pass


def run_state_machine(qp, data: bytes, rng: random.Random) -> str:
    pos = 0
    try:
        for k in chunk_sizes(rng, len(data)):
            qp.decoder.feed(data[pos:pos + k])
            pos += k
            for ev in qp.receive():
                if not isinstance(ev, EVENT_TYPES):
                    raise Failure(f"unexpected event {ev!r}")
        # Nothing left that a further call could make progress on.
        if qp.receive():
            raise Failure("receive() produced events with no new input")
        for buf in qp.take_outgoing():
            memoryview(buf)  # what we would send is a real buffer
        return "ok"
    except PeerProtocolError as e:
        if e.fes not in VALID_FES or not 0 <= e.fei < 256:
            raise Failure(f"protocol error with FES {e.fes!r} FEI {e.fei!r}: {e}") from e
        term = P.join(termreq_for(e, data[:200], role=qp.role))
        if not 24 <= len(term) <= 152:
            raise Failure("TermReq out of bounds") from e
        return "protocol"
    except ConnectionLost as e:
        if "terminated" not in str(e):
            raise Failure(f"ConnectionLost without a TermReq: {e}") from e
        return "termreq"


def run_decoder(d: P.PduDecoder, data: bytes, rng: random.Random) -> str:
    pos = 0
    try:
        for k in chunk_sizes(rng, len(data)):
            d.feed(data[pos:pos + k])
            pos += k
            while True:
                pdus = d.decode()
                if not pdus:
                    break
                for p in pdus:
                    if p.__class__.__name__ not in ("ICReq", "ICResp", "TermReq", "CapsuleCmd",
                                                    "CapsuleResp", "H2CData", "C2HData", "R2T"):
                        raise Failure(f"unexpected PDU {p!r}")
                if type(pdus[-1]) in (P.ICReq, P.ICResp):
                    d.connected = True
        if d.pending > len(data):
            raise Failure("decoder holds more bytes than it was given")
        return "ok"
    except PeerProtocolError as e:
        if e.fes not in VALID_FES:
            raise Failure(f"protocol error with FES {e.fes!r}") from e
        return "protocol"


CONFIGS = [("host", False, True, True), ("controller", False, False, False)] + [
    (role, True, h, d) for role in ("host", "controller") for h in (False, True) for d in (False, True)]


@pytest.fixture
def watchdog():
    """Turn a hang into a failure (the loops are count-based; this is a backstop)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise Failure("fuzz run exceeded its time budget: a hang?")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(120)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _fuzz_config(role, connected, hdgst, ddgst, rng, counts):
    if role == "host":
        seeds = host_seeds(hdgst, ddgst) if connected else host_pre_seeds()
        make = new_host
    else:
        seeds = ctrl_seeds(hdgst, ddgst) if connected else ctrl_pre_seeds()
        make = new_ctrl
    for case in range(CASES_PER_CONFIG):
        data = mutated(rng, seeds)
        try:
            outcome = run_state_machine(make(connected, hdgst, ddgst), data, rng)
        except Failure:
            raise
        except Exception as e:  # the invariant: nothing else may escape
            raise Failure(f"{role} connected={connected} hdgst={hdgst} ddgst={ddgst} seed={SEED} "
                          f"case={case}: {type(e).__name__}: {e}\ninput={data.hex()}") from e
        counts[outcome] = counts.get(outcome, 0) + 1


def test_fuzz_invariant(watchdog):
    rng = random.Random(SEED)
    counts: dict[str, int] = {}
    start = time.perf_counter()
    for cfg in CONFIGS:
        _fuzz_config(*cfg, rng, counts)

    # The bare decoder with random negotiated parameters and max_data.
    all_seeds = (host_seeds(True, True) + host_seeds(False, False) + ctrl_seeds(True, True)
                 + ctrl_seeds(False, False) + host_pre_seeds() + ctrl_pre_seeds())
    for case in range(CASES_PER_CONFIG):
        data = mutated(rng, all_seeds)
        d = P.PduDecoder(rng.choice([P.ROLE_HOST, P.ROLE_CONTROLLER]), buffer_size=256,
                         max_data=rng.choice([4096, 8192, 1 << 20]))
        d.connected = rng.random() < 0.7
        d.hdgst, d.ddgst = rng.random() < 0.5, rng.random() < 0.5
        d.pda = rng.choice([0, 0, 1, 3, 31])
        try:
            outcome = run_decoder(d, data, rng)
        except Failure:
            raise
        except Exception as e:
            raise Failure(f"decoder seed={SEED} case={case}: {type(e).__name__}: {e}\n"
                          f"input={data.hex()}") from e
        counts["decoder-" + outcome] = counts.get("decoder-" + outcome, 0) + 1

    elapsed = time.perf_counter() - start
    total = sum(counts.values())
    print(f"\nfuzz: {total} inputs in {elapsed:.1f} s ({total / elapsed:,.0f}/s): {counts}")
    assert total >= 100_000
    # The mutations must reach every outcome, or the corpus has gone stale.
    for outcome in ("ok", "protocol", "termreq", "decoder-ok", "decoder-protocol"):
        assert counts.get(outcome, 0) > 100, counts


def test_fuzz_seeds_are_valid():
    """Unmutated seeds decode cleanly where they belong (keeps the corpus meaningful)."""
    for hdgst in (False, True):
        for ddgst in (False, True):
            for raw in host_seeds(hdgst, ddgst)[:8]:
                h = new_host(True, hdgst, ddgst)
                h.decoder.feed(raw)
                h.receive()
            for raw in ctrl_seeds(hdgst, ddgst)[:5]:
                c = new_ctrl(True, hdgst, ddgst)
                c.decoder.feed(raw)
                c.receive()
