"""DH-HMAC-CHAP secrets in their text form, ``DHHC-1:NN:<base64>:``.

NVMe Base 2.1, 8.3.4.5.9 (secret representation), as nvme-cli writes them
and Linux reads them: NN is the transform hash (00 none, 01 SHA-256,
02 SHA-384, 03 SHA-512), the base64 holds the 32, 48 or 64 key bytes
followed by their CRC-32 (the zlib/IEEE polynomial) in little-endian order,
and a colon ends the string.
"""

from __future__ import annotations

import base64
import binascii
import zlib

from nvmecontrol.errors import UsageError
from nvmecontrol.wire.auth_crypto import HASH_LEN, DhchapKey, HashId, hmac_digest

PREFIX = "DHHC-1:"
KEY_LENGTHS = (32, 48, 64)
_CRC_LEN = 4


class BadSecret(UsageError, ValueError):
    """A DHHC-1 string that is malformed or fails its CRC (a usage error wherever
    it surfaces: a reconnect request carrying one must not end a session)."""


def key_crc(key: bytes) -> int:
    return zlib.crc32(key) & 0xFFFFFFFF


def format_secret(key: DhchapKey) -> str:
    if len(key.secret) not in KEY_LENGTHS:
        raise BadSecret(f"key is {len(key.secret)} bytes; it must be 32, 48 or 64")
    if key.transform not in (0, *HashId):
        raise BadSecret(f"transform {key.transform} is not 0 (none), 1, 2 or 3")
    body = bytes(key.secret) + key_crc(key.secret).to_bytes(_CRC_LEN, "little")
    return f"{PREFIX}{key.transform:02x}:{base64.b64encode(body).decode()}:"


def parse_secret(text: str) -> DhchapKey:
    """Decode and check a ``DHHC-1:NN:<base64>:`` string; BadSecret says what is wrong."""
    if not text.startswith(PREFIX):
        raise BadSecret("secret does not start with 'DHHC-1:'")
    rest = text[len(PREFIX):]
    nn, sep, body = rest.partition(":")
    if not sep or len(nn) != 2 or not nn.isdigit():
        raise BadSecret("secret has no two-digit transform after 'DHHC-1:'")
    transform = int(nn)
    if transform > max(HashId):
        raise BadSecret(f"transform {nn} is not 00 (none), 01, 02 or 03")
    if not body.endswith(":"):
        raise BadSecret("secret does not end with ':'")
    try:
        raw = base64.b64decode(body[:-1], validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("secret is not valid base64") from None
    key, crc = raw[:-_CRC_LEN], raw[-_CRC_LEN:]
    if len(key) not in KEY_LENGTHS:
        raise BadSecret(f"secret holds {len(key)} key bytes; it must be 32, 48 or 64")
    want = key_crc(key)
    got = int.from_bytes(crc, "little")
    if got != want:
        raise BadSecret(f"secret CRC mismatch (stored {got:08x}, computed {want:08x})")
    return DhchapKey(key, transform)


def generate_secret(*, key_len: int = 0, transform: int = 0, secret: bytes | None = None,
                    nqn: str | None = None) -> DhchapKey:
    """A new secret, as ``nvme gen-dhchap-key`` makes one.

    With a transform, the length defaults to (and must equal) the hash size.
    nvme-cli 2.x stores HMAC(random, NQN || "NVMe-over-Fabrics") when given
    an NQN; since the input is random that changes nothing but the bytes, and
    with an explicit *secret* it keeps that behaviour for compatibility.
    """
    if transform not in (0, *HashId):
        raise BadSecret(f"HMAC {transform} is not 0 (none), 1, 2 or 3")
    if transform:
        want = HASH_LEN[HashId(transform)]
        if key_len and key_len != want:
            raise BadSecret(f"key length {key_len} does not match HMAC {transform} "
                            f"({HashId(transform).name}, {want} bytes)")
        key_len = want
    key_len = key_len or (len(secret) if secret else 32)
    if key_len not in KEY_LENGTHS:
        raise BadSecret(f"key length {key_len} is not 32, 48 or 64")
    if secret is not None and len(secret) != key_len:
        raise BadSecret(f"secret is {len(secret)} bytes, key length is {key_len}")
    if secret is None:
        import secrets  # here: it loads OpenSSL (start-up time of the commands)

        raw = secrets.token_bytes(key_len)
    else:
        raw = secret
    if transform and nqn:
        raw = hmac_digest(transform, raw, nqn.encode(), b"NVMe-over-Fabrics")
    return DhchapKey(raw, transform)
