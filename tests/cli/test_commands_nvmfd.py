"""discover / identify / logpage as a user runs them, against nvmfd (in-process and subprocess)."""

import json
import re
import subprocess
import sys

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main
from nvmecontrol.target.config import (NamespaceConfig, PortConfig, ReferralConfig,
                                       SubsystemConfig, TargetConfig)
from .clikit import cli

HOST = "nqn.2014-08.org.nvmexpress:uuid:3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
OTHER = "nqn.2014-08.org.nvmexpress:uuid:0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
OPEN = "nqn.2014-08.org.example:open"
LOCKED = "nqn.2014-08.org.example:locked"


@pytest.fixture
def target(nvmfd_factory):
    cfg = TargetConfig(
        hosts=[OTHER],
        subsystems=[
            SubsystemConfig(nqn=OPEN, allow_any_host=True, namespaces=[NamespaceConfig(1, "mem:8M"),
                                                  NamespaceConfig(2, "mem:4M", block_size=4096)]),
            SubsystemConfig(nqn=LOCKED, namespaces=[NamespaceConfig(1, "mem:1M")],
                            allow_any_host=False, allowed_hosts=[OTHER]),
        ],
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[OPEN, LOCKED], referrals=[
            ReferralConfig("elsewhere", "192.0.2.9", "8009", portid=3)])])
    srv = nvmfd_factory(config=cfg)
    return f"127.0.0.1:{srv.port}"


def test_discover_text_and_json(capsys, target):
    rc, out, err = cli(capsys, "discover", "-q", HOST, target)
    assert rc == 0, err
    assert out.startswith("Discovery\n=========\nEntry 01\n========\n")
    assert f" Sub NQN:              {OPEN}\n" in out
    assert " Transport address:    192.0.2.9\n" in out  # the referral
    assert LOCKED not in out  # filtered for a host that may not use it
    rc, out, err = cli(capsys, "discover", "-o", "json", "-q", OTHER, target)
    assert rc == 0, err
    log = json.loads(out)
    assert log["numrec"] == len(log["records"]) == 3
    assert {r["subnqn"] for r in log["records"]} >= {OPEN, LOCKED}


def test_discover_verbose(capsys, target):
    rc, out, err = cli(capsys, "discover", "-v", "-q", HOST, target)
    assert rc == 0, err
    assert out.index("Controller Capabilities/Features") < out.index("Discovery\n=========")


@pytest.mark.parametrize("digests", [[], ["-g"], ["-G"], ["-g", "-G"]])
def test_identify_controller_and_namespace(capsys, target, digests):
    rc, out, err = cli(capsys, "identify", *digests, "-q", HOST, target, OPEN)
    assert rc == 0, err
    assert re.search(r"^Model Number:\s+nvmfd$", out, re.M)
    assert "Fabrics Attributes\n==================\n" in out
    rc, out, err = cli(capsys, "identify", *digests, "-n", "2", "-o", "json", "-q", HOST,
                       target, OPEN)
    assert rc == 0, err
    ns = json.loads(out)
    assert ns["nsze"] == 4 * 1024 * 1024 // 4096


def test_identify_hex(capsys, target):
    rc, out, err = cli(capsys, "identify", "-x", "-v", "-q", HOST, target, OPEN)
    assert rc == 0, err
    assert out.startswith("000: ") and len(out.splitlines()) >= 4096 // 32


@pytest.mark.parametrize("page", ["1", "2", "3", "4", "5", "ana", "discovery"])
def test_logpage_pages(capsys, target, page):
    rc, out, err = cli(capsys, "logpage", "-p", page, "-q", HOST, target, OPEN)
    assert rc == 0, err
    assert out.strip()
    rc, out, err = cli(capsys, "logpage", "-p", page, "-o", "json", "-q", HOST, target, OPEN)
    assert rc == 0, err
    assert "lid" in json.loads(out)


def test_logpage_binary_is_raw(capsysbinary, target):
    rc = main(["logpage", "-p", "2", "-b", "-q", HOST, target, OPEN])
    out, _err = capsysbinary.readouterr()
    assert rc == 0 and len(out) == 512


def test_refused_host(capsys, target):
    rc, out, err = cli(capsys, "identify", "-q", HOST, target, LOCKED)
    assert rc == X.EX_NOPERM and out == ""
    assert "Connect Invalid Host (sct 0x1, sc 0x84, dnr)" in err
    rc, out, err = cli(capsys, "identify", "-q", OTHER, target, LOCKED)
    assert rc == 0, err


def test_unknown_subsystem(capsys, target):
    rc, out, err = cli(capsys, "identify", "-q", HOST, target, "nqn.2014-08.org.example:none")
    assert rc != 0 and out == ""
    # IPO 256 of the Connect data, said as the field it is (cli/refusal.py).
    assert "SUBNQN: the controller does not offer subsystem NQN " \
           "'nqn.2014-08.org.example:none'" in err


def test_subprocess_entry_point(nvmfd_process):
    addr = f"127.0.0.1:{nvmfd_process.port}"
    p = subprocess.run([sys.executable, "-m", "nvmecontrol", "discover", "-o", "json", "-q", HOST,
                        addr], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["records"][0]["subnqn"] == nvmfd_process.subnqn
    p = subprocess.run([sys.executable, "-m", "nvmecontrol", "logpage", "-p", "2", "-q", HOST,
                        addr, nvmfd_process.subnqn], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Temperature:" in p.stdout
