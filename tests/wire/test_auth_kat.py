"""Known answers from the Linux kernel: DH-HMAC-CHAP transactions replayed from a fixture.

``fixtures/dhchap_kernel.json`` holds real transactions with Linux 6.12
(captured by ``tests/interop/test_auth_kat_capture.py``): with the kernel as
controller (nvmet; it produced C1, S1, its DH value and R2, and accepted our
R1) and as host (``nvme connect``; it produced its DH value, R1, C2 and S2,
and accepted our R2).  Every hash function, the null group and ffdhe2048, one
way and both ways, transformed and untransformed keys.

Two ways to check them: the formulas of ``auth_crypto`` recompute the
secret transformation, the shared secret, the augmented challenges and both
responses and must give the kernel's values; and our state machines, fed the
kernel's messages (with our recorded random values), must produce the very
bytes that went over the wire and accept the kernel's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvmecontrol.wire import auth as A
from nvmecontrol.wire import auth_crypto as C
from nvmecontrol.wire.auth_crypto import DhGroup, HashId
from nvmecontrol.wire.dhchap_key import parse_secret

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "dhchap_kernel.json").read_text())
CASES = FIXTURE["cases"]


def _id(case) -> str:
    return (f"kernel-{case['kernel']}-{HashId(case['hash_id']).name.lower()}-"
            f"{C.DHGROUP_NAMES[DhGroup(case['dhgroup'])]}-"
            f"{'bidi' if case['bidirectional'] else 'oneway'}-key{case['host_key'][7:9]}")


def _b(hexstr: str | None) -> bytes:
    return bytes.fromhex(hexstr) if hexstr else b""


def test_the_fixture_covers_the_matrix():
    seen = {(c["kernel"], c["hash_id"], c["dhgroup"], c["bidirectional"]) for c in CASES}
    assert {h for _, h, _, _ in seen} == {1, 2, 3}
    assert {g for _, _, g, _ in seen} == {DhGroup.NULL, DhGroup.FFDHE2048}
    for role in ("controller", "host"):
        assert {b for r, _, _, b in seen if r == role} == {False, True}
    assert any(c["host_key"].startswith("DHHC-1:00:") for c in CASES)


def _session_key(case) -> bytes:
    """g^xy mod p from our recorded private value and the kernel's public value."""
    group = case["dhgroup"]
    ours, theirs = ((case["host_dhv"], case["ctrl_dhv"]) if case["kernel"] == "controller"
                    else (case["ctrl_dhv"], case["host_dhv"]))
    pair = C.dh_generate(group, int(case["private"], 16))
    assert pair.public == _b(ours)  # our public value is g^x of the recorded x
    return C.dh_shared_secret(pair, _b(theirs))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_responses_recomputed_from_the_formulas(case):
    hash_id = case["hash_id"]
    hostnqn, subnqn = case["hostnqn"], case["subnqn"]
    c1, c2 = _b(case["c1"]), _b(case["c2"])
    if case["dhgroup"] != DhGroup.NULL:
        key = _session_key(case)
        assert len(key) == 256
        c1 = C.augmented_challenge(hash_id, key, c1)
        c2 = C.augmented_challenge(hash_id, key, c2) if c2 else c2
    kh = C.transform_secret(parse_secret(case["host_key"]), hostnqn)
    r1 = C.host_response(hash_id, kh, c1, seqnum=case["s1"], t_id=case["t_id"], hostnqn=hostnqn,
                         subnqn=subnqn)
    assert r1 == _b(case["r1"])
    if case["bidirectional"]:
        kc = C.transform_secret(parse_secret(case["ctrl_key"]), subnqn)
        r2 = C.controller_response(hash_id, kc, c2, seqnum=case["s2"], t_id=case["t_id"],
                                   hostnqn=hostnqn, subnqn=subnqn)
        assert r2 == _b(case["r2"])
    else:
        assert case["r2"] is None


