"""nvmfd with DH-HMAC-CHAP: our host against it, queues gated until authenticated."""

from __future__ import annotations

import pytest

from nvmecontrol.target.config import HostAuthConfig, dump_nvmetcli, load_nvmetcli
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire import nvm
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret

from tests.conftest import simple_config

from .helpers import connect, make_host, raw_queue, run, sc

HOST = make_host()
HKEY = format_secret(generate_secret(transform=1))
CKEY = format_secret(generate_secret(transform=3))


@pytest.fixture
def auth_target(nvmfd_factory):
    def start(hash_name="hmac(sha256)", group="null", ctrl_key=CKEY):
        cfg = simple_config(allow_hosts=[HOST.hostnqn])
        cfg.host_auth[HOST.hostnqn] = HostAuthConfig(HKEY, ctrl_key, hash_name, group)
        return nvmfd_factory(cfg)
    return start


def secrets(host=HKEY, ctrl=None):
    return dict(dhchap_secret=parse_secret(host), dhchap_ctrl_secret=parse_secret(ctrl) if ctrl
                else None)


@pytest.mark.parametrize("hash_name,group", [("hmac(sha256)", "null"),
                                             ("hmac(sha384)", "ffdhe2048"),
                                             ("hmac(sha512)", "ffdhe3072")])
@pytest.mark.parametrize("bidi", [False, True])
def test_our_host_authenticates_every_queue(auth_target, hash_name, group, bidi):
    h = auth_target(hash_name, group)
    assoc = connect(h, host=HOST, num_io_queues=2, **secrets(ctrl=CKEY if bidi else None))
    try:
        for q in assoc.io:
            data = bytes([q.qid]) * 512
            cqe, _ = run(q, nvm.build_write(1, q.qid, 1), write_data=data)
            assert cqe.status == 0
            cqe, back = run(q, nvm.build_read(1, q.qid, 1), read_len=512)
            assert cqe.status == 0 and back == data
    finally:
        assoc.shutdown()


def test_wrong_host_key_is_refused(auth_target):
    h = auth_target()
    with pytest.raises(A.HostKeyRejected, match="Failure1.*reason 0x01"):
        connect(h, host=HOST, **secrets(host=format_secret(generate_secret(transform=1))))


def test_wrong_controller_key_is_detected(auth_target):
    h = auth_target()
    with pytest.raises(A.ControllerAuthFailed):
        connect(h, host=HOST, **secrets(ctrl=format_secret(generate_secret(transform=3))))


def test_no_controller_key_refuses_bidirectional(auth_target):
    h = auth_target(ctrl_key=None)
    with pytest.raises(A.HostKeyRejected):
        connect(h, host=HOST, **secrets(ctrl=CKEY))


def test_missing_key_is_reported(auth_target):
    h = auth_target()
    with pytest.raises(A.AuthKeyMissing):
        connect(h, host=HOST)


def test_other_hosts_are_not_asked(nvmfd_factory):
    cfg = simple_config()  # any host
    cfg.host_auth["nqn.2014-08.org.example:someone-else"] = HostAuthConfig(HKEY)
    h = nvmfd_factory(cfg)
    connect(h, host=make_host()).shutdown()


def _connected_admin(h):
    """A raw admin queue after Connect, authentication pending: (queue pair, Connect CQE)."""
    # Connect by hand: connect_queue would stop at the missing key.
    from nvmecontrol.host.queue import HostQueue
    from nvmecontrol.hostid import hostid_bytes

    tq = raw_queue(h)
    q = HostQueue(tq, qid=0, timeout=5.0)
    data = F.encode_connect_data(F.ConnectData(hostid_bytes(HOST.hostid), F.CNTLID_DYNAMIC,
                                               h.subnqn, HOST.hostnqn))
    cqe, _ = q.execute(F.build_connect(F.ConnectCmd(qid=0, sqsize=31)), "Connect",
                       write_data=data)
    return q, cqe


def test_unauthenticated_admin_queue_is_gated(auth_target):
    h = auth_target()
    q, cqe = _connected_admin(h)
    try:
        assert F.parse_connect_response(cqe).authreq == F.AUTHREQ_ATR
        # Fabrics commands pass (Linux's nvmet lets them), the rest do not.
        cqe, _ = run(q, F.build_property_get(F.Prop.CAP))
        assert cqe.status == 0
        from nvmecontrol.wire import admin
        cqe, _ = run(q, admin.build_identify(1), read_len=4096)
        assert sc(cqe) == (1, 0x91, True)  # Authentication Required
    finally:
        q.close()


@pytest.mark.parametrize("field,value,pel", [("secp", 0xEA, F.AUTH_SECP_OFFSET),
                                             ("spsp0", 2, F.AUTH_SPSP0_OFFSET),
                                             ("length", 0, F.AUTH_LENGTH_OFFSET)])
def test_malformed_auth_commands_are_invalid_field(auth_target, field, value, pel):
    h = auth_target()
    q, _ = _connected_admin(h)
    try:
        kw = {"secp": A.SECP_DHCHAP, "spsp0": 1, "length": 16}
        kw[field] = value
        sqe = F.build_auth_receive(kw["secp"], kw["length"], spsp0=kw["spsp0"])
        cqe, _ = run(q, sqe, read_len=kw["length"])
        assert sc(cqe) == (0, 0x02, True)
    finally:
        q.close()


def test_config_round_trip_keeps_the_keys():
    data = {"hosts": [{"nqn": HOST.hostnqn, "dhchap_key": HKEY, "dhchap_ctrl_key": CKEY,
                       "dhchap_hash": "hmac(sha512)", "dhchap_dhgroup": "ffdhe4096"},
                      {"nqn": "nqn.2014-08.org.example:grouped",
                       "dhchap": {"key": HKEY, "hash": "hmac(sha384)"}}],
            "ports": [], "subsystems": []}
    cfg = load_nvmetcli(data)
    a = cfg.host_auth[HOST.hostnqn]
    assert (a.hash_id, a.dhgroup, a.ctrl_key.transform) == (3, 3, 3)
    assert cfg.host_auth["nqn.2014-08.org.example:grouped"].hash_id == 2
    assert load_nvmetcli(dump_nvmetcli(cfg)) == cfg


@pytest.mark.parametrize("entry,phrase", [
    ({"dhchap_key": HKEY, "dhchap_hash": "hmac(md5)"}, "dhchap_hash"),
    ({"dhchap_key": HKEY, "dhchap_dhgroup": "ffdhe1024"}, "dhchap_dhgroup"),
    ({"dhchap_key": HKEY[:-3] + "AA:"}, "CRC"),
])
def test_bad_host_auth_settings(entry, phrase):
    from nvmecontrol.errors import UsageError
    with pytest.raises(UsageError, match=phrase):
        load_nvmetcli({"hosts": [{"nqn": HOST.hostnqn, **entry}]})

