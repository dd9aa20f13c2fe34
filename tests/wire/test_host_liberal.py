"""What our host accepts from a controller, beside what the Linux kernel's nvme-tcp
host accepts (docs/host.md, "What the host refuses, and what it ignores"): one
test per row of that table, in its order.

Hand-built PDUs (struct.pack at spec offsets) play the controller; the host is a
``HostQueuePair`` fed bytes, as its socket loop feeds it.
"""

from __future__ import annotations

import struct

import pytest

from nvmecontrol.errors import ConnectionLost, PeerProtocolError
from nvmecontrol.wire import crc
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import SQE
from nvmecontrol.wire.qpair import STATUS_TRANSIENT_TRANSPORT, Completion, HostQueuePair, ReadData

READ = SQE(opc=0x02, nsid=1)
WRITE = SQE(opc=0x01, nsid=1)
FLUSH = SQE(opc=0x00, nsid=1)
LAST, SUCCESS, HDGST, DDGST = P.F_LAST_PDU, P.F_SUCCESS, P.F_HDGST, P.F_DDGST


def ch(ptype, flags, hlen, pdo, plen) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


def resp(cid, *, status=0, sqhd=0, flags=0, pdo=0, plen=24, sqid=0, phase=0) -> bytes:
    return ch(0x05, flags, 24, pdo, plen) + struct.pack("<IIHHHH", 0, 0, sqhd, sqid, cid,
                                                         status << 1 | phase)


def c2h(cid, off, data, *, flags=LAST, pdo=24, plen=None, datal=None, tail=b"") -> bytes:
    body = bytes(max(0, pdo - 24)) + data + tail
    plen = 24 + len(body) if plen is None else plen
    datal = len(data) if datal is None else datal
    return ch(0x07, flags, 24, pdo, plen) + struct.pack("<HHII4x", cid, 0, off, datal) + body


def r2t(cid, off, length, *, ttag=1, pdo=0, plen=24) -> bytes:
    return ch(0x09, 0, 24, pdo, plen) + struct.pack("<HHII4x", cid, ttag, off, length)


def icresp(*, cpda=0, dgst=0, maxh2cdata=0x20000, hlen=128, pdo=0, plen=128, pfv=0) -> bytes:
    return ch(0x01, 0, hlen, pdo, plen) + struct.pack("<HBBI", pfv, cpda, dgst,
                                                      maxh2cdata) + bytes(112)


def c2hterm(fes=1, *, pdo=0, plen=24) -> bytes:
    return ch(0x03, 0, 24, pdo, plen) + struct.pack("<HI10x", fes, 0)


def with_hdgst(pdu: bytes, hlen: int = 24) -> bytes:
    return pdu[:hlen] + crc.digest(pdu[:hlen]) + pdu[hlen:]


def host(*, hdgst=False, ddgst=False, established=True, **icresp_kw) -> HostQueuePair:
    h = HostQueuePair(queue_size=8, hdgst=hdgst, ddgst=ddgst, buffer_size=8192)
    h.start()
    h.take_outgoing()
    if established:
        dgst = (P.DGST_HDGST if hdgst else 0) | (P.DGST_DDGST if ddgst else 0)
        feed(h, icresp(dgst=dgst, **icresp_kw))
    return h


def feed(h, raw: bytes) -> list:
    h.decoder.feed(raw)
    return h.receive()


def refused(h, raw: bytes, fes: int | None = None) -> PeerProtocolError:
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, raw)
    if fes is not None:
        assert ei.value.fes == fes, str(ei.value)
    return ei.value


def read(h, n: int = 8):
    buf = bytearray(n)
    return h.submit(READ, read_into=memoryview(buf)), buf


def write(h, data: bytes) -> int:
    """A write whose data wait for R2T; its capsule already sent."""
    cid = h.submit(WRITE, write_data=data)
    h.take_outgoing()
    return cid


def completed(events) -> list:
    return [(e.cid, e.cqe.status) for e in events if isinstance(e, Completion)]


# --- common header -----------------------------------------------------------------

def test_hdgst_flag_without_header_digests_is_ignored():
    h = host()
    cid = h.submit(FLUSH)
    # The flag alone: a Linux host reads on; so do we.
    assert completed(feed(h, resp(cid, flags=HDGST))) == [(cid, 0)]
    cid, buf = read(h)
    ev = feed(h, c2h(cid, 0, b"abcdefgh", flags=HDGST | LAST | SUCCESS))
    assert completed(ev) == [(cid, 0)] and buf == b"abcdefgh"
    # A digest really sent after the header: PLEN says so, and it is refused.
    cid, _ = read(h)
    assert refused(h, resp(cid, flags=HDGST, plen=28) + bytes(4), 1).fei == 4


