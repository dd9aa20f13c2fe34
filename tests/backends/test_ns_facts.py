"""A session's namespace facts for devlist -v: identifiers and ANA state, read from nvmfd."""

from __future__ import annotations

import pytest

from nvmecontrol.backends.userspace.ns_facts import (NamespaceFacts, facts_of,
                                                     fetch_namespace_facts)
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig
from nvmecontrol.wire.identify import (CNS_NAMESPACE, IdentifyNamespace, Nidt, NsIdDescriptor,
                                       decode_identify_namespace)

SUBNQN = "nqn.2014-08.org.example:facts"
UUID1 = "0f1e2d3c-4b5a-4697-8877-665544332211"
NGUID1 = "00112233-4455-6677-8899-aabbccddeeff"


@pytest.fixture
def assoc(nvmfd_factory, host_identity):
    cfg = TargetConfig(
        subsystems=[SubsystemConfig(nqn=SUBNQN, allow_any_host=True, namespaces=[
            NamespaceConfig(1, "mem:1M", uuid=UUID1, nguid=NGUID1),
            NamespaceConfig(2, "mem:1M", ana_grpid=2)])],
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUBNQN])])
    srv = nvmfd_factory(config=cfg)
    a = connect_association(srv.address, SUBNQN, host_identity, AssociationParams())
    yield a
    a.shutdown()


def test_identifiers_and_ana_state_from_nvmfd(assoc):
    with assoc.admin.lock:
        decoded = {n: decode_identify_namespace(assoc.identify(CNS_NAMESPACE, n)) for n in (1, 2)}
        facts = fetch_namespace_facts(assoc, decoded)
    one, two = facts[1], facts[2]
    assert one.nguid == NGUID1.replace("-", "") and one.uuid == UUID1
    assert one.eui64 is not None and len(one.eui64) == 16
    assert (one.anagrpid, one.ana_state) == (1, "optimized")
    # Group 2's state is the port's to set (nvmfd ana-state); it is reported as a name.
    assert two.anagrpid == 2
    assert two.ana_state in {"optimized", "non-optimized", "inaccessible", "persistent-loss",
                             "change"}
    assert two.uuid and two.uuid != one.uuid  # nvmfd derives one per namespace


def test_facts_without_ana_or_identifiers():
    ns = IdentifyNamespace(nsze=8, anagrpid=1)
    assert facts_of(ns, None, None) == NamespaceFacts()  # all-zero identifiers are none
    ns = IdentifyNamespace(nsze=8, anagrpid=3, eui64=bytes(range(1, 9)))
    facts = facts_of(ns, [NsIdDescriptor(Nidt.NGUID, b"\x01" * 16)], {3: 0x3, 4: 0x1})
    assert facts == NamespaceFacts("01" * 16, "0102030405060708", None, 3, "inaccessible")
    assert facts_of(ns, None, {3: 0x7}).ana_state == "reserved (0x7)"
    assert facts_of(ns, None, {9: 0x1}).ana_state is None  # group not in the log
