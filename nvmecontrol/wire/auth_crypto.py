"""The arithmetic of DH-HMAC-CHAP: hashes, FFDHE groups, secret transformation, responses.

NVMe Base 2.1, 8.3.4.5 (DH-HMAC-CHAP protocol) and 8.3.4.5.9 (secret
representation); the values match what the Linux host and nvmet compute
(drivers/nvme/common/auth.c), which the known-answer tests pin.

Primitives: ``hashlib``/``hmac`` for the hashes, Python integers and
``pow()`` for the finite-field Diffie-Hellman.  Measured here (CPU per
queue for one key pair plus one shared secret, short exponents as below):
ffdhe2048 6 ms, 4096 26 ms, 8192 127 ms with ``pow()``, about seven times
less with ``cryptography``'s OpenSSL DH.  Authentication runs once per queue
at connect time, never per I/O, so the stdlib cost is paid once and no
dependency is added; ``cryptography`` also deprecates its FFDH API.

The FFDHE primes are not stored: RFC 7919, appendix A builds each from the
binary digits of e and a small per-group offset X,
``p = 2^b - 2^(b-64) + (floor(2^(b-130) * e) + X) * 2^64 - 1``; a test
compares every prime against a digest of OpenSSL's copy.
"""

from __future__ import annotations

# hashlib, hmac and secrets are imported where used: with OpenSSL and random
# they cost about a bare interpreter start here, and gen-dhchap-key and
# check-dhchap-key, which read these tables, mostly need none of them.
from collections import namedtuple
from enum import IntEnum
from functools import lru_cache


class HashId(IntEnum):
    """HMAC hash function identifiers (NVMe Base 2.1, figure "DH-HMAC-CHAP hash functions")."""

    SHA256 = 0x01
    SHA384 = 0x02
    SHA512 = 0x03


class DhGroup(IntEnum):
    """Diffie-Hellman group identifiers (NVMe Base 2.1, figure "DH-HMAC-CHAP DH groups")."""

    NULL = 0x00
    FFDHE2048 = 0x01
    FFDHE3072 = 0x02
    FFDHE4096 = 0x03
    FFDHE6144 = 0x04
    FFDHE8192 = 0x05


_DIGEST = {HashId.SHA256: "sha256", HashId.SHA384: "sha384", HashId.SHA512: "sha512"}
HASH_LEN = {HashId.SHA256: 32, HashId.SHA384: 48, HashId.SHA512: 64}

# Names as configfs, nvmetcli and nvme-cli spell them.
HASH_NAMES = {HashId.SHA256: "hmac(sha256)", HashId.SHA384: "hmac(sha384)",
              HashId.SHA512: "hmac(sha512)"}
DHGROUP_NAMES = {DhGroup.NULL: "null", DhGroup.FFDHE2048: "ffdhe2048",
                 DhGroup.FFDHE3072: "ffdhe3072", DhGroup.FFDHE4096: "ffdhe4096",
                 DhGroup.FFDHE6144: "ffdhe6144", DhGroup.FFDHE8192: "ffdhe8192"}

# RFC 7919 appendix A: group size in bits -> X.
_FFDHE_X = {DhGroup.FFDHE2048: (2048, 560316), DhGroup.FFDHE3072: (3072, 2625351),
            DhGroup.FFDHE4096: (4096, 5736041), DhGroup.FFDHE6144: (6144, 15705020),
            DhGroup.FFDHE8192: (8192, 10965728)}
# Private exponent bits: twice the group's security strength (NIST SP 800-56A
# 5.6.1.1.1, the sizes Linux's dh.c uses for these groups); RFC 7919 5.2
# asks for at least this much.  Short exponents keep pow() affordable.
_EXPONENT_BITS = {DhGroup.FFDHE2048: 224, DhGroup.FFDHE3072: 256, DhGroup.FFDHE4096: 304,
                  DhGroup.FFDHE6144: 352, DhGroup.FFDHE8192: 400}
FFDHE_GENERATOR = 2

# What both sides mix into the transformed secret and the responses
# (NVMe Base 2.1, 8.3.4.5.4 and 8.3.4.5.5).
_TRANSFORM_LABEL = b"NVMe-over-Fabrics"
_HOST_LABEL = b"HostHost"
_CTRL_LABEL = b"Controller"


# Records are collections.namedtuple classes, not typing.NamedTuple: typing
# costs start-up time (gen-dhchap-key and check-dhchap-key load this module).
class DhchapKey(namedtuple("DhchapKey", "secret transform", defaults=(0,))):
    """A DH-HMAC-CHAP secret: the key bytes and the hash that transforms them (0: none)."""

    __slots__ = ()


def hash_len(hash_id: int) -> int:
    return HASH_LEN[HashId(hash_id)]


def digest(hash_id: int, data: bytes) -> bytes:
    import hashlib

    return hashlib.new(_DIGEST[HashId(hash_id)], data).digest()


