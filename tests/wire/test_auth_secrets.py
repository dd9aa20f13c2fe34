"""DHHC-1 secrets: the text form and generation, pinned to nvme-cli 2.3's output."""

import base64
import zlib

import pytest

from nvmecontrol.wire.auth_crypto import DhchapKey, HashId, transform_secret
from nvmecontrol.wire.dhchap_key import BadSecret, format_secret, generate_secret, parse_secret

S32 = bytes(range(32))
S48 = bytes(range(48))
S64 = bytes(range(64))
NQN = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"

# `nvme gen-dhchap-key -s <hex> -m M [-n NQN]` (nvme-cli 2.3, libnvme 1.3).
NVME_CLI = [
    (S32, 0, None, "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"),
    (S48, 0, None, "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vcSEgBQ==:"),
    (S32, 1, NQN, "DHHC-1:01:bOHk6jHoMxpP5YJr/eF6XNOGuPAzh0iRniebpsVb9ydqVuR5:"),
    (S48, 2, NQN, "DHHC-1:02:JzgkyQ7IBRNgZgoVJQTRqDZ62Hnj5/kZ+vrrqjiE4TzoZZv5ycVS5cOLCiZ1bQfVVxJqow==:"),
    (S64, 3, NQN, "DHHC-1:03:D+Ucidhr9Oh00yaKCrMLB2s2c/hsojlyxwni12p59UZ78f4YQ6UMpEcQG4yaPnLJFkljK+euytryvvQe2rYShiu0Vv0=:"),
]


@pytest.mark.parametrize("secret,hmac,nqn,text", NVME_CLI)
def test_generate_matches_nvme_cli(secret, hmac, nqn, text):
    assert format_secret(generate_secret(transform=hmac, secret=secret, nqn=nqn)) == text


@pytest.mark.parametrize("secret,hmac,nqn,text", NVME_CLI)
def test_parse_round_trips_nvme_cli(secret, hmac, nqn, text):
    key = parse_secret(text)
    assert key.transform == hmac and len(key.secret) == len(secret)
    assert format_secret(key) == text


@pytest.mark.parametrize("secret,hmac,nqn,text", NVME_CLI[2:])
def test_nvme_cli_stored_the_transformed_secret(secret, hmac, nqn, text):
    # nvme-cli 2.x keeps HMAC(secret, NQN || "NVMe-over-Fabrics"): the very
    # transformation the protocol applies, so its output is a known answer for it.
    assert parse_secret(text).secret == transform_secret(DhchapKey(secret, hmac), nqn)


def test_crc_is_zlib_crc32_little_endian():
    raw = base64.b64decode(NVME_CLI[0][3].split(":")[2])
    assert raw[32:] == zlib.crc32(S32).to_bytes(4, "little")
    assert zlib.crc32(parse_secret(NVME_CLI[2][3]).secret) == 0x79E4566A  # nvme check-dhchap-key


@pytest.mark.parametrize("text,phrase", [
    ("DHHC-2:00:AAAA:", "DHHC-1"),
    ("DHHC-1:0:AAAA:", "two-digit"),
    ("DHHC-1:04:" + NVME_CLI[0][3][10:], "transform 04"),
    (NVME_CLI[0][3][:-1], "end with ':'"),
    ("DHHC-1:00:AA*A:", "base64"),
    ("DHHC-1:00:" + base64.b64encode(bytes(20)).decode() + ":", "16 key bytes"),
    (NVME_CLI[0][3].replace("AAEC", "AQEC", 1), "CRC mismatch"),
])
def test_parse_refuses(text, phrase):
    with pytest.raises(BadSecret, match=phrase):
        parse_secret(text)


def test_generate_defaults_and_limits():
    assert len(generate_secret().secret) == 32
    assert len(generate_secret(transform=HashId.SHA512).secret) == 64
    assert len(generate_secret(key_len=48).secret) == 48
    assert generate_secret().secret != generate_secret().secret
    with pytest.raises(BadSecret, match="does not match HMAC 1"):
        generate_secret(transform=1, key_len=48)
    with pytest.raises(BadSecret, match="not 32, 48 or 64"):
        generate_secret(key_len=40)
    with pytest.raises(BadSecret, match="HMAC 4"):
        generate_secret(transform=4)


def test_a_bad_secret_is_a_usage_error_wherever_it_surfaces():
    from nvmecontrol.backends.model import ConnectParams
    from nvmecontrol.errors import UsageError

    p = ConnectParams("127.0.0.1", "4420", "nqn.s", "nqn.h",
                      "00000000-0000-0000-0000-000000000000", dhchap_secret="DHHC-1:00:bad:")
    with pytest.raises(UsageError):
        p.association_params()
