"""nvme-cli's files: /etc/nvme/discovery.conf for discover and connect-all without an
address, /etc/nvme/config.json for connect (--config, --dump-config) and connect-all.

Against an in-process nvmfd; the files are the test's own (tests/cli/conftest.py
keeps the host's out); sessions end before the test does.
"""

from __future__ import annotations

import json

import pytest

from nvmecontrol.cli import discovery_conf, fabrics_config
from nvmecontrol.cli import exitcodes as X
from nvmecontrol.errors import UsageError
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig

from ..backends.sessionkit import session_guard  # noqa: F401  (autouse: no session left)
from .clikit import cli

HOST = "nqn.2014-08.org.nvmexpress:uuid:3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
HOSTID = "3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SUBNQN = "nqn.2014-08.org.example:files"


@pytest.fixture
def port(nvmfd_factory) -> int:
    cfg = TargetConfig(subsystems=[SubsystemConfig(nqn=SUBNQN, allow_any_host=True,
                                                   namespaces=[NamespaceConfig(1, "mem:4M")])],
                       ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUBNQN])])
    return nvmfd_factory(config=cfg).port


@pytest.fixture
def conf(tmp_path, monkeypatch):
    def write(text: str):
        path = tmp_path / "discovery.conf"
        path.write_text(text)
        monkeypatch.setattr(discovery_conf, "DISCOVERY_CONF", path)
        return path
    return write


def config_json(tmp_path, **port_options) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps([{"hostnqn": HOST, "hostid": HOSTID, "subsystems": [
        {"nqn": SUBNQN, "ports": [{"transport": "tcp", "traddr": "127.0.0.1",
                                   **port_options}]}]}]))
    return str(path)


# --- discovery.conf -----------------------------------------------------------------------

def test_discovery_conf_is_read_as_nvme_cli_writes_it():
    text = """# Used for extracting default parameters for discovery
# --transport=<trtype> --traddr=<traddr> --trsvcid=<trsvcid>
-t tcp -a 10.0.0.1 -s 4420 -q nqn.2014-08.org.example:h   # a comment
--transport=tcp --traddr=fe80::1 --host-iface=eth0 -I 3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b
--transport=rdma --traddr=10.0.0.2
-t tcp -s 8009
-t tcp -a 10.0.0.3 -D -T 4
"""
    entries, warnings = discovery_conf.parse(text, "f")
    assert [(e.line, e.address, e.hostnqn, e.hostid) for e in entries] == [
        (3, "10.0.0.1:4420", "nqn.2014-08.org.example:h", None),
        (4, "[fe80::1]", None, HOSTID),
        (7, "10.0.0.3", None, None)]
    assert warnings == ["f:4: ignored: --host-iface",
                        "f:5: transport rdma is not supported (only tcp); line skipped",
                        "f:6: no address (-a/--traddr); line skipped",
                        "f:7: ignored: -D -T"]


def test_discover_without_address_asks_every_configured_controller(capsys, conf, port):
    conf(f"-t tcp -a 127.0.0.1 -s {port} -q {HOST}\n-a 127.0.0.1 -s {port}\n")
    rc, out, err = cli(capsys, "discover")
    assert rc == 0, err
    assert out.count("Discovery\n=========\n") == 2 and f" Sub NQN:              {SUBNQN}" in out
    rc, out, err = cli(capsys, "discover", "-o", "json", "-q", HOST)
    assert rc == 0, err
    logs = json.loads(out)["discovery_controllers"]
    assert [c["address"] for c in logs] == [f"127.0.0.1:{port}"] * 2
    assert {r["subnqn"] for r in logs[0]["records"]} == {SUBNQN}


def test_discover_goes_on_past_an_unreachable_controller(capsys, conf, port):
    conf(f"-a 127.0.0.1 -s 1\n-a 127.0.0.1 -s {port}\n")
    rc, out, err = cli(capsys, "discover", "-q", HOST)
    assert rc == X.EX_NOHOST
    assert out.count("Discovery\n=========\n") == 1 and "127.0.0.1:1: " in err


@pytest.mark.parametrize("command", ["discover", "connect-all"])
def test_no_address_and_no_configured_controller_is_usage(capsys, conf, command):
    conf("# only comments, as Debian ships it\n")
    rc, out, err = cli(capsys, command)
    assert rc == X.EX_USAGE and out == ""
    assert "Missing argument 'address'" in err and "discovery.conf" in err


def test_connect_all_without_address_uses_discovery_conf(capsys, conf, port):
    conf(f"--traddr=127.0.0.1 --trsvcid={port} --hostnqn={HOST}\n")
    rc, out, err = cli(capsys, "connect-all", "--backend", "nbd", "--no-attach", "-o", "json")
    try:
        assert rc == 0, err
        [entry] = json.loads(out)["entries"]
        assert (entry["subnqn"], entry["result"]) == (SUBNQN, "connected")
        assert entry["controller"]["hostnqn"] == HOST
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0


# --- config.json -----------------------------------------------------------------------------

