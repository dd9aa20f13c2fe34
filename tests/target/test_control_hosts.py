"""Host ACL changes (host-add, host-remove) and save at run time; DH-HMAC-CHAP keys
on the daemon's command line."""

from __future__ import annotations

import json
import os
import stat

import pytest

from nvmecontrol.errors import HostRefused, NotFound, UsageError
from nvmecontrol.target import main as M
from nvmecontrol.target.config import (NamespaceConfig, PortConfig, SubsystemConfig,
                                       TargetConfig, dump_nvmetcli, load_nvmetcli_file)
from nvmecontrol.target.server import Server

from .helpers import alive, connect, make_host, wait_for

SUB = "nqn.2014-08.org.example:acl"
SECOND = "nqn.2014-08.org.example:acl-second"
KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"


def two_subsystems(hosts: list[str]) -> TargetConfig:
    subs = [SubsystemConfig(nqn=n, allowed_hosts=list(hosts),
                            namespaces=[NamespaceConfig(nsid=1, path="mem:1M", read_only=ro,
                                                        block_size=bs)])
            for n, ro, bs in ((SUB, False, 512), (SECOND, True, 4096))]
    return TargetConfig(hosts=list(hosts), subsystems=subs,
                        ports=[PortConfig(portid=1, traddr="127.0.0.1", trsvcid="0",
                                          subsystems=[SUB, SECOND],
                                          param={"inline_data_size": "4096"})])


def nvmfd(handle, *argv) -> int:
    return M.main([*argv[:1], "-S", handle.socket_path, *argv[1:]])


def test_host_add_lets_a_host_in_and_host_remove_ends_its_associations(nvmfd_factory, capsys):
    alice, bob = make_host(), make_host()
    h = nvmfd_factory(config=two_subsystems([alice.hostnqn]))
    with pytest.raises(HostRefused):
        connect(h, SUB, host=bob)
    assert nvmfd(h, "host-add", "--subsystem", SUB, bob.hostnqn) == 0
    assert capsys.readouterr().out == f"host {bob.hostnqn} allowed on {SUB}\n"
    assert bob.hostnqn in h.server.config.hosts
    b1 = connect(h, SUB, host=bob, num_io_queues=1)
    a2 = connect(h, SECOND, host=alice, num_io_queues=1)
    a1 = connect(h, SUB, host=alice, num_io_queues=1)
    try:
        # Bob is not allowed on SECOND: removing him from SUB ends his association there.
        assert nvmfd(h, "host-remove", "--subsystem", SUB, bob.hostnqn) == 0
        assert capsys.readouterr().out == (f"host {bob.hostnqn} removed from {SUB}, "
                                           "1 associations terminated\n")
        assert wait_for(lambda: not alive(b1))
        assert alive(a1) and alive(a2)
        assert bob.hostnqn not in h.server.config.hosts  # linked nowhere now
        with pytest.raises(HostRefused):
            connect(h, SUB, host=bob)
        # Alice off SUB only: her association with SECOND stays.
        assert nvmfd(h, "host-remove", "--subsystem", SUB, alice.hostnqn) == 0
        assert wait_for(lambda: not alive(a1))
        assert alive(a2) and alice.hostnqn in h.server.config.hosts
    finally:
        for a in (a1, a2, b1):
            a.close()


def test_host_acl_errors(nvmfd_factory, capsys):
    alice = make_host()
    h = nvmfd_factory(config=two_subsystems([alice.hostnqn]))
    with h.control() as c:
        with pytest.raises(UsageError, match="--subsystem|name one"):
            c.request("host-add", host=make_host().hostnqn)
        with pytest.raises(NotFound):
            c.request("host-remove", host=make_host().hostnqn, subsystem=SUB)
        with pytest.raises(NotFound):
            c.request("host-add", host=alice.hostnqn, subsystem="nqn.2014-08.org.example:no")
        with pytest.raises(UsageError, match="invalid host NQN"):
            c.request("host-add", host="nqn." + "x" * 300, subsystem=SUB)
        with pytest.raises(UsageError, match="dhchap_key"):
            c.request("host-add", host=alice.hostnqn, subsystem=SUB, dhchap_key="DHHC-1:00:x:")
        with pytest.raises(UsageError, match="dhchap_hash"):
            c.request("host-add", host=alice.hostnqn, subsystem=SUB, dhchap_key=KEY,
                      dhchap_hash="md5")
    assert nvmfd(h, "host-remove", "--subsystem", SUB, make_host().hostnqn) == 66
    assert "not an allowed host" in capsys.readouterr().err


def test_host_add_with_keys_requires_authentication(nvmfd_factory):
    alice = make_host()
    h = nvmfd_factory(config=two_subsystems([alice.hostnqn]))
    a = connect(h, SUB, host=alice, num_io_queues=1)
    try:
        assert nvmfd(h, "host-add", "--subsystem", SUB, alice.hostnqn, "--dhchap-key", KEY,
                     "--dhchap-hash", "hmac(sha384)", "--dhchap-dhgroup", "ffdhe2048") == 0
        auth = h.server.config.host_auth[alice.hostnqn]
        assert (auth.dhchap_key, auth.dhchap_hash, auth.dhchap_dhgroup) == (
            KEY, "hmac(sha384)", "ffdhe2048")
        # It had not authenticated: never served weaker than the configuration asks.
        assert wait_for(lambda: not alive(a))
        from nvmecontrol.wire.dhchap_key import parse_secret
        b = connect(h, SUB, host=alice, num_io_queues=1, dhchap_secret=parse_secret(KEY))
        try:
            assert alive(b)
        finally:
            b.close()
    finally:
        a.close()


