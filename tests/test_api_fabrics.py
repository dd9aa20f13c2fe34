"""nvmecontrol.api.fabrics: controllers handed to a backend, against nvmfd.

The backend here is the userspace one (``nbd``): a session process holds
each association; the kernel backend's calls are the same ones (tests/interop).
"""

from __future__ import annotations

import pytest

from nvmecontrol import api
from nvmecontrol.api import fabrics, hosts
from nvmecontrol.api.discovery import discover
from nvmecontrol.api.tuning import Tuning

from .backends.sessionkit import session_guard

assert session_guard  # autouse: no session process outlives its test

HOSTID = "7e6d5c4b-3a29-4817-a6f5-e4d3c2b1a090"
HOST = hosts.resolve_host(f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}", HOSTID)


def _connect(target, address=None, **kw):
    return fabrics.connect(address or f"127.0.0.1:{target.port}", target.subnqn, backend="nbd",
                           host=HOST, **kw)


def test_connect_hands_the_association_to_a_session_once(nvmfd_server):
    first = _connect(nvmfd_server, tuning=Tuning(num_io_queues=2, kato_s=7))
    try:
        info = first.info
        assert not first.existing and info.backend == "nbd" and info.name == "nvmeu0"
        assert (info.subnqn, info.traddr, int(info.trsvcid)) == \
            (nvmfd_server.subnqn, "127.0.0.1", nvmfd_server.port)
        assert (info.params.num_io_queues, info.params.kato_s) == (2, 7)
        assert [ns.name for ns in info.namespaces] == ["nvmeu0ns1"]
        # The same subsystem, address and host: found, not made again; a
        # name for the address is the same association.
        again = _connect(nvmfd_server, f"localhost:{nvmfd_server.port}")
        assert again.existing and again.info.name == "nvmeu0"
        assert [c.name for c in fabrics.controllers()] == ["nvmeu0"]
    finally:
        assert fabrics.disconnect("nvmeu0") == ["nvmeu0"]
    assert fabrics.controllers() == []


def test_disconnect_by_subsystem_and_all(nvmfd_factory):
    one = nvmfd_factory(subnqn="nqn.2014-08.org.example:api-one")
    two = nvmfd_factory(subnqn="nqn.2014-08.org.example:api-two")
    names = [_connect(t).info.name for t in (one, two, one)]
    assert names == ["nvmeu0", "nvmeu1", "nvmeu0"]
    assert fabrics.disconnect_subsystem(one.subnqn) == ["nvmeu0"]
    with pytest.raises(api.NotFound, match="no controller is connected to"):
        fabrics.disconnect_subsystem(one.subnqn)
    assert fabrics.disconnect(two.subnqn) == ["nvmeu1"]  # an NQN: its controllers
    _connect(one)
    _connect(two)
    assert sorted(fabrics.disconnect_all()) == ["nvmeu0", "nvmeu1"]
    assert fabrics.disconnect_all() == []


def test_disconnect_of_what_is_not_there():
    with pytest.raises(api.NotFound, match="nvmeu7"):
        fabrics.disconnect("nvmeu7")
    with pytest.raises(api.UsageError, match="neither a device name"):
        fabrics.disconnect("sda")
    assert fabrics.is_device_name("/dev/nvme0n1") and fabrics.is_device_name("nvmeu3ns2")
    assert not fabrics.is_device_name("nqn.2014-08.org.example:x")


def test_reconnect_with_saved_parameters_and_to_a_new_address(nvmfd_server):
    _connect(nvmfd_server, tuning=Tuning(kato_s=9))
    try:
        info = fabrics.reconnect("nvmeu0")
        assert info.name == "nvmeu0" and info.params.kato_s == 9
        # Somewhere else (here: the same target by name), with a tuning of its own.
        info = fabrics.reconnect("nvmeu0", f"localhost:{nvmfd_server.port}",
                                 tuning=Tuning(kato_s=11))
        assert (info.params.traddr, info.params.kato_s) == ("localhost", 11)
        assert info.params.hostnqn == HOST.hostnqn  # the saved host, none given
        with pytest.raises(api.UsageError, match="needs an explicit port"):
            fabrics.reconnect("nvmeu0", "localhost")
    finally:
        fabrics.disconnect_all()
    with pytest.raises(api.NotFound, match="no session nvmeu0"):
        fabrics.reconnect("nvmeu0")
    with pytest.raises(api.NotFound, match="no such device 'sda'"):
        fabrics.reconnect("sda")


