"""NVMe/TCP PDUs: golden bytes, round trips, stream decoding, header validation.

Golden bytes are written from the NVMe/TCP 1.0 layouts (section 3.6, and
``include/linux/nvme-tcp.h``) with struct.pack at explicit offsets or as hex
literals; digests come from a bit-by-bit CRC32C written here, never from the
encoder under test.

    CH     0 type, 1 flags, 2 HLEN, 3 PDO, 4-7 PLEN (LE)
    IC     8 PFV (u16), 10 HPDA/CPDA, 11 DGST, 12 MAXR2T/MAXH2CDATA (u32), 112 reserved
    Term   8 FES (u16), 10 FEI (u32), 14-23 reserved, then up to 128 bytes of data
    Data   8 CCCID, 10 TTAG, 12 DATAO/R2TO, 16 DATAL/R2TL, 20-23 reserved
"""

from __future__ import annotations

import random
import struct

import pytest

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.wire import crc
from nvmecontrol.wire import pdu as P

# --- an independent CRC32C and helpers -------------------------------------------


def ref_crc32c(data: bytes) -> int:
    """Bitwise CRC32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def dg(data: bytes) -> bytes:
    """The 4-byte digest as stored on the wire: little-endian."""
    return struct.pack("<I", ref_crc32c(data))


def ch(ptype: int, flags: int, hlen: int, pdo: int, plen: int) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


def data_psh(cccid: int, ttag: int, off: int, length: int) -> bytes:
    return struct.pack("<HHII", cccid, ttag, off, length) + bytes(4)


SQE = bytes(range(0x40, 0x80))  # 64 recognisable bytes
CQE = bytes(range(0xA0, 0xB0))  # 16


def decoder(role, *, connected=True, hdgst=False, ddgst=False, pda=0, max_data=1 << 20,
            buffer_size=1 << 16) -> P.PduDecoder:
    d = P.PduDecoder(role, buffer_size=buffer_size, max_data=max_data)
    d.connected, d.hdgst, d.ddgst, d.pda = connected, hdgst, ddgst, pda
    return d


def frozen(pdu):
    """A PDU with memoryview fields copied, safe to keep across decoder fills."""
    return pdu._replace(**{k: bytes(v) for k, v in pdu._asdict().items()
                           if isinstance(v, memoryview)})


def decode_all(d: P.PduDecoder, data: bytes) -> list:
    d.feed(data)
    return [frozen(p) for p in d.decode()]


# --- CRC32C ------------------------------------------------------------------------

def test_crc32c_check_value():
    # The CRC catalogue's check value for CRC-32C ("CRC-32/ISCSI").
    assert ref_crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(b"123456789") == 0xE3069283


def test_digest_is_stored_little_endian():
    assert crc.digest(b"123456789") == bytes.fromhex("839206e3")
    assert crc.check(b"123456789", bytes.fromhex("839206e3"))
    assert not crc.check(b"123456789", bytes.fromhex("e3069283"))


def test_digest_accepts_memoryview():
    buf = bytearray(b"xx123456789yy")
    assert crc.digest(memoryview(buf)[2:11]) == dg(b"123456789")


# --- golden bytes: encoding ----------------------------------------------------------

ICREQ_GOLDEN = bytes.fromhex(
    "00 00 80 00 80 00 00 00"  # CH: ICReq, HLEN 128, PDO 0, PLEN 128
    "00 00 02 03 0f 00 00 00"  # PFV 0, HPDA 2, DGST hdgst|ddgst, MAXR2T 15
) + bytes(112)

ICRESP_GOLDEN = bytes.fromhex(
    "01 00 80 00 80 00 00 00"
    "00 00 07 01 00 00 40 00"  # PFV 0, CPDA 7, DGST hdgst, MAXH2CDATA 0x400000 (4 MiB)
) + bytes(112)


def test_icreq_golden():
    p = P.ICReq(hpda=2, dgst=3, maxr2t=15)
    assert P.encode_icreq(p) == ICREQ_GOLDEN
    assert len(ICREQ_GOLDEN) == 128
    d = decoder(P.ROLE_CONTROLLER, connected=False)
    assert decode_all(d, ICREQ_GOLDEN) == [p]


def test_icresp_golden():
    p = P.ICResp(cpda=7, dgst=1, maxh2cdata=0x400000)
    assert P.encode_icresp(p) == ICRESP_GOLDEN
    d = decoder(P.ROLE_HOST, connected=False)
    assert decode_all(d, ICRESP_GOLDEN) == [p]


@pytest.mark.parametrize("h2c", [True, False])
def test_termreq_golden(h2c):
    ptype = 0x02 if h2c else 0x03
    payload = bytes(range(40))
    golden = ch(ptype, 0, 24, 0, 24 + 40) + struct.pack("<HI", 0x04, 0x0C) + bytes(10) + payload
    assert golden[10:14] == bytes.fromhex("0c000000")  # FEI at byte 10
    p = P.TermReq(fes=4, fei=12, data=payload, h2c=h2c)
    assert P.encode_termreq(p) == golden
    role = P.ROLE_CONTROLLER if h2c else P.ROLE_HOST
    assert decode_all(decoder(role), golden) == [p]


def test_termreq_data_is_capped_at_128_bytes():
    out = P.encode_termreq(P.TermReq(1, 2, bytes(300)))
    assert len(out) == 24 + 128
    assert struct.unpack_from("<I", out, 4)[0] == 152


def test_capsule_cmd_golden_no_data():
    golden = ch(0x04, 0, 72, 0, 72) + SQE
    assert P.join(P.encode_capsule_cmd(SQE)) == golden
    assert decode_all(decoder(P.ROLE_CONTROLLER), golden) == [P.CapsuleCmd(SQE, None)]


def test_capsule_cmd_golden_hdgst_no_data():
    hdr = ch(0x04, 0x01, 72, 0, 76) + SQE
    golden = hdr + dg(hdr)
    assert P.join(P.encode_capsule_cmd(SQE, hdgst=True, ddgst=True)) == golden
    d = decoder(P.ROLE_CONTROLLER, hdgst=True, ddgst=True)
    assert decode_all(d, golden) == [P.CapsuleCmd(SQE, None)]


def test_capsule_cmd_golden_in_capsule_data():
    data = bytes(range(100))
    golden = ch(0x04, 0, 72, 72, 172) + SQE + data
    assert P.join(P.encode_capsule_cmd(SQE, data)) == golden
    assert decode_all(decoder(P.ROLE_CONTROLLER), golden) == [P.CapsuleCmd(SQE, data)]


def test_capsule_cmd_golden_both_digests():
    data = b"in-capsule data!" * 4
    hdr = ch(0x04, 0x03, 72, 76, 76 + 64 + 4) + SQE
    golden = hdr + dg(hdr) + data + dg(data)
    assert P.join(P.encode_capsule_cmd(SQE, data, hdgst=True, ddgst=True)) == golden
    d = decoder(P.ROLE_CONTROLLER, hdgst=True, ddgst=True)
    assert decode_all(d, golden) == [P.CapsuleCmd(SQE, data, False)]


def test_capsule_cmd_golden_pda_padding():
    # CPDA 3: data aligned to (3+1)*4 = 16 bytes; the header with its digest
    # ends at 76, so PDO is 80 with 4 bytes of zero padding.
    data = bytes(range(32))
    hdr = ch(0x04, 0x03, 72, 80, 80 + 32 + 4) + SQE
    golden = hdr + dg(hdr) + bytes(4) + data + dg(data)
    assert P.join(P.encode_capsule_cmd(SQE, data, hdgst=True, ddgst=True, pda=3)) == golden
    d = decoder(P.ROLE_CONTROLLER, hdgst=True, ddgst=True, pda=3)
    assert decode_all(d, golden) == [P.CapsuleCmd(SQE, data)]


def test_capsule_cmd_golden_pda_largest():
    # PDA 31: 128-byte alignment; header ends at 72 → PDO 128.
    data = b"\x5a" * 8
    golden = ch(0x04, 0, 72, 128, 136) + SQE + bytes(56) + data
    assert P.join(P.encode_capsule_cmd(SQE, data, pda=31)) == golden
    assert decode_all(decoder(P.ROLE_CONTROLLER, pda=31), golden) == [P.CapsuleCmd(SQE, data)]


def test_capsule_resp_golden():
    golden = ch(0x05, 0, 24, 0, 24) + CQE
    assert P.join(P.encode_capsule_resp(CQE)) == golden
    assert decode_all(decoder(P.ROLE_HOST), golden) == [P.CapsuleResp(CQE)]


def test_capsule_resp_golden_hdgst():
    hdr = ch(0x05, 0x01, 24, 0, 28) + CQE
    golden = hdr + dg(hdr)
    assert P.join(P.encode_capsule_resp(CQE, hdgst=True)) == golden
    assert decode_all(decoder(P.ROLE_HOST, hdgst=True), golden) == [P.CapsuleResp(CQE)]


def test_h2c_data_golden():
    data = bytes(range(48))
    golden = ch(0x06, 0x04, 24, 24, 72) + data_psh(0x0005, 0x0007, 0x1000, 48) + data
    p = P.H2CData(cccid=5, ttag=7, datao=0x1000, data=data, last=True)
    assert P.join(P.encode_h2c_data(p)) == golden
    assert decode_all(decoder(P.ROLE_CONTROLLER), golden) == [p]


def test_h2c_data_golden_not_last_with_digests():
    data = bytes(range(16))
    hdr = ch(0x06, 0x03, 24, 28, 28 + 16 + 4) + data_psh(0x0102, 0xBEEF, 0, 16)
    golden = hdr + dg(hdr) + data + dg(data)
    p = P.H2CData(cccid=0x0102, ttag=0xBEEF, datao=0, data=data, last=False)
    assert P.join(P.encode_h2c_data(p, hdgst=True, ddgst=True)) == golden
    d = decoder(P.ROLE_CONTROLLER, hdgst=True, ddgst=True)
    assert decode_all(d, golden) == [p]


@pytest.mark.parametrize("last,success,flags", [
    (False, False, 0x00),
    (True, False, 0x04),
    (True, True, 0x0C),
])
def test_c2h_data_golden_flags(last, success, flags):
    data = b"READDATA" * 3
    golden = ch(0x07, flags, 24, 24, 48) + data_psh(0x0009, 0, 0x200, 24) + data
    p = P.C2HData(cccid=9, datao=0x200, data=data, last=last, success=success)
    assert P.join(P.encode_c2h_data(p)) == golden
    assert decode_all(decoder(P.ROLE_HOST), golden) == [p]


def test_c2h_data_golden_digests_and_hpda():
    # HPDA 1: 8-byte alignment; header+digest end at 28 → PDO 32.
    data = bytes(range(20))
    hdr = ch(0x07, 0x0F, 24, 32, 32 + 20 + 4) + data_psh(3, 0, 0, 20)
    golden = hdr + dg(hdr) + bytes(4) + data + dg(data)
    p = P.C2HData(3, 0, data, last=True, success=True)
    assert P.join(P.encode_c2h_data(p, hdgst=True, ddgst=True, pda=1)) == golden
    d = decoder(P.ROLE_HOST, hdgst=True, ddgst=True, pda=1)
    assert decode_all(d, golden) == [p]


def test_r2t_golden():
    golden = ch(0x09, 0, 24, 0, 24) + data_psh(0x0011, 0x0022, 0x3000, 0x8000)
    p = P.R2T(cccid=0x11, ttag=0x22, r2to=0x3000, r2tl=0x8000)
    assert P.join(P.encode_r2t(p)) == golden
    assert decode_all(decoder(P.ROLE_HOST), golden) == [p]


def test_r2t_golden_hdgst():
    hdr = ch(0x09, 0x01, 24, 0, 28) + data_psh(1, 2, 0, 4096)
    golden = hdr + dg(hdr)
    assert P.join(P.encode_r2t(P.R2T(1, 2, 0, 4096), hdgst=True)) == golden
    assert decode_all(decoder(P.ROLE_HOST, hdgst=True, ddgst=True), golden) == [P.R2T(1, 2, 0, 4096)]


def test_encoder_does_not_copy_payload():
    payload = bytearray(b"z" * 4096)
    out = P.encode_c2h_data(P.C2HData(1, 0, memoryview(payload)))
    assert any(b.obj is payload for b in out if isinstance(b, memoryview))


# --- round trips -----------------------------------------------------------------------

ROUND_TRIPS = [
    # (description, role receiving, connected, pdu)
    ("icreq", P.ROLE_CONTROLLER, False, P.ICReq(31, 3, 0xFFFFFFFF)),
    ("icresp", P.ROLE_HOST, False, P.ICResp(0, 2, 4096)),
    ("h2cterm", P.ROLE_CONTROLLER, True, P.TermReq(2, 0, b"", True)),
    ("c2hterm", P.ROLE_HOST, True, P.TermReq(6, 8, bytes(128), False)),
]


@pytest.mark.parametrize("name,role,connected,pdu", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_roundtrip_ic_and_term(name, role, connected, pdu):
    enc = {P.ICReq: P.encode_icreq, P.ICResp: P.encode_icresp, P.TermReq: P.encode_termreq}
    raw = enc[type(pdu)](pdu)
    assert decode_all(decoder(role, connected=connected), raw) == [pdu]


DIGESTS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("hdgst,ddgst", DIGESTS)
@pytest.mark.parametrize("pda", [0, 1, 7, 31])
def test_roundtrip_data_pdus(hdgst, ddgst, pda):
    rng = random.Random(hdgst * 2 + ddgst + pda * 4)
    data = rng.randbytes(777)
    to_ctrl = [
        (P.CapsuleCmd(SQE, None), P.encode_capsule_cmd(SQE, None, hdgst=hdgst, ddgst=ddgst, pda=pda)),
        (P.CapsuleCmd(SQE, data), P.encode_capsule_cmd(SQE, data, hdgst=hdgst, ddgst=ddgst, pda=pda)),
        (P.H2CData(7, 8, 9, data, False), P.encode_h2c_data(P.H2CData(7, 8, 9, data, False),
                                                           hdgst=hdgst, ddgst=ddgst, pda=pda)),
    ]
    to_host = [
        (P.CapsuleResp(CQE), P.encode_capsule_resp(CQE, hdgst=hdgst)),
        (P.C2HData(1, 2, data, True, True), P.encode_c2h_data(P.C2HData(1, 2, data, True, True),
                                                              hdgst=hdgst, ddgst=ddgst, pda=pda)),
        (P.R2T(1, 2, 3, 4), P.encode_r2t(P.R2T(1, 2, 3, 4), hdgst=hdgst)),
    ]
    for role, cases in ((P.ROLE_CONTROLLER, to_ctrl), (P.ROLE_HOST, to_host)):
        for pdu, bufs in cases:
            d = decoder(role, hdgst=hdgst, ddgst=ddgst, pda=pda)
            assert decode_all(d, P.join(bufs)) == [pdu]
            assert d.pending == 0


# --- stream decoding --------------------------------------------------------------------

def host_stream(hdgst=False, ddgst=False):
    """Controller-to-host PDUs and their expected decodings."""
    pdus = [
        P.CapsuleResp(CQE),
        P.C2HData(1, 0, bytes(range(256)) * 4, False, False),
        P.C2HData(1, 1024, b"tail", True, True),
        P.R2T(2, 5, 0, 65536),
        P.CapsuleResp(bytes(16)),
        P.TermReq(1, 3, b"abc", h2c=False),
    ]
    enc = {P.CapsuleResp: lambda p: P.encode_capsule_resp(p.cqe, hdgst=hdgst),
           P.C2HData: lambda p: P.encode_c2h_data(p, hdgst=hdgst, ddgst=ddgst),
           P.R2T: lambda p: P.encode_r2t(p, hdgst=hdgst),
           P.TermReq: lambda p: [P.encode_termreq(p)]}
    return pdus, b"".join(P.join(enc[type(p)](p)) for p in pdus)


def ctrl_stream(hdgst=False, ddgst=False):
    pdus = [
        P.CapsuleCmd(SQE, None),
        P.CapsuleCmd(SQE, b"D" * 600),
        P.H2CData(3, 4, 0, bytes(range(200)), False),
        P.H2CData(3, 4, 200, b"end", True),
        P.TermReq(2, 0, b"", h2c=True),
    ]
    enc = {P.CapsuleCmd: lambda p: P.encode_capsule_cmd(p.sqe, p.data, hdgst=hdgst, ddgst=ddgst),
           P.H2CData: lambda p: P.encode_h2c_data(p, hdgst=hdgst, ddgst=ddgst),
           P.TermReq: lambda p: [P.encode_termreq(p)]}
    return pdus, b"".join(P.join(enc[type(p)](p)) for p in pdus)


STREAMS = [(P.ROLE_HOST, host_stream), (P.ROLE_CONTROLLER, ctrl_stream)]


def feed_chunks(d: P.PduDecoder, data: bytes, sizes) -> list:
    out = []
    pos = 0
    for n in sizes:
        d.feed(data[pos:pos + n])
        pos += n
        out.extend(frozen(p) for p in d.decode())
    assert pos >= len(data)
    return out


@pytest.mark.parametrize("role,stream", STREAMS)
@pytest.mark.parametrize("hdgst,ddgst", DIGESTS)
def test_stream_whole(role, stream, hdgst, ddgst):
    pdus, raw = stream(hdgst, ddgst)
    d = decoder(role, hdgst=hdgst, ddgst=ddgst)
    assert decode_all(d, raw) == pdus
    assert d.pending == 0


@pytest.mark.parametrize("role,stream", STREAMS)
@pytest.mark.parametrize("hdgst,ddgst", [(False, False), (True, True)])
def test_stream_byte_by_byte(role, stream, hdgst, ddgst):
    pdus, raw = stream(hdgst, ddgst)
    d = decoder(role, hdgst=hdgst, ddgst=ddgst, buffer_size=256)
    assert feed_chunks(d, raw, [1] * len(raw)) == pdus
    assert d.pending == 0


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("role,stream", STREAMS)
def test_stream_random_chunks(seed, role, stream):
    rng = random.Random(seed)
    hdgst, ddgst = rng.choice(DIGESTS)
    pdus, raw = stream(hdgst, ddgst)
    sizes = []
    while sum(sizes) < len(raw):
        sizes.append(rng.choice([1, 2, 3, 7, 8, 9, 23, 24, 25, 100, 1000, 5000]))
    d = decoder(role, hdgst=hdgst, ddgst=ddgst, buffer_size=rng.choice([16, 64, 1024, 65536]))
    assert feed_chunks(d, raw, sizes) == pdus


@pytest.mark.parametrize("role,stream", STREAMS)
def test_stream_trailing_bytes_of_next_pdu(role, stream):
    pdus, raw = stream()
    first_len = len(P.join(P.encode_capsule_resp(CQE))) if role == P.ROLE_HOST else 72
    for extra in (1, 7, 8, 9, 30):
        d = decoder(role)
        d.feed(raw[:first_len + extra])
        got = [frozen(p) for p in d.decode()]
        assert got == pdus[:1]
        assert d.pending == extra  # the partial next PDU stays buffered
        d.feed(raw[first_len + extra:])
        assert [frozen(p) for p in d.decode()] == pdus[1:]
        assert d.pending == 0


def test_incomplete_pdu_yields_nothing():
    raw = P.join(P.encode_capsule_resp(CQE))
    d = decoder(P.ROLE_HOST)
    for i in range(len(raw) - 1):
        d.feed(raw[i:i + 1])
        assert d.decode() == []
    d.feed(raw[-1:])
    assert [frozen(p) for p in d.decode()] == [P.CapsuleResp(CQE)]


def test_decoder_stops_after_ic_pdu():
    # What follows an IC PDU waits until the caller applies the negotiated
    # parameters: here a header-digested CapsuleResp.
    resp = ch(0x05, 0x01, 24, 0, 28) + CQE
    raw = ICRESP_GOLDEN + resp + dg(resp)
    d = decoder(P.ROLE_HOST, connected=False)
    d.feed(raw)
    assert [frozen(p) for p in d.decode()] == [P.ICResp(7, 1, 0x400000)]
    assert d.pending == 28
    d.connected, d.hdgst = True, True
    assert [frozen(p) for p in d.decode()] == [P.CapsuleResp(CQE)]


def test_buffer_grows_for_large_pdu():
    data = random.Random(5).randbytes(300_000)
    raw = P.join(P.encode_c2h_data(P.C2HData(4, 0, data), ddgst=True))
    d = decoder(P.ROLE_HOST, ddgst=True, buffer_size=64)
    got = feed_chunks(d, raw, [4096] * (len(raw) // 4096 + 1))
    assert got == [P.C2HData(4, 0, data)]


def test_buffer_grows_via_get_buffer_api():
    """The recv_into path: get_buffer() must offer room for the whole PDU eventually."""
    data = bytes(range(256)) * 400
    raw = P.join(P.encode_h2c_data(P.H2CData(1, 2, 0, data)))
    d = decoder(P.ROLE_CONTROLLER, buffer_size=100)
    pos = 0
    out = []
    while pos < len(raw):
        buf = d.get_buffer(10)
        assert len(buf) >= 10
        n = min(len(buf), len(raw) - pos, 7000)
        buf[:n] = raw[pos:pos + n]
        d.buffer_updated(n)
        pos += n
        out.extend(frozen(p) for p in d.decode())
    assert out == [P.H2CData(1, 2, 0, data)]


def test_buffer_compaction_keeps_partial_pdu():
    # A small buffer, many PDUs: the unconsumed tail must move to the front intact.
    pdus = [P.CapsuleResp(bytes([i]) * 16) for i in range(50)]
    raw = b"".join(P.join(P.encode_capsule_resp(p.cqe)) for p in pdus)
    d = decoder(P.ROLE_HOST, buffer_size=40)
    assert feed_chunks(d, raw, [13] * (len(raw) // 13 + 1)) == pdus


def test_data_views_are_zero_copy_slices():
    data = b"0123456789abcdef"
    d = decoder(P.ROLE_HOST)
    d.feed(P.join(P.encode_c2h_data(P.C2HData(1, 0, data))))
    (pdu,) = d.decode()
    assert isinstance(pdu.data, memoryview)
    assert pdu.data == data


# --- data digest errors are reported, not raised --------------------------------------

def test_data_digest_mismatch_is_flagged():
    data = b"payload!" * 8
    raw = bytearray(P.join(P.encode_c2h_data(P.C2HData(1, 0, data), ddgst=True)))
    raw[-1] ^= 0xFF
    d = decoder(P.ROLE_HOST, ddgst=True)
    assert decode_all(d, bytes(raw)) == [P.C2HData(1, 0, data, digest_error=True)]


def test_data_digest_mismatch_capsule_and_h2c():
    data = b"x" * 40
    raw = bytearray(P.join(P.encode_capsule_cmd(SQE, data, ddgst=True)))
    raw[80] ^= 1  # corrupt the data itself
    got = decode_all(decoder(P.ROLE_CONTROLLER, ddgst=True), bytes(raw))
    assert got[0].digest_error is True
    raw = bytearray(P.join(P.encode_h2c_data(P.H2CData(1, 1, 0, data), ddgst=True)))
    raw[-2] ^= 1
    got = decode_all(decoder(P.ROLE_CONTROLLER, ddgst=True), bytes(raw))
    assert got[0].digest_error is True


# --- header validation: one test per rule ----------------------------------------------

def check(chdr: bytes, role=P.ROLE_HOST, *, connected=True, hdgst=False, ddgst=False, pda=0,
          max_data=1 << 20):
    return P.check_header(chdr, role=role, connected=connected, hdgst=hdgst, ddgst=ddgst,
                          pda=pda, max_data=max_data)


def fails(fes: int, fei: int, chdr: bytes, **kw) -> PeerProtocolError:
    with pytest.raises(PeerProtocolError) as ei:
        check(chdr, **kw)
    assert (ei.value.fes, ei.value.fei) == (fes, fei), str(ei.value)
    return ei.value


def decode_fails(fes: int, fei: int, raw: bytes, role=P.ROLE_HOST, **kw) -> PeerProtocolError:
    d = decoder(role, **kw)
    d.feed(raw)
    with pytest.raises(PeerProtocolError) as ei:
        d.decode()
    assert (ei.value.fes, ei.value.fei) == (fes, fei), str(ei.value)
    return ei.value


def test_valid_headers_pass():
    assert check(ch(0x05, 0, 24, 0, 24)).data_len == 0
    info = check(ch(0x07, 0x0C, 24, 24, 124))
    assert (info.ptype, info.pdo, info.plen, info.data_len) == (P.PduType.C2HData, 24, 124, 100)
    info = check(ch(0x07, 0x07, 24, 28, 132), hdgst=True, ddgst=True)
    assert info.data_len == 100
    assert check(ch(0x03, 0, 24, 0, 30), connected=False).data_len == 6  # TermReq before IC
    assert check(ch(0x02, 0, 24, 0, 24), P.ROLE_CONTROLLER, connected=False).data_len == 0
    assert check(ch(0x01, 0, 128, 0, 128), connected=False).plen == 128


@pytest.mark.parametrize("ptype", [0x08, 0x0A, 0x0B, 0x7F, 0xFF])
@pytest.mark.parametrize("role", [P.ROLE_HOST, P.ROLE_CONTROLLER])
def test_unknown_type(ptype, role):
    fails(1, 0, ch(ptype, 0, 24, 0, 24), role=role)


@pytest.mark.parametrize("ptype", [0x00, 0x02, 0x04, 0x06])
def test_type_not_for_host(ptype):
    fails(1, 0, ch(ptype, 0, 24, 0, 24), role=P.ROLE_HOST)


@pytest.mark.parametrize("ptype", [0x01, 0x03, 0x05, 0x07, 0x09])
def test_type_not_for_controller(ptype):
    fails(1, 0, ch(ptype, 0, 24, 0, 24), role=P.ROLE_CONTROLLER)


@pytest.mark.parametrize("role,hdr", [
    (P.ROLE_HOST, ch(0x05, 0, 24, 0, 24)),
    (P.ROLE_HOST, ch(0x07, 0x04, 24, 24, 28)),
    (P.ROLE_HOST, ch(0x09, 0, 24, 0, 24)),
    (P.ROLE_CONTROLLER, ch(0x04, 0, 72, 0, 72)),
    (P.ROLE_CONTROLLER, ch(0x06, 0x04, 24, 24, 28)),
])
def test_non_ic_before_ic_is_sequence_error(role, hdr):
    fails(2, 0, hdr, role=role, connected=False)


@pytest.mark.parametrize("role,hdr", [
    (P.ROLE_HOST, ch(0x01, 0, 128, 0, 128)),
    (P.ROLE_CONTROLLER, ch(0x00, 0, 128, 0, 128)),
])
def test_ic_after_ic_is_sequence_error(role, hdr):
    fails(2, 0, hdr, role=role, connected=True)


@pytest.mark.parametrize("role,hdr,kw", [
    (P.ROLE_HOST, ch(0x05, 0x04, 24, 0, 24), {}),  # LAST_PDU on CapsuleResp
    (P.ROLE_HOST, ch(0x09, 0x02, 24, 0, 24), {"ddgst": True}),  # DDGST on R2T
    (P.ROLE_HOST, ch(0x01, 0x01, 128, 0, 128), {"connected": False}),  # flags on ICResp
    (P.ROLE_HOST, ch(0x07, 0x14, 24, 24, 28), {}),  # reserved bit 4
    (P.ROLE_CONTROLLER, ch(0x04, 0x04, 72, 0, 72), {}),  # LAST_PDU on CapsuleCmd
    (P.ROLE_CONTROLLER, ch(0x06, 0x0C, 24, 24, 28), {}),  # SUCCESS on H2CData
    (P.ROLE_CONTROLLER, ch(0x02, 0x80, 24, 0, 24), {}),  # flags on TermReq
])
def test_flags_that_mean_nothing_for_the_type_are_ignored(role, hdr, kw):
    """As nvmet and the Linux host: reserved flag bits are not an error, and
    they do not reach what reads the PDU."""
    info = check(hdr, role=role, **kw)
    meaningful = {0x07: 0x0C, 0x06: 0x04}.get(hdr[0], 0)
    assert info.flags == hdr[1] & meaningful


@pytest.mark.parametrize("role,hdr,kw", [
    # DDGST not negotiated on in-capsule data (no DATAL to tell the digest from data)
    (P.ROLE_CONTROLLER, ch(0x04, 0x02, 72, 72, 80), {}),
    (P.ROLE_HOST, ch(0x07, 0x08, 24, 24, 28), {}),  # SUCCESS without LAST_PDU
])
def test_bad_flags(role, hdr, kw):
    """Flags that change where the next PDU starts, or how a command completes.
    (Digest flags without negotiated digests are ignored where nvmet and the
    Linux host ignore them: tests/wire/test_host_liberal.py,
    tests/wire/test_controller_liberal.py.)"""
    fails(1, 1, hdr, role=role, **kw)


def test_missing_hdgst_flag():
    fails(1, 1, ch(0x05, 0, 24, 0, 28), hdgst=True)
    fails(1, 1, ch(0x04, 0, 72, 0, 76), role=P.ROLE_CONTROLLER, hdgst=True)


def test_extra_hdgst_flag():
    # The flag alone is ignored; the 4 bytes of a digest nobody negotiated are not.
    assert check(ch(0x04, 0x01, 72, 0, 72), role=P.ROLE_CONTROLLER).flags == 0
    fails(1, 4, ch(0x04, 0x01, 72, 0, 76), role=P.ROLE_CONTROLLER, hdgst=False)
    # TermReq and IC PDUs never carry digests, negotiated or not: the flag
    # means nothing there, but a digest after an ICResp breaks its PLEN.
    assert check(ch(0x03, 0x01, 24, 0, 28), hdgst=True).data_len == 4
    fails(1, 4, ch(0x01, 0x01, 128, 0, 132), connected=False)


def test_missing_ddgst_flag_on_data():
    fails(1, 1, ch(0x07, 0x04, 24, 24, 124), ddgst=True)


def test_ddgst_flag_without_data():
    # The flag alone is ignored; a digest of nothing after the header is not.
    info = check(ch(0x04, 0x02, 72, 0, 72), role=P.ROLE_CONTROLLER, ddgst=True)
    assert (info.flags, info.pdo, info.data_len) == (0, 0, 0)
    fails(1, 4, ch(0x04, 0x02, 72, 0, 76), role=P.ROLE_CONTROLLER, ddgst=True)


@pytest.mark.parametrize("pdo", [72, 76, 0xFF])
def test_a_capsule_without_data_may_have_any_pdo(pdo):
    """A host that sets PDO (72 here) on a capsule with no in-capsule data:
    nvmet accepts it (it reads in-capsule data by the SGL); so do we."""
    info = check(ch(0x04, 0, 72, pdo, 72), role=P.ROLE_CONTROLLER)
    assert (info.pdo, info.plen, info.data_len) == (0, 72, 0)
    info = check(ch(0x04, 0x01, 72, pdo, 76), role=P.ROLE_CONTROLLER, hdgst=True)
    assert (info.pdo, info.data_len) == (0, 0)


def test_a_capsule_with_pdo_and_no_data_decodes_as_no_data():
    d = decoder(P.ROLE_CONTROLLER)
    sqe = bytes(64)
    d.feed(ch(0x04, 0, 72, 72, 72) + sqe + ch(0x04, 0, 72, 0, 72) + sqe)
    got = d.decode()
    assert len(got) == 2 and all(c.data is None for c in got)


def test_lowest_field_reported_first():
    # Bad flags (byte 1: no HDGST with header digests on) and bad HLEN (byte 2): FEI 1.
    fails(1, 1, ch(0x05, 0, 23, 0, 28), hdgst=True)
    # Missing data digest flag (byte 1) and misaligned PDO (byte 3): FEI 1.
    fails(1, 1, ch(0x07, 0x04, 24, 26, 124), ddgst=True, pda=1)
    # Bad HLEN and bad PLEN: FEI 2.
    fails(1, 2, ch(0x09, 0, 25, 0, 99))


def test_success_without_last():
    fails(1, 1, ch(0x07, 0x08, 24, 24, 28))


@pytest.mark.parametrize("role,hdr,kw", [
    (P.ROLE_HOST, ch(0x05, 0, 25, 0, 25), {}),
    (P.ROLE_HOST, ch(0x09, 0, 8, 0, 8), {}),
    (P.ROLE_HOST, ch(0x07, 0x04, 72, 72, 80), {}),
    (P.ROLE_HOST, ch(0x03, 0, 128, 0, 128), {}),
    (P.ROLE_CONTROLLER, ch(0x04, 0, 24, 0, 24), {}),
    (P.ROLE_CONTROLLER, ch(0x06, 0x04, 0, 24, 28), {}),
    (P.ROLE_CONTROLLER, ch(0x00, 0, 0, 0, 128), {"connected": False}),
])
def test_wrong_hlen(role, hdr, kw):
    fails(1, 2, hdr, role=role, **kw)


@pytest.mark.parametrize("role,hdr,kw", [
    (P.ROLE_HOST, ch(0x05, 0, 24, 24, 24), {}),
    (P.ROLE_HOST, ch(0x09, 0, 24, 24, 24), {}),
    (P.ROLE_HOST, ch(0x03, 0, 24, 24, 24), {}),
    (P.ROLE_HOST, ch(0x01, 0, 128, 128, 128), {"connected": False}),
    (P.ROLE_CONTROLLER, ch(0x02, 0, 24, 24, 24), {}),
    (P.ROLE_CONTROLLER, ch(0x00, 0, 128, 1, 128), {"connected": False}),
])
def test_pdo_of_non_data_types_is_ignored(role, hdr, kw):
    """PDO points at nothing without data; nvmet and the Linux host never read it."""
    info = check(hdr, role=role, **kw)
    assert (info.pdo, info.data_len) == (0, 0)


@pytest.mark.parametrize("hdr,kw", [
    (ch(0x07, 0x04, 24, 16, 124), {}),  # inside the header
    (ch(0x07, 0x05, 24, 24, 124), {"hdgst": True}),  # inside the header digest
    (ch(0x07, 0x04, 24, 28, 124), {"pda": 3}),  # not 16-byte aligned
    (ch(0x07, 0x04, 24, 36, 124), {"pda": 1}),  # not 8-byte aligned
    (ch(0x07, 0x04, 24, 24 + 129, 300), {}),  # more padding than any PDA needs
    (ch(0x07, 0x04, 24, 255, 300), {}),
])
def test_bad_pdo(hdr, kw):
    fails(1, 3, hdr, **kw)


def test_bad_pdo_capsule_cmd():
    fails(1, 3, ch(0x04, 0, 72, 71, 100), role=P.ROLE_CONTROLLER)
    fails(1, 3, ch(0x04, 0, 72, 72, 100), role=P.ROLE_CONTROLLER, pda=7)  # 32-byte alignment


@pytest.mark.parametrize("role,hdr,kw", [
    (P.ROLE_HOST, ch(0x05, 0, 24, 0, 25), {}),
    (P.ROLE_HOST, ch(0x05, 0x01, 24, 0, 24), {"hdgst": True}),  # no room for the digest
    (P.ROLE_HOST, ch(0x09, 0, 24, 0, 0xFFFFFFFF), {}),
    (P.ROLE_HOST, ch(0x01, 0, 128, 0, 129), {"connected": False}),
    (P.ROLE_CONTROLLER, ch(0x06, 0x04, 24, 24, 24), {}),  # no data after PDO
    (P.ROLE_CONTROLLER, ch(0x06, 0x06, 24, 24, 28), {"ddgst": True}),  # only the digest
    (P.ROLE_HOST, ch(0x07, 0x04, 24, 24, 10), {}),  # PLEN before PDO
    (P.ROLE_CONTROLLER, ch(0x04, 0, 72, 0, 73), {}),
    (P.ROLE_CONTROLLER, ch(0x00, 0, 128, 0, 0), {"connected": False}),
])
def test_wrong_plen(role, hdr, kw):
    fails(1, 4, hdr, role=role, **kw)


def test_data_longer_than_max():
    fails(1, 4, ch(0x07, 0x04, 24, 24, 24 + 4097), max_data=4096)
    assert check(ch(0x07, 0x04, 24, 24, 24 + 4096), max_data=4096).data_len == 4096
    fails(1, 4, ch(0x04, 0, 72, 72, 72 + 8193), role=P.ROLE_CONTROLLER, max_data=8192)
    fails(1, 4, ch(0x07, 0x04, 24, 24, 0xFFFFFFFF))


@pytest.mark.parametrize("role,ptype", [(P.ROLE_HOST, 0x03), (P.ROLE_CONTROLLER, 0x02)])
def test_termreq_plen_bounds(role, ptype):
    assert check(ch(ptype, 0, 24, 0, 152), role=role).data_len == 128
    fails(1, 4, ch(ptype, 0, 24, 0, 153), role=role)
    fails(1, 4, ch(ptype, 0, 24, 0, 23), role=role)
    fails(1, 4, ch(ptype, 0, 24, 0, 0xFFFFFFFF), role=role, connected=False)


def ic(ptype, pfv=0, pda=0, dgst=0, last=4096):
    return ch(ptype, 0, 128, 0, 128) + struct.pack("<HBBI", pfv, pda, dgst, last) + bytes(112)


@pytest.mark.parametrize("role,ptype", [(P.ROLE_HOST, 0x01), (P.ROLE_CONTROLLER, 0x00)])
def test_pfv_nonzero(role, ptype):
    err = decode_fails(6, 8, ic(ptype, pfv=1), role, connected=False)
    assert err.fes == P.FES.UNSUPPORTED_PARAMETER


@pytest.mark.parametrize("role,ptype", [(P.ROLE_HOST, 0x01), (P.ROLE_CONTROLLER, 0x00)])
def test_pda_too_large(role, ptype):
    decode_fails(1, 10, ic(ptype, pda=32), role, connected=False)
    decode_fails(1, 10, ic(ptype, pda=0xFF), role, connected=False)
    d = decoder(role, connected=False)
    d.feed(ic(ptype, pda=31))
    assert d.decode()[0][0] == 31


@pytest.mark.parametrize("role,ptype", [(P.ROLE_HOST, 0x01), (P.ROLE_CONTROLLER, 0x00)])
@pytest.mark.parametrize("dgst", [0x04, 0x80, 0xFF])
def test_reserved_dgst_bits_are_ignored(role, ptype, dgst):
    """nvmet and the Linux host read only the two digest bits of DGST."""
    d = decoder(role, connected=False)
    d.feed(ic(ptype, dgst=dgst))
    (pdu,) = d.decode()
    assert pdu.dgst == dgst & (P.DGST_HDGST | P.DGST_DDGST)


@pytest.mark.parametrize("maxh2cdata", [0, 4, 4092, 4097, 8190])
def test_bad_maxh2cdata(maxh2cdata):
    decode_fails(1, 12, ic(0x01, last=maxh2cdata), P.ROLE_HOST, connected=False)


def test_maxr2t_is_not_checked_like_maxh2cdata():
    d = decoder(P.ROLE_CONTROLLER, connected=False)
    d.feed(ic(0x00, last=0))
    assert d.decode() == [P.ICReq(0, 0, 0)]


@pytest.mark.parametrize("role,ptype", [(P.ROLE_HOST, 0x07), (P.ROLE_CONTROLLER, 0x06)])
@pytest.mark.parametrize("datal", [0, 99, 101, 0xFFFFFFFF])
def test_datal_mismatch(role, ptype, datal):
    raw = ch(ptype, 0x04, 24, 24, 124) + data_psh(1, 0, 0, datal) + bytes(100)
    decode_fails(1, 16, raw, role)


@pytest.mark.parametrize("role,hdr", [
    (P.ROLE_HOST, ch(0x05, 0x01, 24, 0, 28) + CQE),
    (P.ROLE_HOST, ch(0x09, 0x01, 24, 0, 28) + data_psh(1, 1, 0, 1)),
    (P.ROLE_CONTROLLER, ch(0x04, 0x01, 72, 0, 76) + SQE),
])
def test_header_digest_mismatch(role, hdr):
    good = hdr + dg(hdr)
    d = decoder(role, hdgst=True)
    d.feed(good)
    assert len(d.decode()) == 1
    for bad in (hdr + bytes(4), hdr + dg(hdr)[::-1],
                hdr[:20] + bytes([hdr[20] ^ 1]) + hdr[21:] + dg(hdr)):
        err = decode_fails(3, 0, bad, role, hdgst=True)
        assert err.fes == P.FES.HEADER_DIGEST_ERROR


def test_header_digest_mismatch_with_data():
    data = b"d" * 10
    hdr = ch(0x07, 0x05, 24, 28, 38) + data_psh(1, 0, 0, 10)
    decode_fails(3, 0, hdr + dg(hdr + b"!") + data, P.ROLE_HOST, hdgst=True)


def test_errors_leave_earlier_pdus_decodable():
    # A valid PDU before a bad one: the caller sees the error on the call that
    # reaches the bad header (all-or-error per decode call).
    good = P.join(P.encode_capsule_resp(CQE))
    d = decoder(P.ROLE_HOST)
    d.feed(good)
    assert len(d.decode()) == 1
    d.feed(ch(0x05, 0, 24, 0, 99))
    with pytest.raises(PeerProtocolError):
        d.decode()
