"""The queue-pair state machines, host and controller, wired together in memory.

``pump`` moves what one side queued for sending into the other side's
decoder and runs its state machine, as a socket would.  Hand-built PDUs
(struct.pack at spec offsets) play a misbehaving peer.
"""

from __future__ import annotations

import struct

import pytest

from nvmecontrol.errors import ConnectionLost, LocalProtocolError, PeerProtocolError
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import CQE, SQE, decode_sqe, encode_cqe
from nvmecontrol.wire.qpair import (ADMIN_ICD, STATUS_TRANSIENT_TRANSPORT, Command, Completion,
                                    ControllerQueuePair, Established, HostQueuePair, WriteData,
                                    termreq_for)

READ = SQE(opc=0x02, nsid=1)
WRITE = SQE(opc=0x01, nsid=1)


def pump(src, dst, *, corrupt=None) -> list:
    data = bytearray(P.join(src.take_outgoing()))
    if corrupt:
        corrupt(data)
    dst.decoder.feed(data)
    return dst.receive()


def split(raw: bytes) -> list[bytes]:
    """Cut a byte stream into PDUs by PLEN (byte 4, LE)."""
    out, pos = [], 0
    while pos < len(raw):
        plen = struct.unpack_from("<I", raw, pos + 4)[0]
        out.append(raw[pos:pos + plen])
        pos += plen
    assert pos == len(raw)
    return out


def ch(ptype, flags, hlen, pdo, plen) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


def c2h(cccid, off, data, flags=0x04) -> bytes:
    return ch(0x07, flags, 24, 24, 24 + len(data)) + struct.pack("<HHII4x", cccid, 0, off, len(data)) + data


def r2t(cccid, ttag, off, length) -> bytes:
    return ch(0x09, 0, 24, 0, 24) + struct.pack("<HHII4x", cccid, ttag, off, length)


def resp(cid, status=0, sqhd=0, dw0=0) -> bytes:
    return ch(0x05, 0, 24, 0, 24) + struct.pack("<IIHHHH", dw0, 0, sqhd, 0, cid, status << 1)


def icresp(cpda=0, dgst=0, maxh2cdata=0x20000) -> bytes:
    return ch(0x01, 0, 128, 0, 128) + struct.pack("<HBBI", 0, cpda, dgst, maxh2cdata) + bytes(112)


def feed(qp, raw: bytes) -> list:
    qp.decoder.feed(raw)
    return qp.receive()


def pair(*, hdgst=False, ddgst=False, allow_h=True, allow_d=True, queue_size=8, cpda=0, hpda=0,
         maxh2cdata=0x20000, max_icd=ADMIN_ICD):
    h = HostQueuePair(queue_size=queue_size, hdgst=hdgst, ddgst=ddgst, hpda=hpda, max_icd=max_icd,
                      buffer_size=4096)
    c = ControllerQueuePair(allow_hdgst=allow_h, allow_ddgst=allow_d, cpda=cpda,
                            maxh2cdata=maxh2cdata, buffer_size=4096)
    h.start()
    (ec,) = pump(h, c)
    (eh,) = pump(c, h)
    assert isinstance(ec, Established) and isinstance(eh, Established)
    return h, c


def fresh_host(**kw) -> HostQueuePair:
    h = HostQueuePair(queue_size=kw.pop("queue_size", 8), buffer_size=4096, **kw)
    h.start()
    h.take_outgoing()
    return h


# --- connection initialization ---------------------------------------------------------

def test_icreq_bytes_from_host():
    h = HostQueuePair(queue_size=32, hdgst=True, ddgst=False, hpda=2, maxr2t=3)
    h.start()
    raw = P.join(h.take_outgoing())
    assert raw == ch(0x00, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 2, 1, 3) + bytes(112)


