"""The public API's I/O after nvmfd withdraws a queue's authentication.

``target.auth.rekey_host`` makes every queue of the host answer
Authentication Required until it authenticates again: the API's I/O queues
hold the refused commands, run a new transaction on the queue and send them
once more, so the program sees its reads and writes succeed; with keys the
controller no longer accepts they fail, naming the reason.
"""

from __future__ import annotations

import os

import pytest

from nvmecontrol import api
from nvmecontrol.target.auth import rekey_host
from nvmecontrol.target.config import HostAuthConfig
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret
from nvmecontrol.wire.status import decode_status

from tests.conftest import simple_config

HOSTID = "5e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a7b"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
WHO = {"hostnqn": HOSTNQN, "hostid": HOSTID}
HKEY = format_secret(generate_secret(transform=1))
CKEY = format_secret(generate_secret(transform=2))


@pytest.fixture
def target(nvmfd_factory):
    cfg = simple_config(namespaces=["mem:8M"], allow_hosts=[HOSTNQN])
    cfg.host_auth[HOSTNQN] = HostAuthConfig(HKEY, CKEY, "hmac(sha256)", "ffdhe2048")
    return nvmfd_factory(cfg)


def _controller(target):
    return api.connect(f"127.0.0.1:{target.port}", target.subnqn, io_queues=2, kato=30,
                       dhchap_secret=HKEY, dhchap_ctrl_secret=CKEY, **WHO)


def _io_machines(server) -> list:
    (ctrl,) = [c for c in server.controllers.values() if c.hostnqn == HOSTNQN]
    return ctrl, [conn.auth_gate.auth.machine for _, conn in sorted(ctrl.io_queues.items())]


def test_io_goes_on_after_the_controller_withdraws_authentication(target):
    srv = target.server
    with _controller(target) as ctrl:
        ns = ctrl.namespace(1)
        blocks = [os.urandom(4096) for _ in range(32)]
        api_ctrl, machines = _io_machines(srv)
        for round_ in range(2):
            seen = [m.transactions for m in machines]
            assert rekey_host(srv, HOSTNQN, srv.config.host_auth[HOSTNQN]) == 3
            assert not any(m.authenticated for m in machines)
            # Many commands in flight on both queues meet the refusal.
            writes = [ns.submit_write(i * 8, b) for i, b in enumerate(blocks)]
            for w in writes:
                w.result(timeout=30)
            reads = [ns.submit_read(i * 8, 8) for i in range(len(blocks))]
            assert [bytes(r.result(timeout=30)) for r in reads] == blocks
            # Each I/O queue ran one new transaction, not one per command.
            assert [m.transactions for m in machines] == [s + 1 for s in seen]
            assert all(m.authenticated for m in machines)
            blocks.reverse()
        # The refusals happened (the controller's error log has them).
        refused = [e for e in api_ctrl.error_log
                   if e.sqid and decode_status(e.status).sc == 0x91]
        assert refused
        # Admin commands re-authenticated the admin queue the same way.
        assert [n.nsid for n in ctrl.namespaces()] == [1]


def test_io_fails_with_the_reason_when_reauthentication_fails(target):
    srv = target.server
    with _controller(target) as ctrl:
        ns = ctrl.namespace(1)
        ns.write(0, bytes(4096))
        new = HostAuthConfig(format_secret(generate_secret(transform=1)), CKEY, "hmac(sha256)",
                             "ffdhe2048")
        srv.config.host_auth[HOSTNQN] = new
        rekey_host(srv, HOSTNQN, new)
        futures = [ns.submit_read(i, 1) for i in range(4)]
        for f in futures:
            err = f.exception(timeout=30)
            assert isinstance(err, api.CommandError), err
            st = decode_status(err.status)
            assert (st.sct, st.sc) == (1, 0x91)
            assert "authenticating queue" in str(err) and "again failed" in str(err)
        # The controller's keys come back: the next command authenticates and is served.
        srv.config.host_auth[HOSTNQN] = HostAuthConfig(HKEY, CKEY, "hmac(sha256)", "ffdhe2048")
        rekey_host(srv, HOSTNQN, srv.config.host_auth[HOSTNQN])
        assert ns.read(0, 8) == bytes(4096)


def test_connect_refuses_a_malformed_secret(target):
    with pytest.raises(api.UsageError, match="dhchap_secret"):
        api.connect(f"127.0.0.1:{target.port}", target.subnqn, dhchap_secret="DHHC-1:00:xx:",
                    **WHO)
