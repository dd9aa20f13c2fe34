"""Numbers read as strtoul(..., 0) reads them, and nvme-cli's spellings beside FreeBSD's.

Against an in-process nvmfd (sessions made here end before the test does).
"""

from __future__ import annotations

import json
import socket

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.logpage import PAGE_NAMES, parse_page
from nvmecontrol.cli.numbers import parse_number
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig
from nvmecontrol.wire.logpages import LogPage

from ..backends.sessionkit import session_guard  # noqa: F401  (autouse: no session left)
from .clikit import cli, one_namespace_target

HOST = "nqn.2014-08.org.nvmexpress:uuid:3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
OTHER = "nqn.2014-08.org.nvmexpress:uuid:0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
SUBNQN = "nqn.2014-08.org.example:numbers"
NQN = "nqn.2014-08.org.example:x"


@pytest.fixture
def target(nvmfd_factory):
    return one_namespace_target(nvmfd_factory, SUBNQN)


@pytest.fixture
def closed():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


# --- numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("0", 0), ("7", 7), ("10", 10), ("010", 8), ("0x1", 1), ("0X1F", 31), ("0xffffffff", 2**32 - 1),
    ("00", 0), (" 12 ", 12),
])
def test_parse_number_reads_like_strtoul_base_0(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "0x", "08", "-1", "+1", "1_000", "12abc", "0o7", "1e3"])
def test_parse_number_refuses_what_is_not_all_digits(text):
    with pytest.raises(ValueError, match="not a number"):
        parse_number(text)


def test_page_names_are_the_wire_values():
    assert {n: LogPage(v) for n, v in PAGE_NAMES.items()} == {
        "error": LogPage.ERROR, "smart": LogPage.SMART, "health": LogPage.SMART,
        "fw": LogPage.FW_SLOT, "firmware": LogPage.FW_SLOT, "changed-ns": LogPage.CHANGED_NS,
        "effects": LogPage.CMD_EFFECTS, "ana": LogPage.ANA, "discovery": LogPage.DISCOVERY}
    assert parse_page("0x70") == parse_page("0160") == parse_page("112") == 0x70


def test_cntlid_constant_is_the_wire_one():
    from nvmecontrol.cli.connect_options import CNTLID_DYNAMIC, parse_cntlid
    from nvmecontrol.wire import fabrics

    assert CNTLID_DYNAMIC == fabrics.CNTLID_DYNAMIC
    assert parse_cntlid("0x10") == parse_cntlid("020") == 16


def test_nsid_in_hex_and_octal(capsys, target):
    rc, out, err = cli(capsys, "identify", "-n", "0x1", "-o", "json", "-q", HOST, target, SUBNQN)
    assert rc == 0, err
    assert json.loads(out)["nsze"] == 4 * 1024 * 1024 // 512
    rc, _out, err = cli(capsys, "identify", "-n", "01", "-q", HOST, target, SUBNQN)
    assert rc == 0, err
    rc, out, err = cli(capsys, "logpage", "-p", "0x2", "-n", "0xffffffff", "-q", HOST, target,
                       SUBNQN)
    assert rc == 0 and "SMART/Health Information Log" in out, err


@pytest.mark.parametrize("argv, named", [
    (["identify", "-n", "0x100000000"], "--nsid"),
    (["identify", "-n", "0xg"], "not a number"),
    (["logpage", "-p", "2", "-f", "0x80"], "--lsp"),
    (["logpage", "-p", "2", "-i", "0x10000"], "--lsi"),
    (["connect", "-i", "0"], "--nr-io-queues"),
    (["connect", "-Q", "0x10001"], "--queue-size"),
    (["connect", "-k", "-1"], "not a number"),
])
def test_numbers_out_of_range_or_malformed_are_usage(capsys, argv, named):
    tail = ["127.0.0.1:1", NQN]
    rc, out, err = cli(capsys, *argv, *tail)
    assert rc == X.EX_USAGE and out == ""
    assert named in err and err.count("\n") == 1


def test_connect_numbers_in_hex_reach_the_network(capsys, closed):
    rc, _out, err = cli(capsys, "connect", "--backend", "nbd", "-q", HOST, "-i", "0x2",
                        "-Q", "0100", "-k", "0x1e", "-l", "0", "-r", "010", closed, NQN)
    assert rc == X.EX_NOHOST, err


# --- nvme-cli spellings ---------------------------------------------------------------------

def test_output_normal_is_text(capsys, target):
    text = cli(capsys, "identify", "-q", HOST, target, SUBNQN)
    normal = cli(capsys, "identify", "-o", "normal", "-q", HOST, target, SUBNQN)
    assert normal == text and text[0] == 0


@pytest.mark.parametrize("argv", [
    ["connect", "--hdr-digest", "--data-digest"],
    ["connect", "--disable-sqflow"],
    ["connect", "--nr-io-queues", "2", "--queue-size", "32", "--keep-alive-tmo", "5",
     "--reconnect-delay", "2", "--ctrl-loss-tmo", "60", "--hostid",
     "3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"],
    ["identify", "--hdr-digest", "--data-digest"],
])
def test_nvme_cli_long_options_are_accepted(capsys, closed, argv):
    rc, _out, err = cli(capsys, *argv, "--hostnqn", HOST, closed, NQN)
    assert rc == X.EX_NOHOST, err


