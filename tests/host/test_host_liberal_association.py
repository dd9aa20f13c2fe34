"""The association-level rows of docs/host.md's audit table ("What the host refuses
from a controller"): what ``connect_association`` does where the Linux host would
carry on.  These record today's choices (host/association.py), so a change to
them is a change to the table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from nvmecontrol.errors import CommandFailed, PeerProtocolError, UsageError
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.target.config import (NamespaceConfig, PortConfig, SubsystemConfig,
                                       TargetConfig)
from nvmecontrol.transport.address import Address

# The scripted controller of test_association_errors (not a package: loaded by path).
_spec = importlib.util.spec_from_file_location(
    "host_association_errors", Path(__file__).with_name("test_association_errors.py"))
ae = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ae  # its dataclasses look their module up
_spec.loader.exec_module(ae)

SUBNQN = "nqn.2014-08.org.example:host-liberal"


class FlowControlOffController(ae.FakeController):
    """Answers Connect with SQHD FFFFh (flow control off) whatever the host asked."""

    def _answer(self, qp, cid, name, sqe, data):
        if name != "Connect":
            return super()._answer(qp, cid, name, sqe, data)
        qp.sq_flow_control = False
        qp.respond(cid, dw0=ae.CNTLID)


def test_flow_control_asked_for_and_refused_by_the_controller():
    f = FlowControlOffController(ae.Script())
    try:
        with pytest.raises(PeerProtocolError, match="controller disabled SQ flow control"):
            connect_association(f.address, ae.SUBNQN, ae.HOST,
                                AssociationParams(timeout_s=2.0, sq_flow_control=True))
        # Without -F the same answer is what the host asked for.
        a = connect_association(f.address, ae.SUBNQN, ae.HOST, AssociationParams(timeout_s=2.0))
        a.shutdown()
    finally:
        f.close()


@pytest.fixture
def target(nvmfd_factory):
    sub = SubsystemConfig(nqn=SUBNQN, allow_any_host=True, qid_max=1,
                          namespaces=[NamespaceConfig(nsid=1, path="mem:1M")])
    return nvmfd_factory(config=TargetConfig(
        ports=[PortConfig(portid=1, traddr="127.0.0.1", trsvcid="0", subsystems=[SUBNQN])],
        subsystems=[sub]))


def connect(target, **params):
    addr = Address("127.0.0.1", target.port, f"127.0.0.1:{target.port}")
    return connect_association(addr, SUBNQN, ae.HOST, AssociationParams(timeout_s=5.0, **params))


def test_fewer_io_queues_than_asked(target):
    with pytest.raises(CommandFailed, match=r"fewer I/O queues \(1\) than requested \(2\)"):
        connect(target, num_io_queues=2)
    connect(target, num_io_queues=1).shutdown()


def test_queue_size_above_mqes(target):
    with pytest.raises(UsageError, match="exceeds controller maximum"):
        connect(target, num_io_queues=1, io_queue_size=4096)