def test_a_wrong_key_gives_another_response():
    case = next(c for c in CASES if c["kernel"] == "host" and c["dhgroup"] == DhGroup.NULL)
    key = parse_secret(case["host_key"])
    wrong = key._replace(secret=bytes([key.secret[0] ^ 1]) + key.secret[1:])
    r1 = C.host_response(case["hash_id"], C.transform_secret(wrong, case["hostnqn"]),
                         _b(case["c1"]), seqnum=case["s1"], t_id=case["t_id"],
                         hostnqn=case["hostnqn"], subnqn=case["subnqn"])
    assert r1 != _b(case["r1"])


class _Scripted:
    """The random bytes a side drew in the recorded transaction, in the order it drew them."""

    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)

    def __call__(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == n
        return chunk


def _private(case) -> int | None:
    return int(case["private"], 16) if case["private"] else None


@pytest.mark.parametrize("case", [c for c in CASES if c["kernel"] == "controller"], ids=_id)
def test_our_host_replays_its_side_against_the_kernel_controller(case):
    """Fed nvmet's messages, HostAuth sends byte for byte what the kernel accepted."""
    bidi = case["bidirectional"]
    rng = _Scripted(_b(case["c2"]), case["s2"].to_bytes(4, "little")) if bidi else _Scripted()
    host = A.HostAuth(qid=0, t_id=case["t_id"], hostnqn=case["hostnqn"], subnqn=case["subnqn"],
                      host_key=parse_secret(case["host_key"]),
                      ctrl_key=parse_secret(case["ctrl_key"]) if bidi else None,
                      rng=rng, dh_private=_private(case))
    for side, raw in case["messages"]:
        action = host.next_action(0.0)
        if side == "host":
            assert type(action) is A.Send and action.data == _b(raw)
        else:
            assert type(action) is A.Receive
            host.received(_b(raw), 0.0)
    assert host.next_action(0.0) == A.Authenticated(case["hash_id"], case["dhgroup"], bidi)


@pytest.mark.parametrize("case", [c for c in CASES if c["kernel"] == "host"], ids=_id)
def test_our_controller_replays_its_side_against_the_kernel_host(case):
    """Fed the kernel host's messages, ControllerAuth answers with the bytes the kernel accepted."""
    bidi = case["bidirectional"]
    ctrl = A.ControllerAuth(qid=0, hostnqn=case["hostnqn"], subnqn=case["subnqn"],
                            host_key=parse_secret(case["host_key"]),
                            ctrl_key=parse_secret(case["ctrl_key"]) if bidi else None,
                            hash_id=case["hash_id"], dhgroup=case["dhgroup"],
                            rng=_Scripted(_b(case["c1"]), case["s1"].to_bytes(4, "little")),
                            dh_private=_private(case))
    for side, raw in case["messages"]:
        if side == "host":
            ctrl.on_send(_b(raw), 0.0)
            assert not ctrl.failed
        else:
            assert ctrl.on_receive(A.HOST_RECEIVE_LEN, 0.0) == _b(raw)
    assert ctrl.authenticated and ctrl.finished


def test_a_tampered_kernel_response_is_refused():
    case = next(c for c in CASES if c["kernel"] == "host" and c["bidirectional"]
                and c["dhgroup"] == DhGroup.FFDHE2048)
    ctrl = A.ControllerAuth(qid=0, hostnqn=case["hostnqn"], subnqn=case["subnqn"],
                            host_key=parse_secret(case["host_key"]),
                            ctrl_key=parse_secret(case["ctrl_key"]),
                            hash_id=case["hash_id"], dhgroup=case["dhgroup"],
                            rng=_Scripted(_b(case["c1"]), case["s1"].to_bytes(4, "little")),
                            dh_private=_private(case))
    negotiate, _challenge, reply = (_b(raw) for _, raw in case["messages"][:3])
    ctrl.on_send(negotiate, 0.0)
    ctrl.on_receive(A.HOST_RECEIVE_LEN, 0.0)
    msg = A.decode_message(reply)
    bad = msg._replace(rval=bytes([msg.rval[0] ^ 0x80]) + msg.rval[1:])
    ctrl.on_send(A.encode_message(bad), 0.0)
    failure = A.decode_message(ctrl.on_receive(A.HOST_RECEIVE_LEN, 0.0))
    assert type(failure) is A.Failure and failure.reason == A.FailureReason.FAILED
    assert not ctrl.authenticated
