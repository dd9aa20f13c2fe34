"""DH-HMAC-CHAP in-band authentication: messages and the two state machines.

NVMe Base 2.1, 8.3.4 (TP 8006).  After a Fabrics Connect whose response sets
AUTHREQ.ATR, every queue (admin and I/O) runs one transaction, carried by
Fabrics Authentication Send (host to controller) and Receive (controller to
host) with SECP E9h, SPSP0 01h, SPSP1 01h:

    host  --Send-->  AUTH_Negotiate        (hashes, DH groups offered, T_ID)
    host  <--Recv--  DH-HMAC-CHAP_Challenge (hash, group, S1, C1, g^y)
    host  --Send-->  DH-HMAC-CHAP_Reply     (R1, C2 and S2 when bidirectional, g^x)
    host  <--Recv--  DH-HMAC-CHAP_Success1  (R2 when bidirectional)
    host  --Send-->  DH-HMAC-CHAP_Success2  (bidirectional only)

A controller that refuses sends AUTH_Failure1 in place of its next message;
a host that refuses (bad R2, unusable parameters) sends AUTH_Failure2.  Both
carry a reason code explanation (``FailureReason``).

Sans-IO: ``HostAuth`` says what to send or receive next and is fed the data
received; ``ControllerAuth`` is fed what the host sent and says what to
return.  Time is passed in; neither touches a socket or the clock.
"""

from __future__ import annotations

import secrets
import struct
from enum import IntEnum
from typing import Callable, NamedTuple

from nvmecontrol.errors import (HostRefused, LocalProtocolError, NvmeControlError,
                                PeerProtocolError, PeerTimeout, Unsupported, UsageError)
from nvmecontrol.wire import auth_crypto as C
from nvmecontrol.wire.auth_crypto import DhchapKey, DhGroup, HashId
from nvmecontrol.wire.status import SC_AUTH_REQUIRED, SC_MASK, SCT_COMMAND_SPECIFIC, SCT_MASK, SCT_SHIFT

SECP_DHCHAP = 0xE9
SPSP0_DHCHAP = 0x01
SPSP1_DHCHAP = 0x01
AUTHID_DHCHAP = 0x01  # protocol descriptor: DH-HMAC-CHAP
# Sizes of the two ID lists in a protocol descriptor (hashes at 0, groups at 30).
_IDLIST_SLOTS = 30
# What a host asks for in Authentication Receive: the largest message is a
# Challenge with SHA-512 and ffdhe8192, 16 + 64 + 1024 bytes.
HOST_RECEIVE_LEN = 4096
# Largest transfer a controller accepts in either command: a Reply with
# SHA-512 and ffdhe8192 is 16 + 128 + 1024 bytes; anything far beyond that
# is a hostile length, refused before a buffer is allocated for it.
MAX_AUTH_TRANSFER = 8192
# Bound on one transaction, as the Linux target expires one after KATO or
# 120 s without progress.
AUTH_TIMEOUT_S = 120.0

ALL_HASHES = (HashId.SHA256, HashId.SHA384, HashId.SHA512)
ALL_DHGROUPS = (DhGroup.NULL, DhGroup.FFDHE2048, DhGroup.FFDHE3072, DhGroup.FFDHE4096,
                DhGroup.FFDHE6144, DhGroup.FFDHE8192)


class AuthType(IntEnum):
    COMMON = 0x00
    DHCHAP = 0x01


class MsgId(IntEnum):
    NEGOTIATE = 0x00
    CHALLENGE = 0x01
    REPLY = 0x02
    SUCCESS1 = 0x03
    SUCCESS2 = 0x04
    FAILURE2 = 0xF0
    FAILURE1 = 0xF1


class FailureReason(IntEnum):
    """Reason code explanations of AUTH_Failure1/2 (reason code 01h, "authentication failure")."""

    FAILED = 0x01
    PROTOCOL_NOT_USABLE = 0x02
    CONCAT_MISMATCH = 0x03
    HASH_UNUSABLE = 0x04
    DHGROUP_UNUSABLE = 0x05
    INCORRECT_PAYLOAD = 0x06
    INCORRECT_MESSAGE = 0x07


REASON_TEXT = {
    FailureReason.FAILED: "authentication failed",
    FailureReason.PROTOCOL_NOT_USABLE: "authentication protocol not usable",
    FailureReason.CONCAT_MISMATCH: "secure channel concatenation mismatch",
    FailureReason.HASH_UNUSABLE: "hash function not usable",
    FailureReason.DHGROUP_UNUSABLE: "DH group not usable",
    FailureReason.INCORRECT_PAYLOAD: "incorrect payload",
    FailureReason.INCORRECT_MESSAGE: "incorrect protocol message",
}
RESCODE_FAILED = 0x01


