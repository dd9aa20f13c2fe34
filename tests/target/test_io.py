"""I/O commands against nvmfd through the host library: data correctness and statuses."""

from __future__ import annotations

import os
import random

import pytest

from nvmecontrol.wire import nvm
from nvmecontrol.wire.capsule import SQE

from .helpers import connect, run, sc

# 8 KiB goes in-capsule (IOCCSZ), anything larger through R2T/H2CData.
SIZES = [512, 4096, 8192, 8704, 65536, 1 << 20]


@pytest.fixture(params=[
    pytest.param(dict(), id="plain"),
    pytest.param(dict(hdgst=True, ddgst=True), id="digests"),
    pytest.param(dict(sq_flow_control=True), id="sqfc"),
    pytest.param(dict(hdgst=True, ddgst=True, sq_flow_control=True), id="digests-sqfc"),
])
def assoc(request, nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1, **request.param)
    yield a
    a.shutdown()


def _pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("size", SIZES)
def test_write_then_read_back(assoc, size):
    q = assoc.io[0]
    data = _pattern(size, size)
    nlb = size // 512
    cqe, _ = run(q, nvm.build_write(1, 100, nlb), write_data=data)
    assert cqe.status == 0
    cqe, back = run(q, nvm.build_read(1, 100, nlb), read_len=size)
    assert cqe.status == 0
    assert back == data


def test_sq_flow_control_modes(nvmfd_server):
    off = connect(nvmfd_server, num_io_queues=1)
    on = connect(nvmfd_server, num_io_queues=1, sq_flow_control=True)
    try:
        assert not off.io[0].qp.sq_flow_control
        assert on.io[0].qp.sq_flow_control
        cqe, _ = run(on.io[0], nvm.build_flush(1))
        assert cqe.status == 0 and cqe.sqhd != 0xFFFF
        cqe, _ = run(off.io[0], nvm.build_flush(1))
        assert cqe.status == 0 and cqe.sqhd == 0xFFFF
    finally:
        off.shutdown()
        on.shutdown()