def test_hdgst_flag_missing_with_header_digests_is_refused():
    h = host(hdgst=True)
    cid, _ = read(h)
    assert refused(h, resp(cid, plen=28) + bytes(4), 1).fei == 1


def test_ddgst_flag_on_c2h_data_without_data_digests_is_ignored():
    h = host()
    cid, buf = read(h)
    assert completed(feed(h, c2h(cid, 0, b"12345678", flags=DDGST | LAST | SUCCESS))) \
        == [(cid, 0)]
    assert buf == b"12345678"
    # 4 digest bytes really sent: PLEN and DATAL disagree.
    cid, _ = read(h)
    assert refused(h, c2h(cid, 0, b"12345678", flags=DDGST | LAST | SUCCESS,
                          tail=bytes(4)), 1).fei == 16


def test_ddgst_flag_missing_with_data_digests_is_refused():
    h = host(ddgst=True)
    cid, _ = read(h)
    assert refused(h, c2h(cid, 0, b"12345678"), 1).fei == 1


@pytest.mark.parametrize("pdu", ["resp", "r2t", "c2hterm"])
def test_pdo_of_pdus_without_data_is_ignored(pdu):
    h = host()
    if pdu == "c2hterm":
        with pytest.raises(ConnectionLost, match="invalid header field"):
            feed(h, c2hterm(1, pdo=24))
        return
    cid = write(h, b"w" * 9000)  # above the admin in-capsule limit
    if pdu == "r2t":
        feed(h, r2t(cid, 0, 9000, pdo=24))
        out = P.join(h.take_outgoing())
        assert out[0] == 0x06 and len(out) == 24 + 9000
    else:
        assert completed(feed(h, resp(cid, pdo=24))) == [(cid, 0)]


def test_pdo_of_icresp_is_ignored():
    h = host(established=False)
    (est,) = feed(h, icresp(pdo=128))
    assert est.maxh2cdata == 0x20000


def test_c2h_data_with_pdo_0_reads_after_the_header():
    h = host()
    cid, buf = read(h)
    assert completed(feed(h, c2h(cid, 0, b"PDO-zero", pdo=0, flags=LAST | SUCCESS))) \
        == [(cid, 0)]
    assert buf == b"PDO-zero"


def test_c2h_data_padded_without_hpda_is_read_at_pdo():
    h = host()
    cid, buf = read(h)
    assert completed(feed(h, c2h(cid, 0, b"padded!!", pdo=32, flags=LAST | SUCCESS))) \
        == [(cid, 0)]
    assert buf == b"padded!!"


def test_empty_c2h_data_is_accepted():
    h = host()
    cid, buf = read(h)
    assert feed(h, c2h(cid, 0, b"", flags=0)) == []  # nothing to place
    assert completed(feed(h, c2h(cid, 0, b"datadata", flags=LAST | SUCCESS))) == [(cid, 0)]
    # An empty last PDU completes a read whose data all came before it.
    cid, buf = read(h)
    feed(h, c2h(cid, 0, b"12345678", flags=0))
    assert completed(feed(h, c2h(cid, 8, b"", flags=LAST | SUCCESS))) == [(cid, 0)]
    assert buf == b"12345678"
    # With data digests: the digest of nothing.
    h = host(ddgst=True)
    cid, _ = read(h)
    feed(h, c2h(cid, 0, b"12345678", flags=DDGST, tail=crc.digest(b"12345678")))
    ev = feed(h, c2h(cid, 8, b"", flags=DDGST | LAST | SUCCESS, tail=crc.digest(b"")))
    assert completed(ev) == [(cid, 0)]


def test_c2h_data_datal_must_match_plen():
    h = host()
    cid, _ = read(h)
    assert refused(h, c2h(cid, 0, b"12345678", datal=4), 1).fei == 16


@pytest.mark.parametrize("hdr", [ch(0x05, 0, 25, 0, 25), ch(0x07, LAST, 72, 72, 80),
                                 ch(0x09, 0, 8, 0, 8)])
def test_wrong_hlen_is_refused(hdr):
    assert refused(host(), hdr + bytes(80), 1).fei == 2


def test_hlen_of_icresp_is_ignored():
    h = host(established=False)
    (est,) = feed(h, icresp(hlen=127, maxh2cdata=8192))
    assert est.maxh2cdata == 8192


def test_plen_of_icresp_must_be_128():
    h = host(established=False)
    assert refused(h, icresp(plen=132) + bytes(4), 1).fei == 4