def reason_text(reason: int) -> str:
    try:
        return f"{REASON_TEXT[FailureReason(reason)]} (reason {reason:#04x})"
    except ValueError:
        return f"reason {reason:#04x}"


def asks_authentication(status: int) -> bool:
    """A completion status that is Authentication Required (SCT 1h, SC 91h), DNR or not.

    A controller answers it on a queue that has not authenticated, or whose
    authentication it withdrew (its keys for the host changed): the host runs
    a new transaction on that queue and may then retry the command (NVMe Base
    2.1, 8.3.4.2; the Linux host re-authenticates when DNR is clear).
    """
    return ((status >> SCT_SHIFT) & SCT_MASK == SCT_COMMAND_SPECIFIC
            and status & SC_MASK == SC_AUTH_REQUIRED)


# --- errors: one family per cause a user acts on differently ------------------

class AuthError(NvmeControlError):
    """Every authentication failure: which side failed, why, the reason code.

    Each subclass also belongs to the error family whose exit status fits it.
    """

    side: str = "host"
    reason: int = FailureReason.FAILED


def auth_error(cls, message: str, side: str, reason: int, *args):
    err = cls(message, *args)
    err.side = side
    err.reason = reason
    return err


class HostKeyRejected(AuthError, HostRefused):
    """The controller did not accept our response: wrong or unknown host key (Failure1)."""


class ControllerAuthFailed(AuthError, PeerProtocolError):
    """The controller could not prove it holds the controller key (bidirectional)."""


class AuthUnsupported(AuthError, Unsupported):
    """No hash function or DH group both sides can use."""


class AuthKeyMissing(AuthError, UsageError):
    """The controller requires authentication and no host secret was given."""


class AuthProtocolError(AuthError, PeerProtocolError):
    """A malformed or out-of-order authentication message."""


# --- messages ----------------------------------------------------------------

_HDR = struct.Struct("<BBxxH")  # AUTH_TYPE, AUTH_ID, reserved, T_ID
_NEGOTIATE = struct.Struct("<BBxxHBB")  # + SC_C, NAPD
_DESCRIPTOR = struct.Struct("<BxBB60s")  # AUTHID, HALEN, DHLEN, ID list
_CHALLENGE = struct.Struct("<BBxxHBxBBHI")  # HL, HASHID, DHGID, DHVLEN, SEQNUM
_REPLY = struct.Struct("<BBxxHBxBxHI")  # HL, CVALID, DHVLEN, SEQNUM
_SUCCESS1 = struct.Struct("<BBxxHBxB7x")  # HL, RVALID
_SUCCESS2 = struct.Struct("<BBxxH10x")
_FAILURE = struct.Struct("<BBxxHBB")  # RESCODE, RESCODE_EXP


class Negotiate(NamedTuple):
    t_id: int
    hash_ids: tuple[int, ...]
    dhgroups: tuple[int, ...]
    sc_c: int = 0  # secure channel concatenation: 0 = none


class Challenge(NamedTuple):
    t_id: int
    hash_id: int
    dhgroup: int
    seqnum: int  # S1
    cval: bytes  # C1
    dhv: bytes = b""  # controller's g^y mod p


class Reply(NamedTuple):
    t_id: int
    rval: bytes  # R1
    cval: bytes  # C2, zeros when not bidirectional
    cvalid: bool
    seqnum: int  # S2, 0 when not bidirectional
    dhv: bytes = b""  # host's g^x mod p


class Success1(NamedTuple):
    t_id: int
    hl: int
    rval: bytes | None  # R2 when the host asked to authenticate the controller


class Success2(NamedTuple):
    t_id: int


class Failure(NamedTuple):
    t_id: int
    which: int  # MsgId.FAILURE1 (controller) or MsgId.FAILURE2 (host)
    reason: int  # reason code explanation
    rescode: int = RESCODE_FAILED


AuthMessage = Negotiate | Challenge | Reply | Success1 | Success2 | Failure


