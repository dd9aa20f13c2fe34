"""Admin commands of I/O controllers: Identify, every log page, features, abort."""

from __future__ import annotations

import uuid

import pytest

from nvmecontrol import __version__
from nvmecontrol.wire import admin, logpages as L, nvm
from nvmecontrol.wire import identify as I
from nvmecontrol.wire.admin import Feature

from .helpers import connect, run, sc


@pytest.fixture
def assoc(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    yield a
    a.shutdown()


def log_page(a, lid, length, **kw):
    g = admin.GetLogPage(lid=lid, length=length, **kw)
    return run(a.admin, admin.build_get_log_page(g), read_len=length)


# --- Identify ---------------------------------------------------------------

def test_identify_controller(assoc, nvmfd_server):
    c = assoc.cdata
    assert c.cntrltype == I.CNTRLTYPE_IO
    assert c.mn == "nvmfd" and c.fr == __version__ and len(c.sn) > 0
    assert c.cntlid == assoc.cntlid
    assert c.ver == 0x10300
    assert c.subnqn == nvmfd_server.subnqn
    assert c.ioccsz == (64 + 8192) // 16 and c.iorcsz == 1
    assert (c.icdoff, c.fcatt, c.msdbd) == (0, 0, 1)
    assert c.mdts == 8 and c.kas > 0
    assert c.sgls & 0x3 == 1
    assert c.oncs & (1 << 2) and c.oncs & (1 << 3)  # DSM, Write Zeroes
    assert c.vwc & 1
    assert c.nn >= 1 and c.maxcmd == 128
    assert c.sqes == 0x66 and c.cqes == 0x44
    assert c.ctratt & I.CTRATT_TBKAS
    assert c.oaes & (1 << 8)


def test_identify_namespace_list_and_descriptors(assoc):
    raw = assoc.identify(I.CNS_NAMESPACE, nsid=1)
    ns = I.decode_identify_namespace(raw)
    nblocks = (16 << 20) // 512
    assert ns.nsze == ns.ncap == ns.nuse == nblocks
    assert ns.block_size() == 512
    assert ns.nguid != bytes(16) and ns.eui64 != bytes(8)
    assert ns.dlfeat & 0x7 == 1
    assert I.decode_active_nsid_list(assoc.identify(I.CNS_ACTIVE_NSID_LIST)) == [1]
    assert I.decode_active_nsid_list(assoc.identify(I.CNS_ACTIVE_NSID_LIST, nsid=1)) == []
    descs = {d.nidt: d.nid for d in I.decode_ns_id_descriptors(
        assoc.identify(I.CNS_NS_ID_DESCRIPTORS, nsid=1))}
    assert descs[I.Nidt.NGUID] == ns.nguid and descs[I.Nidt.EUI64] == ns.eui64
    assert uuid.UUID(bytes=descs[I.Nidt.UUID]).int != 0
    assert descs[I.Nidt.CSI] == b"\x00"
    # An inactive NSID reads as zeros; broadcast and unknown CNS are errors.
    assert assoc.identify(I.CNS_NAMESPACE, nsid=5) == bytes(4096)
    cqe, _ = run(assoc.admin, admin.build_identify(I.CNS_NAMESPACE, nsid=0xFFFFFFFF),
                 read_len=4096)
    assert sc(cqe) == (0, 0x0B, True)
    cqe, _ = run(assoc.admin, admin.build_identify(I.CNS_NS_ID_DESCRIPTORS, nsid=9),
                 read_len=4096)
    assert sc(cqe) == (0, 0x0B, True)
    cqe, _ = run(assoc.admin, admin.build_identify(0x15), read_len=4096)
    assert sc(cqe) == (0, 0x02, True)
    # The transfer must be the 4096 bytes Identify returns.
    cqe, _ = run(assoc.admin, admin.build_identify(I.CNS_CONTROLLER), read_len=512)
    assert sc(cqe) == (0, 0x0F, True)


def test_identify_configured_uuid(nvmfd_factory):
    from nvmecontrol.target.config import (NamespaceConfig, PortConfig, SubsystemConfig,
                                           TargetConfig)
    u = "d592cdf3-5d1c-44e0-8412-3fcf7d99df27"
    g = "11223344-5566-7788-99aa-bbccddeeff00"
    nqn = "nqn.2014-08.org.example:ids"
    h = nvmfd_factory(TargetConfig(
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[nqn])],
        subsystems=[SubsystemConfig(nqn, [NamespaceConfig(3, "mem:1M", uuid=u, nguid=g)],
                                    allow_any_host=True, serial="SER123", model="Model X")]))
    a = connect(h)
    try:
        assert (a.cdata.sn, a.cdata.mn) == ("SER123", "Model X")
        descs = {d.nidt: d.nid for d in I.decode_ns_id_descriptors(
            a.identify(I.CNS_NS_ID_DESCRIPTORS, nsid=3))}
        assert descs[I.Nidt.UUID] == uuid.UUID(u).bytes
        assert descs[I.Nidt.NGUID] == uuid.UUID(g).bytes
        assert I.decode_active_nsid_list(a.identify(I.CNS_ACTIVE_NSID_LIST)) == [3]
    finally:
        a.shutdown()