def test_icresp_bytes_from_controller():
    c = ControllerQueuePair(allow_hdgst=True, allow_ddgst=True, cpda=1, maxh2cdata=0x10000)
    c.decoder.feed(ch(0x00, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 0, 3, 0) + bytes(112))
    (est,) = c.receive()
    assert P.join(c.take_outgoing()) == icresp(cpda=1, dgst=3, maxh2cdata=0x10000)
    assert est == Established(True, True, cpda=1, hpda=0, maxh2cdata=0x10000, maxr2t=0)


@pytest.mark.parametrize("want_h", [False, True])
@pytest.mark.parametrize("want_d", [False, True])
@pytest.mark.parametrize("allow_h", [False, True])
@pytest.mark.parametrize("allow_d", [False, True])
def test_digest_negotiation(want_h, want_d, allow_h, allow_d):
    h = HostQueuePair(queue_size=4, hdgst=want_h, ddgst=want_d)
    c = ControllerQueuePair(allow_hdgst=allow_h, allow_ddgst=allow_d)
    h.start()
    (ec,) = pump(h, c)
    (eh,) = pump(c, h)
    assert (eh.hdgst, eh.ddgst) == (want_h and allow_h, want_d and allow_d)
    assert (ec.hdgst, ec.ddgst) == (eh.hdgst, eh.ddgst)
    # A command with data crosses with exactly the negotiated digest flags.
    h.submit(WRITE, write_data=b"w" * 64)
    (cmd_pdu,) = split(P.join(h.outgoing))
    assert cmd_pdu[1] == (0x01 if eh.hdgst else 0) | (0x02 if eh.ddgst else 0)
    (cmd,) = pump(h, c)
    assert bytes(cmd.data) == b"w" * 64 and not cmd.digest_error


def test_icresp_granting_unrequested_digest():
    for want_h, want_d, granted in [(False, False, 1), (False, False, 2), (True, False, 3),
                                    (False, True, 1)]:
        h = fresh_host(hdgst=want_h, ddgst=want_d)
        with pytest.raises(PeerProtocolError) as ei:
            feed(h, icresp(dgst=granted))
        assert (ei.value.fes, ei.value.fei) == (1, 11)
        assert h.established is None


def test_icresp_parameters_are_applied():
    h = fresh_host()
    (est,) = feed(h, icresp(cpda=3, maxh2cdata=8192))
    assert est.cpda == 3 and est.maxh2cdata == 8192 and h.maxh2cdata == 8192
    # Our in-capsule data now starts 16-byte aligned: header ends at 72 → PDO 80.
    h.submit(WRITE, write_data=b"x" * 10)
    (pdu,) = split(P.join(h.take_outgoing()))
    assert pdu[3] == 80 and pdu[72:80] == bytes(8)


def test_hpda_applies_to_controller_data():
    h, c = pair(hpda=1)
    cid = h.submit(READ, read_into=memoryview(bytearray(12)))
    (cmd,) = pump(h, c)
    c.send_data(cmd.cid, b"abcdefghijkl")
    (pdu,) = split(P.join(c.outgoing))
    assert pdu[3] == 24  # 24 is already 8-byte aligned
    c.respond(cmd.cid)
    assert [e.cid for e in pump(c, h)] == [cid]
    h2, c2 = pair(hpda=2, hdgst=True)  # 12-byte alignment; header+digest end at 28 → 36
    h2.submit(READ, read_into=memoryview(bytearray(4)))
    (cmd,) = pump(h2, c2)
    c2.send_data(cmd.cid, b"abcd")
    (pdu,) = split(P.join(c2.outgoing))
    assert pdu[3] == 36


def test_nothing_but_ic_before_established():
    h = HostQueuePair(queue_size=4)
    with pytest.raises(LocalProtocolError):
        h.submit(READ)
    h.start()
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, resp(0))
    assert ei.value.fes == P.FES.PDU_SEQUENCE_ERROR


def test_second_ic_is_sequence_error():
    h, c = pair()
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, icresp())
    assert ei.value.fes == P.FES.PDU_SEQUENCE_ERROR


