"""DH-HMAC-CHAP arithmetic: the RFC 7919 primes, Diffie-Hellman, the transforms."""

import hashlib
import hmac

import pytest

from nvmecontrol.wire import auth_crypto as C
from nvmecontrol.wire.auth_crypto import DhchapKey, DhGroup, HashId

# SHA-256 of each prime as OpenSSL 3.0 serves it
# (`openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdheN`), big-endian.
OPENSSL_PRIME_SHA256 = {
    DhGroup.FFDHE2048: "9cd3b7f336872f46c09428d1bbc19877a4d440512cda8d1c1cf0cd6e33698966",
    DhGroup.FFDHE3072: "0eaf67db3a839156d5013494a5318a772b5697d270d721f37f092efc69ea5a17",
    DhGroup.FFDHE4096: "4648414224ac881b3d0dc59b466f96d06a558278776807797ecf1f66ff397b3e",
    DhGroup.FFDHE6144: "227ac9066b3ddd9e193670cda2388fa884f65ba0cf98b742d1fe77a6687c79c7",
    DhGroup.FFDHE8192: "770b14efaf6f049929c523113b3fa99a8d11dab1b18af3609590122075d19833",
}


@pytest.mark.parametrize("group", list(OPENSSL_PRIME_SHA256))
def test_primes_are_the_rfc7919_ones(group):
    p = C.ffdhe_prime(group)
    raw = p.to_bytes(C.dh_value_len(group), "big")
    assert hashlib.sha256(raw).hexdigest() == OPENSSL_PRIME_SHA256[group]
    assert raw[:8] == raw[-8:] == b"\xff" * 8  # 64 one bits at both ends


def test_ffdhe2048_is_a_safe_prime_by_fermat():
    p = C.ffdhe_prime(DhGroup.FFDHE2048)
    q = (p - 1) // 2
    assert pow(2, p - 1, p) == 1 and pow(3, q - 1, q) == 1


@pytest.mark.parametrize("group", [DhGroup.FFDHE2048, DhGroup.FFDHE3072])
def test_both_sides_agree_on_the_shared_secret(group):
    a, b = C.dh_generate(group), C.dh_generate(group)
    assert len(a.public) == C.dh_value_len(group)
    s = C.dh_shared_secret(a, b.public)
    assert s == C.dh_shared_secret(b, a.public)
    assert len(s) == C.dh_value_len(group) and a.public != b.public


def test_shared_secret_is_padded_to_the_group_size():
    # g^x with x = 1 from the peer and our x = 1: the secret is 2, padded.
    pair = C.dh_generate(DhGroup.FFDHE2048, private=1)
    assert pair.public == (2).to_bytes(256, "big")
    assert C.dh_shared_secret(pair, (3).to_bytes(256, "big")) == (3).to_bytes(256, "big")


@pytest.mark.parametrize("value", [0, 1, "p-1", "p"])
def test_degenerate_public_values_are_refused(value):
    p = C.ffdhe_prime(DhGroup.FFDHE2048)
    y = {"p-1": p - 1, "p": p}.get(value, value)
    with pytest.raises(C.BadPublicValue):
        C.dh_shared_secret(C.dh_generate(DhGroup.FFDHE2048), y.to_bytes(256, "big"))


def test_wrong_size_public_value_is_refused():
    with pytest.raises(C.BadPublicValue, match="255 bytes"):
        C.dh_shared_secret(C.dh_generate(DhGroup.FFDHE2048), bytes(255))


def test_private_exponent_is_short_but_full_strength():
    pair = C.dh_generate(DhGroup.FFDHE4096)
    assert pair.private.bit_length() == 304


@pytest.mark.parametrize("hash_id,name", [(1, "sha256"), (2, "sha384"), (3, "sha512")])
def test_transform_is_hmac_of_nqn_and_label(hash_id, name):
    key = DhchapKey(bytes(range(48)), hash_id)
    want = hmac.new(key.secret, b"nqn.x" + b"NVMe-over-Fabrics", name).digest()
    assert C.transform_secret(key, "nqn.x") == want
    assert C.transform_secret(DhchapKey(key.secret, 0), "nqn.x") == key.secret


def test_augmented_challenge_keys_hmac_with_the_hashed_session_key():
    skey, c = b"\x01" * 256, b"\x02" * 48
    want = hmac.new(hashlib.sha384(skey).digest(), c, "sha384").digest()
    assert C.augmented_challenge(HashId.SHA384, skey, c) == want


def test_host_and_controller_responses_differ_in_label_and_order():
    args = dict(seqnum=0x01020304, t_id=0x0506, hostnqn="nqn.h", subnqn="nqn.c")
    key, c = b"k" * 32, b"c" * 32
    r1 = C.host_response(HashId.SHA256, key, c, **args)
    r2 = C.controller_response(HashId.SHA256, key, c, **args)
    body = c + bytes.fromhex("04030201") + bytes.fromhex("0605") + b"\0"
    assert r1 == hmac.new(key, body + b"HostHost" + b"nqn.h\0nqn.c", "sha256").digest()
    assert r2 == hmac.new(key, body + b"Controller" + b"nqn.c\0nqn.h", "sha256").digest()
