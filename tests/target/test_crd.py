"""Command Retry Delay: CRDT in Identify, feature 16h (ACRE) and the CRD of a withdrawn queue.

The Linux host enables ACRE when Identify Controller gives a CRDT1 and then
waits CRDT[CRD-1] x 100 ms before retrying a command whose status carries a
CRD; nvmfd sets one on Authentication Required after withdrawing a queue's
authentication (``target/auth.rekey_host``), growing with how long the queue
has been refusing.
"""

from __future__ import annotations

import pytest

from nvmecontrol.target import constants as K
from nvmecontrol.target.auth import AUTH_REQUIRED, reauth_crd, rekey_host
from nvmecontrol.target.config import HostAuthConfig
from nvmecontrol.wire import admin as A
from nvmecontrol.wire import auth as WA
from nvmecontrol.wire import nvm
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret
from nvmecontrol.wire.identify import CNS_CONTROLLER, decode_identify_controller
from nvmecontrol.wire.status import decode_status

from tests.conftest import simple_config

from .helpers import connect, connect_discovery, make_host, run, sc

HOST = make_host()
HKEY = format_secret(generate_secret(transform=1))
FID = A.Feature.HOST_BEHAVIOR_SUPPORT


class Clock:
    """A made-up monotonic clock for the server (keep-alive, authentication, CRD)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _set_acre(q, value: int, **kw):
    data = bytes([value]).ljust(A.HOST_BEHAVIOR_SIZE, b"\0")
    cqe, _ = run(q, A.build_set_features(FID, **kw), write_data=data)
    return cqe


def _get_acre(q, sel: int = 0) -> int:
    cqe, data = run(q, A.build_get_features(FID, sel), read_len=A.HOST_BEHAVIOR_SIZE)
    assert cqe.status == 0
    assert data[1:] == bytes(A.HOST_BEHAVIOR_SIZE - 1)
    return data[0]


def test_identify_controller_gives_crdt_on_io_controllers_only(nvmfd_server):
    assoc = connect(nvmfd_server)
    try:
        c = decode_identify_controller(assoc.identify(CNS_CONTROLLER))
        assert (c.crdt1, c.crdt2, c.crdt3) == K.CRDT
        assert 0 < c.crdt1 < c.crdt2 < c.crdt3
    finally:
        assoc.shutdown()
    disc = connect_discovery(nvmfd_server)
    try:
        c = decode_identify_controller(disc.identify(CNS_CONTROLLER))
        assert (c.crdt1, c.crdt2, c.crdt3) == (0, 0, 0)
        cqe, _ = run(disc.admin, A.build_get_features(FID), read_len=A.HOST_BEHAVIOR_SIZE)
        assert sc(cqe) == (0, 0x02, True)  # no such feature on a discovery controller
    finally:
        disc.shutdown()


def test_host_behavior_support_feature(nvmfd_server):
    assoc = connect(nvmfd_server)
    try:
        q = assoc.admin
        assert _get_acre(q) == 0
        assert _set_acre(q, 1).status == 0
        assert _get_acre(q) == 1
        assert _get_acre(q, sel=1) == 0  # the default
        assert _get_acre(q, sel=2) == 1  # not saveable: the current value
        cqe, _ = run(q, A.build_get_features(FID, 3))
        assert cqe.status == 0 and cqe.dw0 == 0x4  # changeable, not saveable or per namespace
        # Reserved ACRE values, saving, a short structure: refused, ACRE kept.
        assert sc(_set_acre(q, 2)) == (0, 0x02, True)
        assert sc(_set_acre(q, 1, save=True)) == (1, 0x0D, True)
        cqe, _ = run(q, A.build_set_features(FID), write_data=bytes(16))
        assert sc(cqe) == (0, 0x0F, True)  # SGL Data Block Length Invalid
        assert _get_acre(q) == 1
        assert _set_acre(q, 0).status == 0
        assert _get_acre(q) == 0
    finally:
        assoc.shutdown()


def test_host_behavior_support_data_by_r2t(nvmfd_server):
    assoc = connect(nvmfd_server)
    try:
        q = assoc.admin
        q.qp.max_icd = 0  # no in-capsule data: the controller asks with R2T
        assert _set_acre(q, 1).status == 0
        assert _get_acre(q) == 1
    finally:
        assoc.shutdown()


def test_reauth_crd_schedule():
    short, longer = K.REAUTH_CRD_AFTER_S
    assert [reauth_crd(t) for t in (0, short / 2, short, longer - 0.01, longer, 60)] == \
        [1, 1, 2, 2, 3, 3]
    # What Linux waits before its sixth refusal (five retries) of a command
    # refused from the start: longer than the short steps alone.
    waited, t = 0.0, 0.0
    for _ in range(5):
        delay = K.CRDT[reauth_crd(t) - 1] * 0.1
        waited, t = waited + delay, t + delay
    assert waited >= 10.0


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def auth_target(nvmfd_factory, clock):
    cfg = simple_config(allow_hosts=[HOST.hostnqn])
    cfg.host_auth[HOST.hostnqn] = HostAuthConfig(HKEY, None, "hmac(sha256)", "null")
    return nvmfd_factory(cfg, clock=clock)


def _refusal(q):
    sqe = A.build_identify(CNS_CONTROLLER) if q.qid == 0 else nvm.build_read(1, 0, 1)
    cqe, _ = run(q, sqe, read_len=4096 if q.qid == 0 else 512)
    st = decode_status(cqe.status)
    assert (st.sct, st.sc, st.dnr) == (1, 0x91, False), cqe
    return st.crd


def test_withdrawn_queues_answer_with_a_growing_crd_when_acre_is_on(auth_target, clock):
    assoc = connect(auth_target, host=HOST, num_io_queues=1, dhchap_secret=parse_secret(HKEY))
    try:
        srv = auth_target.server
        cfg = srv.config.host_auth[HOST.hostnqn]
        assert _set_acre(assoc.admin, 1).status == 0
        io = assoc.io[0]
        for round_ in range(2):
            assert rekey_host(srv, HOST.hostnqn, cfg) == 2
            # Each queue counts from its own first refusal.
            assert [_refusal(io), _refusal(io)] == [1, 1]
            clock.now += K.REAUTH_CRD_AFTER_S[0]
            assert _refusal(io) == 2
            assert _refusal(assoc.admin) == 1
            clock.now += K.REAUTH_CRD_AFTER_S[1] - K.REAUTH_CRD_AFTER_S[0]
            assert [_refusal(io), _refusal(assoc.admin)] == [3, 2]
            clock.now += 60
            assert [_refusal(io), _refusal(assoc.admin)] == [3, 3]
            # Authenticated again, the queues serve; the next withdrawal
            # starts from CRD 1 again.
            assoc.reauthenticate()
            cqe, _ = run(io, nvm.build_read(1, 0, 1), read_len=512)
            assert cqe.status == 0
    finally:
        assoc.shutdown()


def test_no_crd_without_acre_or_for_a_queue_that_failed(auth_target, clock):
    assoc = connect(auth_target, host=HOST, num_io_queues=1, dhchap_secret=parse_secret(HKEY))
    try:
        srv = auth_target.server
        io = assoc.io[0]
        rekey_host(srv, HOST.hostnqn, srv.config.host_auth[HOST.hostnqn])
        assert _refusal(io) == 0  # ACRE off (the default): CRD must stay 0
        # ACRE on, but the queue's transaction failed: DNR, no CRD.
        assoc.reauthenticate()
        assert _set_acre(assoc.admin, 1).status == 0
        assoc.params.dhchap_secret = parse_secret(format_secret(generate_secret(transform=1)))
        with pytest.raises(WA.HostKeyRejected):
            assoc.authenticate(io)
        cqe, _ = run(io, nvm.build_read(1, 0, 1), read_len=512)
        assert cqe.status == AUTH_REQUIRED
    finally:
        assoc.params.dhchap_secret = parse_secret(HKEY)
        assoc.shutdown()