def test_many_outstanding_commands(nvmfd_server):
    """A full queue of reads in one batch (QD 32), completions in any order."""
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        data = _pattern(4096 * 64, 7)
        run(q, nvm.build_write(1, 0, len(data) // 512), write_data=data)
        qp = q.qp
        bufs = {}
        for i in range(32):
            buf = bytearray(4096)
            cid = qp.submit(nvm.build_read(1, i * 8, 8), read_into=memoryview(buf))
            bufs[cid] = (i, buf)
        q.driver.flush()
        done = {}
        while len(done) < 32:
            for ev in q.driver.poll():
                done[ev.cid] = ev.cqe
        for cid, (i, buf) in bufs.items():
            assert done[cid].status == 0
            assert bytes(buf) == data[i * 4096:(i + 1) * 4096]
    finally:
        a.shutdown()


def test_flush_write_zeroes_and_deallocate(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        data = _pattern(64 * 512, 3)
        assert run(q, nvm.build_write(1, 0, 64), write_data=data)[0].status == 0
        assert run(q, nvm.build_flush(1))[0].status == 0
        assert run(q, nvm.build_flush(0xFFFFFFFF))[0].status == 0
        assert run(q, nvm.build_write_zeroes(1, 8, 8))[0].status == 0
        assert run(q, nvm.build_write_zeroes(1, 16, 16, deallocate=True))[0].status == 0
        ranges = nvm.encode_dsm_ranges([(40, 4), (60, 4)])
        assert run(q, nvm.build_deallocate(1, 2), write_data=ranges)[0].status == 0
        _, back = run(q, nvm.build_read(1, 0, 64), read_len=64 * 512)
        expect = bytearray(data)
        for slba, nlb in ((8, 8), (16, 16), (40, 4), (60, 4)):
            expect[slba * 512:(slba + nlb) * 512] = bytes(nlb * 512)
        assert back == bytes(expect)
    finally:
        a.shutdown()


def test_file_backend_with_4k_blocks(nvmfd_factory, tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xee" * (4 << 20))
    h = nvmfd_factory(namespaces=[str(path)], block_size=4096)
    a = connect(h, num_io_queues=1)
    try:
        q = a.io[0]
        data = _pattern(3 * 4096, 11)
        assert run(q, nvm.build_write(1, 2, 3, fua=True), write_data=data)[0].status == 0
        big = _pattern(256 * 1024, 12)
        assert run(q, nvm.build_write(1, 100, 64), write_data=big)[0].status == 0
        assert run(q, nvm.build_flush(1))[0].status == 0
        raw = path.read_bytes()
        assert raw[2 * 4096:5 * 4096] == data
        assert raw[100 * 4096:164 * 4096] == big
        # Nothing outside the written blocks changed (no read-modify-write).
        assert raw[:2 * 4096] == b"\xee" * 8192
        assert raw[5 * 4096:100 * 4096] == b"\xee" * (95 * 4096)
        ranges = nvm.encode_dsm_ranges([(2, 1)])
        assert run(q, nvm.build_deallocate(1, 1), write_data=ranges)[0].status == 0
        assert run(q, nvm.build_write_zeroes(1, 3, 1))[0].status == 0
        raw = path.read_bytes()
        assert raw[2 * 4096:4 * 4096] == bytes(8192)
        assert raw[4 * 4096:5 * 4096] == data[2 * 4096:]
        assert len(raw) == 4 << 20
        _, back = run(q, nvm.build_read(1, 100, 64), read_len=256 * 1024)
        assert back == big
    finally:
        a.shutdown()


def test_lba_out_of_range(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        nblocks = (16 << 20) // 512
        cqe, _ = run(q, nvm.build_read(1, nblocks - 1, 2), read_len=1024)
        assert sc(cqe) == (0, 0x80, True)
        cqe, _ = run(q, nvm.build_write(1, nblocks, 1), write_data=bytes(512))
        assert sc(cqe) == (0, 0x80, True)
        cqe, _ = run(q, nvm.build_write_zeroes(1, nblocks - 4, 8))
        assert sc(cqe) == (0, 0x80, True)
        cqe, _ = run(q, nvm.build_deallocate(1, 1),
                     write_data=nvm.encode_dsm_ranges([(nblocks, 1)]))
        assert sc(cqe) == (0, 0x80, True)
        # The last block is fine.
        assert run(q, nvm.build_read(1, nblocks - 1, 1), read_len=512)[0].status == 0
    finally:
        a.shutdown()


def test_invalid_namespace_opcode_and_transfer_size(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        assert sc(run(q, nvm.build_read(2, 0, 1), read_len=512)[0]) == (0, 0x0B, True)
        assert sc(run(q, nvm.build_read(0, 0, 1), read_len=512)[0]) == (0, 0x0B, True)
        assert sc(run(q, nvm.build_flush(7))[0]) == (0, 0x0B, True)
        assert sc(run(q, SQE(0x7E, nsid=1))[0]) == (0, 0x01, True)
        from nvmecontrol.wire import fabrics as F
        assert sc(run(q, F.build_property_get(F.Prop.CSTS))[0]) == (0, 0x01, True)
        # SGL length must match the blocks.
        assert sc(run(q, nvm.build_read(1, 0, 2), read_len=512)[0]) == (0, 0x0F, True)
        # More than MDTS (1 MiB).
        cqe, _ = run(q, nvm.build_read(1, 0, 4096), read_len=2 << 20)
        assert sc(cqe) == (0, 0x02, True)
    finally:
        a.shutdown()


def test_prp_commands_are_refused(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        sqe = nvm.build_flush(1)._replace(flags=0)  # PSDT 00b: PRPs
        assert sc(run(a.io[0], sqe)[0]) == (0, 0x02, True)
    finally:
        a.shutdown()


def test_read_only(nvmfd_factory):
    h = nvmfd_factory(read_only=True)
    a = connect(h, num_io_queues=1)
    try:
        q = a.io[0]
        assert sc(run(q, nvm.build_write(1, 0, 1), write_data=bytes(512))[0]) == (0, 0x20, True)
        assert sc(run(q, nvm.build_write_zeroes(1, 0, 1))[0]) == (0, 0x20, True)
        assert run(q, nvm.build_read(1, 0, 1), read_len=512)[0].status == 0
    finally:
        a.shutdown()


def test_two_hosts_two_queues(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=2)
    b = connect(nvmfd_server, num_io_queues=1)
    try:
        assert len(a.io) == 2 and a.cntlid != b.cntlid
        d1, d2 = os.urandom(4096), os.urandom(4096)
        assert run(a.io[1], nvm.build_write(1, 1000, 8), write_data=d1)[0].status == 0
        assert run(b.io[0], nvm.build_write(1, 2000, 8), write_data=d2)[0].status == 0
        assert run(a.io[0], nvm.build_read(1, 2000, 8), read_len=4096)[1] == d2
        assert run(b.io[0], nvm.build_read(1, 1000, 8), read_len=4096)[1] == d1
    finally:
        a.shutdown()
        b.shutdown()


def test_r2t_for_small_writes_and_ranges(nvmfd_server):
    """A host that sends no in-capsule data: every write and DSM range list via R2T."""
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        q.qp.max_icd = 0
        data = _pattern(1024, 5)
        assert run(q, nvm.build_write(1, 300, 2), write_data=data)[0].status == 0
        assert run(q, nvm.build_read(1, 300, 2), read_len=1024)[1] == data
        ranges = nvm.encode_dsm_ranges([(300 + i, 1) for i in range(2)] + [(0, 0)] * 254)
        assert run(q, nvm.build_deallocate(1, 256), write_data=ranges)[0].status == 0
        assert run(q, nvm.build_read(1, 300, 2), read_len=1024)[1] == bytes(1024)
    finally:
        a.shutdown()


def test_parallel_hosts_keep_their_data(nvmfd_server):
    import threading
    errors = []

    def worker(k):
        try:
            a = connect(nvmfd_server, num_io_queues=1)
            try:
                q = a.io[0]
                base = 4096 + k * 512
                for i in range(100):
                    data = _pattern(4096, k * 1000 + i)
                    lba = base + (i % 32) * 8
                    assert run(q, nvm.build_write(1, lba, 8), write_data=data)[0].status == 0
                    assert run(q, nvm.build_read(1, lba, 8), read_len=4096)[1] == data
            finally:
                a.shutdown()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_dsm_with_a_whole_page_of_ranges(nvmfd_server):
    """Linux hosts send one range in a 4 KiB buffer (NR 0): accepted, as by nvmet."""
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        run(q, nvm.build_write(1, 50, 1), write_data=b"k" * 512)
        page = nvm.encode_dsm_ranges([(50, 1)]).ljust(4096, b"\xff")
        for icd in (8192, 0):  # in-capsule, then through R2T
            q.qp.max_icd = icd
            assert run(q, nvm.build_deallocate(1, 1), write_data=page)[0].status == 0
        assert run(q, nvm.build_read(1, 50, 1), read_len=512)[1] == bytes(512)
        short = nvm.encode_dsm_ranges([(50, 1)])
        assert sc(run(q, nvm.build_deallocate(1, 2), write_data=short)[0]) == (0, 0x0F, True)
    finally:
        a.shutdown()
