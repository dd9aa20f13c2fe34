"""A protocol error carries the offending header for the TermReq (NVMe/TCP 3.6.2.9)."""

import pytest

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.wire import pdu as P


def test_decoder_attaches_offending_header():
    bad = bytes([0x04, 0x00, 0x50, 0x00]) + (72).to_bytes(4, "little") + bytes(64)  # HLEN 0x50
    d = P.PduDecoder(P.ROLE_CONTROLLER)
    d.connected = True
    d.feed(bad)
    with pytest.raises(PeerProtocolError) as ei:
        d.decode()
    assert ei.value.fei == P.FEI_HLEN
    assert ei.value.offending == bad


def test_offending_bytes_are_capped_at_128():
    d = P.PduDecoder(P.ROLE_CONTROLLER)
    d.feed(bytes([0xEE]) + bytes(300))
    with pytest.raises(PeerProtocolError) as ei:
        d.decode()
    assert len(ei.value.offending) == P.TERM_MAX_DATA
    term = P.encode_termreq(P.TermReq(ei.value.fes, ei.value.fei, ei.value.offending, h2c=False))
    assert int.from_bytes(term[4:8], "little") == P.TERM_HLEN + P.TERM_MAX_DATA
