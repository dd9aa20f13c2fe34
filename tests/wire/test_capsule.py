"""SQE, CQE and SGL descriptors against hand-written bytes (NVMe Base 2.0, 4.2, 4.3.2, 4.6).

    SQE  0 OPC, 1 FUSE/PSDT (PSDT bits 7:6), 2 CID, 4 NSID, 8 CDW2, 12 CDW3, 16 MPTR,
         24 SGL1: 24 address (u64), 32 length (u32), 36-38 reserved, 39 type<<4|subtype,
         40 CDW10 ... 60 CDW15
    CQE  0 DW0, 4 DW1, 8 SQHD, 10 SQID, 12 CID, 14 phase (bit 0) | status << 1
"""

import struct

import pytest

from nvmecontrol.wire import capsule as C


def golden_sqe(**f) -> bytes:
    b = bytearray(64)
    b[0] = f.get("opc", 0)
    b[1] = f.get("flags", 0x40)
    struct.pack_into("<H", b, 2, f.get("cid", 0))
    struct.pack_into("<I", b, 4, f.get("nsid", 0))
    struct.pack_into("<I", b, 8, f.get("cdw2", 0))
    struct.pack_into("<I", b, 12, f.get("cdw3", 0))
    struct.pack_into("<Q", b, 16, f.get("mptr", 0))
    struct.pack_into("<Q", b, 24, f.get("addr", 0))
    struct.pack_into("<I", b, 32, f.get("length", 0))
    b[39] = f.get("type", 0x5A)
    for i in range(6):
        struct.pack_into("<I", b, 40 + 4 * i, f.get(f"cdw{10 + i}", 0))
    return bytes(b)


def test_constants():
    assert C.SQE_SIZE == 64 and C.CQE_SIZE == 16
    assert C.PSDT_SGL == 0b01 << 6
    assert C.SGL_TRANSPORT_DATA_BLOCK == 0x5A  # type 5h, subtype Ah
    assert C.SGL_DATA_BLOCK_OFFSET == 0x01  # type 0h, subtype 1h (offset)


def test_sqe_golden_all_fields():
    sqe = C.SQE(opc=0x02, flags=0x40, cid=0x1234, nsid=0xDEADBEEF, cdw2=0x02020202,
                cdw3=0x03030303, mptr=0x1122334455667788,
                sgl=C.SGL(0x0102030405060708, 0x00010000, 0x5A),
                cdw10=0xA, cdw11=0xB, cdw12=0xC, cdw13=0xD, cdw14=0xE, cdw15=0xFFFFFFFF)
    golden = golden_sqe(opc=0x02, cid=0x1234, nsid=0xDEADBEEF, cdw2=0x02020202, cdw3=0x03030303,
                        mptr=0x1122334455667788, addr=0x0102030405060708, length=0x10000,
                        cdw10=0xA, cdw11=0xB, cdw12=0xC, cdw13=0xD, cdw14=0xE, cdw15=0xFFFFFFFF)
    raw = C.encode_sqe(sqe)
    assert bytes(raw) == golden
    assert raw[1] == 0x40 and raw[39] == 0x5A
    assert raw[36:39] == b"\0\0\0"
    assert C.decode_sqe(golden) == sqe


def test_sqe_defaults_are_sgl_transport_block():
    raw = C.encode_sqe(C.SQE(opc=0x18))
    assert bytes(raw) == golden_sqe(opc=0x18)
    assert raw[1] & 0xC0 == 0x40  # PSDT 01b: the Linux target rejects PRPs


def test_sqe_decode_at_offset():
    golden = golden_sqe(opc=0x06, cid=7, cdw10=1)
    buf = b"\xEE" * 8 + golden
    assert C.decode_sqe(buf, 8) == C.SQE(opc=0x06, cid=7, cdw10=1)


def test_pack_sqe_into():
    buf = bytearray(b"\xFF" * 72)
    C.pack_sqe_into(buf, 8, C.SQE(opc=1, cid=2, nsid=3))
    assert buf[:8] == b"\xFF" * 8
    assert bytes(buf[8:]) == golden_sqe(opc=1, cid=2, nsid=3)


def test_with_cid_and_set_sgl_patch_in_place():
    raw = C.encode_sqe(C.SQE(opc=0x01, nsid=1, cdw10=5))
    C.with_cid(raw, 0xBEEF)
    C.set_sgl(raw, C.SGL(0, 4096, C.SGL_DATA_BLOCK_OFFSET))
    assert bytes(raw) == golden_sqe(opc=0x01, nsid=1, cdw10=5, cid=0xBEEF, length=4096, type=0x01)


def test_cqe_golden():
    cqe = C.CQE(dw0=0x11223344, dw1=0x55667788, sqhd=0x0A0B, sqid=3, cid=0xCAFE, status=0x4184)
    golden = struct.pack("<IIHHHH", 0x11223344, 0x55667788, 0x0A0B, 3, 0xCAFE, 0x4184 << 1)
    assert golden[14:16] == bytes.fromhex("0883")  # status in bits 15:1, phase 0
    assert C.encode_cqe(cqe) == golden
    assert C.decode_cqe(golden) == cqe


def test_cqe_phase_bit_is_not_status():
    raw = bytes(14) + struct.pack("<H", 0x0001)  # phase tag only
    assert C.decode_cqe(raw).status == 0
    raw = bytes(14) + struct.pack("<H", 0xFFFF)
    assert C.decode_cqe(raw).status == 0x7FFF


def test_cqe_status_is_masked_to_15_bits():
    assert C.encode_cqe(C.CQE(status=0xFFFF))[14:16] == bytes.fromhex("feff")


def test_cqe_decode_at_offset():
    raw = b"\0" * 4 + struct.pack("<IIHHHH", 1, 2, 3, 4, 5, 6 << 1)
    assert C.decode_cqe(raw, 4) == C.CQE(1, 2, 3, 4, 5, 6)


def test_result64():
    cqe = C.CQE(dw0=0x0F00007F, dw1=0x00000020)
    assert cqe.result64 == 0x000000200F00007F


@pytest.mark.parametrize("bad", [C.SQE(opc=256), C.SQE(opc=1, cid=0x10000)])
def test_sqe_out_of_range_values_fail_loudly(bad):
    with pytest.raises(struct.error):
        C.encode_sqe(bad)