def test_bytes_after_ic_in_the_same_read_are_processed():
    # The ICReq and a (header-digested) CapsuleCmd arrive together: the
    # command is decoded with the just-negotiated digest in the same call.
    h = HostQueuePair(queue_size=4, hdgst=True)
    c = ControllerQueuePair()
    h.start()
    icreq = P.join(h.take_outgoing())
    sqe = bytearray(64)
    sqe[0], sqe[2] = 0x18, 5
    cmd = P.join(P.encode_capsule_cmd(sqe, hdgst=True))
    c.decoder.feed(icreq + cmd)
    events = c.receive()
    assert [type(e) for e in events] == [Established, Command]
    assert events[1].cid == 5


def test_bytes_after_icresp_in_the_same_read_are_processed():
    h = fresh_host()
    h.decoder.feed(icresp() + ch(0x03, 0, 24, 0, 24) + struct.pack("<HI", 1, 0) + bytes(10))
    with pytest.raises(ConnectionLost):
        h.receive()


# --- commands ---------------------------------------------------------------------------

def test_command_without_data():
    h, c = pair()
    cid = h.submit(SQE(opc=0x18))
    (cmd,) = pump(h, c)
    assert cmd == Command(cid, cmd.sqe, None, False)
    sqe = decode_sqe(cmd.sqe)
    assert (sqe.opc, sqe.cid, sqe.flags, sqe.sgl.type, sqe.sgl.length) == (0x18, cid, 0x40, 0x5A, 0)
    c.respond(cid, dw0=0x1234)
    (done,) = pump(c, h)
    assert done == Completion(cid, CQE(dw0=0x1234, sqhd=1, cid=cid))
    assert h.outstanding == 0


def test_command_with_in_capsule_data():
    h, c = pair()
    data = bytes(range(256)) * 2
    cid = h.submit(WRITE, write_data=data)
    (cmd,) = pump(h, c)
    assert bytes(cmd.data) == data
    sqe = decode_sqe(cmd.sqe)
    assert (sqe.sgl.type, sqe.sgl.addr, sqe.sgl.length, sqe.cid) == (0x01, 0, 512, cid)
    c.respond(cid)
    assert pump(c, h)[0].cqe.status == 0


def test_in_capsule_limit_is_max_icd():
    h, c = pair(max_icd=1024)
    h.submit(WRITE, write_data=b"a" * 1024)
    h.submit(WRITE, write_data=b"b" * 1025)
    cmds = pump(h, c)
    assert bytes(cmds[0].data) == b"a" * 1024
    assert cmds[1].data is None
    sqe = decode_sqe(cmds[1].sqe)
    assert (sqe.sgl.type, sqe.sgl.length) == (0x5A, 1025)


def test_write_via_r2t_split_by_maxh2cdata():
    h, c = pair(maxh2cdata=8192)
    data = bytes(i & 0xFF for i in range(20000))
    cid = h.submit(WRITE, write_data=data)
    (cmd,) = pump(h, c)
    assert cmd.data is None
    c.request_data(cid, 20000)
    (r2t_pdu,) = split(P.join(c.outgoing))
    assert r2t_pdu == r2t(cid, 0, 0, 20000)
    assert pump(c, h) == []
    pdus = split(P.join(h.outgoing))
    assert [len(p) - 24 for p in pdus] == [8192, 8192, 3616]
    assert [p[1] for p in pdus] == [0, 0, 0x04]  # LAST_PDU only on the final one
    assert [struct.unpack_from("<HHII", p, 8) for p in pdus] == [
        (cid, 0, 0, 8192), (cid, 0, 8192, 8192), (cid, 0, 16384, 3616)]
    events = pump(h, c)
    assert [type(e) for e in events] == [WriteData] * 3
    assert [e.done for e in events] == [False, False, True]
    assert b"".join(bytes(e.data) for e in events) == data
    c.respond(cid)
    assert pump(c, h) == [Completion(cid, CQE(sqhd=1, cid=cid))]