def test_host_add_on_a_subsystem_that_allows_any_host(nvmfd_server, capsys):
    host = make_host().hostnqn
    assert nvmfd(nvmfd_server, "host-add", host) == 0
    assert "(it allows any host)" in capsys.readouterr().out
    assert nvmfd(nvmfd_server, "host-remove", host) == 0
    assert capsys.readouterr().out.endswith("0 associations terminated; it still allows any "
                                            "host\n")


def test_save_round_trips(nvmfd_factory, tmp_path, capsys):
    alice = make_host()
    h = nvmfd_factory(config=two_subsystems([alice.hostnqn]))
    assert nvmfd(h, "host-add", "--subsystem", SECOND, make_host().hostnqn, "--dhchap-key",
                 KEY, "--dhchap-ctrl-key", KEY) == 0
    assert nvmfd(h, "ns-add", "--subsystem", SUB, "-r", "--block-size", "4096", "mem:2M") == 0
    path = tmp_path / "saved.json"
    assert nvmfd(h, "save", str(path)) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds secrets
    saved = load_nvmetcli_file(str(path))
    assert saved == h.server.config
    ns2 = saved.subsystem(SUB).namespaces[1]
    assert (ns2.nsid, ns2.read_only, ns2.block_size) == (2, True, 4096)
    assert saved.ports[0].param == {"inline_data_size": "4096"}
    capsys.readouterr()
    assert nvmfd(h, "save", "-") == 0
    assert json.loads(capsys.readouterr().out) == dump_nvmetcli(h.server.config)
    # Without a file: the daemon's -c file, and this one has none.
    assert nvmfd(h, "save") == 64
    assert "no configuration file" in capsys.readouterr().err
    # Served from the saved file (on the same port, once this daemon stopped),
    # the configuration is the same again.
    served = dump_nvmetcli(h.server.config)
    h.stop()
    other = Server(saved)
    try:
        other.start()
        assert dump_nvmetcli(other.config) == served
        assert other.subsystems[SUB].namespaces[2].read_only
        assert other.subsystems[SECOND].namespaces[1].block_size == 4096
    finally:
        other.stop()


def test_save_defaults_to_the_daemons_configuration_file(nvmfd_factory, tmp_path):
    path = tmp_path / "config.json"
    cfg = two_subsystems([])
    path.write_text(json.dumps(dump_nvmetcli(cfg)))
    h = nvmfd_factory(config=load_nvmetcli_file(str(path)))
    h.server.config_path = str(path)
    assert nvmfd(h, "ns-add", "--subsystem", SUB, "mem:1M") == 0
    assert nvmfd(h, "save") == 0
    assert [n.nsid for n in load_nvmetcli_file(str(path)).subsystem(SUB).namespaces] == [1, 2]


# --- keys on the daemon's command line ---------------------------------------------------

def _args(*argv):
    return M.build_parser().parse_args(list(argv))


def test_dhchap_options_set_the_keys_of_the_allowed_hosts():
    h1, h2 = make_host().hostnqn, make_host().hostnqn
    cfg = M.build_config(_args("-n", SUB, "--allow-host", h1, "--allow-host", h2,
                               "--dhchap-key", KEY, "--dhchap-ctrl-key", KEY,
                               "--dhchap-hash", "hmac(sha512)", "--dhchap-dhgroup", "ffdhe4096",
                               "mem:1M"))
    assert set(cfg.host_auth) == {h1, h2}
    auth = cfg.host_auth[h1]
    assert (auth.dhchap_key, auth.dhchap_ctrl_key, auth.dhchap_hash, auth.dhchap_dhgroup) == (
        KEY, KEY, "hmac(sha512)", "ffdhe4096")


@pytest.mark.parametrize("argv, message", [
    (("--dhchap-key", KEY), "--allow-host"),
    (("--allow-host", "nqn.2014-08.org.example:h", "--dhchap-key", "DHHC-1:00:x:"),
     "dhchap_key"),
    (("--allow-host", "nqn.2014-08.org.example:h", "--dhchap-ctrl-key", KEY),
     "without dhchap_key"),
    (("--allow-host", "nqn.2014-08.org.example:h", "--dhchap-key", KEY, "--dhchap-dhgroup",
      "ffdhe1024"), "dhchap_dhgroup"),
])
def test_dhchap_option_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        M.build_config(_args("-n", SUB, *argv, "mem:1M"))


def test_dhchap_options_with_a_configuration_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(dump_nvmetcli(two_subsystems([]))))
    with pytest.raises(UsageError, match="--dhchap"):
        M.build_config(_args("-c", str(path), "--dhchap-key", KEY))
