"""The host authenticates its queues: a scripted controller running ``ControllerAuth``.

The fake of ``test_association_errors`` answers Authentication Send/Receive
with the controller-side state machine, so each case is the real exchange
over a loopback TCP queue pair, with keys right or wrong on either side.
"""

from __future__ import annotations

import pytest

from nvmecontrol.errors import HostRefused, PeerProtocolError, Unsupported, UsageError
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire.auth_crypto import DhchapKey, DhGroup, HashId

from tests.host.test_association_errors import CNTLID, HOST, SUBNQN, FakeController, Script, names

HKEY = DhchapKey(bytes(range(32)), 1)
CKEY = DhchapKey(bytes(range(64, 112)), 2)
ATR_DW0 = CNTLID | (F.AUTHREQ_ATR << 16)


class AuthController(FakeController):
    """Answers Authentication Send/Receive with a ControllerAuth per connection."""

    def __init__(self, script: Script, *, host_key=HKEY, ctrl_key=None, hash_id=HashId.SHA256,
                 dhgroup=DhGroup.NULL, refuse_auth_commands=False):
        self.keys = dict(host_key=host_key, ctrl_key=ctrl_key, hash_id=hash_id, dhgroup=dhgroup)
        self.refuse = refuse_auth_commands
        self.failure1 = 0  # a reason: answer the first Receive with this Failure1
        self.machine: A.ControllerAuth | None = None
        super().__init__(script)

    def _answer(self, qp, cid, name, sqe, data):
        if name == "Connect":
            self.machine = A.ControllerAuth(qid=0, hostnqn=HOST.hostnqn, subnqn=SUBNQN,
                                            **self.keys)
        if name == f"Fabrics {F.FCType.AUTH_SEND:#x}":
            if self.refuse:
                qp.respond(cid, status=0x4002)  # Invalid Field, DNR
                return
            self.machine.on_send(bytes(data), 0)
            qp.respond(cid)
        elif name == f"Fabrics {F.FCType.AUTH_RECEIVE:#x}":
            if self.refuse:
                qp.respond(cid, status=0x4002)
                return
            al = F.parse_auth_command(sqe).length
            msg = self.machine.on_receive(al, 0)
            if self.failure1:
                msg = A.encode_message(A.Failure(self.machine.t_id, A.MsgId.FAILURE1,
                                                 self.failure1))
            qp.send_data(cid, msg.ljust(al, b"\0"))
            qp.respond(cid)
        else:
            super()._answer(qp, cid, name, sqe, data)


@pytest.fixture
def ctrl():
    made = []

    def make(dw0=ATR_DW0, **kw) -> AuthController:
        f = AuthController(Script(connect_dw0=dw0), **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def connect(f, secret=HKEY, ctrl_secret=None):
    return connect_association(f.address, SUBNQN, HOST, AssociationParams(
        timeout_s=2.0, dhchap_secret=secret, dhchap_ctrl_secret=ctrl_secret))


SEND, RECV = f"Fabrics {F.FCType.AUTH_SEND:#x}", f"Fabrics {F.FCType.AUTH_RECEIVE:#x}"


@pytest.mark.parametrize("group", [DhGroup.NULL, DhGroup.FFDHE2048])
@pytest.mark.parametrize("bidi", [False, True])
def test_authenticated_association(ctrl, group, bidi):
    f = ctrl(dhgroup=group, hash_id=HashId.SHA384, ctrl_key=CKEY if bidi else None)
    assoc = connect(f, ctrl_secret=CKEY if bidi else None)
    try:
        assert assoc.cntlid == CNTLID
        assert f.machine.authenticated and f.machine.dhgroup == group
        seq = names(f)
        n = 5 if bidi else 4
        assert seq[:1 + n] == ["Connect"] + [SEND, RECV, SEND, RECV, SEND][:n]
        assert seq[1 + n] == "Get CAP"  # nothing else before authentication ended
    finally:
        assoc.shutdown()


def test_wrong_host_secret(ctrl):
    f = ctrl()
    with pytest.raises(A.HostKeyRejected) as ei:
        connect(f, secret=DhchapKey(bytes(32), 1))
    assert isinstance(ei.value, HostRefused)
    msg = str(ei.value)
    assert "queue 0" in msg and "Failure1" in msg and "reason 0x01" in msg
    assert "--dhchap-secret" in msg
    assert "Get CAP" not in names(f)


def test_wrong_controller_secret(ctrl):
    f = ctrl(ctrl_key=DhchapKey(bytes(48), 2))
    with pytest.raises(A.ControllerAuthFailed) as ei:
        connect(f, ctrl_secret=CKEY)
    assert isinstance(ei.value, PeerProtocolError) and ei.value.side == "controller"
    assert names(f)[-1] == SEND  # the Failure2 went out
    assert f.machine.failed


def test_missing_secret(ctrl):
    f = ctrl()
    with pytest.raises(A.AuthKeyMissing) as ei:
        connect(f, secret=None)
    assert isinstance(ei.value, UsageError) and "--dhchap-secret" in str(ei.value)
    assert names(f) == ["Connect"]


@pytest.mark.parametrize("reason", [A.FailureReason.HASH_UNUSABLE,
                                    A.FailureReason.DHGROUP_UNUSABLE])
def test_controller_cannot_use_what_the_host_offers(ctrl, reason):
    f = ctrl()
    f.failure1 = reason
    with pytest.raises(A.AuthUnsupported) as ei:
        connect(f)
    assert isinstance(ei.value, Unsupported) and ei.value.reason == reason
    assert f"reason {reason:#04x}" in str(ei.value)


def test_controller_secret_authenticates_even_unasked(ctrl):
    f = ctrl(dw0=CNTLID, ctrl_key=CKEY)
    assoc = connect(f, ctrl_secret=CKEY)
    try:
        assert SEND in names(f) and f.machine.authenticated
    finally:
        assoc.shutdown()


def test_host_secret_alone_does_not_authenticate_unasked(ctrl):
    f = ctrl(dw0=CNTLID)
    assoc = connect(f)
    try:
        assert SEND not in names(f)  # as Linux: only when AUTHREQ.ATR says so
    finally:
        assoc.shutdown()


def test_controller_that_cannot_authenticate_itself(ctrl):
    f = ctrl(dw0=CNTLID, refuse_auth_commands=True)
    with pytest.raises(A.AuthUnsupported, match="cannot authenticate itself"):
        connect(f, ctrl_secret=CKEY)