# --- log pages ----------------------------------------------------------------

def test_smart_counts_io(assoc):
    q = assoc.io[0]
    before = L.decode_smart_log(log_page(assoc, L.LogPage.SMART, 512)[1])
    for i in range(3):
        run(q, nvm.build_write(1, i * 8, 8), write_data=bytes(4096))
    run(q, nvm.build_read(1, 0, 2048), read_len=1 << 20)
    after = L.decode_smart_log(log_page(assoc, L.LogPage.SMART, 512)[1])
    assert after.host_write_commands - before.host_write_commands == 3
    assert after.host_read_commands - before.host_read_commands == 1
    assert after.data_units_read >= before.data_units_read + 2  # 2048 units of 512 bytes
    assert after.data_units_written > before.data_units_written
    assert after.avail_spare == 100 and after.critical_warning == 0


def test_error_log_records_failures(assoc):
    run(assoc.io[0], nvm.build_read(9, 0, 1), read_len=512)
    entries = L.decode_error_log(log_page(assoc, L.LogPage.ERROR, 64 * 64)[1])
    first = entries[0]
    assert first.error_count >= 1 and first.sqid == 1 and first.nsid == 9
    assert first.status == 0x400B and first.opc == nvm.NvmOpc.READ
    smart = L.decode_smart_log(log_page(assoc, L.LogPage.SMART, 512)[1])
    assert smart.num_err_log_entries >= 1


def test_fw_slot_effects_and_ana(assoc):
    fw = L.decode_fw_slot_log(log_page(assoc, L.LogPage.FW_SLOT, 512)[1])
    assert fw.active_slot == 1 and fw.frs[0] == __version__
    eff = L.decode_cmd_effects_log(log_page(assoc, L.LogPage.CMD_EFFECTS, 4096)[1])
    assert eff.acs[admin.AdminOpc.IDENTIFY] & L.CE_CSUPP
    assert eff.iocs[nvm.NvmOpc.WRITE] & L.CE_LBCC and eff.iocs[nvm.NvmOpc.READ] & L.CE_CSUPP
    assert not eff.iocs[0x7E]
    size = L.ana_log_size(1, 1)
    ana = L.decode_ana_log(log_page(assoc, L.LogPage.ANA, size)[1])
    assert [(g.grpid, g.state, g.nsids) for g in ana.groups] == [(1, L.AnaState.OPTIMIZED, [1])]
    rgo = L.decode_ana_log(log_page(assoc, L.LogPage.ANA, L.ana_log_size(1, 0),
                                    lsp=L.ANA_LSP_RGO)[1])
    assert rgo.groups[0].nsids == []
    # Read in 4 KiB pieces up to the size NN allows, as nvme-cli does.
    full = L.ana_log_size(assoc.cdata.nanagrpid, assoc.cdata.nn)
    cqe, tail = log_page(assoc, L.LogPage.ANA, full - 4096, offset=4096)
    assert cqe.status == 0 and tail == bytes(full - 4096)


def test_changed_ns_and_discovery_logs(assoc, nvmfd_server):
    assert L.decode_changed_ns_list(log_page(assoc, L.LogPage.CHANGED_NS, 4096)[1]).nsids == []
    cqe, data = log_page(assoc, L.LogPage.DISCOVERY, 2048, nsid=0)
    assert cqe.status == 0 and int.from_bytes(data[8:16], "little") == 1


