"""logpage and identify: what is fetched is decoded once, where it is fetched.

The discovery log comes from host.discovery (the GENCTR-consistent fetch
``discover`` uses), with its raw bytes kept for -b and -x; the other pages
and Identify data reach the renderers as decoded structures.
"""

import json

import pytest

from nvmecontrol.cli import identify, logpage
from nvmecontrol.cli.app import main
from nvmecontrol.cli.device import ConnectOptions
from nvmecontrol.host.discovery import DiscoveryLog
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig
from nvmecontrol.wire.discovery import decode_discovery_log
from nvmecontrol.wire.identify import IdentifyController, IdentifyNamespace
from nvmecontrol.wire.logpages import SmartLog

HOST = "nqn.2014-08.org.nvmexpress:uuid:3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SUB_A = "nqn.2014-08.org.example:a"
SUB_B = "nqn.2014-08.org.example:b"


@pytest.fixture
def target(nvmfd_factory):
    cfg = TargetConfig(
        subsystems=[SubsystemConfig(nqn=n, allow_any_host=True,
                                    namespaces=[NamespaceConfig(1, "mem:1M")])
                    for n in (SUB_A, SUB_B)],
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUB_A, SUB_B])])
    return f"127.0.0.1:{nvmfd_factory(config=cfg).port}"


def test_discovery_page_is_hosts_log_with_its_bytes(target):
    r = logpage.run(target, None, 0x70, opts=ConnectOptions(hostnqn=HOST))
    assert isinstance(r.page.log, DiscoveryLog)
    assert {e.subnqn for e in r.page.log.entries} == {SUB_A, SUB_B}
    # The bytes -b writes decode to the same records.
    header, entries = decode_discovery_log(r.page.raw)
    assert (header, entries) == (r.page.log.header, r.page.log.entries)
    assert isinstance(r.cdata, IdentifyController)


def test_discovery_page_binary_and_json_agree(capsysbinary, target):
    rc = main(["logpage", "-p", "discovery", "-b", "-q", HOST, target])
    raw, _ = capsysbinary.readouterr()
    assert rc == 0 and len(raw) == 1024 * 3  # header and two records
    rc = main(["logpage", "-p", "discovery", "-o", "json", "-q", HOST, target])
    out, err = capsysbinary.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["log"]["numrec"] == 2
    assert {rec["subnqn"] for rec in doc["log"]["records"]} == {SUB_A, SUB_B}


def test_other_pages_and_identify_arrive_decoded(target):
    opts = ConnectOptions(hostnqn=HOST)
    r = logpage.run(target, SUB_A, 0x02, opts=opts)
    assert isinstance(r.page.log, SmartLog) and len(r.page.raw) == 512
    c = identify.run(target, SUB_A, None, opts)
    assert isinstance(c.data, IdentifyController) and c.data.subnqn == SUB_A
    ns = identify.run(target, SUB_A, 1, opts)
    assert isinstance(ns.data, IdentifyNamespace) and ns.data.nsze == 1024 * 1024 // 512
