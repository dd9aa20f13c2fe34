"""DH-HMAC-CHAP messages and the host/controller state machines, fed by hand."""

import itertools

import pytest

from nvmecontrol.errors import HostRefused, PeerProtocolError, PeerTimeout, Unsupported
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire.auth_crypto import DhchapKey, DhGroup, HashId

HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-0908-0706-050403020100"
SUBNQN = "nqn.2024-01.org.example:auth"
HKEY = DhchapKey(bytes(range(32)), 1)
CKEY = DhchapKey(bytes(range(100, 148)), 2)


# --- messages ----------------------------------------------------------------

def test_negotiate_golden_bytes():
    # What the Linux host sends: one DH-HMAC-CHAP descriptor, 3 hashes, 6 groups.
    raw = A.encode_message(A.Negotiate(0x1234, A.ALL_HASHES, A.ALL_DHGROUPS))
    want = (bytes.fromhex("00000000" "3412" "00" "01") + bytes.fromhex("01000306")
            + bytes([1, 2, 3]) + bytes(27) + bytes([0, 1, 2, 3, 4, 5]) + bytes(24))
    assert raw == want and len(raw) == 72
    assert A.decode_message(raw) == A.Negotiate(0x1234, (1, 2, 3), (0, 1, 2, 3, 4, 5))


def test_challenge_golden_bytes():
    m = A.Challenge(7, HashId.SHA256, DhGroup.FFDHE2048, 0xA1B2C3D4, b"c" * 32, b"d" * 256)
    raw = A.encode_message(m)
    assert raw[:16] == bytes.fromhex("01010000" "0700" "20" "00" "01" "01" "0001" "d4c3b2a1")
    assert len(raw) == 16 + 32 + 256
    assert A.decode_message(raw + bytes(100)) == m  # Receive pads to AL


def test_reply_success_failure_round_trip():
    msgs = [
        A.Reply(3, b"r" * 48, b"c" * 48, True, 99, b"x" * 384),
        A.Reply(3, b"r" * 32, bytes(32), False, 0),
        A.Success1(3, 32, None),
        A.Success1(3, 64, b"s" * 64),
        A.Success2(3),
        A.Failure(3, A.MsgId.FAILURE1, A.FailureReason.FAILED),
        A.Failure(3, A.MsgId.FAILURE2, A.FailureReason.HASH_UNUSABLE),
    ]
    for m in msgs:
        assert A.decode_message(A.encode_message(m)) == m
    assert A.encode_message(A.Success2(3)) == bytes.fromhex("01040000" "0300") + bytes(10)
    assert A.encode_message(msgs[5]) == bytes.fromhex("00f10000" "0300" "01" "01")
    assert A.encode_message(msgs[2])[6:9] == bytes([32, 0, 0])  # HL, reserved, RVALID 0


@pytest.mark.parametrize("raw,reason", [
    (b"\x01\x01", A.FailureReason.INCORRECT_PAYLOAD),
    (bytes.fromhex("07000000 0000"), A.FailureReason.INCORRECT_MESSAGE),
    (bytes.fromhex("01770000 0000"), A.FailureReason.INCORRECT_MESSAGE),
    (bytes.fromhex("01010000 0000 20 00 01 01 0001 00000000") + bytes(40), A.FailureReason.INCORRECT_PAYLOAD),
    (bytes.fromhex("00000000 0000 00 01") + bytes.fromhex("02000000") + bytes(60), A.FailureReason.PROTOCOL_NOT_USABLE),
])
def test_malformed_messages(raw, reason):
    with pytest.raises(A.BadMessage) as ei:
        A.decode_message(raw)
    assert ei.value.reason == reason


def test_auth_send_receive_commands():
    sqe = F.build_auth_send(A.SECP_DHCHAP, 72, cid=9)
    assert sqe.opc == 0x7F and F.fctype_of(sqe) == F.FCType.AUTH_SEND
    assert sqe.cdw10 == 0xE9010100 and sqe.cdw11 == 72
    assert F.parse_auth_command(sqe) == F.AuthCommand(0xE9, 1, 1, 72)
    rcv = F.build_auth_receive(A.SECP_DHCHAP, 4096)
    assert F.fctype_of(rcv) == F.FCType.AUTH_RECEIVE and rcv.cdw11 == 4096
    # The SQE byte offsets the error location names.
    from nvmecontrol.wire.capsule import encode_sqe
    raw = encode_sqe(sqe)
    assert raw[F.AUTH_SECP_OFFSET] == 0xE9 and raw[F.AUTH_SPSP0_OFFSET] == 1
    assert raw[F.AUTH_LENGTH_OFFSET] == 72


# --- the two machines against each other -------------------------------------

def run(host: A.HostAuth, ctrl: A.ControllerAuth, now: float = 0.0):
    """Carry the host's actions to the controller; returns the host's result."""
    trace = []
    for _ in range(10):
        act = host.next_action(now)
        if type(act) is A.Authenticated:
            return act, trace
        if type(act) is A.Send:
            trace.append(("send", A.decode_message(act.data)))
            ctrl.on_send(act.data, now)
        else:
            data = ctrl.on_receive(act.al, now)
            trace.append(("recv", A.decode_message(data)))
            host.received(data, now)
    raise AssertionError("no end")


