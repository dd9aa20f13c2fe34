"""DH-HMAC-CHAP secrets from nvme-cli's config.json: identify, logpage, discover, connect-all.

Against an in-process nvmfd whose host must authenticate; the config.json is
the test's own (the default path is pointed at it).  The command line wins
over the file for identify/logpage/discover; connect-all takes each
subsystem's secrets from its port, as libnvme does, and its
--dhchap-ctrl-secret authenticates the discovery controller.
"""

from __future__ import annotations

import json

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli import fabrics_config
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.target.config import (HostAuthConfig, NamespaceConfig, PortConfig,
                                       SubsystemConfig, TargetConfig)
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret

from ..backends.sessionkit import session_guard  # noqa: F401  (autouse: no session left)
from .clikit import cli

HOST = "nqn.2014-08.org.nvmexpress:uuid:8c7b6a59-4e3d-4c2b-a190-8f7e6d5c4b3a"
HOSTID = "8c7b6a59-4e3d-4c2b-a190-8f7e6d5c4b3a"
SUBNQN = "nqn.2014-08.org.example:auth-config"
HKEY = format_secret(generate_secret(transform=1))
CKEY = format_secret(generate_secret(transform=2))
WRONG = format_secret(generate_secret(transform=1))


@pytest.fixture
def port(nvmfd_factory) -> int:
    cfg = TargetConfig(hosts=[HOST],
                       subsystems=[SubsystemConfig(nqn=SUBNQN, allow_any_host=False,
                                                   allowed_hosts=[HOST],
                                                   namespaces=[NamespaceConfig(1, "mem:4M")])],
                       ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUBNQN])])
    cfg.host_auth[HOST] = HostAuthConfig(HKEY, CKEY, "hmac(sha384)", "ffdhe2048")
    return nvmfd_factory(config=cfg).port


@pytest.fixture
def config_json(tmp_path, monkeypatch):
    """Write config.json (one host, given subsystems -> port options) as the default file."""
    def write(subsystems: dict, host_options: dict | None = None):
        path = tmp_path / "config.json"
        path.write_text(json.dumps([{"hostnqn": HOST, "hostid": HOSTID, **(host_options or {}),
                                     "subsystems": [{"nqn": nqn, "ports": [p]}
                                                    for nqn, p in subsystems.items()]}]))
        monkeypatch.setattr(fabrics_config, "CONFIG_JSON", path)
        return path
    return write


def _port(port: int, **options) -> dict:
    return {"transport": "tcp", "traddr": "127.0.0.1", "trsvcid": str(port), **options}


def test_identify_takes_host_and_secrets_from_config(capsys, port, config_json):
    address = f"127.0.0.1:{port}"
    rc, out, err = cli(capsys, "identify", "-q", HOST, address, SUBNQN)
    assert rc == X.EX_USAGE and "requires DH-HMAC-CHAP" in err
    config_json({SUBNQN: _port(port, dhchap_key=HKEY, dhchap_ctrl_key=CKEY)})
    for who in ((), ("-q", HOST)):  # the host NQN from config.json, or the same one given
        rc, out, err = cli(capsys, "identify", *who, "-o", "json", address, SUBNQN)
        assert rc == 0, err
        assert json.loads(out)["subnqn"] == SUBNQN


def test_the_command_line_wins_over_config(capsys, port, config_json):
    address = f"127.0.0.1:{port}"
    config_json({SUBNQN: _port(port, dhchap_key=HKEY)})
    rc, out, err = cli(capsys, "identify", "--dhchap-secret", WRONG, address, SUBNQN)
    assert rc == X.EX_NOPERM and "rejected the host's response" in err
    # A controller secret from the command line with the config's host secret.
    rc, out, err = cli(capsys, "identify", "--dhchap-ctrl-secret", WRONG, address, SUBNQN)
    assert rc == X.EX_PROTOCOL and "controller's response does not match" in err


def test_config_applies_to_its_host_subsystem_pair(tmp_path, config_json):
    config_json({SUBNQN: _port(4420, dhchap_key=HKEY)})
    other = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001"
    found = fabrics_config.port_for_target
    assert found("127.0.0.1:4420", SUBNQN).options == {"dhchap_secret": HKEY}
    assert found("127.0.0.1", SUBNQN, HOST).hostnqn == HOST  # default I/O port 4420
    assert found("127.0.0.1:4420", SUBNQN, other) is None
    assert found("127.0.0.1:4421", SUBNQN) is None
    assert found("127.0.0.1:4420", "nqn.2014-08.org.example:other") is None
    assert found("127.0.0.1", None) is None  # the discovery subsystem, at 8009
    assert found("nvme0", SUBNQN) is None and found("nvmeu0ns1", None) is None


def test_logpage_takes_secrets_from_config(capsys, port, config_json):
    config_json({SUBNQN: _port(port, dhchap_key=HKEY)})
    rc, out, err = cli(capsys, "logpage", "-p", "1", "-o", "json", f"127.0.0.1:{port}", SUBNQN)
    assert rc == 0, err


def test_discover_takes_the_discovery_ports_secrets_from_config(capsys, port, config_json):
    address = f"127.0.0.1:{port}"
    rc, out, err = cli(capsys, "discover", "-o", "json", address)
    assert rc == 0, err
    # nvmfd's discovery controller holds no keys: asked to prove the controller
    # secret config.json gives for it, it cannot, and discover says so.
    config_json({DISCOVERY_NQN: _port(port, dhchap_key=HKEY, dhchap_ctrl_key=CKEY)})
    rc, out, err = cli(capsys, "discover", "-o", "json", address)
    assert rc == X.EX_UNAVAILABLE and "cannot authenticate itself" in err, err


def test_connect_all_takes_each_subsystems_secrets_from_config(capsys, port, config_json):
    address = f"127.0.0.1:{port}"
    args = ("connect-all", "--backend", "nbd", "--no-attach", "-q", HOST, "-I", HOSTID,
            "-o", "json", address)
    rc, out, err = cli(capsys, *args)
    [entry] = json.loads(out)["entries"]
    assert rc == X.EX_USAGE and entry["result"] == "failed" and "requires DH-HMAC" in entry["error"]
    config_json({SUBNQN: _port(port, dhchap_key=HKEY, dhchap_ctrl_key=CKEY)})
    # The config's host secret wins over the command line's host-wide one.
    rc, out, err = cli(capsys, *args, "--dhchap-secret", WRONG)
    try:
        assert rc == 0, err
        [entry] = json.loads(out)["entries"]
        assert (entry["subnqn"], entry["result"]) == (SUBNQN, "connected")
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0


def test_connect_all_ctrl_secret_authenticates_the_discovery_controller(capsys, port):
    rc, out, err = cli(capsys, "connect-all", "--backend", "nbd", "--no-attach", "-q", HOST,
                       "--dhchap-secret", HKEY, "--dhchap-ctrl-secret", CKEY,
                       f"127.0.0.1:{port}")
    assert rc != 0 and "cannot authenticate itself" in err and DISCOVERY_NQN in err, err
