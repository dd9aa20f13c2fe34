"""Whole batches of I/O commands in one receive: nvmfd's fast path (io.IoQueue.batch).

Reads and in-capsule writes that pass every check are answered inline,
their PDUs packed back to back in the connection's arena; everything else
goes through the general path in between.  These tests send many commands
with one sendmsg so they arrive together, and check every status, every
byte read back and the order of the answers' effects, in each framing the
fast path handles or leaves to the general one (SQ flow control, digests),
on RAM and file namespaces.
"""

from __future__ import annotations

import random

import pytest

from nvmecontrol.target import constants as K
from nvmecontrol.wire import nvm
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.qpair import Completion

from .helpers import connect, run

_READ, _WRITE, _FLUSH = int(nvm.NvmOpc.READ), int(nvm.NvmOpc.WRITE), int(nvm.NvmOpc.FLUSH)
NS_BLOCKS = (16 << 20) // 512


def _sct_sc(status: int) -> tuple[int, int]:
    return (status >> 8) & 7, status & 0xFF


def _pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _batch(q, commands: list) -> tuple[dict, list]:
    """Submit ``commands`` ((opc, slba, nlb, cdw12, kwargs)) in one send.

    Returns ({cid: (status, data read)}, cids in submission order); a read
    names its length as ``read_len`` in kwargs.
    """
    qp = q.qp
    cids, bufs = [], {}
    for opc, slba, nlb, cdw12, kw in commands:
        kw = dict(kw)
        nsid = kw.pop("nsid", 1)
        n = kw.pop("read_len", 0)
        buf = bytearray(n) if n else None
        if buf is not None:
            kw["read_into"] = memoryview(buf)
        cid = qp.submit_io(opc, nsid, slba, nlb, cdw12, **kw)
        cids.append(cid)
        bufs[cid] = buf
    q.driver.flush()
    status: dict[int, int] = {}
    while len(status) < len(cids):
        for ev in q.driver.poll():
            if type(ev) is Completion:
                status[ev.cid] = ev.cqe.status
    return {cid: (status[cid], bytes(bufs[cid] or b"")) for cid in cids}, cids


@pytest.fixture(params=[
    pytest.param(dict(), id="plain"),
    pytest.param(dict(sq_flow_control=True), id="sqfc"),
    pytest.param(dict(hdgst=True, ddgst=True), id="digests"),
])
def params(request):
    return request.param


@pytest.fixture(params=["mem", "file"])
def handle(request, nvmfd_factory, tmp_path):
    if request.param == "mem":
        return nvmfd_factory(namespaces=("mem:16M",))
    path = tmp_path / "ns.img"
    path.write_bytes(bytes(16 << 20))
    return nvmfd_factory(namespaces=(str(path),))


def test_mixed_batch(handle, params):
    a = connect(handle, num_io_queues=1, io_queue_size=64, **params)
    try:
        q = a.io[0]
        base = _pattern(256 * 512, 1)
        assert run(q, nvm.build_write(1, 0, 256), write_data=base)[0].status == 0
        fresh = _pattern(8 * 4096, 2)
        cmds, expect = [], []
        for i in range(8):
            # Reads at odd block offsets and lengths (every alignment of the
            # destination against the source), writes of 4 KiB in-capsule
            # beyond them, and commands the fast path leaves to the general one.
            slba, nlb = i * 13 + (i & 1), 1 + i
            cmds.append((_READ, slba, nlb, 0, dict(read_len=nlb * 512)))
            expect.append((0, base[slba * 512:(slba + nlb) * 512]))
            cmds.append((_WRITE, 1024 + i * 8, 8, nvm.FUA if i == 3 else 0,
                         dict(write_data=fresh[i * 4096:(i + 1) * 4096])))
            expect.append((0, b""))
        cmds.append((_READ, NS_BLOCKS - 1, 2, 0, dict(read_len=1024)))  # beyond the end
        expect.append(("lba", b""))
        cmds.append((_READ, 0, 1, 0, dict(read_len=512, nsid=7)))  # no such namespace
        expect.append(("ns", b""))
        cmds.append((_FLUSH, 0, 0, 0, {}))
        expect.append((0, b""))
        cmds.append((_READ, 200, 8, 0, dict(read_len=4096)))
        expect.append((0, base[200 * 512:208 * 512]))
        results, cids = _batch(q, cmds)
        for cid, (want_status, want_data) in zip(cids, expect):
            status, data = results[cid]
            if want_status == "lba":
                assert _sct_sc(status) == (0, 0x80)
            elif want_status == "ns":
                assert _sct_sc(status) == (0, 0x0B)
            else:
                assert status == 0, f"command {cid:#x}: status {status:#x}"
                assert data == want_data
        cqe, back = run(q, nvm.build_read(1, 1024, 64), read_len=len(fresh))
        assert cqe.status == 0 and back == fresh
    finally:
        a.shutdown()


