"""nvmecontrol.wire.discovery: golden bytes, padding, the record cap,
round trips and hostile input."""

import random
import struct

import pytest

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.wire.discovery import (
    DISCOVERY_ENTRY_SIZE,
    DISCOVERY_HEADER_SIZE,
    MAX_DISCOVERY_RECORDS,
    AdrFam,
    DiscoveryHeader,
    DiscoveryLogEntry,
    RdmaCms,
    RdmaPrType,
    RdmaQpType,
    SecureChannel,
    SubType,
    TcpSecType,
    TrType,
    decode_discovery_entries,
    decode_discovery_entry,
    decode_discovery_header,
    decode_discovery_log,
    discovery_log_size,
    encode_discovery_entry,
    encode_discovery_log,
    rdma_tsas,
    tcp_tsas,
)

NQN = "nqn.2024-01.com.example:data.vol1"


def header(genctr, numrec, recfmt=0) -> bytes:
    b = bytearray(DISCOVERY_HEADER_SIZE)
    struct.pack_into("<QQH", b, 0, genctr, numrec, recfmt)
    return bytes(b)


def entry(trtype=3, adrfam=1, subtype=2, treq=0x04, portid=1, cntlid=0xFFFF, asqsz=32,
          eflags=0, trsvcid=b"4420", subnqn=NQN.encode(), traddr=b"10.0.0.118",
          tsas=b"\x00", pad=b"\x00") -> bytes:
    """An entry packed by hand at the spec offsets; ``pad`` fills TRSVCID/TRADDR."""
    b = bytearray(DISCOVERY_ENTRY_SIZE)
    b[0], b[1], b[2], b[3] = trtype, adrfam, subtype, treq
    struct.pack_into("<HHHH", b, 4, portid, cntlid, asqsz, eflags)
    b[32:64] = trsvcid.ljust(32, pad)
    b[256 : 256 + len(subnqn)] = subnqn
    b[512:768] = traddr.ljust(256, pad)
    b[768 : 768 + len(tsas)] = tsas
    return bytes(b)


def test_header_golden():
    assert decode_discovery_header(header(7, 2)) == DiscoveryHeader(7, 2, 0)
    big = header(2**64 - 1, 0, 0xBEEF)
    assert decode_discovery_header(big) == (2**64 - 1, 0, 0xBEEF)


def test_entry_golden_tcp_with_space_padding():
    # SPDK pads TRADDR/TRSVCID with spaces; they must not reach the user.
    e = decode_discovery_entry(entry(pad=b" ", eflags=0x3, tsas=bytes([2])))
    assert e.trtype is TrType.TCP and e.adrfam is AdrFam.IPV4 and e.subtype is SubType.NVME
    assert (e.treq, e.portid, e.cntlid, e.asqsz, e.eflags) == (4, 1, 0xFFFF, 32, 3)
    assert e.trsvcid == "4420" and e.traddr == "10.0.0.118" and e.subnqn == NQN
    assert e.sectype is TcpSecType.TLS13
    assert e.secure_channel is SecureChannel.NOT_SPECIFIED
    assert len(e.tsas) == 256


def test_entry_golden_rdma_ipv6():
    tsas = struct.pack("<BBB5xH", 1, 4, 1, 0x1234)
    e = decode_discovery_entry(entry(trtype=1, adrfam=2, subtype=1, treq=0x01,
                                     traddr=b"fe80::1", trsvcid=b"4420", tsas=tsas))
    assert e.trtype is TrType.RDMA and e.adrfam is AdrFam.IPV6
    assert e.subtype is SubType.REFERRAL and e.subtype is SubType.DISCOVERY
    assert e.secure_channel is SecureChannel.REQUIRED
    assert (e.rdma_qptype, e.rdma_prtype, e.rdma_cms, e.rdma_pkey) == (
        RdmaQpType.CONNECTED, RdmaPrType.ROCEV2, RdmaCms.RDMA_CM, 0x1234)
    assert rdma_tsas(1, 4, 1, 0x1234) == e.tsas


def test_unknown_enum_values_stay_integers():
    e = decode_discovery_entry(entry(trtype=9, adrfam=0, subtype=7, tsas=b"\x09"))
    assert (e.trtype, e.adrfam, e.subtype) == (9, 0, 7)
    assert type(e.trtype) is int and type(e.adrfam) is int and type(e.subtype) is int
    assert e.sectype == 9 and type(e.sectype) is int


def test_whole_log_golden_and_round_trip():
    page = header(4, 2) + entry() + entry(subtype=3, trsvcid=b"8009",
                                          subnqn=b"nqn.2014-08.org.nvmexpress.discovery")
    h, entries = decode_discovery_log(page)
    assert h == (4, 2, 0)
    assert [e.subtype for e in entries] == [SubType.NVME, SubType.CURRENT_DISCOVERY]
    assert entries[1].trsvcid == "8009"
    assert encode_discovery_log(h.genctr, entries) == page
    assert len(page) == discovery_log_size(2)


