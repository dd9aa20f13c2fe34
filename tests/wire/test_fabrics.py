"""Fabrics commands and property registers against hand-written bytes.

NVMe over Fabrics 1.1, 3.3: every Fabrics command has OPC 7Fh and FCTYPE at
byte 4.  Connect: RECFMT bytes 40-41, QID 42-43, SQSIZE 44-45 (0's based),
CATTR 46, KATO 48-51.  Connect data (1024 bytes): HOSTID 0-15, CNTLID 16-17,
SUBNQN 256-511, HOSTNQN 512-767.  Property Get/Set: ATTRIB byte 40 (bits 2:0,
0 = 4 bytes, 1 = 8 bytes), OFST 44-47, VALUE 48-55.  Registers: NVMe Base
2.0, 3.1.4.
"""

import struct
import uuid

import pytest

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire.capsule import CQE, SGL, SQE, decode_sqe, encode_sqe


def sqe_bytes(sqe: SQE) -> bytes:
    return bytes(encode_sqe(sqe))


def u16(b, off):
    return struct.unpack_from("<H", b, off)[0]


def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


# --- Connect -------------------------------------------------------------------------

def test_connect_command_bytes():
    raw = sqe_bytes(F.build_connect(F.ConnectCmd(qid=3, sqsize=127, kato_ms=120_000,
                                                 cattr=F.CATTR_DISABLE_SQFLOW, recfmt=0), cid=9))
    golden = bytearray(64)
    golden[0] = 0x7F
    golden[1] = 0x40
    struct.pack_into("<H", golden, 2, 9)
    golden[4] = 0x01  # FCTYPE Connect
    golden[39] = 0x5A
    struct.pack_into("<HHHBxI", golden, 40, 0, 3, 127, 0x04, 120_000)
    assert raw == bytes(golden)
    assert raw[5:24] == bytes(19)


def test_connect_admin_queue_fields():
    raw = sqe_bytes(F.build_connect(F.ConnectCmd(qid=0, sqsize=31, kato_ms=5000)))
    assert raw[4] == 0x01
    assert (u16(raw, 40), u16(raw, 42), u16(raw, 44), raw[46], u32(raw, 48)) == (0, 0, 31, 0, 5000)


def test_connect_parse_roundtrip():
    c = F.ConnectCmd(qid=0xFFFE, sqsize=0xFFFF, kato_ms=0xFFFFFFFF, cattr=0xFF, recfmt=0x1234)
    sqe = decode_sqe(encode_sqe(F.build_connect(c)))
    assert F.fctype_of(sqe) == F.FCType.CONNECT
    assert F.parse_connect(sqe) == c


def test_fctype_values():
    assert [F.FCType.PROPERTY_SET, F.FCType.CONNECT, F.FCType.PROPERTY_GET,
            F.FCType.AUTH_SEND, F.FCType.AUTH_RECEIVE, F.FCType.DISCONNECT] == [0, 1, 4, 5, 6, 8]


HOSTID = uuid.UUID("12345678-9abc-def0-1122-334455667788")
SUBNQN = "nqn.2014-08.org.nvmexpress:uuid:0a0b0c0d-0000-1111-2222-333344445555"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:12345678-9abc-def0-1122-334455667788"


def golden_connect_data(hostid: bytes, cntlid: int, subnqn: bytes, hostnqn: bytes) -> bytes:
    b = bytearray(1024)
    b[0:16] = hostid
    struct.pack_into("<H", b, 16, cntlid)
    b[256:256 + len(subnqn)] = subnqn
    b[512:512 + len(hostnqn)] = hostnqn
    return bytes(b)


def test_connect_data_bytes():
    d = F.ConnectData(HOSTID.bytes, F.CNTLID_DYNAMIC, SUBNQN, HOSTNQN)
    raw = F.encode_connect_data(d)
    assert len(raw) == F.CONNECT_DATA_SIZE == 1024
    assert raw == golden_connect_data(bytes.fromhex("123456789abcdef01122334455667788"),
                                      0xFFFF, SUBNQN.encode(), HOSTNQN.encode())
    assert raw[16:18] == b"\xff\xff"
    assert F.decode_connect_data(raw) == d


def test_connect_data_static_cntlid_and_utf8():
    d = F.ConnectData(bytes(range(16)), 0x0005, "nqn.2024-01.example:säule", "nqn.x:h")
    raw = F.encode_connect_data(d)
    assert raw[256:256 + len("nqn.2024-01.example:säule".encode())] == "nqn.2024-01.example:säule".encode()
    assert F.decode_connect_data(raw) == d