def test_disable_sqflow_contradicts_flow_control(capsys):
    rc, out, err = cli(capsys, "connect", "-F", "--disable-sqflow", "127.0.0.1:1", NQN)
    assert (rc, out) == (X.EX_USAGE, "") and "contradict" in err


@pytest.mark.parametrize("argv, said", [
    (["disconnect", "-d", "nvmeu5"], "nvmeu5"),
    (["disconnect", "-d", "/dev/nvme7"], "no controller /dev/nvme7"),
    (["disconnect", "-n", f"{NQN},{NQN}2"], f"no controller is connected to {NQN}"),
])
def test_disconnect_lists_name_what_is_not_there(capsys, argv, said):
    rc, out, err = cli(capsys, *argv)
    assert rc == X.EX_NOINPUT and out == "" and said in err


@pytest.mark.parametrize("argv", [
    ["disconnect", "-d", "not-a-device"],
    ["disconnect", "-d", "nvmeu0,"],
    ["disconnect", "-n", NQN, "-d", "nvmeu0"],
    ["disconnect", "nvmeu0", "-d", "nvmeu0"],
])
def test_disconnect_list_misuse_is_usage(capsys, argv):
    rc, out, err = cli(capsys, *argv)
    assert rc == X.EX_USAGE and out == "" and err.count("\n") == 1


def test_disconnect_device_and_nqn_lists(capsys, target):
    for host in (HOST, OTHER):
        rc, _out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", host,
                            target, SUBNQN)
        assert rc == 0, err
    rc, out, err = cli(capsys, "disconnect", "-d", "nvmeu0,nvmeu1")
    assert (rc, out) == (0, "nvmeu0: disconnected\nnvmeu1: disconnected\n"), err
    for host in (HOST, OTHER):
        assert cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", host,
                   target, SUBNQN)[0] == 0
    rc, out, err = cli(capsys, "disconnect", "-n", SUBNQN, "-o", "json")
    assert rc == 0, err
    assert sorted(json.loads(out)["disconnected"]) == ["nvmeu0", "nvmeu1"]


def test_a_list_goes_past_what_is_not_there_and_reports_what_it_did(capsys, target):
    """nvme-cli goes on past a missing item; what was disconnected is still said."""
    for host in (HOST, OTHER):
        rc, _out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", host,
                            target, SUBNQN)
        assert rc == 0, err
    rc, out, err = cli(capsys, "disconnect", "-d", "nvmeu0,nvmeu7,/dev/nvmeu1")
    assert (rc, out) == (X.EX_NOINPUT, "nvmeu0: disconnected\nnvmeu1: disconnected\n")
    assert err.count("\n") == 1 and "nvmeu7" in err
    assert cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", HOST,
               target, SUBNQN)[0] == 0
    rc, out, err = cli(capsys, "disconnect", "-n", f"{NQN},{SUBNQN}", "-o", "json")
    assert rc == X.EX_NOINPUT and json.loads(out) == {"disconnected": ["nvmeu0"]}
    assert f"no controller is connected to {NQN}" in err and err.count("\n") == 1


def test_a_device_list_is_checked_before_anything_is_disconnected(capsys, target):
    assert cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", HOST,
               target, SUBNQN)[0] == 0
    rc, out, err = cli(capsys, "disconnect", "-d", "nvmeu0,bogus")
    assert (rc, out) == (X.EX_USAGE, "") and "-d bogus" in err
    rc, out, _err = cli(capsys, "disconnect", "nvmeu0")
    assert (rc, out) == (0, "nvmeu0: disconnected\n")


def test_connect_all_takes_freebsd_cntlid(capsys, nvmfd_factory):
    cfg = TargetConfig(subsystems=[SubsystemConfig(nqn=SUBNQN, allow_any_host=True,
                                                   namespaces=[NamespaceConfig(1, "mem:4M")])],
                       ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUBNQN])])
    srv = nvmfd_factory(config=cfg)
    rc, out, err = cli(capsys, "connect-all", "-c", "bogus", f"127.0.0.1:{srv.port}")
    assert rc == X.EX_USAGE and "invalid controller ID" in err
    rc, out, err = cli(capsys, "connect-all", "--backend", "nbd", "--no-attach", "-c", "dynamic",
                       "-q", HOST, "-o", "json", f"127.0.0.1:{srv.port}")
    try:
        assert rc == 0, err
        results = {e["subnqn"]: e["result"] for e in json.loads(out)["entries"]}
        assert results[SUBNQN] == "connected"
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0


def test_gen_dhchap_key_numbers_in_hex_and_octal(capsys):
    rc, out, err = cli(capsys, "gen-dhchap-key", "-l", "0x20", "-m", "01", "-n", NQN)
    assert rc == 0, err
    assert out.startswith("DHHC-1:01:")