def test_space_padded_log_reencodes_nul_padded_with_same_values():
    page = header(1, 1) + entry(pad=b" ")
    _, entries = decode_discovery_log(page)
    again = encode_discovery_log(1, entries)
    assert again != page  # padding normalised to NUL ...
    assert again[DISCOVERY_HEADER_SIZE + 512 : DISCOVERY_HEADER_SIZE + 523] == b"10.0.0.118\x00"
    assert decode_discovery_log(again)[1] == entries  # ... values unchanged


def test_encode_from_scratch_puts_fields_at_offsets():
    e = DiscoveryLogEntry(trtype=TrType.TCP, adrfam=AdrFam.IPV6, subtype=SubType.NVME, treq=0x6,
                          portid=0x0102, cntlid=0xFFFE, asqsz=128, eflags=0x4, trsvcid="4420",
                          subnqn=NQN, traddr="::1", tsas=tcp_tsas(TcpSecType.TLS12))
    b = encode_discovery_entry(e)
    assert len(b) == DISCOVERY_ENTRY_SIZE
    assert b[:4] == bytes([3, 2, 2, 6])
    assert struct.unpack_from("<HHHH", b, 4) == (0x0102, 0xFFFE, 128, 4)
    assert b[12:32] == bytes(20)
    assert b[32:37] == b"4420\x00"
    assert b[256 : 256 + len(NQN) + 1] == NQN.encode() + b"\x00"
    assert b[512:516] == b"::1\x00"
    assert b[768] == 1 and b[769:] == bytes(255)
    assert decode_discovery_entry(b) == e


def test_empty_log():
    page = encode_discovery_log(0, [])
    assert page == header(0, 0)
    assert decode_discovery_log(page) == (DiscoveryHeader(0, 0, 0), [])


def test_record_cap_against_hostile_numrec():
    # 2^64-1 records must be refused at once, before any allocation.
    with pytest.raises(PeerProtocolError, match=str(2**64 - 1)):
        decode_discovery_log(header(1, 2**64 - 1))
    with pytest.raises(PeerProtocolError, match="1025"):
        decode_discovery_entries(bytes(1025 * 1024), 1025)
    assert MAX_DISCOVERY_RECORDS == 1024
    assert len(decode_discovery_entries(bytes(1024 * 1024), 1024)) == 1024


def test_numrec_larger_than_the_data():
    with pytest.raises(PeerProtocolError, match="3 records"):
        decode_discovery_log(header(1, 3) + entry() + entry())


def test_unknown_record_format_is_refused():
    with pytest.raises(PeerProtocolError, match="record format 1"):
        decode_discovery_log(header(1, 0, recfmt=1))


@pytest.mark.parametrize("n", [0, 17, 1023])
def test_short_header(n):
    with pytest.raises(PeerProtocolError, match="header"):
        decode_discovery_header(bytes(n))


def test_short_entry():
    with pytest.raises(PeerProtocolError, match="entry at byte 0"):
        decode_discovery_entry(bytes(1000))


def test_entries_accept_memoryview_and_trailing_bytes():
    data = memoryview(entry() + b"junk")
    (e,) = decode_discovery_entries(data, 1)
    assert e.traddr == "10.0.0.118"


@pytest.mark.parametrize(
    "kwargs",
    [{"traddr": "x" * 257}, {"trsvcid": "1" * 33}, {"subnqn": "n" * 256}, {"portid": 1 << 16},
     {"trtype": 256}, {"tsas": bytes(257)}, {"traddr": "caf\u00e9"}],
)
def test_encode_entry_rejects(kwargs):
    with pytest.raises(LocalProtocolError):
        encode_discovery_entry(DiscoveryLogEntry(**kwargs))


def test_encode_log_refuses_more_than_the_cap():
    with pytest.raises(LocalProtocolError):
        encode_discovery_log(0, [DiscoveryLogEntry()] * 1025)


def test_fuzz_only_protocol_errors():
    rng = random.Random(0xD15C)
    for _ in range(300):
        n = rng.choice([0, 18, 1024, 2048, 3072, rng.randrange(6000)])
        data = bytearray(rng.randbytes(n))
        if n >= 18 and rng.random() < 0.7:
            struct.pack_into("<QH", data, 8, rng.randrange(4), rng.choice([0, 0, 1]))
        try:
            decode_discovery_log(bytes(data))
        except PeerProtocolError:
            pass


def test_the_discovery_log_lid_is_the_log_pages_one():
    from nvmecontrol.wire.discovery import LID_DISCOVERY
    from nvmecontrol.wire.logpages import LogPage

    assert LID_DISCOVERY == LogPage.DISCOVERY == 0x70