def pair(hash_id=HashId.SHA256, group=DhGroup.NULL, *, host_key=HKEY, ctrl_key=None,
         target_host_key=HKEY, target_ctrl_key=None, **host_kw):
    host = A.HostAuth(qid=0, t_id=5, hostnqn=HOSTNQN, subnqn=SUBNQN, host_key=host_key,
                      ctrl_key=ctrl_key, **host_kw)
    ctrl = A.ControllerAuth(qid=0, hostnqn=HOSTNQN, subnqn=SUBNQN, host_key=target_host_key,
                            ctrl_key=target_ctrl_key, hash_id=hash_id, dhgroup=group)
    return host, ctrl


@pytest.mark.parametrize("hash_id,group", list(itertools.product(
    [HashId.SHA256, HashId.SHA384, HashId.SHA512], [DhGroup.NULL, DhGroup.FFDHE2048])))
@pytest.mark.parametrize("bidi", [False, True])
def test_exchange_succeeds(hash_id, group, bidi):
    host, ctrl = pair(hash_id, group, ctrl_key=CKEY if bidi else None,
                      target_ctrl_key=CKEY if bidi else None)
    result, trace = run(host, ctrl)
    assert result == A.Authenticated(hash_id, group, bidi)
    assert ctrl.authenticated and not ctrl.failed
    kinds = [type(m).__name__ for _, m in trace]
    assert kinds == ["Negotiate", "Challenge", "Reply", "Success1"] + (["Success2"] if bidi else [])
    if group != DhGroup.NULL:
        assert host.session_key and host.session_key == ctrl._session_key


def test_larger_group_works():
    host, ctrl = pair(HashId.SHA512, DhGroup.FFDHE4096)
    assert run(host, ctrl)[0].dhgroup == DhGroup.FFDHE4096


def test_wrong_host_key_is_refused_by_the_controller():
    host, ctrl = pair(host_key=DhchapKey(bytes(32), 1))
    with pytest.raises(A.HostKeyRejected) as ei:
        run(host, ctrl)
    assert isinstance(ei.value, HostRefused)
    assert ei.value.reason == A.FailureReason.FAILED and ei.value.side == "host"
    assert "Failure1" in str(ei.value) and "reason 0x01" in str(ei.value)
    assert ctrl.failed and not ctrl.authenticated


def test_wrong_controller_key_is_detected_by_the_host():
    host, ctrl = pair(ctrl_key=CKEY, target_ctrl_key=DhchapKey(bytes(48), 2))
    with pytest.raises(A.ControllerAuthFailed) as ei:
        run(host, ctrl)
    assert isinstance(ei.value, PeerProtocolError) and ei.value.side == "controller"
    assert "sent Failure2" in str(ei.value)
    assert ctrl.failed and not ctrl.authenticated  # the Failure2 reached the controller


def test_controller_without_a_controller_key_refuses_bidirectional():
    host, ctrl = pair(ctrl_key=CKEY, target_ctrl_key=None)
    with pytest.raises(A.HostKeyRejected):
        run(host, ctrl)


def test_unusable_hash_both_ways():
    host, ctrl = pair(hash_ids=(99,))
    with pytest.raises(A.AuthUnsupported) as ei:
        run(host, ctrl)
    assert isinstance(ei.value, Unsupported) and ei.value.reason == A.FailureReason.HASH_UNUSABLE
    # The controller picks a group the host did not offer: the host refuses.
    host, ctrl = pair(group=DhGroup.FFDHE2048, dhgroups=(DhGroup.FFDHE2048,))
    ctrl.want_dhgroup = DhGroup.FFDHE2048
    act = host.next_action(0)
    ctrl.on_send(act.data, 0)
    forged = A.encode_message(A.Challenge(5, HashId.SHA256, DhGroup.NULL, 1, b"c" * 32))
    host.received(forged, 0)
    failure2 = host.next_action(0)
    assert A.decode_message(failure2.data) == A.Failure(5, A.MsgId.FAILURE2,
                                                         A.FailureReason.DHGROUP_UNUSABLE)
    with pytest.raises(A.AuthUnsupported, match="DH group 0x00"):
        host.next_action(0)


def test_controller_falls_back_to_a_hash_the_host_offers():
    host, ctrl = pair(HashId.SHA512, hash_ids=(HashId.SHA256,))
    assert run(host, ctrl)[0].hash_id == HashId.SHA256


def test_host_timeout_uses_the_clock_passed_in():
    host, _ = pair(timeout_s=10)
    host.next_action(0)
    with pytest.raises(PeerTimeout, match="10 s"):
        host.next_action(10.5)


