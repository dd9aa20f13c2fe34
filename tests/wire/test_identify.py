"""nvmecontrol.wire.identify: golden bytes at the spec offsets, round trips,
short and hostile input."""

import random
import struct
import uuid

import pytest

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.wire import identify as idf
from nvmecontrol.wire.identify import (
    IDENTIFY_DATA_SIZE,
    IdentifyController,
    IdentifyNamespace,
    LbaFormat,
    Nidt,
    NsIdDescriptor,
    decode_active_nsid_list,
    decode_identify_controller,
    decode_identify_namespace,
    decode_ns_id_descriptors,
    encode_active_nsid_list,
    encode_identify_controller,
    encode_identify_namespace,
    encode_ns_id_descriptors,
)

SUBNQN = "nqn.2014-08.org.nvmexpress:uuid:0d5b7b8c-1b2a-4f7e-9c1d-3e0a2b4c5d6e"


def golden_controller() -> bytes:
    """A Linux-nvmet-like I/O controller, packed by hand at the spec offsets."""
    b = bytearray(IDENTIFY_DATA_SIZE)
    struct.pack_into("<HH", b, 0, 0x1B36, 0x1AF4)  # VID, SSVID
    b[4:24] = b"a1b2c3d4e5f6".ljust(20, b" ")  # SN
    b[24:64] = b"Linux".ljust(40, b" ")  # MN
    b[64:72] = b"6.8.0-45"  # FR (fills all 8)
    b[72] = 6  # RAB
    b[73:76] = bytes([0x8C, 0xAF, 0x00])  # IEEE OUI, LSB first
    b[76] = 0x0B  # CMIC: ANA, multi ctrl, multi port
    b[77] = 5  # MDTS
    struct.pack_into("<H", b, 78, 0x0011)  # CNTLID
    struct.pack_into("<I", b, 80, 0x00010400)  # VER 1.4.0
    struct.pack_into("<I", b, 92, 0x00000900)  # OAES
    struct.pack_into("<I", b, 96, 0x00000041)  # CTRATT: TBKAS + 128-bit HostID
    b[111] = 1  # CNTRLTYPE: I/O
    b[112:128] = bytes(range(1, 17))  # FGUID
    struct.pack_into("<H", b, 256, 0x0006)  # OACS: format, firmware
    b[258], b[259], b[260], b[261], b[262], b[263] = 3, 3, 0x03, 0x07, 127, 0
    struct.pack_into("<QQ", b, 280, 0x1122334455667788, 0x99)  # TNVMCAP (128-bit)
    b[319] = 0x01  # FWUG
    struct.pack_into("<H", b, 320, 50)  # KAS
    struct.pack_into("<I", b, 328, 0x80000003)  # SANICAP
    b[342], b[343] = 10, 0x47  # ANATT, ANACAP
    struct.pack_into("<II", b, 344, 128, 128)  # ANAGRPMAX, NANAGRPID
    b[512], b[513] = 0x66, 0x44  # SQES, CQES
    struct.pack_into("<HI", b, 514, 128, 1024)  # MAXCMD, NN
    struct.pack_into("<HH", b, 520, 0x005D, 0x0001)  # ONCS, FUSES
    b[524], b[525] = 0x05, 0x07  # FNA, VWC
    struct.pack_into("<I", b, 536, 0x00100005)  # SGLS
    struct.pack_into("<I", b, 540, 1024)  # MNAN
    b[768 : 768 + len(SUBNQN)] = SUBNQN.encode()
    struct.pack_into("<IIHBBH", b, 1792, 1028, 1, 0, 0, 1, 1)  # Fabrics fields
    b[2048:2050] = b"\x10\x27"  # power state 0 max power (not modelled)
    b[3072:3080] = b"VENDOR\xff\x00"  # vendor specific (not modelled)
    return bytes(b)


def test_decode_controller_fields_at_spec_offsets():
    c = decode_identify_controller(golden_controller())
    assert (c.vid, c.ssvid) == (0x1B36, 0x1AF4)
    assert (c.sn, c.mn, c.fr) == ("a1b2c3d4e5f6", "Linux", "6.8.0-45")
    assert c.rab == 6
    assert c.ieee == 0x00AF8C
    assert (c.cmic, c.mdts, c.cntlid, c.ver) == (0x0B, 5, 0x11, 0x00010400)
    assert (c.oaes, c.ctratt, c.cntrltype) == (0x900, 0x41, 1)
    assert c.fguid == bytes(range(1, 17))
    assert (c.oacs, c.acl, c.aerl, c.frmw, c.lpa, c.elpe, c.npss) == (6, 3, 3, 3, 7, 127, 0)
    assert c.tnvmcap == (0x99 << 64) | 0x1122334455667788
    assert c.unvmcap == 0
    assert (c.fwug, c.kas, c.sanicap) == (1, 50, 0x80000003)
    assert (c.anatt, c.anacap, c.anagrpmax, c.nanagrpid) == (10, 0x47, 128, 128)
    assert (c.sqes, c.cqes, c.maxcmd, c.nn) == (0x66, 0x44, 128, 1024)
    assert (c.oncs, c.fuses, c.fna, c.vwc) == (0x5D, 1, 5, 7)
    assert (c.sgls, c.mnan) == (0x00100005, 1024)
    assert c.subnqn == SUBNQN
    assert (c.ioccsz, c.iorcsz, c.icdoff, c.fcatt, c.msdbd, c.ofcs) == (1028, 1, 0, 0, 1, 1)
    assert c.raw == golden_controller()