@pytest.mark.parametrize("plen", [28, 23, 0xFFFF])
def test_plen_of_pdus_without_data_must_end_the_header(plen):
    h = host()
    cid, _ = read(h)
    assert refused(h, resp(cid, plen=plen), 1).fei == 4
    h = host()
    cid = h.submit(WRITE, write_data=b"w" * 9000)
    assert refused(h, r2t(cid, 0, 9000, plen=plen), 1).fei == 4


@pytest.mark.parametrize("ptype", [0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0xFF])
def test_types_a_host_never_receives_are_refused(ptype):
    assert refused(host(), ch(ptype, 0, 24, 0, 24) + bytes(16), 1).fei == 0


def test_c2hterm_ends_the_connection():
    h = host()
    with pytest.raises(ConnectionLost, match="data out of range"):
        feed(h, c2hterm(4))
    # Malformed (PLEN beyond 24 + 128): the connection ends too.
    with pytest.raises(PeerProtocolError):
        feed(host(), c2hterm(4, plen=200))


def test_header_digest_mismatch_ends_the_connection():
    h = host(hdgst=True)
    cid, _ = read(h)
    bad = bytearray(with_hdgst(resp(cid, flags=HDGST, plen=28)))
    bad[-1] ^= 0xFF
    refused(h, bytes(bad), P.FES.HEADER_DIGEST_ERROR)


def test_data_digest_mismatch_fails_the_command_only():
    h = host(ddgst=True)
    cid, _ = read(h)
    ev = feed(h, c2h(cid, 0, b"12345678", flags=DDGST | LAST | SUCCESS, tail=bytes(4)))
    assert completed(ev) == [(cid, STATUS_TRANSIENT_TRANSPORT)]
    cid, buf = read(h)
    ev = feed(h, c2h(cid, 0, b"87654321", flags=DDGST | LAST | SUCCESS,
                     tail=crc.digest(b"87654321")))
    assert completed(ev) == [(cid, 0)] and buf == b"87654321"


# --- ICResp ------------------------------------------------------------------------------

def test_icresp_pfv_other_than_0_is_refused():
    refused(host(established=False), icresp(pfv=1), P.FES.UNSUPPORTED_PARAMETER)


def test_icresp_cpda_is_honoured():
    h = host(established=False)
    (est,) = feed(h, icresp(cpda=3))
    assert est.cpda == 3
    h.submit(WRITE, write_data=b"x" * 10)
    assert P.join(h.take_outgoing())[3] == 80  # in-capsule data 16-byte aligned


def test_icresp_cpda_above_31_is_refused():
    assert refused(host(established=False), icresp(cpda=32), 1).fei == 10


@pytest.mark.parametrize("maxh2cdata", [0, 4092, 4097, 4098])
def test_icresp_maxh2cdata_below_4096_or_unaligned_is_refused(maxh2cdata):
    assert refused(host(established=False), icresp(maxh2cdata=maxh2cdata), 1).fei == 12


def test_icresp_granting_a_digest_not_asked_for_is_refused():
    h = HostQueuePair(queue_size=8, buffer_size=8192)
    h.start()
    assert refused(h, icresp(dgst=P.DGST_HDGST), 1).fei == 11


def test_icresp_reserved_dgst_bits_are_ignored():
    h = host(established=False)
    (est,) = feed(h, icresp(dgst=0xFC))
    assert (est.hdgst, est.ddgst) == (False, False)


# --- command state (qpair.HostQueuePair.receive) ------------------------------------------

@pytest.mark.parametrize("make", [lambda: resp(5), lambda: c2h(5, 0, b"x"),
                                  lambda: r2t(5, 0, 1)])
def test_pdus_for_a_cid_not_outstanding_are_refused(make):
    assert refused(host(), make(), 1).fei == 8


def test_c2h_data_for_a_command_without_read_data_is_refused():
    h = host()
    cid = h.submit(FLUSH)
    refused(h, c2h(cid, 0, b"x"), P.FES.DATA_OUT_OF_RANGE)


def test_empty_c2h_data_success_completes_a_command_without_data():
    """Nothing to place, and SUCCESS says the command completed (the Linux host
    refuses any C2HData for a command without a payload)."""
    h = host()
    cid = h.submit(FLUSH)
    assert completed(feed(h, c2h(cid, 0, b"", flags=LAST | SUCCESS))) == [(cid, 0)]


def test_c2h_data_beyond_the_command_is_refused():
    h = host()
    cid, _ = read(h, 8)
    refused(h, c2h(cid, 0, b"123456789"), P.FES.DATA_OUT_OF_RANGE)