def test_connect_data_longest_nqn():
    nqn = "nqn.2014-08.org.example:" + "x" * (255 - 24)
    assert len(nqn) == 255
    raw = F.encode_connect_data(F.ConnectData(bytes(16), 1, nqn, nqn))
    assert raw[256 + 254] == ord("x") and raw[511] == 0  # the NUL still fits
    assert F.decode_connect_data(raw).subnqn == nqn
    with pytest.raises(ValueError):
        F.encode_connect_data(F.ConnectData(bytes(16), 1, nqn + "y", "nqn.x"))


def test_connect_data_bad_hostid_size():
    with pytest.raises(ValueError):
        F.encode_connect_data(F.ConnectData(bytes(15), 1, "a", "b"))


def test_connect_data_decode_errors():
    with pytest.raises(PeerProtocolError):
        F.decode_connect_data(bytes(1023))
    bad = golden_connect_data(bytes(16), 1, b"\xff\xfe", b"nqn")
    with pytest.raises(PeerProtocolError, match="SUBNQN"):
        F.decode_connect_data(bad)


def test_connect_data_unterminated_nqn_field():
    # 256 bytes without a NUL: decoded in full rather than overrunning.
    raw = golden_connect_data(bytes(16), 1, b"a" * 256, b"b" * 256)
    d = F.decode_connect_data(raw)
    assert d.subnqn == "a" * 256 and d.hostnqn == "b" * 256


def test_hostid_to_uuid():
    assert F.hostid_to_uuid(bytes.fromhex("123456789abcdef01122334455667788")) == HOSTID


def test_connect_response_dw0():
    # DW0 bytes 01:00 CNTLID, 03:02 AUTHREQ; ATR is DW0 bit 17 (Linux
    # NVME_CONNECT_AUTHREQ_ATR = 1 << 17), ASCR bit 18, bit 16 reserved.
    cqe = CQE(dw0=struct.unpack("<I", bytes.fromhex("0500 0200"))[0], sqhd=0xFFFF)
    assert F.parse_connect_response(cqe) == F.ConnectResult(cntlid=5, authreq=F.AUTHREQ_ATR)
    assert F.connect_success_dw0(0x1234, 0) == 0x00001234
    assert F.connect_success_dw0(0x0001, F.AUTHREQ_ATR) == 1 | (1 << 17)
    assert F.connect_success_dw0(0x0001, F.AUTHREQ_ASCR) == 1 | (1 << 18)


def test_connect_invalid_parameters_dw0():
    # Fabrics 1.1: IPO in bytes 01:00, IATTR bit 0 of byte 02 (1 = Connect
    # data).  Linux nvmet's IPO_IATTR_CONNECT_DATA(subsysnqn) is 0x00010100.
    assert F.connect_invalid_dw0(256, in_data=True) == 0x00010100
    assert F.connect_invalid_dw0(42, in_data=False) == 0x0000002A  # QID in the SQE
    assert F.parse_connect_invalid(0x00010100) == (256, True)
    assert F.parse_connect_invalid(0x00000030) == (48, False)  # KATO


# --- Property Get / Set ------------------------------------------------------------------

@pytest.mark.parametrize("prop,attrib,ofst", [
    (F.Prop.CAP, 1, 0x00), (F.Prop.VS, 0, 0x08), (F.Prop.CC, 0, 0x14), (F.Prop.CSTS, 0, 0x1C),
    (F.Prop.NSSR, 0, 0x20),
])
def test_property_get_bytes(prop, attrib, ofst):
    raw = sqe_bytes(F.build_property_get(prop, cid=3))
    assert (raw[0], raw[4], raw[40], u32(raw, 44)) == (0x7F, 0x04, attrib, ofst)
    assert u16(raw, 2) == 3
    assert raw[48:64] == bytes(16)
    acc = F.parse_property(decode_sqe(raw))
    assert (acc.offset, acc.size) == (ofst, 8 if attrib else 4)


def test_property_set_cc_bytes():
    raw = sqe_bytes(F.build_property_set(F.Prop.CC, 0x00460001))
    assert (raw[4], raw[40], u32(raw, 44)) == (0x00, 0, 0x14)
    assert raw[48:56] == bytes.fromhex("0100460000000000")
    assert F.parse_property(decode_sqe(raw)) == F.PropertyAccess(0x14, 4, 0x00460001)


def test_property_set_8_byte_value():
    raw = sqe_bytes(F.build_property_set(F.Prop.CAP, 0x1122334455667788))
    assert raw[40] == 1
    assert raw[48:56] == bytes.fromhex("8877665544332211")
    assert F.parse_property(decode_sqe(raw)).value == 0x1122334455667788


def test_property_unknown_offset_is_4_bytes():
    raw = sqe_bytes(F.build_property_get(0x40))
    assert raw[40] == 0 and u32(raw, 44) == 0x40