def test_controller_round_trip_is_byte_exact():
    gold = golden_controller()
    assert encode_identify_controller(decode_identify_controller(gold)) == gold


def test_controller_round_trip_keeps_odd_padding_and_non_ascii():
    b = bytearray(golden_controller())
    b[4:24] = b"SER\xe9AL\x00\x00 \x00".ljust(20, b"\x00")  # NUL/space mix, Latin-1 byte
    b[24:64] = b"  lead".ljust(40, b"\x00")
    c = decode_identify_controller(bytes(b))
    assert c.sn == "SER\udce9AL"  # surrogate escape keeps the byte
    assert c.mn == "  lead"
    assert encode_identify_controller(c) == bytes(b)


def test_controller_change_rewrites_only_that_field():
    gold = golden_controller()
    c = decode_identify_controller(gold)
    c.cntlid = 0x1234
    c.sn = "NEW"
    out = encode_identify_controller(c)
    assert struct.unpack_from("<H", out, 78)[0] == 0x1234
    assert out[4:24] == b"NEW".ljust(20, b" ")
    diff = [i for i in range(IDENTIFY_DATA_SIZE) if out[i] != gold[i]]
    assert diff and all(i in range(78, 80) or i in range(4, 24) for i in diff)


def test_controller_encode_from_scratch_puts_fields_at_offsets():
    c = IdentifyController(vid=0xABCD, sn="S1", mn="nvmecontrol", fr="0.1", ieee=0x123456,
                           ver=0x00010300, cntrltype=2, kas=1, maxcmd=32, sqes=0x66, cqes=0x44,
                           subnqn="nqn.2014-08.org.nvmexpress.discovery", tnvmcap=1 << 100,
                           ioccsz=4, iorcsz=1, icdoff=0, fcatt=1, msdbd=1, ofcs=1, sgls=0x100005)
    b = encode_identify_controller(c)
    assert len(b) == IDENTIFY_DATA_SIZE
    assert struct.unpack_from("<H", b, 0)[0] == 0xABCD
    assert b[4:24] == b"S1" + b" " * 18
    assert b[24:64] == b"nvmecontrol".ljust(40, b" ")
    assert b[64:72] == b"0.1     "
    assert b[73:76] == b"\x56\x34\x12"
    assert b[111] == 2
    assert struct.unpack_from("<QQ", b, 280) == (0, 1 << 36)
    assert b[768:804] == b"nqn.2014-08.org.nvmexpress.discovery" and b[804] == 0
    assert struct.unpack_from("<IIHBBH", b, 1792) == (4, 1, 0, 1, 1, 1)
    assert decode_identify_controller(b) == c


def test_controller_decode_accepts_memoryview_and_trailing_bytes():
    gold = golden_controller()
    c = decode_identify_controller(memoryview(gold + b"\xaa" * 100))
    assert c == decode_identify_controller(gold)
    assert c.raw == gold


@pytest.mark.parametrize("n", [0, 1, 100, 4095])
def test_controller_short_input(n):
    with pytest.raises(PeerProtocolError) as exc:
        decode_identify_controller(golden_controller()[:n])
    assert "Identify Controller" in str(exc.value) and f"{n} bytes" in str(exc.value)


@pytest.mark.parametrize(
    "changes",
    [{"vid": 0x10000}, {"cntlid": -1}, {"sn": "x" * 21}, {"subnqn": "n" * 256},
     {"ieee": 1 << 24}, {"tnvmcap": 1 << 128}, {"fguid": bytes(17)}, {"fr": 5}],
)
def test_controller_encode_rejects_values_that_do_not_fit(changes):
    with pytest.raises(LocalProtocolError):
        encode_identify_controller(IdentifyController(**changes))


# --- namespace -------------------------------------------------------------------


