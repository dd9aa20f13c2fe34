"""The discovery controller: identify, the log page (contents, filtering, offsets), GENCTR."""

from __future__ import annotations

from nvmecontrol.host.discovery import fetch_discovery_log
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.target.config import PortConfig, ReferralConfig
from nvmecontrol.wire import admin
from nvmecontrol.wire.discovery import (AdrFam, SubType, TrType, decode_discovery_entry,
                                        decode_discovery_header)
from nvmecontrol.wire.identify import CNTRLTYPE_DISCOVERY
from nvmecontrol.wire.logpages import LogPage

from .helpers import connect_discovery, make_host, run, sc


def test_identify_and_kato_zero(nvmfd_server):
    a = connect_discovery(nvmfd_server)
    try:
        assert a.cdata.cntrltype == CNTRLTYPE_DISCOVERY
        assert a.cdata.subnqn == DISCOVERY_NQN
        assert a.cdata.mn == "nvmfd"
        assert a.cdata.cntlid >= 1
    finally:
        a.shutdown()


def test_log_entries(nvmfd_server):
    a = connect_discovery(nvmfd_server)
    try:
        log = fetch_discovery_log(a)
        assert log.header.recfmt == 0 and log.header.numrec == 1
        e = log.entries[0]
        assert e.trtype == TrType.TCP and e.adrfam == AdrFam.IPV4
        assert e.subtype == SubType.NVME
        assert e.treq & 0x4  # SQ flow control disable supported
        assert (e.portid, e.cntlid, e.asqsz) == (1, 0xFFFF, 32)
        assert e.trsvcid == str(nvmfd_server.port)
        assert e.traddr == "127.0.0.1"
        assert e.subnqn == nvmfd_server.subnqn
        assert e.sectype == 0
    finally:
        a.shutdown()


def test_wildcard_replaced_by_local_address(nvmfd_factory):
    h = nvmfd_factory(addresses=["0.0.0.0"])
    a = connect_discovery(h)
    try:
        e = fetch_discovery_log(a).entries[0]
        assert e.traddr == "127.0.0.1" and e.adrfam == AdrFam.IPV4
    finally:
        a.shutdown()


def test_offsets_and_lengths(nvmfd_server):
    """Header alone, entries at offset 1024, a slice, and zeros past the end."""
    a = connect_discovery(nvmfd_server)
    try:
        def page(offset, length):
            g = admin.GetLogPage(lid=LogPage.DISCOVERY, length=length, offset=offset, nsid=0)
            return run(a.admin, admin.build_get_log_page(g), read_len=length)

        cqe, whole = page(0, 2048)
        assert cqe.status == 0
        cqe, head = page(0, 1024)
        assert head == whole[:1024] and decode_discovery_header(head).numrec == 1
        cqe, entry = page(1024, 1024)
        assert entry == whole[1024:]
        assert decode_discovery_entry(entry).subnqn == nvmfd_server.subnqn
        cqe, part = page(1024 + 256, 16)
        assert part == whole[1024 + 256:1024 + 272]
        cqe, tail = page(1536, 1024)
        assert cqe.status == 0 and tail == whole[1536:] + bytes(512)
        cqe, _ = page(4096, 1024)  # beyond the log
        assert sc(cqe) == (0, 0x02, True)
        sqe = admin.build_get_log_page(admin.GetLogPage(lid=LogPage.DISCOVERY, length=4,
                                                        nsid=0))._replace(cdw12=2)
        cqe, _ = run(a.admin, sqe, read_len=4)  # offset not dword aligned
        assert sc(cqe) == (0, 0x02, True)
        # Only the discovery and error logs exist here.
        g = admin.GetLogPage(lid=LogPage.SMART, length=512)
        cqe, _ = run(a.admin, admin.build_get_log_page(g), read_len=512)
        assert sc(cqe) == (1, 0x09, True)
    finally:
        a.shutdown()


def test_host_filtering_and_referrals(nvmfd_factory):
    from nvmecontrol.target.config import NamespaceConfig, SubsystemConfig, TargetConfig
    alice, bob = make_host(), make_host()
    open_nqn = "nqn.2014-08.org.example:open"
    alice_nqn = "nqn.2014-08.org.example:alice-only"
    cfg = TargetConfig(
        hosts=[alice.hostnqn],
        subsystems=[
            SubsystemConfig(open_nqn, [NamespaceConfig(1, "mem:1M")], allow_any_host=True),
            SubsystemConfig(alice_nqn, [NamespaceConfig(1, "mem:1M")],
                            allowed_hosts=[alice.hostnqn])],
        ports=[PortConfig(7, "127.0.0.1", "0", subsystems=[open_nqn, alice_nqn], referrals=[
            ReferralConfig("r1", "192.0.2.10", "8009", portid=3),
            ReferralConfig("off", "192.0.2.11", "8009", enable=False)])])
    h = nvmfd_factory(cfg)
    for host, expect in ((alice, [open_nqn, alice_nqn]), (bob, [open_nqn])):
        a = connect_discovery(h, host=host)
        try:
            entries = fetch_discovery_log(a).entries
        finally:
            a.shutdown()
        subs = [e for e in entries if e.subtype == SubType.NVME]
        refs = [e for e in entries if e.subtype == SubType.REFERRAL]
        assert [e.subnqn for e in subs] == expect
        assert all(e.portid == 7 for e in subs)
        assert len(refs) == 1
        r = refs[0]
        assert (r.traddr, r.trsvcid, r.portid, r.subnqn) == ("192.0.2.10", "8009", 3,
                                                             DISCOVERY_NQN)


def test_genctr_bumps_on_change(nvmfd_server):
    a = connect_discovery(nvmfd_server)
    try:
        before = fetch_discovery_log(a).header.genctr
        with nvmfd_server.control() as c:
            c.request("ns-add", device="mem:1M")
        after = fetch_discovery_log(a).header.genctr
        assert after > before
    finally:
        a.shutdown()


def test_discovery_rejects_io_admin_commands(nvmfd_server):
    a = connect_discovery(nvmfd_server)
    try:
        cqe, _ = run(a.admin, admin.build_identify(0, nsid=1), read_len=4096)
        assert sc(cqe) == (0, 0x02, True)
        cqe, _ = run(a.admin, admin.build_set_num_queues(1))
        assert sc(cqe) == (0, 0x02, True)
        cqe, _ = run(a.admin, admin.SQE(admin.AdminOpc.ABORT))
        assert sc(cqe) == (0, 0x01, True)
    finally:
        a.shutdown()
