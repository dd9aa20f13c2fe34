"""nvmecontrol.api.hosts and nvmecontrol.api.keys: the host identity and DH-HMAC-CHAP secrets."""

from __future__ import annotations

import uuid

import pytest

from nvmecontrol import api
from nvmecontrol.api import hosts, keys

HOSTID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
S32 = bytes(range(32))
# nvme-cli 2.x: gen-dhchap-key -s 000102..1f -m 1 -n NQN (tests/cli/test_dhchap_commands.py)
NQN = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
NVME_CLI_01 = "DHHC-1:01:bOHk6jHoMxpP5YJr/eF6XNOGuPAzh0iRniebpsVb9ydqVuR5:"


# -- hosts ----------------------------------------------------------------------------------

def test_resolve_host_takes_what_it_is_given():
    h = hosts.resolve_host(HOSTNQN, HOSTID)
    assert (h.hostnqn, h.hostid) == (HOSTNQN, uuid.UUID(HOSTID))
    assert (h.hostnqn_source, h.hostid_source) == ("command line", "command line")
    assert h.mismatch is None


def test_resolve_host_says_when_the_id_is_not_the_nqns():
    other = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    h = hosts.resolve_host(HOSTNQN, other)
    assert h.hostid == uuid.UUID(other) and other in h.mismatch


def test_resolve_host_refuses_a_bad_nqn():
    with pytest.raises(api.UsageError, match="host NQN"):
        hosts.resolve_host("nqn.bad nqn with spaces\x01", HOSTID)


def test_generated_hostnqn_carries_its_hostid():
    nqn = hosts.generate_hostnqn()
    assert nqn.startswith("nqn.2014-08.org.nvmexpress:uuid:")
    assert hosts.hostid_of(nqn) == uuid.UUID(nqn.rsplit(":", 1)[1])
    assert nqn != hosts.generate_hostnqn()
    assert hosts.hostid_of("nqn.2014-08.org.example:disk") is None


def test_write_host_files_writes_and_keeps(tmp_path):
    nqn_path, id_path = hosts.write_host_files(HOSTNQN, HOSTID, root=tmp_path)
    assert nqn_path == tmp_path / "etc/nvme/hostnqn" and nqn_path.read_text() == HOSTNQN + "\n"
    assert id_path.read_text() == HOSTID + "\n"
    other = hosts.generate_hostnqn()
    with pytest.raises(api.UsageError, match="already exists"):
        hosts.write_host_files(other, hosts.hostid_of(other), root=tmp_path)
    assert nqn_path.read_text() == HOSTNQN + "\n"
    hosts.write_host_files(other, hosts.hostid_of(other), root=tmp_path, overwrite=True)
    assert nqn_path.read_text() == other + "\n"


def test_write_host_files_refuses_an_id_that_is_not_the_nqns(tmp_path):
    with pytest.raises(api.UsageError, match="does not match"):
        hosts.write_host_files(HOSTNQN, uuid.UUID(int=1), root=tmp_path)
    assert not (tmp_path / "etc").exists()


def test_validate_nqn_names_the_role_and_the_rule():
    hosts.validate_nqn(HOSTNQN)
    hosts.validate_nqn("not-an-nqn", strict=False)  # only what no NQN may hold
    with pytest.raises(api.UsageError, match=r"invalid subsystem NQN .*does not start with"):
        hosts.validate_nqn("not-an-nqn", what="subsystem NQN")
    with pytest.raises(api.UsageError, match="is empty"):
        hosts.validate_nqn("", strict=False)
    assert hosts.looks_like_nqn(hosts.DISCOVERY_NQN) and not hosts.looks_like_nqn("nvme0")


# -- keys -----------------------------------------------------------------------------------

def test_generate_key_as_nvme_cli_does():
    k = keys.generate_key(hmac=1, secret=S32, nqn=NQN)
    assert (k.text, k.hmac, k.key_length) == (NVME_CLI_01, 1, 32)
    assert keys.check_key(k.text) == k


@pytest.mark.parametrize("hmac, length", [(0, 32), (1, 32), (2, 48), (3, 64)])
def test_generate_key_takes_the_hmacs_length(hmac, length):
    k = keys.generate_key(hmac=hmac)
    assert (k.hmac, k.key_length) == (hmac, length)
    assert k.text.startswith(f"DHHC-1:0{hmac}:") and keys.check_key(k.text).crc == k.crc


def test_generate_key_untransformed_keeps_the_secret():
    k = keys.generate_key(secret=S32)
    assert k.text == keys.generate_key(secret=S32).text  # no randomness, no transform


@pytest.mark.parametrize("kwargs, phrase", [
    ({"key_length": 40}, "key length 40"),
    ({"hmac": 1, "key_length": 48}, "does not match HMAC 1"),
    ({"hmac": 7}, "HMAC 7"),
    ({"secret": bytes(31), "key_length": 32}, "secret is 31 bytes"),
])
def test_generate_key_refuses(kwargs, phrase):
    with pytest.raises(api.UsageError, match=phrase):
        keys.generate_key(**kwargs)


@pytest.mark.parametrize("text, phrase", [
    ("DHHC-2:00:abc:", "does not start with 'DHHC-1:'"),
    (NVME_CLI_01[:-1], "does not end with ':'"),
    (NVME_CLI_01.replace("bOHk", "bOHl"), "CRC mismatch"),
    ("DHHC-1:00:AAAA:", "key bytes"),
])
def test_check_key_says_what_is_wrong(text, phrase):
    with pytest.raises(api.UsageError, match=phrase):
        keys.check_key(text)
