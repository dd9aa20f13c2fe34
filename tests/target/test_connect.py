"""Connect, properties and controller enable, answered as the Linux target answers."""

from __future__ import annotations

import pytest

from nvmecontrol.errors import CommandFailed, HostRefused
from nvmecontrol.host.association import AssociationParams, connect_queue
from nvmecontrol.transport.address import resolve
from nvmecontrol.wire import admin, fabrics as F, nvm
from nvmecontrol.wire.capsule import SQE
from nvmecontrol.wire.fabrics import CAP, CC, CSTS, Prop
from nvmecontrol.wire.identify import CNS_CONTROLLER

from .helpers import connect, make_host, run, sc


def _admin_only(handle, host=None, subnqn=None, **params):
    """Admin queue connected, controller not enabled."""
    params.setdefault("timeout_s", 10.0)
    host = host or make_host()
    q, cntlid, _fc = connect_queue(resolve(handle.address), qid=0, sqsize=32, host=host,
                                   subnqn=subnqn or handle.subnqn, cntlid=0xFFFF,
                                   kato_ms=30000, params=AssociationParams(**params))
    return q, cntlid


def test_refused_host_gets_connect_invalid_host(nvmfd_factory):
    allowed = make_host()
    h = nvmfd_factory(allow_hosts=[allowed.hostnqn])
    with pytest.raises(HostRefused) as e:
        connect(h, host=make_host())
    assert e.value.status == 0x4184
    ok = connect(h, host=allowed)
    ok.shutdown()


def test_unknown_subsystem_is_invalid_parameter_subnqn(nvmfd_server):
    with pytest.raises(CommandFailed) as e:
        connect(nvmfd_server, subnqn="nqn.2014-08.org.example:nope")
    cqe = e.value.cqe
    assert sc(cqe) == (1, 0x82, True)
    assert F.parse_connect_invalid(cqe.dw0) == (256, True)


def test_dynamic_cntlids_from_one(nvmfd_server):
    a, b = connect(nvmfd_server), connect(nvmfd_server)
    try:
        assert (a.cntlid, b.cntlid) == (1, 2)
    finally:
        a.shutdown()
    c = connect(nvmfd_server)  # the lowest free ID is reused
    assert c.cntlid == 1
    b.shutdown()
    c.shutdown()


def test_io_connect_checks(nvmfd_server):
    host = make_host()
    a = connect(nvmfd_server, host=host, num_io_queues=1)
    ai = resolve(nvmfd_server.address)
    p = AssociationParams(timeout_s=10.0)
    try:
        # Unknown controller ID: IPO 16 (CNTLID) in the data.
        with pytest.raises(CommandFailed) as e:
            connect_queue(ai, qid=1, sqsize=32, host=host, subnqn=nvmfd_server.subnqn,
                          cntlid=a.cntlid + 5, kato_ms=0, params=p)
        assert sc(e.value.cqe) == (1, 0x82, True)
        assert F.parse_connect_invalid(e.value.cqe.dw0) == (16, True)
        # Right controller, another host: not its controller.
        with pytest.raises(CommandFailed) as e:
            connect_queue(ai, qid=1, sqsize=32, host=make_host(), subnqn=nvmfd_server.subnqn,
                          cntlid=a.cntlid, kato_ms=0, params=p)
        assert F.parse_connect_invalid(e.value.cqe.dw0) == (16, True)
        # QID beyond the granted count (1): IPO 42 of the command.
        with pytest.raises(CommandFailed) as e:
            connect_queue(ai, qid=2, sqsize=32, host=host, subnqn=nvmfd_server.subnqn,
                          cntlid=a.cntlid, kato_ms=0, params=p)
        assert F.parse_connect_invalid(e.value.cqe.dw0) == (42, False)
        # QID 1 is taken.
        with pytest.raises(CommandFailed) as e:
            connect_queue(ai, qid=1, sqsize=32, host=host, subnqn=nvmfd_server.subnqn,
                          cntlid=a.cntlid, kato_ms=0, params=p)
        assert sc(e.value.cqe) == (0, 0x0C, True)
    finally:
        a.shutdown()


def test_sqsize_beyond_mqes(nvmfd_server):
    a = connect(nvmfd_server)
    try:
        assert a.cap.mqes == 127
        with pytest.raises(CommandFailed) as e:
            connect_queue(resolve(nvmfd_server.address), qid=0, sqsize=129, host=make_host(),
                          subnqn=nvmfd_server.subnqn, cntlid=0xFFFF, kato_ms=0,
                          params=AssociationParams(timeout_s=10.0))
        assert F.parse_connect_invalid(e.value.cqe.dw0) == (44, False)
    finally:
        a.shutdown()