def test_controller_transaction_expires_and_restarts():
    host, ctrl = pair()
    ctrl.on_send(host.next_action(0).data, 0)
    assert ctrl.next_deadline() == A.AUTH_TIMEOUT_S
    ctrl.on_timer(A.AUTH_TIMEOUT_S)
    assert ctrl.next_deadline() is None
    # A Receive now is out of order: Failure1, incorrect message.
    f = A.decode_message(ctrl.on_receive(4096, 200))
    assert f.which == A.MsgId.FAILURE1 and f.reason == A.FailureReason.INCORRECT_MESSAGE
    assert ctrl.failed


def test_controller_refuses_a_wrong_transaction_id():
    host, ctrl = pair()
    ctrl.on_send(host.next_action(0).data, 0)
    host.received(ctrl.on_receive(4096, 0), 0)
    reply = A.decode_message(host.next_action(0).data)
    ctrl.on_send(A.encode_message(reply._replace(t_id=6)), 0)
    f = A.decode_message(ctrl.on_receive(4096, 0))
    assert f.reason == A.FailureReason.INCORRECT_PAYLOAD and ctrl.failed


def test_negotiate_restarts_after_success():
    host, ctrl = pair()
    run(host, ctrl)
    again, _ = pair()
    again.t_id = 6
    assert run(again, ctrl)[0].hash_id == HashId.SHA256 and ctrl.authenticated


def test_controller_rejects_bad_dh_value():
    host, ctrl = pair(group=DhGroup.FFDHE2048)
    ctrl.on_send(host.next_action(0).data, 0)
    host.received(ctrl.on_receive(4096, 0), 0)
    reply = A.decode_message(host.next_action(0).data)
    ctrl.on_send(A.encode_message(reply._replace(dhv=(1).to_bytes(256, "big"))), 0)
    assert A.decode_message(ctrl.on_receive(4096, 0)).reason == A.FailureReason.DHGROUP_UNUSABLE


def test_reply_composes_the_spec_formula():
    """R1 written out from the spec with fixed randomness and exponents, independent of auth.py."""
    import hashlib
    import hmac

    from nvmecontrol.wire.auth_crypto import ffdhe_prime
    p = ffdhe_prime(DhGroup.FFDHE2048)
    x, y = 12345, 67890
    host = A.HostAuth(qid=0, t_id=1, hostnqn=HOSTNQN, subnqn=SUBNQN, host_key=HKEY,
                      ctrl_key=CKEY, rng=lambda n: bytes(range(n)), dh_private=x)
    host.next_action(0)
    c1 = bytes(range(32, 64))
    ch = A.Challenge(1, HashId.SHA256, DhGroup.FFDHE2048, 0x11223344, c1,
                     pow(2, y, p).to_bytes(256, "big"))
    host.received(A.encode_message(ch), 0)
    reply = A.decode_message(host.next_action(0).data)
    assert reply.cvalid and reply.seqnum == 0x03020100 and reply.cval == bytes(range(32))
    assert reply.dhv == pow(2, x, p).to_bytes(256, "big")
    shared = pow(2, x * y, p).to_bytes(256, "big")
    ca = hmac.new(hashlib.sha256(shared).digest(), c1, "sha256").digest()
    kh = hmac.new(HKEY.secret, HOSTNQN.encode() + b"NVMe-over-Fabrics", "sha256").digest()
    msg = (ca + bytes.fromhex("44332211") + bytes.fromhex("0100") + b"\0" + b"HostHost"
           + HOSTNQN.encode() + b"\0" + SUBNQN.encode())
    assert reply.rval == hmac.new(kh, msg, "sha256").digest()


def test_hostile_bytes_never_escape_as_other_exceptions():
    """Seeded fuzz: decode gives a message or BadMessage; the machines turn junk into failures."""
    import random

    rnd = random.Random(12)
    good = [A.encode_message(m) for m in (
        A.Negotiate(1, A.ALL_HASHES, A.ALL_DHGROUPS),
        A.Challenge(1, 1, 1, 5, b"c" * 32, b"d" * 256),
        A.Reply(1, b"r" * 32, b"c" * 32, True, 9, b"x" * 256),
        A.Success1(1, 32, b"s" * 32), A.Success2(1),
        A.Failure(1, A.MsgId.FAILURE1, 1))]
    for _ in range(3000):
        base = bytearray(rnd.choice(good))
        for _ in range(rnd.randint(1, 6)):
            base[rnd.randrange(len(base))] = rnd.randrange(256)
        raw = bytes(base[:rnd.randint(0, len(base))])
        try:
            A.decode_message(raw)
        except A.BadMessage:
            pass
        ctrl = A.ControllerAuth(qid=0, hostnqn=HOSTNQN, subnqn=SUBNQN, host_key=HKEY)
        ctrl.on_send(raw, 0)
        ctrl.on_receive(4096, 0)
        host = A.HostAuth(qid=0, t_id=1, hostnqn=HOSTNQN, subnqn=SUBNQN, host_key=HKEY,
                          ctrl_key=CKEY)
        host.next_action(0)
        host.received(raw, 0)
        try:
            while True:
                act = host.next_action(0)
                if type(act) is A.Authenticated:
                    break
                if type(act) is A.Receive:
                    host.received(raw, 0)
        except A.AuthError:
            pass