def encode_message(m: AuthMessage) -> bytes:
    if type(m) is Negotiate:
        if len(m.hash_ids) > _IDLIST_SLOTS or len(m.dhgroups) > _IDLIST_SLOTS:
            raise LocalProtocolError("too many hash functions or DH groups in AUTH_Negotiate")
        ids = bytes(m.hash_ids).ljust(_IDLIST_SLOTS, b"\0") + bytes(m.dhgroups).ljust(_IDLIST_SLOTS, b"\0")
        return (_NEGOTIATE.pack(AuthType.COMMON, MsgId.NEGOTIATE, m.t_id, m.sc_c, 1)
                + _DESCRIPTOR.pack(AUTHID_DHCHAP, len(m.hash_ids), len(m.dhgroups), ids))
    if type(m) is Challenge:
        return (_CHALLENGE.pack(AuthType.DHCHAP, MsgId.CHALLENGE, m.t_id, len(m.cval), m.hash_id,
                                m.dhgroup, len(m.dhv), m.seqnum) + m.cval + m.dhv)
    if type(m) is Reply:
        if len(m.cval) != len(m.rval):
            raise LocalProtocolError("DH-HMAC-CHAP_Reply C2 must be as long as R1")
        return (_REPLY.pack(AuthType.DHCHAP, MsgId.REPLY, m.t_id, len(m.rval), int(m.cvalid),
                            len(m.dhv), m.seqnum) + m.rval + m.cval + m.dhv)
    if type(m) is Success1:
        rval = m.rval if m.rval is not None else b""
        return (_SUCCESS1.pack(AuthType.DHCHAP, MsgId.SUCCESS1, m.t_id, m.hl, int(m.rval is not None))
                + rval)
    if type(m) is Success2:
        return _SUCCESS2.pack(AuthType.DHCHAP, MsgId.SUCCESS2, m.t_id)
    if type(m) is Failure:
        # Linux sends both failures as common messages; the type is not checked on receipt.
        return _FAILURE.pack(AuthType.COMMON, m.which, m.t_id, m.rescode, m.reason)
    raise TypeError(f"not an authentication message: {m!r}")


class BadMessage(ValueError):
    """A received message that cannot be decoded; ``reason`` goes into the Failure."""

    def __init__(self, message: str, reason: int = FailureReason.INCORRECT_PAYLOAD):
        super().__init__(message)
        self.reason = reason


def _need(buf, size: int, what: str) -> None:
    if len(buf) < size:
        raise BadMessage(f"{what} is {len(buf)} bytes, needs {size}")


def decode_message(buf) -> AuthMessage:
    """Decode one message; trailing bytes (Receive pads to AL) are ignored."""
    buf = bytes(buf)
    _need(buf, _HDR.size, "authentication message")
    auth_type, auth_id, t_id = _HDR.unpack_from(buf)
    if auth_type not in (AuthType.COMMON, AuthType.DHCHAP):
        raise BadMessage(f"unknown AUTH_TYPE {auth_type:#04x}", FailureReason.INCORRECT_MESSAGE)
    if auth_id == MsgId.NEGOTIATE:
        _need(buf, _NEGOTIATE.size, "AUTH_Negotiate")
        _t, _i, t_id, sc_c, napd = _NEGOTIATE.unpack_from(buf)
        descriptors = []
        for i in range(napd):
            off = _NEGOTIATE.size + i * _DESCRIPTOR.size
            _need(buf, off + _DESCRIPTOR.size, "AUTH_Negotiate")
            descriptors.append(_DESCRIPTOR.unpack_from(buf, off))
        dhchap = [d for d in descriptors if d[0] == AUTHID_DHCHAP]
        if not dhchap:
            raise BadMessage("AUTH_Negotiate offers no DH-HMAC-CHAP protocol descriptor",
                             FailureReason.PROTOCOL_NOT_USABLE)
        _a, halen, dhlen, ids = dhchap[0]
        if halen > _IDLIST_SLOTS or dhlen > _IDLIST_SLOTS:
            raise BadMessage(f"AUTH_Negotiate lists {halen} hashes and {dhlen} groups (max 30 each)")
        return Negotiate(t_id, tuple(ids[:halen]), tuple(ids[_IDLIST_SLOTS:_IDLIST_SLOTS + dhlen]),
                         sc_c)
    if auth_id == MsgId.CHALLENGE:
        _need(buf, _CHALLENGE.size, "DH-HMAC-CHAP_Challenge")
        _t, _i, t_id, hl, hash_id, dhgid, dhvlen, seqnum = _CHALLENGE.unpack_from(buf)
        end = _CHALLENGE.size + hl + dhvlen
        _need(buf, end, "DH-HMAC-CHAP_Challenge")
        return Challenge(t_id, hash_id, dhgid, seqnum, buf[_CHALLENGE.size:_CHALLENGE.size + hl],
                         buf[_CHALLENGE.size + hl:end])
    if auth_id == MsgId.REPLY:
        _need(buf, _REPLY.size, "DH-HMAC-CHAP_Reply")
        _t, _i, t_id, hl, cvalid, dhvlen, seqnum = _REPLY.unpack_from(buf)
        base = _REPLY.size
        _need(buf, base + 2 * hl + dhvlen, "DH-HMAC-CHAP_Reply")
        return Reply(t_id, buf[base:base + hl], buf[base + hl:base + 2 * hl], bool(cvalid & 1),
                     seqnum, buf[base + 2 * hl:base + 2 * hl + dhvlen])
    if auth_id == MsgId.SUCCESS1:
        _need(buf, _SUCCESS1.size, "DH-HMAC-CHAP_Success1")
        _t, _i, t_id, hl, rvalid = _SUCCESS1.unpack_from(buf)
        rval = None
        if rvalid & 1:
            _need(buf, _SUCCESS1.size + hl, "DH-HMAC-CHAP_Success1")
            rval = buf[_SUCCESS1.size:_SUCCESS1.size + hl]
        return Success1(t_id, hl, rval)
    if auth_id == MsgId.SUCCESS2:
        _need(buf, _SUCCESS2.size, "DH-HMAC-CHAP_Success2")
        return Success2(t_id)
    if auth_id in (MsgId.FAILURE1, MsgId.FAILURE2):
        _need(buf, _FAILURE.size, "AUTH_Failure")
        _t, which, t_id, rescode, reason = _FAILURE.unpack_from(buf)
        return Failure(t_id, which, reason, rescode)
    raise BadMessage(f"unknown AUTH_ID {auth_id:#04x}", FailureReason.INCORRECT_MESSAGE)