@pytest.mark.parametrize("off", [4, 0])
def test_c2h_data_out_of_order_is_refused(off):
    h = host()
    cid, _ = read(h, 16)
    if off == 0:  # the same range twice
        feed(h, c2h(cid, 0, b"12345678", flags=0))
    refused(h, c2h(cid, off, b"abcdefgh"), P.FES.DATA_OUT_OF_RANGE)


def test_success_without_last_pdu_is_refused():
    h = host()
    cid, _ = read(h)
    assert refused(h, c2h(cid, 0, b"12345678", flags=SUCCESS), 1).fei == 1


def test_success_before_all_data_is_refused():
    h = host()
    cid, _ = read(h, 16)
    refused(h, c2h(cid, 0, b"12345678", flags=LAST | SUCCESS), 1)


def test_response_success_before_all_data_is_refused():
    h = host()
    cid, _ = read(h, 16)
    feed(h, c2h(cid, 0, b"12345678", flags=0))
    refused(h, resp(cid), P.FES.PDU_SEQUENCE_ERROR)


def test_success_under_sq_flow_control_completes():
    h = host()
    h.sq_flow_control = True
    cid, buf = read(h)
    assert completed(feed(h, c2h(cid, 0, b"flowctl!", flags=LAST | SUCCESS))) == [(cid, 0)]
    assert buf == b"flowctl!"
    # The next response's SQHD is taken as before.
    cid = h.submit(FLUSH)
    feed(h, resp(cid, sqhd=2))
    assert h.sqhd == 2


def test_response_sqid_phase_and_reserved_are_ignored():
    h = host()
    cid = h.submit(FLUSH)
    (c,) = feed(h, resp(cid, sqid=7, phase=1))
    assert (c.cid, c.cqe.status) == (cid, 0)


@pytest.mark.parametrize("off, length", [(0, 0), (0, 9001), (8999, 2)])
def test_r2t_empty_or_beyond_the_write_is_refused(off, length):
    h = host()
    cid = h.submit(WRITE, write_data=b"w" * 9000)
    refused(h, r2t(cid, off, length), P.FES.DATA_OUT_OF_RANGE)


def test_r2t_for_in_capsule_data_or_a_read_is_refused():
    h = host()
    cid_w = h.submit(WRITE, write_data=b"small")
    cid_r, _ = read(h)
    for cid in (cid_w, cid_r):
        refused(h, r2t(cid, 0, 1), P.FES.DATA_OUT_OF_RANGE)


def h2c_ranges(h) -> list[tuple[int, int, int]]:
    """(DATAO, length, LAST) of the H2CData PDUs queued."""
    raw, out, pos = P.join(h.take_outgoing()), [], 0
    while pos < len(raw):
        plen = struct.unpack_from("<I", raw, pos + 4)[0]
        _cid, _ttag, off, n = struct.unpack_from("<HHII", raw, pos + 8)
        out.append((off, n, raw[pos + 1] & LAST))
        pos += plen
    return out


def test_r2t_for_data_already_sent_is_served_again():
    h = host()
    cid = write(h, bytes(range(256)) * 40)
    feed(h, r2t(cid, 0, 8192))
    assert h2c_ranges(h) == [(0, 8192, LAST)]
    feed(h, r2t(cid, 4096, 6144))  # overlaps what was sent
    assert h2c_ranges(h) == [(4096, 6144, LAST)]


def test_r2t_while_an_earlier_r2t_is_served():
    h = host(maxh2cdata=4096)
    cid = write(h, b"w" * 10240)
    feed(h, r2t(cid, 0, 8192, ttag=1) + r2t(cid, 8192, 2048, ttag=2))
    assert h2c_ranges(h) == [(0, 4096, 0), (4096, 4096, LAST), (8192, 2048, LAST)]


def test_r2t_ttag_is_echoed_not_checked():
    h = host()
    cid = write(h, b"w" * 9000)
    feed(h, r2t(cid, 0, 9000, ttag=0xBEEF))
    raw = P.join(h.take_outgoing())
    assert struct.unpack_from("<H", raw, 10)[0] == 0xBEEF


def test_read_data_events_without_a_buffer():
    """Reads submitted with read_len get their data as events, empty PDUs give none."""
    h = host()
    cid = h.submit(READ, read_len=8)
    assert feed(h, c2h(cid, 0, b"", flags=0)) == []
    (ev,) = feed(h, c2h(cid, 0, b"12345678", flags=LAST | SUCCESS))
    assert isinstance(ev, Completion) and bytes(ev.data) == b"12345678"
    assert not isinstance(ev, ReadData)