def test_invalid_log_page_and_limits(assoc):
    cqe, _ = log_page(assoc, 0x42, 512)
    assert sc(cqe) == (1, 0x09, True)
    cqe, _ = log_page(assoc, L.LogPage.SMART, 512, offset=1024)
    assert sc(cqe) == (0, 0x02, True)
    cqe, _ = log_page(assoc, L.LogPage.SMART, 4 << 20)  # above MDTS
    assert sc(cqe) == (0, 0x02, True)
    cqe, _ = log_page(assoc, L.LogPage.SMART, 512, nsid=1)
    assert sc(cqe) == (0, 0x02, True)
    # A partial read of a page is fine.
    cqe, data = log_page(assoc, L.LogPage.SMART, 64, offset=32)
    assert cqe.status == 0 and len(data) == 64


# --- features ------------------------------------------------------------------

def test_features(assoc):
    a = assoc.admin
    cqe, _ = run(a, admin.build_get_features(Feature.NUMBER_OF_QUEUES))
    assert admin.parse_num_queues(cqe.dw0) == (1, 1)
    cqe, _ = run(a, admin.build_get_features(Feature.KEEP_ALIVE_TIMER))
    assert cqe.dw0 == 120_000
    assert run(a, admin.build_set_features(Feature.KEEP_ALIVE_TIMER, 60_000))[0].status == 0
    assert run(a, admin.build_get_features(Feature.KEEP_ALIVE_TIMER))[0].dw0 == 60_000
    cqe, _ = run(a, admin.build_get_features(Feature.ASYNC_EVENT_CONFIG))
    # Namespace Attribute and ANA Change notices, enabled from the start as in nvmet.
    assert cqe.dw0 == admin.AEC_NS_ATTR | 1 << 11
    assert run(a, admin.build_set_features(Feature.ASYNC_EVENT_CONFIG, 0))[0].status == 0
    assert run(a, admin.build_get_features(Feature.ASYNC_EVENT_CONFIG))[0].dw0 == 0
    cqe, _ = run(a, admin.build_set_features(Feature.ASYNC_EVENT_CONFIG, 1 << 0))
    assert sc(cqe) == (0, 0x02, True)
    assert run(a, admin.build_get_features(Feature.VOLATILE_WRITE_CACHE))[0].dw0 == 1
    assert run(a, admin.build_set_features(Feature.VOLATILE_WRITE_CACHE, 0))[0].status == 0
    assert run(a, admin.build_get_features(Feature.VOLATILE_WRITE_CACHE))[0].dw0 == 0
    # Writes still work (now write-through).
    assert run(assoc.io[0], nvm.build_write(1, 0, 1), write_data=bytes(512))[0].status == 0
    # Capabilities (SEL 3): changeable; saving is refused; unknown features fail.
    assert run(a, admin.build_get_features(Feature.KEEP_ALIVE_TIMER, sel=3))[0].dw0 == 0x4
    cqe, _ = run(a, admin.build_set_features(Feature.KEEP_ALIVE_TIMER, 1000, save=True))
    assert sc(cqe) == (1, 0x0D, True)
    assert sc(run(a, admin.build_get_features(Feature.ARBITRATION))[0]) == (0, 0x02, True)
    # Number of Queues after I/O queues exist: sequence error.
    assert sc(run(a, admin.build_set_num_queues(4))[0]) == (0, 0x0C, True)


def test_number_of_queues_is_capped(nvmfd_server):
    a = connect(nvmfd_server)
    try:
        cqe, _ = run(a.admin, admin.build_set_num_queues(1000))
        assert admin.parse_num_queues(cqe.dw0) == (16, 16)
        cqe, _ = run(a.admin, admin.build_set_num_queues(2))
        assert admin.parse_num_queues(cqe.dw0) == (2, 2)
        cqe, _ = run(a.admin, admin.build_set_features(Feature.NUMBER_OF_QUEUES, 0xFFFF))
        assert sc(cqe) == (0, 0x02, True)
    finally:
        a.shutdown()


def test_host_identifier_feature_abort_and_unknown_opcode(assoc):
    a = assoc.admin
    cqe, data = run(a, admin.build_get_features(0x81, cdw11=1), read_len=16)
    assert cqe.status == 0 and data == assoc.host.hostid.bytes
    cqe, _ = run(a, admin.SQE(admin.AdminOpc.ABORT, cdw10=5 << 16 | 1))
    assert cqe.status == 0 and cqe.dw0 & 1
    assert sc(run(a, admin.SQE(0x80))[0]) == (0, 0x01, True)  # Format NVM: not here