def golden_namespace() -> bytes:
    b = bytearray(IDENTIFY_DATA_SIZE)
    struct.pack_into("<QQQ", b, 0, 2097152, 2097152, 1048576)  # NSZE, NCAP, NUSE
    b[24:34] = bytes([0x11, 1, 0x11, 0x03, 0x1F, 0x09, 0x01, 0xFF, 0x85, 0x09])
    #               NSFEAT NLBAF FLBAS MC  DPC   DPS  NMIC RESCAP FPI DLFEAT
    struct.pack_into("<H", b, 46, 8)  # NOIOB
    struct.pack_into("<QQ", b, 48, 1 << 40, 0)  # NVMCAP
    struct.pack_into("<5H", b, 64, 7, 7, 7, 7, 15)  # NPWG..NOWS
    struct.pack_into("<I", b, 92, 3)  # ANAGRPID
    struct.pack_into("<H", b, 100, 1)  # NVMSETID
    b[104:120] = bytes.fromhex("00112233445566778899aabbccddeeff")  # NGUID
    b[120:128] = bytes.fromhex("0123456789abcdef")  # EUI64
    struct.pack_into("<HBB", b, 128, 0, 9, 2)  # LBAF0: 512 B, Good
    struct.pack_into("<HBB", b, 132, 8, 12, 0xFC)  # LBAF1: 4 KiB + 8 B md, Best; rsvd bits set
    struct.pack_into("<HBB", b, 136, 16, 12, 1)  # LBAF2: beyond NLBAF (raw only)
    b[384:388] = b"vend"
    return bytes(b)


def test_decode_namespace_fields_at_spec_offsets():
    ns = decode_identify_namespace(golden_namespace())
    assert (ns.nsze, ns.ncap, ns.nuse) == (2097152, 2097152, 1048576)
    assert (ns.nsfeat, ns.nlbaf, ns.flbas, ns.mc, ns.dpc, ns.dps) == (0x11, 1, 0x11, 3, 0x1F, 9)
    assert (ns.nmic, ns.rescap, ns.fpi, ns.dlfeat) == (1, 0xFF, 0x85, 9)
    assert ns.noiob == 8
    assert ns.nvmcap == 1 << 40
    assert (ns.npwg, ns.npwa, ns.npdg, ns.npda, ns.nows) == (7, 7, 7, 7, 15)
    assert (ns.anagrpid, ns.nvmsetid) == (3, 1)
    assert ns.nguid.hex() == "00112233445566778899aabbccddeeff"
    assert ns.eui64.hex() == "0123456789abcdef"
    assert ns.lbaf == [LbaFormat(0, 9, 2), LbaFormat(8, 12, 0)]  # only NLBAF+1, RP masked
    assert ns.lba_format_index() == 1
    assert ns.block_size() == 4096


def test_namespace_round_trip_is_byte_exact():
    gold = golden_namespace()
    assert encode_identify_namespace(decode_identify_namespace(gold)) == gold


def test_namespace_encode_from_scratch():
    ns = IdentifyNamespace(nsze=100, ncap=100, nuse=50, nlbaf=1, flbas=0,
                           lbaf=[LbaFormat(0, 9, 0), LbaFormat(0, 12, 1)], nguid=b"\x01" * 16)
    b = encode_identify_namespace(ns)
    assert len(b) == IDENTIFY_DATA_SIZE
    assert struct.unpack_from("<QQQ", b, 0) == (100, 100, 50)
    assert b[25] == 1
    assert struct.unpack_from("<HBBHBB", b, 128) == (0, 9, 0, 0, 12, 1)
    assert b[104:120] == b"\x01" * 16
    assert decode_identify_namespace(b) == ns


def test_namespace_format_index_uses_high_bits_beyond_16_formats():
    ns = IdentifyNamespace(nlbaf=20, flbas=0x20 | 0x03,
                           lbaf=[LbaFormat(0, 9, 0)] * 21)
    assert ns.lba_format_index() == 0x13
    ns.nlbaf = 3  # fewer than 17 formats: bits 6:5 are reserved
    assert ns.lba_format_index() == 3


def test_namespace_nlbaf_above_64_is_capped_not_fatal():
    b = bytearray(golden_namespace())
    b[25] = 0xFF
    ns = decode_identify_namespace(bytes(b))
    assert len(ns.lbaf) == 64


def test_namespace_short_input():
    with pytest.raises(PeerProtocolError, match="Identify Namespace"):
        decode_identify_namespace(b"\x00" * 4000)


def test_namespace_encode_rejects_too_many_formats():
    with pytest.raises(LocalProtocolError):
        encode_identify_namespace(IdentifyNamespace(lbaf=[LbaFormat(0, 9, 0)] * 65))


# --- CNS 02h ------------------------------------------------------------------------


