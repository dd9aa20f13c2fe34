"""NVM I/O commands against hand-written SQE bytes (NVM Command Set 1.0, 3).

Read/Write/Write Zeroes: SLBA in CDW10 (bytes 40-43) and CDW11 (44-47), NLB
(0's based) in CDW12 15:0, FUA bit 30, Write Zeroes DEAC bit 25.  Dataset
Management: NR (0's based) in CDW10 7:0, AD bit 2 of CDW11, 16-byte ranges
(context attributes, length in blocks, SLBA).
"""

import struct

import pytest

from nvmecontrol.wire import nvm as N
from nvmecontrol.wire.capsule import decode_sqe, encode_sqe


def raw(sqe) -> bytes:
    return bytes(encode_sqe(sqe))


def dw(b: bytes, n: int) -> int:
    return struct.unpack_from("<I", b, 4 * n)[0]


def test_read_bytes():
    b = raw(N.build_read(nsid=1, slba=0x1_2345_6789, nlb=8))
    assert b[0] == 0x02 and b[1] == 0x40
    assert dw(b, 1) == 1
    assert b[40:48] == bytes.fromhex("8967452301000000")
    assert dw(b, 12) == 7


def test_write_fua():
    b = raw(N.build_write(nsid=2, slba=0, nlb=1, fua=True))
    assert b[0] == 0x01
    assert dw(b, 12) == 0x40000000
    b = raw(N.build_write(nsid=2, slba=0, nlb=256))
    assert dw(b, 12) == 0x000000FF


def test_write_zeroes_deac():
    b = raw(N.build_write_zeroes(nsid=1, slba=100, nlb=16, deallocate=True))
    assert (b[0], dw(b, 10), dw(b, 11), dw(b, 12)) == (0x08, 100, 0, 0x0200000F)
    assert dw(raw(N.build_write_zeroes(1, 100, 16)), 12) == 0x0F


def test_largest_nlb():
    b = raw(N.build_read(1, 0, 65536))
    assert dw(b, 12) == 0xFFFF


@pytest.mark.parametrize("nlb", [0, -1, 65537, 1 << 20])
def test_nlb_out_of_range_is_rejected(nlb):
    # 65537 would set bit 16 (PRINFO) instead of failing.
    with pytest.raises(ValueError):
        N.build_read(1, 0, nlb)


def test_slba_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        N.build_write(1, 1 << 64, 1)
    assert dw(raw(N.build_write(1, (1 << 64) - 1, 1)), 11) == 0xFFFFFFFF


@pytest.mark.parametrize("slba,nlb", [(0, 1), (0xFFFF_FFFF_FFFF, 65536), (1 << 40, 300)])
def test_parse_rw_roundtrip(slba, nlb):
    sqe = decode_sqe(encode_sqe(N.build_write(9, slba, nlb, fua=True)))
    assert N.parse_rw(sqe) == N.Rw(9, slba, nlb)


def test_flush():
    b = raw(N.build_flush(5))
    assert (b[0], dw(b, 1), dw(b, 10), dw(b, 12)) == (0x00, 5, 0, 0)


def test_dataset_management_deallocate():
    b = raw(N.build_deallocate(nsid=1, count=2))
    assert (b[0], dw(b, 10), dw(b, 11)) == (0x09, 1, 0x4)
    assert dw(raw(N.build_deallocate(1, 256)), 10) == 0xFF


@pytest.mark.parametrize("count", [0, 257])
def test_dataset_management_range_count_bounds(count):
    with pytest.raises(ValueError):
        N.build_deallocate(1, count)


def test_dsm_ranges_bytes():
    data = N.encode_dsm_ranges([(0x10, 8), (0x1_0000_0000, 0xFFFFFFFF)])
    golden = (struct.pack("<IIQ", 0, 8, 0x10) + bytes.fromhex("00000000 ffffffff 0000000001000000"))
    assert data == golden
    assert len(data) == 32
    assert N.decode_dsm_ranges(data, 2) == [(0x10, 8), (0x1_0000_0000, 0xFFFFFFFF)]


def test_dsm_decode_ignores_trailing_bytes():
    data = N.encode_dsm_ranges([(1, 2), (3, 4), (5, 6)])
    assert N.decode_dsm_ranges(memoryview(data), 2) == [(1, 2), (3, 4)]


def test_data_direction():
    assert N.data_direction(N.NvmOpc.WRITE) == 1
    assert N.data_direction(N.NvmOpc.READ) == 2
    assert N.data_direction(N.NvmOpc.FLUSH) == 0
    assert N.data_direction(N.NvmOpc.WRITE_ZEROES) == 0
    assert N.data_direction(N.NvmOpc.DATASET_MANAGEMENT) == 1