def test_parse_property_reserved_attrib_bits():
    sqe = SQE(0x7F, nsid=4, cdw10=0xF9, cdw11=0)  # ATTRIB bits 2:0 = 1 despite upper junk
    assert F.parse_property(sqe).size == 8


def test_disconnect():
    raw = sqe_bytes(F.build_disconnect(cid=2))
    assert (raw[0], raw[4], u32(raw, 40)) == (0x7F, 0x08, 0)


def test_fabrics_sgl_default():
    raw = sqe_bytes(F.build_connect(F.ConnectCmd(0, 31))._replace(sgl=SGL(0, 1024, 0x01)))
    assert raw[39] == 0x01 and u32(raw, 32) == 1024


# --- register codecs -----------------------------------------------------------------------

def test_cap_linux_nvmet():
    # nvmet_init_cap(): CSS NVM (bit 37) | "one or more I/O command sets" (bit 43)
    # | TO 15 (bits 31:24) | MQES NVMET_QUEUE_SIZE - 1 = 127.
    value = (1 << 37) | (1 << 43) | (15 << 24) | 127
    assert value == 0x0000_0820_0F00_007F
    cap = F.CAP.decode(value)
    assert cap == F.CAP(mqes=127, cqr=0, ams=0, to=15, dstrd=0, nssrs=0, css=0x41, bps=0,
                        mpsmin=0, mpsmax=0, cmbs=0)
    assert cap.encode() == value


def test_cap_brief_example():
    # MQES 127, CQR 1, TO 15, CSS NVM, MPSMIN = MPSMAX = 0 (4 KiB pages).
    value = 0x0000_0020_0F01_007F
    cap = F.CAP.decode(value)
    assert (cap.mqes, cap.cqr, cap.to, cap.css, cap.mpsmin, cap.mpsmax) == (127, 1, 15, 1, 0, 0)
    assert F.CAP(mqes=127, cqr=1, to=15, css=1).encode() == value


def test_cap_pci_drive():
    # A typical PCIe SSD: 0x0000_0030_3C03_3FFF.
    cap = F.CAP.decode(0x0000_0030_3C03_3FFF)
    assert (cap.mqes, cap.cqr, cap.ams, cap.to, cap.dstrd, cap.nssrs, cap.css) == (
        0x3FFF, 1, 1, 60, 0, 1, 1)
    assert cap.encode() == 0x0000_0030_3C03_3FFF


def test_cap_high_fields():
    value = (1 << 57) | (0xF << 52) | (0x2 << 48) | (1 << 45) | (0xA << 32) | (3 << 17)
    cap = F.CAP.decode(value)
    assert (cap.cmbs, cap.mpsmax, cap.mpsmin, cap.bps, cap.dstrd, cap.ams) == (1, 15, 2, 1, 10, 3)
    assert cap.encode() == value


def test_cc_linux_enable_and_shutdown():
    # EN | IOSQES 6 (64 B) | IOCQES 4 (16 B): what Linux and FreeBSD write.
    assert F.CC(en=1, iosqes=6, iocqes=4).encode() == 0x00460001
    assert F.CC.decode(0x00464001) == F.CC(en=1, shn=F.SHN_NORMAL, iosqes=6, iocqes=4)
    assert F.CC.decode(0x00468001).shn == F.SHN_ABRUPT


def test_cc_all_fields():
    mask = 1 | (7 << 4) | (0xF << 7) | (7 << 11) | (3 << 14) | (0xF << 16) | (0xF << 20)
    assert F.CC_FIELDS_MASK == mask == 0x00FFFFF1  # bits 3:1 and 31:24 reserved
    value = 1 | (6 << 4) | (0xA << 7) | (5 << 11) | (2 << 14) | (0x9 << 16) | (0x3 << 20)
    assert F.CC.decode(value) == F.CC(1, 6, 10, 5, 2, 9, 3)
    assert F.CC.decode(value).encode() == value


def test_csts():
    assert F.CSTS.decode(0x1) == F.CSTS(rdy=1)
    assert F.CSTS.decode(0x2).cfs == 1
    assert F.CSTS.decode(0x9) == F.CSTS(rdy=1, shst=F.SHST_COMPLETE)
    assert F.CSTS.decode(0x4).shst == F.SHST_OCCURRING
    assert F.CSTS(rdy=1, cfs=1, shst=2, nssro=1, pp=1).encode() == 0x3B


def test_vs():
    assert F.VS.decode(0x00010300) == F.VS(1, 3, 0)
    assert str(F.VS.decode(0x00010300)) == "1.3"
    assert F.VS.decode(0x00020001) == F.VS(2, 0, 1)
    assert str(F.VS(2, 0, 1)) == "2.0.1"
    assert F.VS(1, 4).encode() == 0x00010400