def test_r2t_for_part_of_the_data():
    # A controller may ask for the data in several R2Ts (MAXR2T permitting).
    h = fresh_host()
    feed(h, icresp(maxh2cdata=4096))
    data = bytes(range(256)) * 64  # 16 KiB, beyond ADMIN_ICD
    cid = h.submit(WRITE, write_data=data)
    h.take_outgoing()
    assert feed(h, r2t(cid, 7, 8192, 6000)) == []
    pdus = split(P.join(h.take_outgoing()))
    heads = [struct.unpack_from("<HHII", p, 8) for p in pdus]
    assert heads == [(cid, 7, 8192, 4096), (cid, 7, 12288, 1904)]
    assert [p[1] for p in pdus] == [0, 0x04]
    assert pdus[0][24:] == data[8192:12288]


def test_read_without_success():
    h, c = pair()
    buf = bytearray(1000)
    cid = h.submit(READ, read_into=memoryview(buf))
    (cmd,) = pump(h, c)
    assert decode_sqe(cmd.sqe).sgl.length == 1000
    # SQ flow control is on: the controller must not set SUCCESS.
    assert c.can_send_success() is False
    c.send_data(cid, b"r" * 1000, success=True)
    (pdu,) = split(P.join(c.outgoing))
    assert pdu[1] == 0x04
    assert pump(c, h) == []
    assert h.outstanding == 1
    c.respond(cid)
    assert pump(c, h) == [Completion(cid, CQE(sqhd=1, cid=cid))]
    assert buf == b"r" * 1000


def test_read_with_success_when_sq_flow_control_is_off():
    h, c = pair()
    c.sq_flow_control = False
    h.sq_flow_control = False
    buf = bytearray(64)
    cid = h.submit(READ, read_into=memoryview(buf))
    pump(h, c)
    assert c.can_send_success()
    c.send_data(cid, bytes(range(64)), success=True)
    (pdu,) = split(P.join(c.outgoing))
    assert pdu[1] == 0x0C
    assert pump(c, h) == [Completion(cid, CQE(cid=cid, status=0))]
    assert buf == bytes(range(64))
    assert h.outstanding == 0


def test_read_in_several_c2h_pdus():
    h = fresh_host()
    feed(h, icresp())
    buf = bytearray(10)
    cid = h.submit(READ, read_into=memoryview(buf))
    assert feed(h, c2h(cid, 0, b"01234", flags=0) + c2h(cid, 5, b"56789")) == []
    assert feed(h, resp(cid)) == [Completion(cid, CQE(cid=cid))]
    assert buf == b"0123456789"


def test_success_before_all_data():
    h = fresh_host()
    feed(h, icresp())
    cid = h.submit(READ, read_into=memoryview(bytearray(10)))
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, c2h(cid, 0, b"01234", flags=0x0C))
    assert (ei.value.fes, ei.value.fei) == (1, 1)


def test_sqhd_is_tracked_and_sqsize_limits_submissions():
    h = fresh_host(queue_size=4)
    feed(h, icresp())
    cids = [h.submit(READ) for _ in range(3)]
    assert not h.can_submit()
    # Completing one frees a CID, but the controller reports SQHD 0 (nothing
    # consumed), so the queue is still full: tail 3, head 0, size 4.
    assert feed(h, resp(cids[0], sqhd=0))[0].cid == cids[0]
    assert h.outstanding == 2 and h._free_cids
    assert not h.can_submit()
    with pytest.raises(LocalProtocolError, match="full"):
        h.submit(READ)
    feed(h, resp(cids[1], sqhd=2))
    assert h.sqhd == 2 and h.can_submit()
    h.submit(READ)


def test_cid_pool_exhaustion():
    h, c = pair(queue_size=4)
    h.sq_flow_control = False
    cids = [h.submit(READ) for _ in range(3)]  # queue_size - 1
    assert sorted(cids) == [0, 1, 2]
    assert h.outstanding == 3 and not h.can_submit()
    with pytest.raises(LocalProtocolError):
        h.submit(READ)
    cmds = pump(h, c)
    c.respond(cmds[1].cid)
    pump(c, h)
    assert h.can_submit()
    assert h.submit(READ) == cids[1]  # the freed CID is reused
    with pytest.raises(LocalProtocolError):
        h.submit(READ)


