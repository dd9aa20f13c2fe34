"""The control socket (list / terminate / ns-add / ns-remove) and the nvmfd subcommands."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from nvmecontrol.errors import ConnectError, ConnectionLost, NotFound, NvmeControlError, UsageError
from nvmecontrol.target.control import ControlClient
from nvmecontrol.target.main import main
from nvmecontrol.wire import nvm

from .helpers import connect, connect_discovery, make_host, run, wait_for


def test_list_and_terminate_by_id(nvmfd_server):
    host = make_host()
    a = connect(nvmfd_server, host=host, num_io_queues=2)
    d = connect_discovery(nvmfd_server)
    try:
        with nvmfd_server.control() as c:
            assocs = c.request("list")["associations"]
            assert len(assocs) == 2
            io = next(x for x in assocs if not x["discovery"])
            assert io["hostnqn"] == host.hostnqn and io["subnqn"] == nvmfd_server.subnqn
            assert io["transport"] == "TCP" and io["queues"] == 3
            assert io["cntlid"] == a.cntlid and io["peer"].startswith("127.0.0.1:")
            assert c.request("terminate", id=io["id"]) == {"terminated": 1}
            assert wait_for(lambda: len(c.request("list")["associations"]) == 1)
        with pytest.raises((ConnectionLost, NvmeControlError)):
            a.io[1].execute(nvm.build_flush(1), "after terminate", timeout=3.0)
    finally:
        a.close()
        d.close()


def test_terminate_by_host_and_all(nvmfd_server):
    h1, h2 = make_host(), make_host()
    conns = [connect(nvmfd_server, host=h1), connect(nvmfd_server, host=h1),
             connect(nvmfd_server, host=h2)]
    try:
        with nvmfd_server.control() as c:
            assert c.request("terminate", host=h1.hostnqn)["terminated"] == 2
            assert wait_for(lambda: [x["hostnqn"] for x in c.request("list")["associations"]]
                            == [h2.hostnqn])
            with pytest.raises(NotFound):
                c.request("terminate", host=h1.hostnqn)
            with pytest.raises(NotFound):
                c.request("terminate", id=999)
            assert c.request("terminate", all=True)["terminated"] == 1
            assert wait_for(lambda: c.request("list")["associations"] == [])
    finally:
        for a in conns:
            a.close()


def test_ns_add_and_remove(nvmfd_server, tmp_path):
    img = tmp_path / "extra.img"
    img.write_bytes(bytes(1 << 20))
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        with nvmfd_server.control() as c:
            assert c.request("ns-add", device=str(img)) == {"subsystem": nvmfd_server.subnqn,
                                                           "nsid": 2}
            assert c.request("ns-add", device="mem:1M", nsid=9)["nsid"] == 9
            with pytest.raises(UsageError, match="already exists"):
                c.request("ns-add", device="mem:1M", nsid=9)
            with pytest.raises(UsageError):
                c.request("ns-add", device=str(tmp_path / "missing"))
            with pytest.raises(NotFound):
                c.request("ns-add", device="mem:1M", subsystem="nqn.2014-08.org.example:x")
            with pytest.raises(UsageError):
                c.request("ns-add", device="mem:1M", nsid=5000)
            assert run(a.io[0], nvm.build_write(2, 0, 1), write_data=b"e" * 512)[0].status == 0
            assert c.request("ns-remove", nsid=2)["nsid"] == 2
            with pytest.raises(NotFound):
                c.request("ns-remove", nsid=2)
            cfg = c.request("config")["config"]
            assert [n["nsid"] for n in cfg["subsystems"][0]["namespaces"]] == [1, 9]
            with pytest.raises(UsageError):
                c.request("bogus")
        assert run(a.io[0], nvm.build_read(2, 0, 1), read_len=512)[0].status == 0x400B
        assert img.read_bytes()[:512] == b"e" * 512
    finally:
        a.shutdown()


def test_control_socket_is_private_and_robust(nvmfd_server):
    mode = os.stat(nvmfd_server.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(nvmfd_server.socket_path)
    f = s.makefile("rb")
    s.sendall(b"not json\n[1, 2]\n{\"op\": \"list\"}\n")
    replies = [json.loads(f.readline()) for _ in range(3)]
    assert [r["ok"] for r in replies] == [False, False, True]
    assert replies[0]["kind"] == "usage"
    s.close()


def test_no_daemon(tmp_path):
    with pytest.raises(ConnectError, match="not running"):
        ControlClient(str(tmp_path / "none.sock"))
    assert main(["list", "-S", str(tmp_path / "none.sock")]) == 69


def test_subcommands_in_process(nvmfd_server, capsys):
    a = connect(nvmfd_server)
    try:
        sock = nvmfd_server.socket_path
        assert main(["list", "-S", sock]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == ["ID", "Transport", "HostNQN", "SubNQN", "Peer"]
        assert a.host.hostnqn in out[1] and nvmfd_server.subnqn in out[1]
        assert main(["-S", sock, "list", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["associations"][0]["cntlid"] == a.cntlid
        assert main(["ns-add", "-S", sock, "mem:1M", "--nsid", "3"]) == 0
        assert "namespace 3 added" in capsys.readouterr().out
        assert main(["ns-remove", "-S", sock, "3"]) == 0
        assert main(["ns-remove", "-S", sock, "3"]) == 66
        assert main(["terminate", "-S", sock, "-c", "999"]) == 66
        assert main(["terminate", "-S", sock, "-a"]) == 0
        assert capsys.readouterr().out.strip().endswith("NVMeoF connections terminated")
        assert main(["terminate", "-S", sock]) == 64  # one of -c/--host/-a is required
    finally:
        a.close()


def test_subprocess_daemon(nvmfd_process):
    a = connect(nvmfd_process, num_io_queues=1)
    try:
        assert run(a.io[0], nvm.build_write(1, 0, 1), write_data=b"s" * 512)[0].status == 0
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        out = subprocess.run([sys.executable, "-m", "nvmecontrol.target.main", "list", "-S",
                              nvmfd_process.socket_path], capture_output=True, text=True,
                             env=env, timeout=30)
        assert out.returncode == 0 and a.host.hostnqn in out.stdout
        out = subprocess.run([sys.executable, "-m", "nvmecontrol.target.main", "terminate",
                              "-S", nvmfd_process.socket_path, "--host", a.host.hostnqn],
                             capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0
        assert out.stdout.strip() == "NVMeoF connections terminated"
    finally:
        a.close()
    # SIGTERM stops it cleanly.
    nvmfd_process.proc.terminate()
    assert nvmfd_process.proc.wait(timeout=10) == 0
    assert not os.path.exists(nvmfd_process.socket_path)
