"""The host's discovery log fetch against a scripted log (no sockets)."""

from __future__ import annotations

import struct

import pytest

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.host.discovery import fetch_discovery_log
from nvmecontrol.wire.discovery import DISCOVERY_HEADER_SIZE


class FakeAssociation:
    """Answers Get Log Page from a header that announces ``numrec`` records."""

    def __init__(self, numrec: int):
        self.header = struct.pack("<QQH", 1, numrec, 0).ljust(DISCOVERY_HEADER_SIZE, b"\0")
        self.reads = []

    def get_log_page(self, g) -> bytes:
        self.reads.append((g.offset, g.length))
        if g.offset == 0:
            return self.header[:g.length]
        return bytes(g.length)


def test_a_hostile_numrec_is_refused_before_anything_is_fetched():
    a = FakeAssociation(numrec=1 << 32)
    with pytest.raises(PeerProtocolError, match="announces 4294967296 records"):
        fetch_discovery_log(a)
    assert a.reads == [(0, DISCOVERY_HEADER_SIZE)]  # the header only


def test_an_empty_log_reads_the_header_twice():
    a = FakeAssociation(numrec=0)
    log = fetch_discovery_log(a)
    assert log.entries == [] and a.reads == [(0, DISCOVERY_HEADER_SIZE)] * 2
