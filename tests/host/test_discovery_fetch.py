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


def test_a_walk_gives_each_controller_the_whole_timeout(monkeypatch):
    """--walk: the timeout bounds each discovery controller's exchange, as
    without a walk (a deadline of its own, set when it is dialled)."""
    import time

    from nvmecontrol.host import discovery as D
    from nvmecontrol.host.association import AssociationParams
    from nvmecontrol.hostid import HostIdentity
    from nvmecontrol.transport.address import Address
    from nvmecontrol.wire.discovery import DiscoveryHeader, DiscoveryLogEntry

    referral = DiscoveryLogEntry(trtype=3, adrfam=1, subtype=1, treq=0, portid=2, cntlid=0xFFFF,
                                 asqsz=32, eflags=0, trsvcid="8010", traddr="127.0.0.1",
                                 subnqn=D.DISCOVERY_NQN)
    dialled = []

    def fake_discover(addr, host, params):
        dialled.append((addr.port, params.deadline - time.monotonic()))
        time.sleep(0.3)
        entries = [referral] if addr.port == 8009 else []
        return D.DiscoveryLog(DiscoveryHeader(1, len(entries), 0), entries), None

    monkeypatch.setattr(D, "discover", fake_discover)
    host = HostIdentity("nqn.2014-08.org.nvmexpress:uuid:" + "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                        None, "test", "test")
    params = AssociationParams(timeout_s=5.0)
    D.walk_referrals(Address("127.0.0.1", 8009, "127.0.0.1:8009"), host, params)
    assert [port for port, _ in dialled] == [8009, 8010]
    # Each had (nearly) the whole 5 s when it was dialled, the second too.
    assert all(4.5 < left <= 5.0 for _, left in dialled), dialled
    assert params.deadline is None  # the caller's record is left as it was