def hmac_digest(hash_id: int, key: bytes, *parts: bytes) -> bytes:
    import hmac

    mac = hmac.new(key, digestmod=_DIGEST[HashId(hash_id)])
    for part in parts:
        mac.update(part)
    return mac.digest()


def transform_secret(key: DhchapKey, nqn: str) -> bytes:
    """The secret as used in the responses: HMAC(key, NQN || "NVMe-over-Fabrics").

    The hash is the key's own transform (the NN of DHHC-1:NN), not the one
    negotiated; transform 0 uses the key as it is.  The host key is
    transformed with the host NQN, the controller key with the subsystem NQN.
    """
    if key.transform == 0:
        return bytes(key.secret)
    return hmac_digest(key.transform, key.secret, nqn.encode(), _TRANSFORM_LABEL)


def augmented_challenge(hash_id: int, session_key: bytes, challenge: bytes) -> bytes:
    """Ca = HMAC(H(g^xy mod p), C) (8.3.4.5.3): a DH group mixes the session key in."""
    return hmac_digest(hash_id, digest(hash_id, session_key), challenge)


def _response(hash_id: int, key: bytes, challenge: bytes, seqnum: int, t_id: int, sc_c: int,
              label: bytes, first_nqn: str, second_nqn: str) -> bytes:
    return hmac_digest(hash_id, key, challenge, seqnum.to_bytes(4, "little"),
                       t_id.to_bytes(2, "little"), bytes([sc_c]), label, first_nqn.encode(),
                       b"\0", second_nqn.encode())


def host_response(hash_id: int, key: bytes, challenge: bytes, *, seqnum: int, t_id: int,
                  hostnqn: str, subnqn: str, sc_c: int = 0) -> bytes:
    """R1 = HMAC(Kh, C1 || S1 || T_ID || SC_C || "HostHost" || NQNh || 00h || NQNc).

    ``key`` is the transformed host secret, ``challenge`` C1 (augmented when a
    DH group is in use).
    """
    return _response(hash_id, key, challenge, seqnum, t_id, sc_c, _HOST_LABEL, hostnqn, subnqn)


def controller_response(hash_id: int, key: bytes, challenge: bytes, *, seqnum: int, t_id: int,
                        hostnqn: str, subnqn: str, sc_c: int = 0) -> bytes:
    """R2 = HMAC(Kc, C2 || S2 || T_ID || SC_C || "Controller" || NQNc || 00h || NQNh)."""
    return _response(hash_id, key, challenge, seqnum, t_id, sc_c, _CTRL_LABEL, subnqn, hostnqn)


# --- finite-field Diffie-Hellman (RFC 7919) ---------------------------------

def _e_fixed_point(bits: int) -> int:
    """floor(e * 2^bits), from the series sum 1/k! with guard bits."""
    guard = 64
    term = 1 << (bits + guard)
    total = 0
    k = 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> guard


@lru_cache(maxsize=None)
def ffdhe_prime(group: int) -> int:
    bits, x = _FFDHE_X[DhGroup(group)]
    return (1 << bits) - (1 << (bits - 64)) + ((_e_fixed_point(bits - 130) + x) << 64) - 1


def dh_value_len(group: int) -> int:
    """Bytes of a public value or shared secret in *group* (0 for the null group)."""
    if group == DhGroup.NULL:
        return 0
    return _FFDHE_X[DhGroup(group)][0] // 8


class DhKeyPair(namedtuple("DhKeyPair", "group private public")):
    """An ephemeral DH key pair: group and private exponent (ints), the public
    value (big-endian bytes, dh_value_len(group) of them)."""

    __slots__ = ()


def dh_generate(group: int, private: int | None = None) -> DhKeyPair:
    """A fresh ephemeral key pair; *private* only for known-answer tests."""
    p = ffdhe_prime(group)
    if private is None:
        import secrets

        bits = _EXPONENT_BITS[DhGroup(group)]
        private = secrets.randbits(bits) | (1 << (bits - 1))
    public = pow(FFDHE_GENERATOR, private, p)
    return DhKeyPair(group, private, public.to_bytes(dh_value_len(group), "big"))


class BadPublicValue(ValueError):
    """The peer's DH public value is outside 2..p-2 or of the wrong size."""


def dh_shared_secret(pair: DhKeyPair, peer_public: bytes) -> bytes:
    """g^xy mod p as big-endian bytes of the group size (as Linux's kpp pads it).

    A peer value of 0, 1 or p-1 would force a known secret (NIST SP 800-56A
    5.6.2.3.1); it is refused, as Linux refuses it.
    """
    size = dh_value_len(pair.group)
    if len(peer_public) != size:
        raise BadPublicValue(f"DH value is {len(peer_public)} bytes, the group needs {size}")
    p = ffdhe_prime(pair.group)
    y = int.from_bytes(peer_public, "big")
    if not 1 < y < p - 1:
        raise BadPublicValue("DH value is outside 2..p-2")
    return pow(y, pair.private, p).to_bytes(size, "big")
