"""Admin command builders against hand-written SQE bytes (NVMe Base 2.0, 5).

CDW10 is SQE bytes 40-43, CDW11 44-47, CDW12 48-51, CDW13 52-55, CDW14 56-59.
"""

import struct

import pytest

from nvmecontrol.wire import admin as A
from nvmecontrol.wire.capsule import decode_sqe, encode_sqe


def raw(sqe) -> bytes:
    return bytes(encode_sqe(sqe))


def dw(b: bytes, n: int) -> int:
    """CDWn of an encoded SQE."""
    return struct.unpack_from("<I", b, 4 * n)[0]


def test_opcodes():
    assert (A.AdminOpc.GET_LOG_PAGE, A.AdminOpc.IDENTIFY, A.AdminOpc.SET_FEATURES,
            A.AdminOpc.GET_FEATURES, A.AdminOpc.ASYNC_EVENT_REQUEST, A.AdminOpc.KEEP_ALIVE) == (
        0x02, 0x06, 0x09, 0x0A, 0x0C, 0x18)


# --- Identify --------------------------------------------------------------------------

def test_identify_controller():
    b = raw(A.build_identify(0x01))
    assert (b[0], b[40], dw(b, 1), dw(b, 10), dw(b, 11)) == (0x06, 0x01, 0, 0x01, 0)


def test_identify_namespace_nsid():
    b = raw(A.build_identify(0x00, nsid=7))
    assert dw(b, 1) == 7 and dw(b, 10) == 0


def test_identify_cntid_and_csi():
    # CNS 13h (controller list) with CNTID 0x1234 in CDW10 31:16, CSI in CDW11 31:24.
    b = raw(A.build_identify(0x13, cntid=0x1234, csi=0x02))
    assert b[40:44] == bytes.fromhex("13003412")
    assert b[44:48] == bytes.fromhex("00000002")
    assert A.parse_identify(decode_sqe(b)) == A.IdentifyArgs(cns=0x13, cntid=0x1234, nsid=0, csi=2)


# --- Get Log Page ------------------------------------------------------------------------

def test_get_log_page_small():
    # 512 bytes = 128 dwords → NUMD 127 (0's based) in NUMDL (CDW10 31:16).
    b = raw(A.build_get_log_page(A.GetLogPage(lid=0x02, length=512)))
    assert b[0] == 0x02
    assert dw(b, 1) == 0xFFFFFFFF  # NSID default: all namespaces
    assert b[40:44] == bytes.fromhex("02007f00")
    assert (dw(b, 11), dw(b, 12), dw(b, 13), dw(b, 14)) == (0, 0, 0, 0)


def test_get_log_page_exactly_256k_fits_numdl():
    b = raw(A.build_get_log_page(A.GetLogPage(lid=0x70, length=256 * 1024)))
    assert struct.unpack_from("<HH", b, 42) == (0xFFFF, 0)  # NUMDL, NUMDU


def test_get_log_page_numdu_split():
    # 256 KiB + 4 bytes = 65537 dwords → NUMD 65536: NUMDL 0, NUMDU 1.
    b = raw(A.build_get_log_page(A.GetLogPage(lid=0x70, length=256 * 1024 + 4)))
    assert struct.unpack_from("<HH", b, 42) == (0, 1)
    # 1 MiB = 262144 dwords → NUMD 0x3FFFF.
    b = raw(A.build_get_log_page(A.GetLogPage(lid=0x70, length=1 << 20)))
    assert struct.unpack_from("<HH", b, 42) == (0xFFFF, 0x0003)


def test_get_log_page_64bit_offset():
    b = raw(A.build_get_log_page(A.GetLogPage(lid=0x70, length=4, offset=0x1_0000_0004)))
    assert b[48:56] == bytes.fromhex("0400000001000000")  # LPOL, LPOU