def test_cids_are_unique_across_many_commands():
    h, c = pair(queue_size=16)
    seen = set()
    for _ in range(5):
        cids = [h.submit(READ) for _ in range(15)]
        assert len(set(cids)) == 15
        seen.update(cids)
        for cmd in pump(h, c):
            c.respond(cmd.cid)
        assert len(pump(c, h)) == 15
    assert seen == set(range(15))


def test_queue_size_bounds():
    for bad in (0, 1, 65536):
        with pytest.raises(ValueError):
            HostQueuePair(queue_size=bad)


# --- peer errors -------------------------------------------------------------------------

@pytest.mark.parametrize("pdu", [
    resp(3),
    c2h(3, 0, b"x"),
    r2t(3, 0, 0, 1),
    resp(0xFFFF),
    c2h(0x7FFF, 0, b"x"),
])
def test_pdu_for_unknown_cid(pdu):
    h = fresh_host()
    feed(h, icresp())
    h.submit(READ, read_into=memoryview(bytearray(1)))  # CID 0 outstanding
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, pdu)
    assert ei.value.fes == 1 and ei.value.fei == 8


def test_response_for_completed_cid():
    h = fresh_host()
    feed(h, icresp())
    cid = h.submit(READ)
    feed(h, resp(cid))
    with pytest.raises(PeerProtocolError):
        feed(h, resp(cid))


@pytest.mark.parametrize("off,data", [
    (0, b"x" * 11),  # beyond the command's length
    (5, b"x"),  # a gap: data must arrive in order
    (10, b"x"),  # past the end
    (0xFFFFFFF0, b"x" * 32),
])
def test_c2h_data_out_of_range(off, data):
    h = fresh_host()
    feed(h, icresp())
    cid = h.submit(READ, read_into=memoryview(bytearray(10)))
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, c2h(cid, off, data))
    assert ei.value.fes == P.FES.DATA_OUT_OF_RANGE == 4


def test_c2h_data_for_a_write():
    h = fresh_host()
    feed(h, icresp())
    cid = h.submit(WRITE, write_data=b"abc")
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, c2h(cid, 0, b"x"))
    assert ei.value.fes == 4


@pytest.mark.parametrize("off,length", [(0, 0), (0, 20001), (20000, 1), (1 << 31, 1 << 31)])
def test_r2t_out_of_range(off, length):
    h = fresh_host()
    feed(h, icresp())
    cid = h.submit(WRITE, write_data=b"w" * 20000)
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, r2t(cid, 0, off, length))
    assert ei.value.fes == 4


def test_r2t_for_in_capsule_write_or_read():
    h = fresh_host()
    feed(h, icresp())
    cid1 = h.submit(WRITE, write_data=b"small")
    cid2 = h.submit(READ, read_into=memoryview(bytearray(8)))
    for cid in (cid1, cid2):
        with pytest.raises(PeerProtocolError) as ei:
            feed(h, r2t(cid, 0, 0, 1))
        assert ei.value.fes == 4


def test_c2h_data_digest_error_gives_transient_transport_error():
    h, c = pair(ddgst=True)
    buf = bytearray(100)
    cid = h.submit(READ, read_into=memoryview(buf))
    pump(h, c)
    c.send_data(cid, b"d" * 100)

    def flip_digest(b):
        b[-1] ^= 0x01

    assert pump(c, h, corrupt=flip_digest) == []
    c.respond(cid)  # the controller saw nothing wrong
    (done,) = pump(c, h)
    assert done.cqe.status == STATUS_TRANSIENT_TRANSPORT == 0x22
    assert h.outstanding == 0