def test_active_nsid_list_golden():
    b = bytearray(IDENTIFY_DATA_SIZE)
    struct.pack_into("<5I", b, 0, 1, 2, 5, 0, 9)  # the 9 after the terminator is ignored
    assert decode_active_nsid_list(bytes(b)) == [1, 2, 5]


def test_active_nsid_list_full_and_round_trip():
    nsids = list(range(1, 1025))
    b = encode_active_nsid_list(nsids)
    assert len(b) == IDENTIFY_DATA_SIZE
    assert struct.unpack_from("<I", b, 4092)[0] == 1024
    assert decode_active_nsid_list(b) == nsids
    b = encode_active_nsid_list([3, 7])
    assert b[:8] == struct.pack("<II", 3, 7) and b[8:] == bytes(4088)


@pytest.mark.parametrize("bad", [[0], [2, 1], [1, 1], [0xFFFFFFFF], list(range(1, 1026))])
def test_active_nsid_list_encode_rejects(bad):
    with pytest.raises(LocalProtocolError):
        encode_active_nsid_list(bad)


def test_active_nsid_list_short():
    with pytest.raises(PeerProtocolError, match="Active Namespace ID list"):
        decode_active_nsid_list(bytes(64))


# --- CNS 03h ------------------------------------------------------------------------

UUID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")


def golden_descriptors() -> bytes:
    b = bytearray(IDENTIFY_DATA_SIZE)
    off = 0
    for nidt, nid in ((1, bytes.fromhex("0123456789abcdef")),
                      (2, bytes(range(16))),
                      (3, UUID.bytes),
                      (4, b"\x00")):
        struct.pack_into("<BBH", b, off, nidt, len(nid), 0)
        b[off + 4 : off + 4 + len(nid)] = nid
        off += 4 + len(nid)
    return bytes(b)


def test_ns_id_descriptors_golden():
    descs = decode_ns_id_descriptors(golden_descriptors())
    assert [d.nidt for d in descs] == [Nidt.EUI64, Nidt.NGUID, Nidt.UUID, Nidt.CSI]
    assert descs[0].nid.hex() == "0123456789abcdef"
    assert uuid.UUID(bytes=descs[2].nid) == UUID
    assert descs[3] == NsIdDescriptor(Nidt.CSI, b"\x00")
    assert encode_ns_id_descriptors(descs) == golden_descriptors()


def test_ns_id_descriptor_unknown_type_is_kept():
    b = bytearray(IDENTIFY_DATA_SIZE)
    b[0:7] = bytes([0x7A, 3, 0, 0, 0xAA, 0xBB, 0xCC])
    (d,) = decode_ns_id_descriptors(bytes(b))
    assert d == (0x7A, b"\xaa\xbb\xcc") and type(d.nidt) is int


def test_ns_id_descriptor_wrong_length_for_known_type():
    b = bytearray(IDENTIFY_DATA_SIZE)
    b[0:4] = bytes([3, 8, 0, 0])  # UUID with NIDL 8
    with pytest.raises(PeerProtocolError, match="NIDL 8"):
        decode_ns_id_descriptors(bytes(b))


def test_ns_id_descriptor_running_past_the_end():
    # Unknown-type descriptors of 4 + 255 bytes chained until the last one
    # would end beyond byte 4095.
    b = bytearray(IDENTIFY_DATA_SIZE)
    off = 0
    while off + 4 <= IDENTIFY_DATA_SIZE:
        b[off : off + 4] = bytes([0x99, 255, 0, 0])
        off += 259
    with pytest.raises(PeerProtocolError, match="runs past"):
        decode_ns_id_descriptors(bytes(b))


@pytest.mark.parametrize("descs", [[(Nidt.UUID, bytes(8))], [(0, b"x")], [(Nidt.NGUID, bytes(16))] * 300])
def test_ns_id_descriptor_encode_rejects(descs):
    with pytest.raises(LocalProtocolError):
        encode_ns_id_descriptors([NsIdDescriptor(*d) for d in descs])


def test_cns_values():
    assert (idf.CNS_NAMESPACE, idf.CNS_CONTROLLER, idf.CNS_ACTIVE_NSID_LIST,
            idf.CNS_NS_ID_DESCRIPTORS) == (0, 1, 2, 3)
    assert idf.CNS_CSI_CONTROLLER == 6 and idf.CNS_IO_COMMAND_SET == 0x1C


# --- hostile input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "decoder",
    [decode_identify_controller, decode_identify_namespace, decode_active_nsid_list,
     decode_ns_id_descriptors],
)
def test_fuzz_only_protocol_errors(decoder):
    rng = random.Random(0x1D)
    for _ in range(300):
        n = rng.choice([0, 3, 100, 4095, 4096, 4097, rng.randrange(5000)])
        data = rng.randbytes(n)
        try:
            decoder(data)
        except PeerProtocolError:
            pass
