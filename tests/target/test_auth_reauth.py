"""Re-authentication: on an authenticated queue, and when nvmfd learns new keys for a host.

Our host against an in-process nvmfd.  The host starts a new transaction on
queues already authenticated (as the Linux host does when its key is written
to sysfs) while they keep serving I/O; ``rekey_host`` withdraws the
authentication of a host's queues, which then answer Authentication Required
without DNR until the host re-authenticates with the new keys, and the host
library does that by itself and retries the command.
"""

from __future__ import annotations

import pytest

from nvmecontrol.target.auth import AUTH_REQUIRED, AUTH_REQUIRED_RETRY, rekey_host
from nvmecontrol.target.config import HostAuthConfig
from nvmecontrol.wire import admin
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import nvm
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret

from tests.conftest import simple_config

from .helpers import connect, make_host, run, sc

HOST = make_host()
HKEY = format_secret(generate_secret(transform=1))
CKEY = format_secret(generate_secret(transform=2))
NEW_HKEY = format_secret(generate_secret(transform=3))
NEW_CKEY = format_secret(generate_secret(transform=1))


@pytest.fixture
def target(nvmfd_factory):
    cfg = simple_config(allow_hosts=[HOST.hostnqn])
    cfg.host_auth[HOST.hostnqn] = HostAuthConfig(HKEY, CKEY, "hmac(sha384)", "ffdhe2048")
    return nvmfd_factory(cfg)


def _assoc(target, **kw):
    kw.setdefault("num_io_queues", 2)
    return connect(target, host=HOST, dhchap_secret=parse_secret(HKEY),
                   dhchap_ctrl_secret=parse_secret(CKEY), **kw)


def _io(q, fill: int) -> None:
    data = bytes([fill]) * 512
    cqe, _ = run(q, nvm.build_write(1, q.qid, 1), write_data=data)
    assert cqe.status == 0
    cqe, back = run(q, nvm.build_read(1, q.qid, 1), read_len=512)
    assert cqe.status == 0 and back == data


def test_host_reauthenticates_authenticated_queues_under_io(target):
    assoc = _assoc(target)
    try:
        for round_ in range(2):
            results = assoc.reauthenticate()
            assert [r.bidirectional for r in results] == [True, True, True]
            for q in assoc.io:
                _io(q, q.qid + round_)
            assoc.identify(1)
    finally:
        assoc.shutdown()


def test_reauthentication_with_a_wrong_key_withdraws_the_queue(target):
    assoc = _assoc(target)
    try:
        q = assoc.io[0]
        assoc.params.dhchap_secret = parse_secret(format_secret(generate_secret(transform=1)))
        with pytest.raises(A.HostKeyRejected):
            assoc.authenticate(q)
        # The queue that failed is gated again, with DNR: retrying cannot help.
        cqe, _ = run(q, nvm.build_read(1, q.qid, 1), read_len=512)
        assert cqe.status == AUTH_REQUIRED and sc(cqe) == (1, 0x91, True)
        # The other queues were not touched.
        _io(assoc.io[1], 7)
        # The right key authenticates the queue again.
        assoc.params.dhchap_secret = parse_secret(HKEY)
        assoc.authenticate(q)
        _io(q, 8)
    finally:
        assoc.shutdown()


def test_rekey_withdraws_authentication_until_the_new_keys_are_used(target):
    assoc = _assoc(target)
    try:
        srv = target.server
        new = HostAuthConfig(NEW_HKEY, NEW_CKEY, "hmac(sha512)", "null")
        srv.config.host_auth[HOST.hostnqn] = new
        assert rekey_host(srv, HOST.hostnqn, new) == 3  # admin + two I/O queues
        for q in (assoc.admin, *assoc.io):
            cqe, _ = run(q, admin.build_identify(1) if q.qid == 0 else nvm.build_read(1, 1, 1),
                         read_len=4096 if q.qid == 0 else 512)
            assert cqe.status == AUTH_REQUIRED_RETRY and sc(cqe) == (1, 0x91, False)
        # The old keys no longer do.
        with pytest.raises(A.HostKeyRejected):
            assoc.authenticate(assoc.io[0])
        results = assoc.reauthenticate(dhchap_secret=parse_secret(NEW_HKEY),
                                       dhchap_ctrl_secret=parse_secret(NEW_CKEY))
        assert {(r.hash_id, r.dhgroup) for r in results} == {(3, 0)}
        for q in assoc.io:
            _io(q, 0x40 + q.qid)
    finally:
        assoc.shutdown()


def test_host_library_reauthenticates_and_retries_once(target):
    assoc = _assoc(target, num_io_queues=1)
    try:
        srv = target.server
        cfg = srv.config.host_auth[HOST.hostnqn]
        rekey_host(srv, HOST.hostnqn, cfg)  # same keys: only the withdrawal
        # identify() meets Authentication Required, authenticates, retries.
        assert len(assoc.identify(1)) == 4096
        cqe, _ = run(assoc.admin, admin.build_identify(1), read_len=4096)
        assert cqe.status == 0
    finally:
        assoc.shutdown()


def test_rekey_of_a_host_without_live_associations_or_keys(target):
    srv = target.server
    assert rekey_host(srv, "nqn.2014-08.org.example:nobody",
                      HostAuthConfig(HKEY)) == 0
    assert rekey_host(srv, HOST.hostnqn, None) == 0


def test_new_keys_by_host_add_keep_live_queues_until_nvmfd_reauth_asks(target):
    """As nvmet: a key changed on the target (host-add, reload) leaves live
    queues as they are (a host whose key is rotated on the target first must
    not fail its I/O); `nvmfd reauth` then asks for a new transaction."""
    from nvmecontrol.target import main as M

    assoc = _assoc(target)
    try:
        sock = target.socket_path
        assert M.main(["host-add", "-S", sock, HOST.hostnqn, "--dhchap-key", NEW_HKEY,
                       "--dhchap-ctrl-key", NEW_CKEY, "--dhchap-hash", "hmac(sha512)",
                       "--dhchap-dhgroup", "null"]) == 0
        for q in assoc.io:
            _io(q, 0x50 + q.qid)  # still served: nothing was withdrawn
        assert M.main(["reauth", "-S", sock, HOST.hostnqn]) == 0
        cqe, _ = run(assoc.io[0], nvm.build_read(1, 1, 1), read_len=512)
        assert cqe.status == AUTH_REQUIRED_RETRY
        assoc.reauthenticate(dhchap_secret=parse_secret(NEW_HKEY),
                             dhchap_ctrl_secret=parse_secret(NEW_CKEY))
        for q in assoc.io:
            _io(q, 0x60 + q.qid)
        # A host nvmfd holds no keys for: one line, usage.
        assert M.main(["reauth", "-S", sock, "nqn.2014-08.org.example:nobody"]) == 64
    finally:
        assoc.shutdown()