def test_commands_before_enable_are_sequence_errors(nvmfd_server):
    q, cntlid = _admin_only(nvmfd_server)
    try:
        assert cntlid >= 1
        cqe, _ = run(q, admin.build_identify(CNS_CONTROLLER), read_len=4096)
        assert sc(cqe) == (0, 0x0C, True)
        cqe, _ = run(q, admin.build_keep_alive())
        assert sc(cqe) == (0, 0x0C, True)
        # Fabrics commands work: CAP, VS, CC, CSTS.
        cqe, _ = run(q, F.build_property_get(Prop.CAP))
        cap = CAP.decode(cqe.result64)
        assert (cap.mqes, cap.css & 1, cap.mpsmin, cap.mpsmax) == (127, 1, 0, 0)
        assert cap.to > 0
        cqe, _ = run(q, F.build_property_get(Prop.VS))
        assert F.VS.decode(cqe.dw0) == F.VS(1, 3)
        assert CSTS.decode(run(q, F.build_property_get(Prop.CSTS))[0].dw0).rdy == 0
        # Enable with wrong entry sizes: fatal status, not ready.
        bad = CC(en=1, iosqes=7, iocqes=4).encode()
        assert run(q, F.build_property_set(Prop.CC, bad))[0].status == 0
        assert CSTS.decode(run(q, F.build_property_get(Prop.CSTS))[0].dw0).cfs == 1
        run(q, F.build_property_set(Prop.CC, 0))
        good = CC(en=1, iosqes=6, iocqes=4).encode()
        assert run(q, F.build_property_set(Prop.CC, good))[0].status == 0
        assert CSTS.decode(run(q, F.build_property_get(Prop.CSTS))[0].dw0).rdy == 1
        assert run(q, admin.build_identify(CNS_CONTROLLER), read_len=4096)[0].status == 0
        # Shutdown: SHST complete, commands refused again.
        run(q, F.build_property_set(Prop.CC, good | (F.SHN_NORMAL << 14)))
        csts = CSTS.decode(run(q, F.build_property_get(Prop.CSTS))[0].dw0)
        assert csts.shst == F.SHST_COMPLETE
        assert sc(run(q, admin.build_keep_alive())[0]) == (0, 0x0C, True)
    finally:
        q.close()


def test_property_errors(nvmfd_server):
    q, _ = _admin_only(nvmfd_server)
    try:
        # CAP read as 4 bytes, CC as 8 bytes, unknown offset, writing CAP.
        cqe, _ = run(q, SQE(F.OPC_FABRICS, nsid=F.FCType.PROPERTY_GET, cdw10=0, cdw11=Prop.CAP))
        assert sc(cqe) == (0, 0x02, True)
        cqe, _ = run(q, SQE(F.OPC_FABRICS, nsid=F.FCType.PROPERTY_GET, cdw10=1, cdw11=Prop.CC))
        assert sc(cqe) == (0, 0x02, True)
        assert sc(run(q, F.build_property_get(0x40))[0]) == (0, 0x02, True)
        assert sc(run(q, F.build_property_set(Prop.CSTS, 1))[0]) == (0, 0x02, True)
        # A second Connect on a connected queue, an unknown Fabrics command type.
        cqe, _ = run(q, F.build_connect(F.ConnectCmd(qid=0, sqsize=31)), write_data=bytes(1024))
        assert sc(cqe) == (0, 0x01, True)
        assert sc(run(q, SQE(F.OPC_FABRICS, nsid=0x3F))[0]) == (0, 0x01, True)
    finally:
        q.close()


def test_io_queue_before_enable(nvmfd_server):
    host = make_host()
    q, cntlid = _admin_only(nvmfd_server, host=host)
    try:
        with pytest.raises(CommandFailed) as e:
            connect_queue(resolve(nvmfd_server.address), qid=1, sqsize=32, host=host,
                          subnqn=nvmfd_server.subnqn, cntlid=cntlid, kato_ms=0,
                          params=AssociationParams(timeout_s=10.0))
        assert sc(e.value.cqe) == (0, 0x0C, True)
    finally:
        q.close()


def test_command_before_connect_is_invalid_opcode(nvmfd_server):
    from .helpers import raw_queue
    from nvmecontrol.host.queue import HostQueue
    tq = raw_queue(nvmfd_server)
    q = HostQueue(tq, qid=0, timeout=10.0)
    try:
        cqe, _ = run(q, admin.build_identify(CNS_CONTROLLER), read_len=4096)
        assert sc(cqe) == (0, 0x01, True)
        cqe, _ = run(q, nvm.build_flush(1))
        assert sc(cqe) == (0, 0x01, True)
    finally:
        q.close()


def test_connect_data_through_r2t(nvmfd_server):
    """Connect data sent after R2T (not in-capsule) is accepted too."""
    host = make_host()
    from .helpers import raw_queue
    from nvmecontrol.host.queue import HostQueue
    from nvmecontrol.hostid import hostid_bytes
    tq = raw_queue(nvmfd_server)
    tq.qp.max_icd = 0  # force R2T
    q = HostQueue(tq, qid=0, timeout=10.0)
    try:
        data = F.encode_connect_data(F.ConnectData(hostid_bytes(host.hostid), 0xFFFF,
                                                   nvmfd_server.subnqn, host.hostnqn))
        cqe, _ = run(q, F.build_connect(F.ConnectCmd(qid=0, sqsize=31)), write_data=data)
        assert cqe.status == 0 and cqe.dw0 & 0xFFFF >= 1
    finally:
        q.close()


def test_recfmt_and_static_cntlid(nvmfd_server):
    host = make_host()
    from .helpers import raw_queue
    from nvmecontrol.host.queue import HostQueue
    from nvmecontrol.hostid import hostid_bytes
    for cmd, cntlid, expect in (
            (F.ConnectCmd(qid=0, sqsize=31, recfmt=1), 0xFFFF, (1, 0x80, True)),
            (F.ConnectCmd(qid=0, sqsize=31), 0xFFFE, (1, 0x82, True)),
            (F.ConnectCmd(qid=0, sqsize=0), 0xFFFF, (1, 0x82, True))):
        q = HostQueue(raw_queue(nvmfd_server), qid=0, timeout=10.0)
        try:
            data = F.encode_connect_data(F.ConnectData(hostid_bytes(host.hostid), cntlid,
                                                       nvmfd_server.subnqn, host.hostnqn))
            cqe, _ = run(q, F.build_connect(cmd), write_data=data)
            assert sc(cqe) == expect
        finally:
            q.close()