def test_c2h_data_digest_error_with_success():
    h, c = pair(ddgst=True)
    c.sq_flow_control = h.sq_flow_control = False
    cid = h.submit(READ, read_into=memoryview(bytearray(8)))
    pump(h, c)
    c.send_data(cid, b"12345678", success=True)

    def flip_data(b):
        b[-6] ^= 0x80

    (done,) = pump(c, h, corrupt=flip_data)
    assert done == Completion(cid, CQE(cid=cid, status=0x22))


def test_error_status_is_not_replaced_by_digest_status():
    h, c = pair(ddgst=True)
    cid = h.submit(READ, read_into=memoryview(bytearray(4)))
    pump(h, c)
    c.send_data(cid, b"abcd")
    pump(c, h, corrupt=lambda b: b.__setitem__(-1, b[-1] ^ 1))
    c.respond(cid, status=0x0281)  # a media error from the controller
    assert pump(c, h)[0].cqe.status == 0x0281


def test_controller_sees_data_digest_errors():
    h, c = pair(ddgst=True, maxh2cdata=4096)
    h.submit(WRITE, write_data=b"i" * 100)
    (cmd,) = pump(h, c, corrupt=lambda b: b.__setitem__(-1, b[-1] ^ 1))
    assert cmd.digest_error is True
    cid = h.submit(WRITE, write_data=b"r" * 10000)
    pump(h, c)
    c.request_data(cid, 10000)
    pump(c, h)
    events = pump(h, c, corrupt=lambda b: b.__setitem__(30, b[30] ^ 1))  # first H2CData's data
    assert [e.digest_error for e in events] == [True, False, False]


def test_header_digest_error_from_controller():
    h, c = pair(hdgst=True)
    cid = h.submit(READ)
    pump(h, c)
    c.respond(cid)
    with pytest.raises(PeerProtocolError) as ei:
        pump(c, h, corrupt=lambda b: b.__setitem__(10, b[10] ^ 1))
    assert ei.value.fes == P.FES.HEADER_DIGEST_ERROR


# --- controller-side rules -----------------------------------------------------------------

def h2c(cccid, ttag, off, data, last=True) -> bytes:
    return (ch(0x06, 0x04 if last else 0, 24, 24, 24 + len(data))
            + struct.pack("<HHII4x", cccid, ttag, off, len(data)) + data)


def ctrl_with_transfer(length=100, maxh2cdata=4096):
    h, c = pair(maxh2cdata=maxh2cdata)
    cid = h.submit(WRITE, write_data=b"q" * max(length, ADMIN_ICD + 1))
    pump(h, c)
    c.request_data(cid, length)
    c.take_outgoing()
    return c, cid


def test_h2c_without_r2t():
    h, c = pair()
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(1, 0, 0, b"x"))
    assert (ei.value.fes, ei.value.fei) == (1, 8)


def test_h2c_wrong_ttag():
    c, cid = ctrl_with_transfer()
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(cid, 9, 0, b"x" * 100))
    assert (ei.value.fes, ei.value.fei) == (1, 10)


@pytest.mark.parametrize("off,n", [(1, 99), (0, 101), (100, 1)])
def test_h2c_out_of_range(off, n):
    c, cid = ctrl_with_transfer()
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(cid, 0, off, b"x" * n))
    assert ei.value.fes == 4


def test_h2c_last_flag_is_not_checked():
    """nvmet completes an R2T's data by their count, not by LAST_PDU; so do we."""
    c, cid = ctrl_with_transfer()
    (w,) = feed(c, h2c(cid, 0, 0, b"x" * 50, last=True))
    assert (w.offset, w.done) == (0, False)
    (w,) = feed(c, h2c(cid, 0, 50, b"y" * 50, last=False))
    assert (w.offset, w.done) == (50, True)


def test_h2c_larger_than_maxh2cdata():
    c, cid = ctrl_with_transfer(length=ADMIN_ICD, maxh2cdata=4096)
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(cid, 0, 0, b"x" * 8192))
    assert ei.value.fes == P.FES.DATA_LIMIT_EXCEEDED


def test_in_capsule_data_above_limit():
    h, c = pair()
    c.max_icd = 512
    sqe = bytearray(64)
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, P.join(P.encode_capsule_cmd(sqe, b"x" * 513)))
    assert ei.value.fes == 5


