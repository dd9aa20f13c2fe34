"""What the controller role ignores because nvmet-tcp ignores it (drivers/nvme/target/
tcp.c: nvmet_tcp_try_recv_pdu, nvmet_tcp_handle_icreq, nvmet_tcp_handle_h2c_data_pdu),
where the framing stays provably right: the rows of docs/wire.md and docs/target.md
that say "ignored" for the controller.  Hand-built PDUs play the host."""

from __future__ import annotations

import struct

import pytest

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.qpair import Command, ControllerQueuePair, Established, WriteData

LAST, HDGST, DDGST = P.F_LAST_PDU, P.F_HDGST, P.F_DDGST


def ch(ptype, flags, hlen, pdo, plen) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


def icreq(*, pdo=0, dgst=0) -> bytes:
    return ch(0x00, 0, 128, pdo, 128) + struct.pack("<HBBI", 0, 0, dgst, 0) + bytes(112)


def capsule(cid: int, *, flags=0, pdo=0, data=b"", plen=None) -> bytes:
    sqe = struct.pack("<BBH", 0x01, 0x40, cid) + bytes(60)
    body = bytes(max(0, pdo - 72)) + data
    return ch(0x04, flags, 72, pdo, 72 + len(body) if plen is None else plen) + sqe + body


def h2c(cid, ttag, off, data, *, flags=LAST, pdo=24, tail=b"", datal=None) -> bytes:
    body = bytes(max(0, pdo - 24)) + data + tail
    return (ch(0x06, flags, 24, pdo, 24 + len(body))
            + struct.pack("<HHII4x", cid, ttag, off, len(data) if datal is None else datal)
            + body)


def feed(c, raw: bytes) -> list:
    c.decoder.feed(raw)
    return c.receive()


def controller(**kw) -> ControllerQueuePair:
    c = ControllerQueuePair(buffer_size=8192, **kw)
    (est,) = feed(c, icreq())
    assert isinstance(est, Established)
    c.take_outgoing()
    return c


def transfer(c, cid=3, length=16) -> int:
    """Command ``cid`` waiting for ``length`` bytes after R2T; returns the R2T's TTAG."""
    (cmd,) = feed(c, capsule(cid))
    assert isinstance(cmd, Command)
    c.request_data(cid, length)
    r2t = P.join(c.take_outgoing())
    return struct.unpack_from("<H", r2t, 10)[0]


def test_icreq_pdo_is_ignored():
    c = ControllerQueuePair(buffer_size=8192)
    (est,) = feed(c, icreq(pdo=128))
    assert isinstance(est, Established)


def test_hdgst_flag_without_header_digests_is_ignored():
    c = controller()
    (cmd,) = feed(c, capsule(1, flags=HDGST))
    assert cmd.cid == 1 and cmd.data is None
    # A digest really sent: PLEN says so, and it is refused.
    with pytest.raises(PeerProtocolError) as ei:
        feed(controller(), capsule(1, flags=HDGST, plen=76) + bytes(4))
    assert (ei.value.fes, ei.value.fei) == (1, 4)


def test_h2c_data_with_pdo_0_reads_after_the_header():
    c = controller()
    ttag = transfer(c)
    (w,) = feed(c, h2c(3, ttag, 0, b"0123456789abcdef", pdo=0))
    assert isinstance(w, WriteData) and w.done and bytes(w.data) == b"0123456789abcdef"


def test_h2c_ddgst_flag_without_data_digests_is_ignored():
    c = controller()
    ttag = transfer(c)
    (w,) = feed(c, h2c(3, ttag, 0, b"x" * 16, flags=LAST | DDGST))
    assert w.done and bytes(w.data) == b"x" * 16 and not w.digest_error
    # 4 digest bytes really sent: DATAL and PLEN disagree.
    c = controller()
    ttag = transfer(c)
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(3, ttag, 0, b"x" * 16, flags=LAST | DDGST, tail=bytes(4)))
    assert ei.value.fei == 16


def test_empty_h2c_data_is_refused():
    """nvmet refuses an H2CData without data (pdu_len 0); so do we."""
    c = controller()
    ttag = transfer(c)
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(3, ttag, 0, b""))
    assert ei.value.fei == 4


def test_h2c_last_pdu_is_not_checked():
    c = controller()
    ttag = transfer(c)
    (w,) = feed(c, h2c(3, ttag, 0, b"a" * 8, flags=LAST))
    assert not w.done
    (w,) = feed(c, h2c(3, ttag, 8, b"b" * 8, flags=0))
    assert w.done


def test_h2c_data_is_matched_by_ttag():
    """nvmet finds the command of an H2CData by TTAG and never reads CCCID."""
    c = controller()
    ttag = transfer(c, cid=3)
    (w,) = feed(c, h2c(7, ttag, 0, b"t" * 16))  # CCCID 7: no such transfer
    assert (w.cid, w.done, bytes(w.data)) == (3, True, b"t" * 16)
    # A TTAG no R2T carries is still refused.
    c = controller()
    ttag = transfer(c, cid=3)
    with pytest.raises(PeerProtocolError) as ei:
        feed(c, h2c(3, ttag + 1, 0, b"t" * 16))
    assert ei.value.fei == 10