def test_get_log_page_lsp_lsi_rae_csi():
    g = A.GetLogPage(lid=0x0D, length=8, lsp=0x7F, lsi=0xABCD, rae=True, nsid=3, csi=0x02)
    b = raw(A.build_get_log_page(g))
    cdw10 = 0x0D | (0x7F << 8) | (1 << 15) | (1 << 16)
    assert dw(b, 10) == cdw10 == 0x0001FF0D
    assert b[46:48] == bytes.fromhex("cdab")  # LSI in CDW11 31:16
    assert b[59] == 0x02  # CSI in CDW14 31:24
    assert dw(b, 1) == 3
    assert A.parse_get_log_page(decode_sqe(b)) == g


def test_get_log_page_lsp_is_7_bits():
    b = raw(A.build_get_log_page(A.GetLogPage(lid=1, length=4, lsp=0xFF)))
    assert dw(b, 10) & (1 << 15) == 0  # did not spill into RAE
    assert (dw(b, 10) >> 8) & 0x7F == 0x7F


@pytest.mark.parametrize("length,offset", [(0, 0), (-4, 0), (6, 0), (4, 2)])
def test_get_log_page_rejects_bad_sizes(length, offset):
    with pytest.raises(ValueError):
        A.build_get_log_page(A.GetLogPage(lid=2, length=length, offset=offset))


@pytest.mark.parametrize("length", [4, 512, 4096, 256 * 1024 + 4, 1 << 20, 64 << 20])
def test_get_log_page_parse_roundtrip(length):
    g = A.GetLogPage(lid=0x70, length=length, offset=length * 3)
    assert A.parse_get_log_page(decode_sqe(encode_sqe(A.build_get_log_page(g)))) == g


# --- features ------------------------------------------------------------------------------

def test_set_features_number_of_queues():
    # 4 I/O queues each way: NSQR = NCQR = 3 (0's based).
    b = raw(A.build_set_num_queues(4))
    assert (b[0], dw(b, 10), dw(b, 11)) == (0x09, 0x07, 0x00030003)
    assert A.feature_id(decode_sqe(b)) == A.Feature.NUMBER_OF_QUEUES


def test_num_queues_value_and_parse():
    assert A.num_queues_value(1, 1) == 0
    assert A.num_queues_value(8, 2) == 0x00010007
    # A controller granting 64 SQs and 32 CQs reports 0x001F003F in DW0.
    assert A.parse_num_queues(0x001F003F) == (64, 32)
    assert A.parse_num_queues(0xFFFEFFFE) == (65535, 65535)


def test_set_features_save_bit():
    b = raw(A.build_set_features(A.Feature.KEEP_ALIVE_TIMER, cdw11=120_000, save=True))
    assert dw(b, 10) == 0x8000000F and dw(b, 11) == 120_000


def test_get_features_select():
    b = raw(A.build_get_features(A.Feature.ARBITRATION, sel=3, nsid=1))
    assert (b[0], dw(b, 10), dw(b, 1)) == (0x0A, 0x0301, 1)
    b = raw(A.build_get_features(A.Feature.VOLATILE_WRITE_CACHE, sel=0xF))
    assert dw(b, 10) == 0x0706  # SEL is 3 bits


def test_keep_alive_and_aer():
    assert raw(A.build_keep_alive())[0] == 0x18
    assert raw(A.build_async_event_request())[0] == 0x0C


def test_async_event_dw0():
    # Notice (type 2), Namespace Attribute Changed (info 0), LID 04h.
    assert A.parse_aer(0x00040002) == A.AsyncEvent(2, 0, 4)
    assert A.aer_dw0(A.AsyncEvent(A.AER_TYPE_NOTICE, A.AER_NOTICE_NS_ATTR_CHANGED, 0x04)) == 0x00040002
    assert A.parse_aer(0xFF0A0307) == A.AsyncEvent(7, 3, 0x0A)
    assert A.AEC_NS_ATTR == 0x100