def test_one_r2t_per_command():
    c, cid = ctrl_with_transfer()
    with pytest.raises(LocalProtocolError):
        c.request_data(cid, 10)
    c.abandon(cid)
    c.request_data(cid, 10)


def test_controller_sqhd_in_responses():
    h, c = pair()
    c.sqsize = 4
    for expected in (1, 2, 3, 0, 1):
        cid = h.submit(READ)
        pump(h, c)
        c.respond(cid)
        (done,) = pump(c, h)
        assert done.cqe.sqhd == expected
    c.sq_flow_control = False
    cid = h.submit(READ)
    pump(h, c)
    c.respond(cid)
    (pdu,) = split(P.join(c.outgoing))
    assert struct.unpack_from("<H", pdu, 8 + 8)[0] == 0xFFFF


# --- termination ----------------------------------------------------------------------------

def test_termreq_received_by_host():
    h, c = pair()
    c.terminate(P.FES.PDU_SEQUENCE_ERROR, 0)
    with pytest.raises(ConnectionLost, match="pdu sequence error"):
        pump(c, h)
    assert h.closed


def test_termreq_received_by_controller():
    h, c = pair()
    h.terminate(P.FES.HEADER_DIGEST_ERROR)
    with pytest.raises(ConnectionLost, match="header digest error"):
        pump(h, c)
    assert c.closed


def test_termreq_with_unknown_fes():
    h = fresh_host()
    with pytest.raises(ConnectionLost, match="FES 0x77"):
        feed(h, ch(0x03, 0, 24, 0, 24) + struct.pack("<HI", 0x77, 3) + bytes(10))


def test_terminate_emits_termreq_and_closes():
    h, c = pair()
    offending = bytes(range(200))
    h.terminate(P.FES.INVALID_HEADER_FIELD, 2, offending)
    raw = P.join(h.take_outgoing())
    assert raw == (ch(0x02, 0, 24, 0, 24 + 128) + struct.pack("<HI", 1, 2) + bytes(10)
                   + offending[:128])
    assert h.closed
    h.terminate(1)  # nothing more once closed
    assert h.take_outgoing() == []
    with pytest.raises(LocalProtocolError):
        h.submit(READ)


def test_controller_terminate_is_c2h():
    c = ControllerQueuePair()
    c.terminate(P.FES.UNSUPPORTED_PARAMETER, 8)
    raw = P.join(c.take_outgoing())
    assert raw == ch(0x03, 0, 24, 0, 24) + struct.pack("<HI", 6, 8) + bytes(10)


def test_termreq_for_error():
    err = PeerProtocolError("x", P.FES.DATA_OUT_OF_RANGE, 12)
    raw = P.join(termreq_for(err, b"\x07" * 24, role=P.ROLE_HOST))
    assert raw == ch(0x02, 0, 24, 0, 48) + struct.pack("<HI", 4, 12) + bytes(10) + b"\x07" * 24
    raw = P.join(termreq_for(PeerProtocolError("y"), b"", role=P.ROLE_CONTROLLER))
    assert raw[0] == 0x03 and raw[8] == 1  # no FES given: Invalid PDU Header Field


def test_protocol_error_termreq_roundtrip():
    """The TermReq chosen for a bad PDU decodes on the other side with the same FES/FEI."""
    h, c = pair()
    bad = ch(0x05, 0, 25, 0, 24) + bytes(16)
    with pytest.raises(PeerProtocolError) as ei:
        feed(h, bad)
    h.terminate(ei.value.fes, ei.value.fei, bad)
    with pytest.raises(ConnectionLost, match=r"FEI 2\b"):
        pump(h, c)


def test_encode_cqe_matches_resp_helper():
    # Sanity of this file's hand-built CapsuleResp against the spec layout.
    assert resp(5, status=0x22, sqhd=3)[8:] == encode_cqe(CQE(sqhd=3, cid=5, status=0x22))