def test_batch_larger_than_the_arena(nvmfd_factory, params):
    """More read data in one batch than the arena holds: sent in parts, all correct."""
    h = nvmfd_factory(namespaces=("mem:16M",))
    a = connect(h, num_io_queues=1, **params)
    try:
        q = a.io[0]
        data = _pattern(9 << 20, 3)  # 8 reads of 1 MiB, every other one a block further
        for off in range(0, len(data), 1 << 20):
            assert run(q, nvm.build_write(1, off // 512, 2048),
                       write_data=data[off:off + (1 << 20)])[0].status == 0
        n = K.READ_ARENA_BYTES // K.MAX_TRANSFER * 2
        cmds = [(_READ, i * 2048 + (i & 1), 2048, 0, dict(read_len=1 << 20)) for i in range(n)]
        results, cids = _batch(q, cmds)
        for i, cid in enumerate(cids):
            status, back = results[cid]
            slba = i * 2048 + (i & 1)
            assert status == 0
            assert back == data[slba * 512:slba * 512 + (1 << 20)]
    finally:
        a.shutdown()


def test_read_only_namespace_write_in_a_batch(nvmfd_factory):
    h = nvmfd_factory(namespaces=("mem:16M",), read_only=True)
    a = connect(h, num_io_queues=1)
    try:
        q = a.io[0]
        results, cids = _batch(q, [
            (_READ, 0, 8, 0, dict(read_len=4096)),
            (_WRITE, 0, 8, 0, dict(write_data=bytes(4096))),
            (_READ, 8, 8, 0, dict(read_len=4096)),
        ])
        assert results[cids[0]] == (0, bytes(4096))
        assert _sct_sc(results[cids[1]][0]) == (0, 0x20)  # write protected
        assert results[cids[2]] == (0, bytes(4096))
    finally:
        a.shutdown()


@pytest.mark.parametrize("sqfc", [False, True], ids=["plain", "sqfc"])
def test_random_batches_answer_every_command_once(nvmfd_server, sqfc):
    """Batches of Reads/Writes/others with random fields, well framed: every
    command gets exactly one answer (a CapsuleResp, a C2HData SUCCESS, or an
    R2T for a write whose data we never send), read data of the right length."""
    rng = random.Random(20261204)
    a = connect(nvmfd_server, num_io_queues=1, io_queue_size=128, sq_flow_control=sqfc)
    try:
        sock = a.io[0].driver.sock
        sock.settimeout(10)
        dec = P.PduDecoder(P.ROLE_HOST)
        dec.connected = True
        cid = 0
        for _round in range(15):
            expect = {}  # cid -> read length when it may succeed with data, else 0
            out = []
            for _ in range(rng.randint(1, 100)):
                cid += 1
                opc = rng.choice([_READ, _READ, _READ, _WRITE, _WRITE, _FLUSH, 0x7F, 0x55])
                nsid = rng.choice([1, 1, 1, 1, 2, 0, 0xFFFFFFFF])
                nlb0 = rng.choice([0, 7, 7, rng.randrange(256), 0xFFFF])
                slba = rng.choice([0, rng.randrange(NS_BLOCKS), NS_BLOCKS - 1, 1 << 40])
                sflags = rng.choice([0x40, 0x40, 0x40, 0x00, 0x41])
                length = (nlb0 + 1) * 512 if rng.random() < 0.85 else rng.randrange(1 << 21)
                icd = None
                stype = 0x5A
                if opc == _WRITE and rng.random() < 0.8:
                    icd = bytes(min(length, 8192))
                    stype = 0x01 if rng.random() < 0.9 else 0x5A
                flags, pdo, plen = P.cmd_framing(len(icd) if icd else 0, False, False, 0)
                out.append(P.CAPSULE_CMD.pack(
                    P.RAW_CMD, flags, P.CMD_HLEN, pdo, plen, opc, sflags, cid, nsid, 0, 0, 0,
                    0, length, stype, slba & 0xFFFFFFFF, slba >> 32, nlb0, 0, 0, 0))
                if icd:
                    out.append(icd)
                expect[cid] = length if opc == _READ else 0
            sock.sendall(b"".join(out))
            answered: dict[int, str] = {}
            got = {c: 0 for c in expect}
            while len(answered) < len(expect):
                dec.feed(sock.recv(1 << 20))
                for t in dec.decode_raw():
                    k = t[0]
                    if k == P.RAW_C2H:
                        _k, c, datao, data, flags, _bad = t
                        assert datao == got[c] and c not in answered
                        got[c] += len(data)
                        if flags & P.F_SUCCESS:
                            assert not sqfc and got[c] == expect[c]
                            answered[c] = "success"
                    elif k == P.RAW_RESP:
                        c, raw = t[5], t[6]
                        assert c not in answered, f"command {c} answered twice"
                        answered[c] = "resp"
                        if raw >> 1 == 0 and expect[c]:
                            assert got[c] == expect[c]
                        assert (t[3] == 0xFFFF) != sqfc  # SQHD reported only under flow control
                    elif k == P.RAW_R2T:
                        c = t[1]
                        assert c not in answered
                        answered[c] = "r2t"
                    else:
                        raise AssertionError(f"unexpected PDU {t!r}")
            assert set(answered) == set(expect)
        # The queue still works.
        assert run(a.io[0], nvm.build_read(1, 0, 8), read_len=4096)[0].status == 0
    finally:
        a.close()


def test_large_reads_and_overlapping_writes_in_one_batch(nvmfd_factory, params):
    """Reads of 32 KiB and more leave straight from a RAM namespace's mapping
    (lent until sent); a write to the same blocks later in the same batch
    must neither wait for itself nor change what the earlier read returns."""
    h = nvmfd_factory(namespaces=("mem:16M",))
    a = connect(h, num_io_queues=1, io_queue_size=64, **params)
    try:
        q = a.io[0]
        old = _pattern(64 << 10, 4)
        assert run(q, nvm.build_write(1, 0, 128), write_data=old)[0].status == 0
        new = _pattern(4096, 5)
        cmds = [(_READ, 0, 128, 0, dict(read_len=64 << 10)),      # lent
                (_WRITE, 8, 8, 0, dict(write_data=new)),          # into the lent range
                (_READ, 0, 128, 0, dict(read_len=64 << 10)),      # lent again, new data
                (_FLUSH, 0, 0, 0, {}),                            # the general path
                (_READ, 64, 64, 0, dict(read_len=32 << 10))]
        results, cids = _batch(q, cmds)
        assert [results[c][0] for c in cids] == [0] * 5
        assert results[cids[0]][1] == old
        assert results[cids[2]][1] == old[:4096] + new + old[8192:]
        assert results[cids[4]][1] == old[32 << 10:]
    finally:
        a.shutdown()