# --- host side ---------------------------------------------------------------

class Send(NamedTuple):
    """Send *data* with Authentication Send."""

    data: bytes


class Receive(NamedTuple):
    """Issue Authentication Receive with AL = *al* and feed the data to ``received``."""

    al: int


class Authenticated(NamedTuple):
    hash_id: int
    dhgroup: int
    bidirectional: bool


def _nonzero_seqnum(rng: Callable[[int], bytes]) -> int:
    # S2 = 0 would tell the controller "not bidirectional" (8.3.4.5.4).
    while True:
        s = int.from_bytes(rng(4), "little")
        if s:
            return s


class _HostState(IntEnum):
    NEGOTIATE = 0
    CHALLENGE = 1
    REPLY = 2
    SUCCESS1 = 3
    SUCCESS2 = 4
    FAILURE2 = 5
    DONE = 6
    FAILED = 7


class HostAuth:
    """The host's side of one DH-HMAC-CHAP transaction on one queue.

    Drive it with ``next_action(now)``: a ``Send`` is carried by
    Authentication Send, a ``Receive`` by Authentication Receive whose data
    go to ``received(data, now)``; ``Authenticated`` ends it.  A failure
    raises an ``AuthError`` subclass from ``next_action`` (after the Failure2
    the controller is owed, if any, was handed out as a ``Send``).
    """

    def __init__(self, *, qid: int, t_id: int, hostnqn: str, subnqn: str,
                 host_key: DhchapKey, ctrl_key: DhchapKey | None = None,
                 hash_ids: tuple[int, ...] = ALL_HASHES,
                 dhgroups: tuple[int, ...] = ALL_DHGROUPS,
                 now: float = 0.0, timeout_s: float = AUTH_TIMEOUT_S,
                 rng: Callable[[int], bytes] = secrets.token_bytes,
                 dh_private: int | None = None):
        self.qid = qid
        self.t_id = t_id & 0xFFFF
        self.hostnqn = hostnqn
        self.subnqn = subnqn
        self.host_key = host_key
        self.ctrl_key = ctrl_key
        self.hash_ids = tuple(hash_ids)
        self.dhgroups = tuple(dhgroups)
        self.deadline = now + timeout_s
        self._timeout_s = timeout_s
        self._rng = rng
        self._dh_private = dh_private  # known-answer tests only
        self._state = _HostState.NEGOTIATE
        self._pending: bytes = b""
        self._error: Exception | None = None
        self.hash_id = 0
        self.dhgroup = 0
        self.session_key = b""
        self._c2 = b""
        self._s2 = 0

    @property
    def bidirectional(self) -> bool:
        return self.ctrl_key is not None

    @property
    def failing(self) -> bool:
        """A failure was found: what is left to send is the Failure2, then the error."""
        return self._state in (_HostState.FAILURE2, _HostState.FAILED)

    @property
    def awaiting_verdict(self) -> bool:
        """Our Reply went out; the controller's Success1 or Failure1 is owed."""
        return self._state == _HostState.SUCCESS1

    def next_deadline(self) -> float | None:
        return None if self._state in (_HostState.DONE, _HostState.FAILED) else self.deadline

    def next_action(self, now: float) -> Send | Receive | Authenticated:
        st = self._state
        if st == _HostState.DONE:
            return Authenticated(self.hash_id, self.dhgroup, self.bidirectional)
        if st == _HostState.FAILED:
            raise self._error
        if now > self.deadline:
            self._fail_local(PeerTimeout(
                f"authentication on queue {self.qid} did not finish within {self._timeout_s:g} s"))
            raise self._error
        if st == _HostState.NEGOTIATE:
            self._state = _HostState.CHALLENGE
            return Send(encode_message(Negotiate(self.t_id, self.hash_ids, self.dhgroups)))
        if st in (_HostState.CHALLENGE, _HostState.SUCCESS1):
            return Receive(HOST_RECEIVE_LEN)
        if st == _HostState.REPLY:
            self._state = _HostState.SUCCESS1
            return Send(self._pending)
        if st == _HostState.SUCCESS2:
            self._state = _HostState.DONE
            return Send(encode_message(Success2(self.t_id)))
        if st == _HostState.FAILURE2:
            self._state = _HostState.FAILED
            return Send(self._pending)
        raise LocalProtocolError(f"host authentication in state {st!r}")

    # -- what the controller sent --
    def received(self, data, now: float) -> None:
        if self._state not in (_HostState.CHALLENGE, _HostState.SUCCESS1):
            raise LocalProtocolError("authentication data received when none was asked for")
        try:
            msg = decode_message(data)
        except BadMessage as exc:
            self._refuse(exc.reason, AuthProtocolError,
                         f"controller sent a malformed authentication message: {exc}")
            return
        if type(msg) is Failure:
            self._controller_refused(msg)
            return
        if msg.t_id != self.t_id:
            # As the Linux host: a message of another transaction is the wrong message.
            self._refuse(FailureReason.INCORRECT_MESSAGE, AuthProtocolError,
                         f"controller answered transaction {msg.t_id}, expected {self.t_id}")
            return
        if self._state == _HostState.CHALLENGE:
            if type(msg) is not Challenge:
                self._refuse(FailureReason.INCORRECT_MESSAGE, AuthProtocolError,
                             f"controller sent {type(msg).__name__} where a Challenge was due")
                return
            self._on_challenge(msg)
        else:
            if type(msg) is not Success1:
                self._refuse(FailureReason.INCORRECT_MESSAGE, AuthProtocolError,
                             f"controller sent {type(msg).__name__} where Success1 was due")
                return
            self._on_success1(msg)

    def _on_challenge(self, ch: Challenge) -> None:
        if ch.hash_id not in self.hash_ids or ch.hash_id not in C.HASH_LEN:
            self._refuse(FailureReason.HASH_UNUSABLE, AuthUnsupported,
                         f"controller chose hash function {ch.hash_id:#04x}, which the host "
                         f"did not offer")
            return
        if ch.dhgroup not in self.dhgroups or ch.dhgroup not in C.DHGROUP_NAMES:
            self._refuse(FailureReason.DHGROUP_UNUSABLE, AuthUnsupported,
                         f"controller chose DH group {ch.dhgroup:#04x}, which the host did not offer")
            return
        hl = C.hash_len(ch.hash_id)
        if len(ch.cval) != hl:
            self._refuse(FailureReason.INCORRECT_PAYLOAD, AuthProtocolError,
                         f"challenge is {len(ch.cval)} bytes; {HashId(ch.hash_id).name} needs {hl}")
            return
        self.hash_id, self.dhgroup = ch.hash_id, ch.dhgroup
        challenge = bytes(ch.cval)
        host_dhv = b""
        if ch.dhgroup != DhGroup.NULL:
            pair = C.dh_generate(ch.dhgroup, self._dh_private)
            try:
                self.session_key = C.dh_shared_secret(pair, bytes(ch.dhv))
            except C.BadPublicValue as exc:
                self._refuse(FailureReason.DHGROUP_UNUSABLE, AuthProtocolError,
                             f"controller's DH value is unusable: {exc}")
                return
            host_dhv = pair.public
            challenge = C.augmented_challenge(ch.hash_id, self.session_key, challenge)
        elif ch.dhv:
            self._refuse(FailureReason.INCORRECT_PAYLOAD, AuthProtocolError,
                         "controller sent a DH value with the null DH group")
            return
        key = C.transform_secret(self.host_key, self.hostnqn)
        rval = C.host_response(ch.hash_id, key, challenge, seqnum=ch.seqnum, t_id=self.t_id,
                               hostnqn=self.hostnqn, subnqn=self.subnqn)
        if self.bidirectional:
            self._c2 = self._rng(hl)
            self._s2 = _nonzero_seqnum(self._rng)
            cval = self._c2
        else:
            cval = bytes(hl)
        self._pending = encode_message(Reply(self.t_id, rval, cval, self.bidirectional, self._s2,
                                             host_dhv))
        self._state = _HostState.REPLY

    def _on_success1(self, s1: Success1) -> None:
        hl = C.hash_len(self.hash_id)
        if not self.bidirectional:
            if s1.hl != hl:  # the Linux host checks HL either way
                self._refuse(FailureReason.INCORRECT_PAYLOAD, AuthProtocolError,
                             f"Success1 HL {s1.hl}, the negotiated hash needs {hl}")
                return
            self._state = _HostState.DONE
            return
        if s1.rval is None or s1.hl != hl:
            self._refuse(FailureReason.FAILED, ControllerAuthFailed,
                         "controller did not answer the host's challenge (no response in "
                         "Success1): it cannot be authenticated")
            return
        challenge = self._c2
        if self.dhgroup != DhGroup.NULL:
            challenge = C.augmented_challenge(self.hash_id, self.session_key, challenge)
        key = C.transform_secret(self.ctrl_key, self.subnqn)
        want = C.controller_response(self.hash_id, key, challenge, seqnum=self._s2,
                                     t_id=self.t_id, hostnqn=self.hostnqn, subnqn=self.subnqn)
        if not secrets.compare_digest(want, bytes(s1.rval)):
            self._refuse(FailureReason.FAILED, ControllerAuthFailed,
                         "controller's response does not match the controller key "
                         "(wrong --dhchap-ctrl-secret, or an impostor)")
            return
        self._state = _HostState.SUCCESS2

    # -- failures --
    def _refuse(self, reason: int, cls, detail: str) -> None:
        """The host refuses: a Failure2 goes to the controller, then the error."""
        side = "controller" if cls is ControllerAuthFailed else "host"
        self._error = auth_error(cls, f"authentication on queue {self.qid} failed: {detail}; "
                                       f"sent Failure2, {reason_text(reason)}", side, reason)
        self._pending = encode_message(Failure(self.t_id, MsgId.FAILURE2, reason))
        self._state = _HostState.FAILURE2

    def _controller_refused(self, f: Failure) -> None:
        reason = f.reason
        if reason == FailureReason.FAILED:
            cls, why = HostKeyRejected, (
                "the controller rejected the host's response (wrong or unknown "
                "--dhchap-secret" + (", or it holds no controller key for "
                                     "--dhchap-ctrl-secret)" if self.bidirectional else ")"))
        elif reason in (FailureReason.HASH_UNUSABLE, FailureReason.DHGROUP_UNUSABLE,
                        FailureReason.PROTOCOL_NOT_USABLE, FailureReason.CONCAT_MISMATCH):
            cls, why = AuthUnsupported, "the controller cannot use what the host offered"
        else:
            cls, why = AuthProtocolError, "the controller refused the host's message"
        self._error = auth_error(cls, f"authentication on queue {self.qid} failed: {why}; "
                                       f"controller sent Failure1, {reason_text(reason)}",
                                  "host", reason)
        self._state = _HostState.FAILED

    def _fail_local(self, error: Exception) -> None:
        self._error = error
        self._state = _HostState.FAILED