def test_a_refused_connect_names_the_field(nvmfd_server):
    with pytest.raises(api.CommandFailed) as caught:
        fabrics.connect(f"127.0.0.1:{nvmfd_server.port}", "nqn.2014-08.org.example:nope",
                        backend="nbd", host=HOST)
    refusal = fabrics.connect_refusal(caught.value)
    assert refusal is not None and (refusal.field, refusal.in_data) == ("SUBNQN", True)
    assert refusal.offset == 256  # SUBNQN's byte in the Connect data
    assert fabrics.controllers() == []
    assert fabrics.connect_refusal(api.CommandFailed("other", 0x0002)) is None


WHO = {"hostnqn": HOST.hostnqn, "hostid": str(HOST.hostid)}


def test_connect_each_entry_of_a_discovery_log(nvmfd_server):
    log = discover(f"127.0.0.1:{nvmfd_server.port}", walk=True, **WHO)
    (entry,) = [e for e in log.entries if e.subnqn == nvmfd_server.subnqn]
    assert fabrics.unusable(entry) == ""
    try:
        connected = fabrics.connect_entry(entry, backend="nbd", host=HOST)
        assert not connected.existing and connected.info.subnqn == nvmfd_server.subnqn
        assert (connected.info.traddr, connected.info.trsvcid) == (entry.traddr, entry.trsvcid)
        assert fabrics.connect_entry(entry, backend="nbd", host=HOST).existing
    finally:
        fabrics.disconnect_all()


def test_unusable_entries_say_why(nvmfd_server):
    (entry,) = discover(f"127.0.0.1:{nvmfd_server.port}", **WHO).entries
    assert fabrics.unusable(entry._replace(trtype=1)) == "unsupported transport 1"
    assert fabrics.unusable(entry._replace(adrfam=3)).startswith(
        "unsupported address family")
    assert fabrics.unusable(entry._replace(tsas=bytes([2]) + entry.tsas[1:])) == \
        "requires TLS, which nvmecontrol does not support"
    assert fabrics.unusable(entry._replace(trsvcid="nvme")) == "invalid port 'nvme'"
    with pytest.raises(ValueError):
        fabrics.connect_entry(entry._replace(trsvcid="nvme"), backend="nbd",
                              host=HOST)


def test_backend_choice_and_its_reasons():
    assert "modprobe nvme-tcp" in fabrics.why_not_kernel("linux")
    assert "kldload nvmf_tcp" in fabrics.why_not_kernel("freebsd15")
    assert fabrics.why_not_kernel("darwin") == "no kernel NVMe/TCP host on darwin"
    assert fabrics.attach_problem(False) is None
    assert fabrics.choose_backend("nbd").name == "nbd"
    with pytest.raises(api.UsageError, match="unknown backend 'bogus'"):
        fabrics.choose_backend("bogus")


def test_reconnect_to_a_new_address_keeps_the_saved_secrets(nvmfd_factory):
    """reconnect has no secret options: an association that authenticated
    authenticates again at the new address with the secrets it was made with."""
    from nvmecontrol.target.config import HostAuthConfig
    from nvmecontrol.wire.dhchap_key import format_secret, generate_secret

    from .conftest import simple_config

    key, ctrl_key = (format_secret(generate_secret(transform=t)) for t in (1, 2))
    cfg = simple_config(namespaces=["mem:4M"], allow_hosts=[HOST.hostnqn])
    cfg.host_auth[HOST.hostnqn] = HostAuthConfig(key, ctrl_key, "hmac(sha256)", "ffdhe2048")
    target = nvmfd_factory(cfg)
    first = _connect(target, tuning=Tuning(dhchap_secret=key, dhchap_ctrl_secret=ctrl_key))
    try:
        moved = fabrics.reconnect(first.info.name, f"localhost:{target.port}",
                                  tuning=Tuning(kato_s=9))
        assert moved.params.kato_s == 9
        assert moved.params.dhchap_secret is not None  # kept (shown redacted)
        # The controller saw a second, authenticated association from this host.
        assert len([c for c in target.server.controllers.values()
                    if c.hostnqn == HOST.hostnqn]) >= 1
    finally:
        fabrics.disconnect_all()
    # Without the secrets the target refuses this host: the reconnect above
    # could only have worked with them.
    with pytest.raises(api.Error):
        _connect(target, tuning=Tuning())