def test_config_json_ports_and_their_options(tmp_path):
    ports = fabrics_config.load(config_json(tmp_path, trsvcid="4420", nr_io_queues=2,
                                            hdr_digest=True, host_iface="eth0"))
    [p] = ports
    assert (p.subnqn, p.address, p.hostnqn, p.hostid) == (SUBNQN, "127.0.0.1:4420", HOST, HOSTID)
    assert p.options == {"nr_io_queues": 2, "hdr_digests": True}
    assert fabrics_config.load("none") == []
    assert fabrics_config.load(None) == []  # the default file does not exist here


@pytest.mark.parametrize("data, said", [
    ({"hosts": 3}, "expected a list of hosts"),
    ([{"subsystems": [{"ports": []}]}], "hosts[0].subsystems[0].nqn: expected str"),
    ([{"subsystems": [{"nqn": "n", "ports": [{"traddr": "a", "nr_io_queues": "2"}]}]}],
     "hosts[0].subsystems[0].ports[0].nr_io_queues: expected a number"),
    ([{"subsystems": [{"nqn": "n", "ports": [{"traddr": "a", "hdr_digest": 1}]}]}],
     "ports[0].hdr_digest: expected bool"),
])
def test_config_json_errors_name_the_place(data, said):
    with pytest.raises(UsageError, match=None) as e:
        fabrics_config.parse(data, "c.json")
    assert said in str(e.value)


def test_connect_takes_config_settings_the_command_line_left_out(capsys, tmp_path, port):
    path = config_json(tmp_path, trsvcid=str(port), nr_io_queues=2, keep_alive_tmo=30)
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "--config", path,
                       "-k", "60", "-o", "json", f"127.0.0.1:{port}", SUBNQN)
    try:
        assert rc == 0, err
        [c] = json.loads(out)["controllers"]
        assert c["hostnqn"] == HOST  # the config's host
        assert (c["params"]["num_io_queues"], c["params"]["kato_s"]) == (2, 60)
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0


def test_connect_all_connects_config_ports_and_dumps_config(capsys, tmp_path, port):
    path = config_json(tmp_path, trsvcid=str(port), nr_io_queues=2)
    rc, out, err = cli(capsys, "connect-all", "--backend", "nbd", "--no-attach", "-J", path,
                       "--dump-config")
    try:
        assert rc == 0, err
        [host] = json.loads(out)
        assert (host["hostnqn"], host["hostid"]) == (HOST, HOSTID)
        [sub] = host["subsystems"]
        [p] = sub["ports"]
        assert sub["nqn"] == SUBNQN
        assert (p["traddr"], p["trsvcid"], p["nr_io_queues"]) == ("127.0.0.1", str(port), 2)
        # What --dump-config prints is a config the next run reads.
        assert [q.address for q in fabrics_config.parse(json.loads(out), "dump")] == [
            f"127.0.0.1:{port}"]
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0


@pytest.mark.parametrize("config, argv, flow_control", [
    ({"disable_sqflow": False}, [], True),        # nvme-cli's key, the opposite of -F
    ({"disable_sqflow": True}, [], False),
    ({}, [], False),                              # FreeBSD's default: asked to disable it
    ({"disable_sqflow": False}, ["--disable-sqflow"], False),  # the command line decides
    ({"disable_sqflow": True}, ["-F"], True),
])
def test_config_disable_sqflow_is_read(capsys, tmp_path, port, config, argv, flow_control):
    path = config_json(tmp_path, trsvcid=str(port), **config)
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-J", path,
                       *argv, "-o", "json", f"127.0.0.1:{port}", SUBNQN)
    try:
        assert rc == 0, err
        [c] = json.loads(out)["controllers"]
        assert c["params"]["sq_flow_control"] is flow_control
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0


def test_dump_config_round_trips_flow_control(capsys, tmp_path, port):
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-J", "none", "-F",
                       "-O", f"127.0.0.1:{port}", SUBNQN)
    assert rc == 0, err
    assert cli(capsys, "disconnect-all")[0] == 0
    [p] = json.loads(out)[0]["subsystems"][0]["ports"]
    assert p["disable_sqflow"] is False
    [port_read] = fabrics_config.parse(json.loads(out), "dump")
    assert port_read.options["flow_control"] is True


def test_man_page_documents_every_config_json_key(capsys, tmp_path, port):
    """The schema is FILES in the man page: every key read or written is there."""
    from pathlib import Path

    man = (Path(__file__).resolve().parents[2] / "man" / "nvmecontrol.8").read_text()
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-J", "none",
                       "-Q", "64", "-O", f"127.0.0.1:{port}", SUBNQN)
    assert rc == 0, err
    assert cli(capsys, "disconnect-all")[0] == 0
    [host] = json.loads(out)
    written = set(host) | set(host["subsystems"][0]) | set(host["subsystems"][0]["ports"][0])
    read = set(fabrics_config.PORT_OPTIONS) | {fabrics_config.SQFLOW_KEY, "hostnqn", "hostid",
                                               "subsystems", "nqn", "ports", "transport",
                                               "traddr", "trsvcid", "dhchap_key"}
    assert {k for k in written | read if f'"{k}"' not in man} == set()