# --- controller side ---------------------------------------------------------

class _CtrlState(IntEnum):
    NEGOTIATE = 0  # waiting for AUTH_Negotiate (Send)
    CHALLENGE = 1  # Challenge due (Receive)
    REPLY = 2  # waiting for Reply (Send)
    SUCCESS1 = 3  # Success1 due (Receive)
    SUCCESS2 = 4  # waiting for Success2 (Send), bidirectional only
    FAILURE1 = 5  # Failure1 due (Receive)
    DONE = 6
    FAILED = 7


class ControllerAuth:
    """The controller's side of DH-HMAC-CHAP on one queue.

    ``on_send(data, now)`` takes what an Authentication Send carried,
    ``on_receive(al, now)`` gives what an Authentication Receive returns.
    Whatever goes wrong turns into a Failure1 at the next Receive; then
    ``failed`` is set and the queue stays unauthenticated (the caller ends
    the association, as Linux's nvmet does).  A transaction that stalls for
    ``timeout_s`` starts over (``on_timer``).

    Re-authentication (8.3.4.2): a Negotiate starts a new transaction at any
    time.  On a queue that is authenticated, the queue stays so while the new
    transaction runs (the Linux host re-authenticates under I/O when its key
    is changed through sysfs); only a failure withdraws it.  Where nvmet
    drops the queue's authentication at the Negotiate, commands racing the
    transaction would fail for nothing.  ``require_reauthentication`` is the
    controller's side: the host's keys changed, the queue is unauthenticated
    until a transaction with the new keys succeeds, and ``reauth_required``
    tells the caller to answer Authentication Required without DNR, so the
    host re-authenticates and retries.
    """

    def __init__(self, *, qid: int, hostnqn: str, subnqn: str, host_key: DhchapKey,
                 ctrl_key: DhchapKey | None = None, hash_id: int = HashId.SHA256,
                 dhgroup: int = DhGroup.NULL, timeout_s: float = AUTH_TIMEOUT_S,
                 rng: Callable[[int], bytes] = secrets.token_bytes,
                 dh_private: int | None = None):
        self.qid = qid
        self.hostnqn = hostnqn
        self.subnqn = subnqn
        self.host_key = host_key
        self.ctrl_key = ctrl_key
        self.want_hash = hash_id
        self.want_dhgroup = dhgroup
        self.timeout_s = timeout_s
        self._rng = rng
        self._dh_private = dh_private
        self._state = _CtrlState.NEGOTIATE
        self._deadline: float | None = None
        self.authenticated = False
        self.failed = False
        self.reauth_required = False
        self.transactions = 0  # Negotiates seen (each failure is logged once)
        self.reason = 0  # last failure reason, for the log
        self.detail = ""
        self.t_id = 0
        self.hash_id = 0
        self.dhgroup = 0
        self._pair: C.DhKeyPair | None = None
        self._s1 = 0
        self._c1 = b""
        self._s2 = 0
        self._c2 = b""
        self._session_key = b""

    @property
    def finished(self) -> bool:
        """The last transaction ended in success (not one in progress)."""
        return self._state == _CtrlState.DONE

    def next_deadline(self) -> float | None:
        return self._deadline

    def on_timer(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline:
            self._restart()

    def _restart(self) -> None:
        self._state = _CtrlState.NEGOTIATE
        self._deadline = None
        self._pair = None
        self._session_key = b""

    def require_reauthentication(self, *, host_key: DhchapKey | None = None,
                                 ctrl_key: DhchapKey | None = None, hash_id: int | None = None,
                                 dhgroup: int | None = None, keep_ctrl_key: bool = True) -> None:
        """Withdraw the queue's authentication, with new settings for the next transaction.

        A transaction in progress is abandoned (it ran with the old keys);
        the host's next Negotiate starts one with the new ones.
        """
        if host_key is not None:
            self.host_key = host_key
        if ctrl_key is not None or not keep_ctrl_key:
            self.ctrl_key = ctrl_key
        if hash_id is not None:
            self.want_hash = hash_id
        if dhgroup is not None:
            self.want_dhgroup = dhgroup
        self.authenticated = False
        self.reauth_required = True
        self._restart()

    def _fail(self, reason: int, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        self.authenticated = False
        # A host that cannot authenticate with the current keys gets DNR
        # from now on: retrying would only fail again.
        self.reauth_required = False
        self._state = _CtrlState.FAILURE1

    def on_send(self, data, now: float) -> None:
        self._deadline = now + self.timeout_s
        try:
            msg = decode_message(data)
        except BadMessage as exc:
            self._fail(exc.reason, str(exc))
            return
        if type(msg) is Negotiate:
            self._on_negotiate(msg)
            return
        if type(msg) is Failure and msg.which == MsgId.FAILURE2:
            self.reason = msg.reason
            self.detail = f"host sent Failure2, {reason_text(msg.reason)}"
            self.authenticated = False
            self.reauth_required = False
            self.failed = True
            self._state = _CtrlState.FAILED
            self._deadline = None
            return
        expected = {_CtrlState.REPLY: Reply, _CtrlState.SUCCESS2: Success2}.get(self._state)
        if expected is None or type(msg) is not expected:
            self._fail(FailureReason.INCORRECT_MESSAGE,
                       f"host sent {type(msg).__name__} out of order")
            return
        if msg.t_id != self.t_id:
            self._fail(FailureReason.INCORRECT_PAYLOAD,
                       f"host used transaction {msg.t_id}, expected {self.t_id}")
            return
        if type(msg) is Reply:
            self._on_reply(msg)
        else:
            self._succeeded()

    def _succeeded(self) -> None:
        self.authenticated = True
        self.reauth_required = False
        self._state = _CtrlState.DONE
        self._deadline = None

    def _on_negotiate(self, n: Negotiate) -> None:
        # ``authenticated`` is left as it is: see the class notes.
        self.transactions += 1
        self.failed = False
        self.t_id = n.t_id
        if n.sc_c != 0:
            self._fail(FailureReason.CONCAT_MISMATCH, "host asked for a secure channel")
            return
        usable = [h for h in n.hash_ids if h in C.HASH_LEN]
        if not usable:
            self._fail(FailureReason.HASH_UNUSABLE, "host offered no usable hash function")
            return
        # The configured hash when the host offers it, else the host's first
        # usable one (Linux's nvmet falls back the same way).
        self.hash_id = self.want_hash if self.want_hash in usable else usable[0]
        groups = [g for g in n.dhgroups if g in C.DHGROUP_NAMES]
        if not groups:
            self._fail(FailureReason.DHGROUP_UNUSABLE, "host offered no usable DH group")
            return
        self.dhgroup = self.want_dhgroup if self.want_dhgroup in groups else groups[0]
        self._state = _CtrlState.CHALLENGE

    def _on_reply(self, r: Reply) -> None:
        hl = C.hash_len(self.hash_id)
        if len(r.rval) != hl:
            self._fail(FailureReason.INCORRECT_PAYLOAD, f"reply HL {len(r.rval)}, expected {hl}")
            return
        challenge = self._c1
        if self.dhgroup != DhGroup.NULL:
            try:
                self._session_key = C.dh_shared_secret(self._pair, bytes(r.dhv))
            except C.BadPublicValue as exc:
                self._fail(FailureReason.DHGROUP_UNUSABLE, f"host's DH value: {exc}")
                return
            challenge = C.augmented_challenge(self.hash_id, self._session_key, challenge)
        elif r.dhv:
            self._fail(FailureReason.INCORRECT_PAYLOAD, "host sent a DH value with the null group")
            return
        key = C.transform_secret(self.host_key, self.hostnqn)
        want = C.host_response(self.hash_id, key, challenge, seqnum=self._s1, t_id=self.t_id,
                               hostnqn=self.hostnqn, subnqn=self.subnqn)
        if not secrets.compare_digest(want, bytes(r.rval)):
            self._fail(FailureReason.FAILED, "host response does not match the host key")
            return
        self._s2 = r.seqnum if r.cvalid else 0
        self._c2 = bytes(r.cval) if r.cvalid and r.seqnum else b""
        if self._c2 and self.ctrl_key is None:
            self._fail(FailureReason.FAILED,
                       "host asked to authenticate the controller, which has no controller key")
            return
        self._state = _CtrlState.SUCCESS1

    def on_receive(self, al: int, now: float) -> bytes:
        st = self._state
        if st == _CtrlState.CHALLENGE:
            self._deadline = now + self.timeout_s
            return self._challenge()
        if st == _CtrlState.SUCCESS1:
            msg = Success1(self.t_id, C.hash_len(self.hash_id), self._ctrl_response())
            if self._c2:
                self._state = _CtrlState.SUCCESS2
                self._deadline = now + self.timeout_s
            else:
                self._succeeded()
            return encode_message(msg)
        if st not in (_CtrlState.FAILURE1,):
            self._fail(FailureReason.INCORRECT_MESSAGE, "host asked for a message out of order")
        self.failed = True
        self._deadline = None
        self._state = _CtrlState.FAILED
        return encode_message(Failure(self.t_id, MsgId.FAILURE1, self.reason))

    def _challenge(self) -> bytes:
        hl = C.hash_len(self.hash_id)
        self._c1 = self._rng(hl)
        self._s1 = _nonzero_seqnum(self._rng)
        dhv = b""
        if self.dhgroup != DhGroup.NULL:
            self._pair = C.dh_generate(self.dhgroup, self._dh_private)
            dhv = self._pair.public
        self._state = _CtrlState.REPLY
        return encode_message(Challenge(self.t_id, self.hash_id, self.dhgroup, self._s1, self._c1,
                                        dhv))

    def _ctrl_response(self) -> bytes | None:
        if not self._c2:
            return None
        challenge = self._c2
        if self.dhgroup != DhGroup.NULL:
            challenge = C.augmented_challenge(self.hash_id, self._session_key, challenge)
        key = C.transform_secret(self.ctrl_key, self.subnqn)
        return C.controller_response(self.hash_id, key, challenge, seqnum=self._s2, t_id=self.t_id,
                                     hostnqn=self.hostnqn, subnqn=self.subnqn)
