"""DH-HMAC-CHAP secrets: make one, check one (``gen-dhchap-key``, ``check-dhchap-key``).

Secrets are text in the ``DHHC-1:NN:<base64>:`` form of NVMe Base 2.1,
8.3.4.5.9, as nvme-cli prints them and Linux reads them: NN the transform
HMAC (0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512), then 32, 48 or 64 key bytes
and their CRC-32.  What :func:`generate_key` prints, :func:`check_key`
accepts, and so do ``dhchap_secret``/``dhchap_ctrl_secret`` everywhere.  A
bad secret or parameter is a :class:`nvmecontrol.errors.UsageError` saying
what is wrong.
"""

from __future__ import annotations

from collections import namedtuple

__all__ = ["Key", "generate_key", "check_key"]

# Immutable; a namedtuple, as ``import dataclasses`` costs start-up time.
Key = namedtuple("Key", (
    "text",  # DHHC-1:NN:<base64>:
    "hmac",  # the transform: 0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512
    "key_length",  # bytes: 32, 48 or 64
    "crc",  # the CRC-32 the text carries after the key
))
Key.__doc__ = "A secret in its text form, and what it holds."


def _key(key) -> Key:
    from nvmecontrol.wire.dhchap_key import format_secret, key_crc

    return Key(format_secret(key), key.transform, len(key.secret), key_crc(key.secret))


def generate_key(*, hmac: int = 0, key_length: int = 0, secret: bytes | None = None,
                 nqn: str | None = None) -> Key:
    """A new secret, as ``nvme gen-dhchap-key`` makes it.

    ``key_length`` 0 is the HMAC's size (32 without one); ``secret`` the key
    bytes to use instead of random ones.  With an HMAC and an ``nqn`` (the
    host NQN, as the CLI passes it) the key is stored transformed with the
    NQN, as nvme-cli 2.x does, so both print the same key for the same input.
    """
    from nvmecontrol.wire.dhchap_key import generate_secret

    key = generate_secret(key_len=key_length, transform=hmac, secret=secret, nqn=nqn)
    return _key(key)


def check_key(text: str) -> Key:
    """What a ``DHHC-1`` secret holds, after checking its form, length and CRC."""
    from nvmecontrol.wire.dhchap_key import parse_secret

    key = parse_secret(text)
    return _key(key)
