"""The hot paths of the wire layer give exactly what the reference paths give.

* The decoder's header cache reaches the same verdict as :func:`check_header`
  (same records, or the same FES/FEI/message/offending bytes) for every
  input of the seeded fuzz corpus and for exhaustively mutated headers,
  with the cache cold and warm.  The reference is the decoder as it was
  before the cache: ``check_header`` then a per-type decode, per PDU.
* ``HostQueuePair.submit_io`` and ``submit`` of an SQE record put the same
  bytes on the wire as ``submit`` of ``encode_io``'s bytes, and the record
  encoders and the queue pairs' encoders agree byte for byte.
* A bad PDU anywhere in a received batch leaves every command of the batch
  outstanding (a replay after the lost connection resends them).
* The receive buffer's growth keeps earlier views' data.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import struct
from pathlib import Path

import pytest

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.recvbuf import ReceiveBuffer
from nvmecontrol.wire import crc, nvm
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import CQE, SQE, encode_cqe
from nvmecontrol.wire.qpair import (Completion, ControllerQueuePair, HostQueuePair, ReadData,
                                    new_completion, new_read_data)

_spec = importlib.util.spec_from_file_location("wire_fuzz_corpus",
                                               Path(__file__).with_name("test_fuzz.py"))
fz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fz)

SEED = 20250607


# --- the reference decoder (check_header per PDU, as before the cache) ----------------

def _ref_decode_one(info, pdu: bytes):
    ptype, flags, hlen = info.ptype, info.flags, info.hlen
    if flags & P.F_HDGST and not crc.check(pdu[:hlen], pdu[hlen:hlen + P.DIGEST_SIZE]):
        raise PeerProtocolError(f"{ptype.name} header digest mismatch",
                                P.FES.HEADER_DIGEST_ERROR, 0)
    if ptype is P.PduType.CapsuleResp:
        return P.CapsuleResp(bytes(pdu[P.CH_SIZE:hlen]))
    data = None
    bad = False
    if info.data_len or ptype is P.PduType.C2HData:  # a C2HData may be empty
        data = pdu[info.pdo:info.pdo + info.data_len]
        if flags & P.F_DDGST:
            bad = not crc.check(data, pdu[info.plen - P.DIGEST_SIZE:info.plen])
    if ptype is P.PduType.CapsuleCmd:
        return P.CapsuleCmd(bytes(pdu[P.CH_SIZE:hlen]), data, bad)
    if ptype in (P.PduType.C2HData, P.PduType.H2CData, P.PduType.R2T):
        _t, _f, _h, _p, _l, cccid, ttag, offset, length = struct.unpack_from("<BBBBIHHII4x", pdu)
        if ptype is P.PduType.R2T:
            return P.R2T(cccid, ttag, offset, length)
        if length != info.data_len:
            raise PeerProtocolError(
                f"{ptype.name} DATAL {length} does not match its PLEN ({info.data_len} bytes)",
                P.FES.INVALID_HEADER_FIELD, 16)
        if ptype is P.PduType.C2HData:
            return P.C2HData(cccid, offset, data, bool(flags & P.F_LAST_PDU),
                             bool(flags & P.F_SUCCESS), bad)
        return P.H2CData(cccid, ttag, offset, data, bool(flags & P.F_LAST_PDU), bad)
    if ptype in (P.PduType.ICReq, P.PduType.ICResp):
        return P._decode_ic(ptype, pdu)
    fes, fei = struct.unpack_from("<HI", pdu, 8)
    return P.TermReq(fes, fei, bytes(pdu[hlen:info.plen]), ptype is P.PduType.H2CTermReq)


def ref_decode(settings: dict, data: bytes):
    """(records, bytes consumed) or the PeerProtocolError, as the pre-cache decoder."""
    out, s = [], 0
    while len(data) - s >= P.CH_SIZE:
        try:
            info = P.check_header(data[s:s + P.CH_SIZE], **settings)
            if len(data) - s < info.plen:
                break
            pdu = _ref_decode_one(info, data[s:s + info.plen])
        except PeerProtocolError as e:
            e.offending = bytes(data[s:s + P.TERM_MAX_DATA])
            return e
        s += info.plen
        out.append(pdu)
        if info.ptype in (P.PduType.ICReq, P.PduType.ICResp):
            break
    return out, s


def plain(rec):
    return (type(rec).__name__,) + tuple(bytes(x) if isinstance(x, memoryview) else x
                                         for x in rec)


def verdict(d: P.PduDecoder, data: bytes):
    d._start = d._end = 0
    d.feed(data)
    try:
        recs = d.decode()
    except PeerProtocolError as e:
        return ("error", type(e), e.fes, e.fei, str(e), e.offending)
    return ("ok", [plain(r) for r in recs], d._start)


def ref_verdict(settings: dict, data: bytes):
    r = ref_decode(settings, data)
    if isinstance(r, PeerProtocolError):
        return ("error", type(r), r.fes, r.fei, str(r), r.offending)
    return ("ok", [plain(x) for x in r[0]], r[1])


CONFIGS = [
    dict(role=role, connected=connected, hdgst=h, ddgst=d, pda=pda, max_data=max_data)
    for role in (P.ROLE_HOST, P.ROLE_CONTROLLER)
    for connected in (False, True)
    for h, d in ((False, False), (True, False), (False, True), (True, True))
    for pda, max_data in ((0, 4096), (3, 8192))
    if connected or (not h and not d and not pda)
]


def make_decoder(cfg: dict) -> P.PduDecoder:
    d = P.PduDecoder(cfg["role"], buffer_size=512, max_data=cfg["max_data"])
    d.connected, d.hdgst, d.ddgst, d.pda = cfg["connected"], cfg["hdgst"], cfg["ddgst"], cfg["pda"]
    return d


def seeds_for(cfg: dict) -> list[bytes]:
    h, dd = cfg["hdgst"], cfg["ddgst"]
    if cfg["role"] == P.ROLE_HOST:
        seeds = fz.host_seeds(h, dd) if cfg["connected"] else fz.host_pre_seeds()
    else:
        seeds = fz.ctrl_seeds(h, dd) if cfg["connected"] else fz.ctrl_pre_seeds()
    pda = cfg["pda"]
    if pda:  # the same data PDUs with the configuration's padding
        kw = dict(hdgst=h, ddgst=dd, pda=pda)
        seeds = seeds + [
            P.join(P.encode_c2h_data(P.C2HData(0, 0, b"q" * 40, True, True), **kw)),
            P.join(P.encode_h2c_data(P.H2CData(1, 0, 0, b"r" * 40), **kw)),
            P.join(P.encode_capsule_cmd(fz.sqe_bytes(1, 1, 40, 0x01), b"s" * 40, **kw)),
        ]
    return seeds


def header_mutations(seed: bytes):
    """Every single-field change of the common header worth trying."""
    pdu = bytearray(seed)
    for pos in range(4):
        for v in {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 24, 28, 72, 76, 80, 128, 0xFF,
                  pdu[pos] ^ 0x01, pdu[pos] ^ 0x02, pdu[pos] ^ 0x04, pdu[pos] ^ 0x08,
                  pdu[pos] ^ 0x80, (pdu[pos] + 4) & 0xFF, (pdu[pos] - 4) & 0xFF}:
            m = bytearray(pdu)
            m[pos] = v
            yield bytes(m)
    plen = struct.unpack_from("<I", pdu, 4)[0]
    for v in {0, 7, 8, 24, 72, plen - 5, plen - 4, plen - 1, plen + 1, plen + 4,
              plen + 4096, plen + 8192, 0xFFFFFFFF}:
        m = bytearray(pdu)
        struct.pack_into("<I", m, 4, v & 0xFFFFFFFF)
        yield bytes(m) + bytes(16)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_header_cache_matches_check_header(cfg):
    rng = random.Random(SEED)
    seeds = seeds_for(cfg)
    settings = dict(cfg)
    warm = make_decoder(cfg)
    inputs = list(seeds)
    for s in seeds:
        inputs.extend(header_mutations(s))
    inputs.extend(fz.mutated(rng, seeds) for _ in range(1500))
    # Valid seeds first, so the warm decoder has their keys cached when the
    # mutated headers (same key, wrong PLEN; nearby keys) arrive.
    for data in inputs:
        want = ref_verdict(settings, data)
        assert verdict(warm, data) == want, data[:32].hex()
        assert verdict(make_decoder(cfg), data) == want, data[:32].hex()
    assert len(warm._hcache) <= P.HEADER_CACHE_MAX


def test_header_cache_follows_setting_changes():
    d = P.PduDecoder(P.ROLE_HOST)
    d.connected = True
    resp = P.join(P.encode_capsule_resp(encode_cqe(CQE(cid=1))))
    d.feed(resp)
    assert len(d.decode()) == 1 and d._hcache
    d.hdgst = True  # the cached key (no HDGST flag) is now wrong
    d.feed(resp)
    with pytest.raises(PeerProtocolError) as ei:
        d.decode()
    assert (ei.value.fes, ei.value.fei) == (P.FES.INVALID_HEADER_FIELD, P.FEI_FLAGS)


def test_header_cache_is_bounded():
    d = P.PduDecoder(P.ROLE_HOST, max_data=1 << 20)
    d.connected, d.pda = True, 0
    # Distinct valid keys: C2HData with every PDO a PDA of 0 allows is only
    # 24, so vary the flags and the PDO through a changing PDA-free range.
    n = 0
    for pdo in range(24, 24 + P.MAX_PAD + 1):
        for flags in (P.F_LAST_PDU, P.F_LAST_PDU | P.F_SUCCESS, 0):
            hdr = struct.pack("<BBBBIHHII4x", 7, flags, 24, pdo, pdo + 4, 0, 0, 0, 4)
            d.feed(hdr + bytes(pdo - 24) + b"abcd")
            n += len(d.decode())
            assert len(d._hcache) <= P.HEADER_CACHE_MAX
    assert n == 3 * (P.MAX_PAD + 1)


def test_raw_kinds_are_the_pdu_types():
    # decode_raw compares against literal type values on its hot path.
    assert (P.RAW_CMD, P.RAW_RESP, P.RAW_H2C, P.RAW_C2H, P.RAW_R2T) == (4, 5, 6, 7, 9)


# --- host submission ------------------------------------------------------------------

def host(**kw) -> HostQueuePair:
    cpda = kw.pop("cpda", 0)
    h = HostQueuePair(queue_size=kw.pop("queue_size", 16), buffer_size=4096,
                      max_icd=kw.pop("max_icd", 8192), **kw)
    h.start()
    h.take_outgoing()
    dg = (P.DGST_HDGST if kw.get("hdgst") else 0) | (P.DGST_DDGST if kw.get("ddgst") else 0)
    h.decoder.feed(P.encode_icresp(P.ICResp(cpda, dg, 0x10000)))
    h.receive()
    return h


SUBMIT_CASES = [
    # (opc, nsid, slba, nlb, cdw12 flags, cdw10, cdw11, kwargs)
    (nvm.NvmOpc.READ, 1, 0, 8, 0, None, None, dict(read_len=4096)),
    (nvm.NvmOpc.READ, 7, (1 << 40) + 3, 65536, 0, None, None, dict(read_len=1 << 25)),
    (nvm.NvmOpc.READ, 1, 5, 1, 0, None, None, dict(read_into=memoryview(bytearray(512)))),
    (nvm.NvmOpc.WRITE, 1, 9, 1, nvm.FUA, None, None, dict(write_data=b"w" * 512)),
    (nvm.NvmOpc.WRITE, 1, 9, 24, 0, None, None, dict(write_data=b"x" * 12288)),  # R2T
    (nvm.NvmOpc.WRITE, 1, 9, 1, 0, None, None, dict(write_data=b"")),
    (nvm.NvmOpc.FLUSH, 0xFFFFFFFF, 0, 0, 0, None, None, {}),
    (nvm.NvmOpc.WRITE_ZEROES, 1, 100, 16, nvm.WZ_DEAC, None, None, {}),
    (nvm.NvmOpc.DATASET_MANAGEMENT, 1, 0, 0, 0, 1, nvm.DSM_DEALLOCATE,
     dict(write_data=nvm.encode_dsm_ranges([(0, 8), (64, 8)]))),
]
LINKS = [dict(), dict(hdgst=True), dict(ddgst=True), dict(hdgst=True, ddgst=True, cpda=3),
         dict(cpda=1)]


@pytest.mark.parametrize("link", LINKS, ids=str)
@pytest.mark.parametrize("case", range(len(SUBMIT_CASES)))
def test_submit_io_golden_bytes(case, link):
    opc, nsid, slba, nlb, flags, c10, c11, kw = SUBMIT_CASES[case]
    a, b, c = host(**link), host(**link), host(**link)
    raw = nvm.encode_io(opc, nsid, slba, nlb, cdw12_flags=flags, cdw10=c10, cdw11=c11)
    cid_a = a.submit(raw, tag="t", **kw)
    cid_b = b.submit_io(opc, nsid, slba, nlb, flags, cdw10=c10, cdw11=c11, tag="t", **kw)
    sqe = SQE(opc, nsid=nsid, cdw10=slba & 0xFFFFFFFF if c10 is None else c10,
              cdw11=slba >> 32 if c11 is None else c11,
              cdw12=((nlb - 1) if nlb else 0) | flags)
    cid_c = c.submit(sqe, tag="t", **kw)
    want = P.join(a.take_outgoing())
    assert P.join(b.take_outgoing()) == want
    assert P.join(c.take_outgoing()) == want
    assert cid_a == cid_b == cid_c
    assert a._pending[cid_a] == b._pending[cid_b] == c._pending[cid_c]
    assert (a.sqtail, a.outstanding) == (b.sqtail, b.outstanding) == (c.sqtail, c.outstanding)


def test_submit_io_in_capsule_bytes_by_hand():
    h = host()
    cid = h.submit_io(nvm.NvmOpc.WRITE, 3, 0x1_0000_0002, 2, nvm.FUA, write_data=b"d" * 1024)
    out = P.join(h.take_outgoing())
    assert out[:8] == struct.pack("<BBBBI", 4, 0, 72, 72, 72 + 1024)
    assert struct.unpack_from("<BBHI", out, 8) == (1, 0x40, cid, 3)
    assert struct.unpack_from("<QI3xB", out, 8 + 24) == (0, 1024, 0x01)
    assert struct.unpack_from("<III", out, 8 + 40) == (2, 1, 1 | nvm.FUA)
    assert out[72:] == b"d" * 1024


@pytest.mark.parametrize("nlb, flags", [(65537, 0), (-1, 0), (8, 0x1)])
def test_submit_io_rejects_nlb_spilling_into_cdw12(nlb, flags):
    h = host()
    with pytest.raises(ValueError):
        h.submit_io(nvm.NvmOpc.READ, 1, 0, nlb, flags, read_len=512)
    assert h.outstanding == 0 and not h.outgoing


@pytest.mark.parametrize("bad", [dict(slba=1 << 64), dict(slba=-1), dict(nsid=1 << 32)])
def test_field_out_of_range_does_not_leak_a_cid(bad):
    h = host(queue_size=2)
    args = dict(nsid=1, slba=0) | bad
    with pytest.raises(struct.error):
        h.submit_io(nvm.NvmOpc.READ, args["nsid"], args["slba"], 1, read_len=512)
    with pytest.raises(struct.error):
        h.submit(SQE(2, nsid=args["nsid"], cdw10=args["slba"]), read_len=512)
    assert h.outstanding == 0 and h.sqtail == 0 and not h.outgoing
    h.submit_io(nvm.NvmOpc.READ, 1, 0, 1, read_len=512)  # the one CID is still free


def test_submit_io_checks_like_submit():
    h = HostQueuePair(queue_size=4)
    with pytest.raises(LocalProtocolError):
        h.submit_io(nvm.NvmOpc.READ, 1, 0, 1, read_len=512)  # not connected
    h = host(queue_size=3)
    h.submit_io(nvm.NvmOpc.READ, 1, 0, 1, read_len=512)
    h.submit_io(nvm.NvmOpc.READ, 1, 0, 1, read_len=512)
    with pytest.raises(LocalProtocolError, match="full"):
        h.submit_io(nvm.NvmOpc.READ, 1, 0, 1, read_len=512)


# --- completions ----------------------------------------------------------------------

def test_fast_constructors_build_the_event_types():
    cqe = CQE(cid=3)
    ev = new_completion(3, cqe, "t")
    assert type(ev) is Completion and ev == Completion(3, cqe, "t") and ev.cqe.status == 0
    rd = new_read_data(3, 512, memoryview(b"xy"), "t")
    assert type(rd) is ReadData and rd.offset == 512 and rd.tag == "t"


def test_success_completions_share_an_immutable_cqe():
    h = host()
    events = []
    for _ in range(2):
        cid = h.submit_io(nvm.NvmOpc.READ, 1, 0, 1, read_len=4, tag="r")
        h.take_outgoing()
        h.decoder.feed(P.join(P.encode_c2h_data(P.C2HData(cid, 0, b"abcd", True, True))))
        events += [e for e in h.receive() if type(e) is Completion]
    a, b = events
    assert a.cqe == b.cqe == CQE(cid=a.cid) and a.cid == b.cid and a.tag == "r"


def test_bad_pdu_in_a_batch_leaves_the_whole_batch_outstanding():
    h = host()
    cids = [h.submit_io(nvm.NvmOpc.READ, 1, i, 1, read_len=4, tag=i) for i in range(3)]
    h.take_outgoing()
    good = b"".join(P.join(P.encode_c2h_data(P.C2HData(c, 0, b"abcd", True, True)))
                    for c in cids[:2])
    bad = bytearray(P.join(P.encode_capsule_resp(encode_cqe(CQE(cid=cids[2])))))
    bad[2] = 25  # HLEN
    h.decoder.feed(good + bytes(bad))
    with pytest.raises(PeerProtocolError):
        h.receive()
    assert sorted(h.outstanding_tags()) == [0, 1, 2]


# --- encoders -------------------------------------------------------------------------

@pytest.mark.parametrize("hdgst, ddgst, pda", list(itertools.product((0, 1), (0, 1), (0, 2, 31))))
def test_fast_encoders_match_record_encoders(hdgst, ddgst, pda):
    data = memoryview(bytes(range(200)))
    for last, success in ((True, True), (True, False), (False, False)):
        flags = (P.F_LAST_PDU if last else 0) | (P.F_SUCCESS if success else 0)
        out = []
        P.put_data_pdu(out, P.RAW_C2H, flags, 9, 0, 64, data, bool(hdgst), bool(ddgst), pda)
        want = P.encode_c2h_data(P.C2HData(9, 64, data, last, success), hdgst=hdgst,
                                 ddgst=ddgst, pda=pda)
        assert P.join(out) == P.join(want)
        assert out[-1 - ddgst] is data  # not copied
        out = []
        P.put_data_pdu(out, P.RAW_H2C, P.F_LAST_PDU if last else 0, 9, 7, 64, data,
                       bool(hdgst), bool(ddgst), pda)
        want = P.encode_h2c_data(P.H2CData(9, 7, 64, data, last), hdgst=hdgst, ddgst=ddgst,
                                 pda=pda)
        assert P.join(out) == P.join(want)
    for status in (0, 0x4002, 0x7FFF, 0xFFFF):
        out = []
        P.put_capsule_resp(out, 5, status, 0xDEADBEEF, 7, 3, 1, bool(hdgst))
        want = P.encode_capsule_resp(encode_cqe(CQE(0xDEADBEEF, 7, 3, 1, 5, status)),
                                     hdgst=hdgst)
        assert P.join(out) == P.join(want)


@pytest.mark.parametrize("hdgst, ddgst, cpda", [(0, 0, 0), (1, 1, 0), (1, 0, 3), (0, 1, 31)])
def test_controller_transmit_matches_record_encoders(hdgst, ddgst, cpda):
    h = HostQueuePair(queue_size=8, hdgst=bool(hdgst), ddgst=bool(ddgst), hpda=cpda)
    c = ControllerQueuePair()
    h.start()
    c.decoder.feed(P.join(h.take_outgoing()))
    c.receive()
    c.take_outgoing()
    data = memoryview(bytes(range(256)) * 4)
    for flow_control in (True, False):
        c.sq_flow_control = flow_control
        c.send_data(4, data, success=True)
        c.respond(4, 0x4002, 1, 2, 3)
        want = P.encode_c2h_data(P.C2HData(4, 0, data, True, not flow_control), hdgst=hdgst,
                                 ddgst=ddgst, pda=cpda)
        want += P.encode_capsule_resp(
            encode_cqe(CQE(1, 2, c.sqhd if flow_control else 0xFFFF, 3, 4, 0x4002)),
            hdgst=hdgst)
        assert P.join(c.take_outgoing()) == P.join(want)


# --- receive buffer -------------------------------------------------------------------

def test_receive_buffer_growth_keeps_earlier_views():
    rb = ReceiveBuffer(4096, 8)
    rb.feed(b"a" * 3000)
    early = rb._view[0:3000]
    rb._start = 1000  # 2000 bytes still pending
    grown = rb.get_buffer(10000)  # more than the mapping: a new one
    assert len(rb._buf) >= 12000 and len(grown) >= 10000
    assert bytes(early) == b"a" * 3000  # the old mapping lives while viewed
    assert bytes(rb._view[rb._start:rb._end]) == b"a" * 2000


def test_receive_buffer_pages_are_not_touched_up_front():
    import mmap
    rb = ReceiveBuffer(1 << 20, 8)
    assert isinstance(rb._buf, mmap.mmap)  # anonymous: no zero-filled 1 MiB per connection
    assert rb._buf[:16] == bytes(16)  # and reads as zeros


@pytest.mark.parametrize("slba, nlb, fua", [(0, 1, False), ((1 << 40) + 7, 65536, True),
                                            ((1 << 64) - 2, 2, False)])
def test_sqe_builders_equal_the_keyword_records(slba, nlb, fua):
    assert nvm.build_rw(nvm.NvmOpc.WRITE, 3, slba, nlb, fua) == SQE(
        nvm.NvmOpc.WRITE, nsid=3, cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32,
        cdw12=(nlb - 1) | (nvm.FUA if fua else 0))
    assert nvm.build_read(3, slba, nlb) == SQE(nvm.NvmOpc.READ, nsid=3, cdw10=slba & 0xFFFFFFFF,
                                               cdw11=slba >> 32, cdw12=nlb - 1)
    assert nvm.build_flush(9) == SQE(nvm.NvmOpc.FLUSH, nsid=9)
    assert type(nvm.build_flush(9)) is SQE and nvm.build_flush(9).sgl == SQE(0).sgl


def test_submit_io_bounds_nlb_as_the_nvm_command_set_does():
    """qpair keeps its own copy of the NLB bound (the admin path does not
    import wire.nvm): it must be the NVM command set's."""
    from nvmecontrol.wire import nvm, qpair

    assert qpair._MAX_NLB == nvm.MAX_NLB
