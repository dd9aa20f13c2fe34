"""nvmetcli saved-config JSON: load, serve, save; what cannot be honoured is refused."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import pytest

from nvmecontrol.errors import HostRefused, UsageError
from nvmecontrol.host.discovery import fetch_discovery_log
from nvmecontrol.target.config import dump_nvmetcli, load_nvmetcli, load_nvmetcli_file, parse_size
from nvmecontrol.wire import nvm
from nvmecontrol.wire.discovery import SubType

from .helpers import connect, connect_discovery, make_host, run

ALICE = make_host()
BOB = make_host()
PUBLIC = "nqn.2014-08.org.example:public"
PRIVATE = "nqn.2014-08.org.example:private"


def nvmetcli_config(disk_path: str, port: str = "0") -> dict:
    """What ``nvmetcli saveconfig`` writes for two subsystems, one port, a referral."""
    return {
        "hosts": [{"nqn": ALICE.hostnqn}],
        "ports": [{
            "addr": {"adrfam": "ipv4", "traddr": "127.0.0.1", "treq": "not specified",
                     "trsvcid": port, "trtype": "tcp"},
            "ana_groups": [{"ana": {"state": "optimized"}, "grpid": 1}],
            "param": {"inline_data_size": "16384", "pi_enable": "0"},
            "portid": 2,
            "referrals": [{"addr": {"adrfam": "ipv4", "portid": "5", "traddr": "192.0.2.1",
                                    "treq": "not specified", "trsvcid": "8009",
                                    "trtype": "tcp"},
                           "enable": 1, "name": "other-dc"}],
            "subsystems": [PUBLIC, PRIVATE],
        }],
        "subsystems": [
            {"allowed_hosts": [],
             "attr": {"allow_any_host": "1", "cntlid_max": "65519", "cntlid_min": "1",
                      "model": "Linux", "pi_enable": "0", "serial": "123456789abcdef",
                      "version": "1.3"},
             "namespaces": [{"ana_grpid": 1, "enable": 1, "nsid": 1,
                             "device": {"nguid": "00000000-0000-0000-0000-000000000000",
                                        "path": "mem:8M",
                                        "uuid": "d592cdf3-5d1c-44e0-8412-3fcf7d99df27"}}],
             "nqn": PUBLIC},
            {"allowed_hosts": [ALICE.hostnqn],
             "attr": {"allow_any_host": "0", "cntlid_min": "10", "cntlid_max": "20",
                      "version": "2.0"},
             "namespaces": [{"enable": 1, "nsid": 4,
                             "device": {"path": disk_path}},
                            {"enable": 0, "nsid": 5, "device": {"path": "mem:1M"}}],
             "nqn": PRIVATE},
        ],
    }


@pytest.fixture
def disk(tmp_path):
    p = tmp_path / "disk.img"
    p.write_bytes(bytes(2 << 20))
    return str(p)


def test_serve_nvmetcli_config(nvmfd_factory, disk):
    cfg = load_nvmetcli(nvmetcli_config(disk))
    h = nvmfd_factory(cfg)
    # Discovery: alice sees both, bob only the public one; both see the referral.
    for host, expect in ((ALICE, [PUBLIC, PRIVATE]), (BOB, [PUBLIC])):
        d = connect_discovery(h, host=host)
        try:
            entries = fetch_discovery_log(d).entries
        finally:
            d.shutdown()
        assert [e.subnqn for e in entries if e.subtype == SubType.NVME] == expect
        refs = [e for e in entries if e.subtype == SubType.REFERRAL]
        assert [(r.traddr, r.trsvcid, r.portid) for r in refs] == [("192.0.2.1", "8009", 5)]
        assert all(e.portid == 2 for e in entries if e.subtype == SubType.NVME)
    # The private subsystem refuses bob, serves alice from cntlid_min, NSID 4 only.
    with pytest.raises(HostRefused):
        connect(h, PRIVATE, host=BOB)
    a = connect(h, PRIVATE, host=ALICE, num_io_queues=1)
    try:
        assert a.cntlid == 10 and a.vs is not None and (a.vs.mjr, a.vs.mnr) == (2, 0)
        from nvmecontrol.wire import identify as I
        assert I.decode_active_nsid_list(a.identify(I.CNS_ACTIVE_NSID_LIST)) == [4]
        assert run(a.io[0], nvm.build_write(4, 1, 1), write_data=b"P" * 512)[0].status == 0
        run(a.io[0], nvm.build_flush(4))
    finally:
        a.shutdown()
    with open(disk, "rb") as f:
        f.seek(512)
        assert f.read(512) == b"P" * 512
    b = connect(h, PUBLIC, host=BOB)
    try:
        assert (b.cdata.sn, b.cdata.mn) == ("123456789abcdef", "Linux")
    finally:
        b.shutdown()


def test_round_trip(disk):
    data = nvmetcli_config(disk, port="4420")
    cfg = load_nvmetcli(data)
    again = load_nvmetcli(json.loads(json.dumps(dump_nvmetcli(cfg))))
    assert again == cfg
    dumped = dump_nvmetcli(cfg)
    assert dumped["ports"][0]["addr"]["trsvcid"] == "4420"
    assert dumped["subsystems"][1]["attr"]["allow_any_host"] == "0"
    assert dumped["subsystems"][1]["namespaces"][1]["enable"] == 0


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["hosts"][0].update(dhchap_key="DHHC-1:00:abc:"), "dhchap_key"),
    (lambda c: c["hosts"][0].update(dhchap_ctrl_key="DHHC-1:00:abc:"), "without dhchap_key"),
    (lambda c: c["ports"][0]["addr"].update(trtype="rdma"), "not supported"),
    (lambda c: c["ports"][0].update(subsystems=["nqn.2014-08.org.example:missing"]),
     "not defined"),
    (lambda c: c["subsystems"][1].update(allowed_hosts=["nqn.2014-08.org.example:stranger"]),
     "not in \"hosts\""),
    (lambda c: c["subsystems"][0]["namespaces"][0].update(nsid=0), "NSID 0"),
    (lambda c: c["subsystems"][0]["attr"].update(version="9.9"), "version"),
    (lambda c: c["subsystems"][0]["attr"].update(pi_enable="1"), "protection"),
    (lambda c: c["ports"][0].pop("portid"), "portid"),
])
def test_refused_configurations(disk, mutate, message):
    data = copy.deepcopy(nvmetcli_config(disk))
    mutate(data)
    with pytest.raises(UsageError, match=message):
        load_nvmetcli(data)


def test_bad_files(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_nvmetcli_file(str(p))
    with pytest.raises(UsageError, match="cannot read"):
        load_nvmetcli_file(str(tmp_path / "missing.json"))


def test_sizes():
    assert parse_size("64M") == 64 << 20
    assert parse_size("1g") == 1 << 30
    assert parse_size("4096") == 4096
    assert parse_size("2GiB") == 2 << 30
    with pytest.raises(UsageError):
        parse_size("lots")


def test_config_file_through_the_entry_point(tmp_path, disk):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(nvmetcli_config(disk)))
    port_file = tmp_path / "port"
    sock = tmp_path / "c.sock"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-m", "nvmecontrol.target.main", "-F", "-c",
                             str(path), "--port-file", str(port_file), "-S", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])

        class H:
            host, subnqn = "127.0.0.1", PUBLIC
        from nvmecontrol.transport.address import Address
        H.address = Address("127.0.0.1", port, "x")
        a = connect(H, PUBLIC, host=BOB, num_io_queues=1)
        a.shutdown()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"association" in out  # -F logs every association


def test_config_excludes_cli_devices(tmp_path, disk):
    from nvmecontrol.target.main import main
    path = tmp_path / "config.json"
    path.write_text(json.dumps(nvmetcli_config(disk)))
    assert main(["-F", "-c", str(path), "mem:1M", "-S", str(tmp_path / "s")]) == 64
