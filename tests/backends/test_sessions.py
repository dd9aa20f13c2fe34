"""Userspace sessions from the command line: connect, devlist, identify, logpage,
disconnect, disconnect-all and connect-all against nvmfd, in process (exit
codes, stdout/stderr) and through the installed entry point.

Each test has a private runtime directory (tests/conftest.py) and the
session guard (sessionkit.py): no session process may outlive a test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from nvmecontrol.backends import select
from nvmecontrol.cli import exitcodes as X
from nvmecontrol.target.config import NamespaceConfig, SubsystemConfig

from .sessionkit import (HOST, HOSTID, REPO, MiB, OTHER_HOST, OTHER_HOSTID, SUBNQN, NbdClient,
                         cli, cli_ok, cli_proc, connect, entry_point, io_associations,
                         nbd_socket, pid_running,
                         session_guard, sessions, start_target, target_config, uri, wait_for)

assert session_guard  # autouse, imported for this module

SECOND = "nqn.2014-08.org.example:second"


@pytest.fixture
def target(nvmfd_factory):
    """nvmfd with one subsystem: ns1 16 MiB of 512-byte blocks, ns2 4 MiB of 4096."""
    return start_target(nvmfd_factory, ["mem:16M", ("mem:4M", 4096)])


def only_nbd_backend() -> bool:
    return [b.name for b in select.present()] == ["nbd"]


def assert_gone(name: str, pid: int, rundir) -> None:
    wait_for(lambda: not pid_running(pid), f"session process {pid} to exit")
    assert not (rundir / name).exists()


# --- connect -------------------------------------------------------------------------

def test_connect_prints_names_and_creates_the_session(target, session_guard):
    rundir = session_guard
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{target.port}", SUBNQN)
    assert rc == 0, err
    assert err == ""
    sock = rundir / "nvmeu0" / "nbd.sock"
    assert out == (f"nvmeu0: connected to {SUBNQN} at 127.0.0.1:{target.port}\n"
                   f"  nvmeu0ns1: nbd+unix:///ns1?socket={sock}\n"
                   f"  nvmeu0ns2: nbd+unix:///ns2?socket={sock}\n")
    state = json.loads((rundir / "nvmeu0" / "session.json").read_text())
    assert pid_running(state["pid"])
    assert (rundir / "nvmeu0" / "namespaces").read_text() == "1\n2\n"
    assert sock.is_socket() and (rundir / "nvmeu0" / "control.sock").is_socket()
    # The target sees one I/O association of this host with the admin and one I/O queue.
    (assoc,) = io_associations(target)
    assert assoc["hostnqn"] == HOST and assoc["subnqn"] == SUBNQN and assoc["queues"] == 2
    cli_ok("disconnect", "nvmeu0")
    assert_gone("nvmeu0", state["pid"], rundir)


def test_connect_json_fields(target, session_guard):
    rc, out, err = cli("connect", "--backend", "nbd", "-o", "json", "-q", HOST, "-I", HOSTID,
                       "-i", "2", "-k", "10", "-r", "2", "-l", "30", "-Q", "16",
                       f"127.0.0.1:{target.port}", SUBNQN)
    assert rc == 0, err
    (c,) = json.loads(out)["controllers"]
    assert c["created"] is True
    assert (c["name"], c["backend"], c["model"], c["state"], c["connected"]) == \
        ("nvmeu0", "nbd", "nvmfd", "live", True)
    assert (c["subnqn"], c["transport"], c["traddr"], c["trsvcid"], c["hostnqn"]) == \
        (SUBNQN, "tcp", "127.0.0.1", str(target.port), HOST)
    assert c["disconnected_since"] is None and c["warnings"] == []
    assert c["cntlid"] == io_associations(target)[0]["cntlid"]
    assert pid_running(c["pid"])
    ns1, ns2 = c["namespaces"]
    where = ("name", "nsid", "size_bytes", "lba_size", "path", "uri", "tcp_uris")
    assert {k: ns1[k] for k in where} == {
        "name": "nvmeu0ns1", "nsid": 1, "size_bytes": 16 * MiB, "lba_size": 512,
        "path": None, "uri": uri("nvmeu0", 1), "tcp_uris": []}  # no --nbd-listen
    # The identifiers and ANA state devlist -v shows are there too (values: ns_facts tests).
    assert {"nguid", "eui64", "uuid", "anagrpid", "ana_state"} <= set(ns1)
    assert (ns2["name"], ns2["nsid"], ns2["size_bytes"], ns2["lba_size"]) == \
        ("nvmeu0ns2", 2, 4 * MiB, 4096)
    p = c["params"]
    assert (p["num_io_queues"], p["kato_s"], p["reconnect_delay_s"], p["ctrl_loss_tmo_s"],
            p["queue_size"], p["hostid"]) == (2, 10, 2, 30, 16, HOSTID)
    assert io_associations(target)[0]["queues"] == 3
    cli_ok("disconnect", "nvmeu0")


def test_devlist_shows_the_negotiated_queue_size_not_the_request(target, session_guard):
    # No -Q asks for CAP.MQES + 1 (capped); what the session shows is the
    # size its I/O queues were created with.
    cli_ok("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
           f"127.0.0.1:{target.port}", SUBNQN)
    rc, out, err = cli("devlist", "-o", "json")
    assert rc == 0, err
    (c,) = json.loads(out)["controllers"]
    assert c["params"]["queue_size"] > 1
    (ctrl,) = [x for x in target.server.controllers.values() if not x.discovery]
    sizes = {conn.qp.sqsize for conn in ctrl.io_queues.values()}
    assert sizes == {c["params"]["queue_size"]}
    cli_ok("disconnect", "nvmeu0")


def test_second_connect_reports_the_existing_session(target, session_guard):
    first = connect(target)
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{target.port}", SUBNQN)
    assert rc == 0, err
    assert out.startswith(f"nvmeu0: already connected to {SUBNQN} at 127.0.0.1:{target.port}\n")
    (again,) = json.loads(cli_ok("connect", "--backend", "nbd", "-o", "json", "-q", HOST,
                                 "-I", HOSTID, f"127.0.0.1:{target.port}",
                                 SUBNQN))["controllers"]
    assert again["created"] is False and again["pid"] == first["pid"]
    assert list(sessions()) == ["nvmeu0"]
    assert sorted(p.name for p in session_guard.iterdir() if p.name.startswith("nvmeu")) == \
        ["nvmeu0"]
    # No second association was even tried.
    assert len(io_associations(target)) == 1
    # Another host NQN is another association: a second session.
    other = connect(target, host=OTHER_HOST, hostid=OTHER_HOSTID)
    assert other["name"] == "nvmeu1" and other["created"] is True
    assert len(io_associations(target)) == 2
    cli_ok("disconnect-all")


# --- devlist -------------------------------------------------------------------------

def test_devlist_text_and_json(target, session_guard):
    connect(target)
    rc, out, err = cli("devlist")
    assert rc == 0, err
    sock = nbd_socket()
    lines = out.splitlines()
    assert lines[0] == f"nvmeu0: nvmfd (connected via TCP 127.0.0.1:{target.port})"
    assert lines[1] == f"   nvmeu0ns1 (16MB) nbd+unix:///ns1?socket={sock}"
    assert lines[2] == f"   nvmeu0ns2 (4MB) nbd+unix:///ns2?socket={sock}"
    # FreeBSD's "%6s: " and "  %10s (%juMB)" columns.
    assert re.match(r"^ {0,6}\S+: ", lines[0]) and lines[1].index("(") == 13
    rc, out, err = cli("devlist", "-h")
    assert rc == 0 and "   nvmeu0ns1 (16M) " in out
    rc, out, err = cli("devlist", "-o", "json")
    assert rc == 0, err
    (c,) = [c for c in json.loads(out)["controllers"] if c["backend"] == "nbd"]
    assert (c["name"], c["state"], c["connected"], c["subnqn"]) == \
        ("nvmeu0", "live", True, SUBNQN)
    assert [n["name"] for n in c["namespaces"]] == ["nvmeu0ns1", "nvmeu0ns2"]
    cli_ok("disconnect", "nvmeu0")
    rc, out, err = cli("devlist", "-o", "json")
    assert rc == 0 and not [c for c in json.loads(out)["controllers"] if c["backend"] == "nbd"]
    if only_nbd_backend():
        rc, out, err = cli("devlist")
        assert (rc, out) == (X.EX_UNAVAILABLE, "No NVMe controllers found.\n")


# --- identify, logpage -----------------------------------------------------------------

def test_identify_and_logpage_through_the_session(target, session_guard):
    connect(target)
    rc, out, err = cli("identify", "nvmeu0")
    assert rc == 0, err
    assert re.search(r"^Model Number:\s+nvmfd$", out, re.M)
    assert "Fabrics Attributes" in out
    rc, out, err = cli("identify", "-o", "json", "nvmeu0")
    assert rc == 0, err
    assert json.loads(out)["subnqn"] == SUBNQN
    rc, out, err = cli("identify", "nvmeu0ns1")
    assert rc == 0, err
    assert re.search(r"^Size:\s+32768 blocks$", out, re.M)
    rc, out, err = cli("identify", "-o", "json", "nvmeu0ns2")
    assert rc == 0, err
    assert json.loads(out)["nsze"] == 4 * MiB // 4096
    rc, out, err = cli("identify", "-n", "2", "-o", "json", "nvmeu0")
    assert rc == 0, err
    assert json.loads(out)["nsze"] == 1024
    rc, out, err = cli("logpage", "-p", "2", "nvmeu0")
    assert rc == 0, err
    assert "SMART/Health Information Log" in out and "Temperature:" in out
    rc, out, err = cli("logpage", "-p", "2", "-o", "json", "nvmeu0")
    assert rc == 0, err
    assert json.loads(out)["lid"] == 2
    # On a namespace, SMART is asked per namespace (NSID 1), which nvmfd does not
    # offer (LPA bit 0 clear): refused before asking, as FreeBSD's LPA check does.
    rc, out, err = cli("logpage", "-p", "2", "nvmeu0ns1")
    assert rc == X.EX_UNAVAILABLE and out == ""
    assert "does not support per namespace smart/health information" in err
    rc, out, err = cli("logpage", "-p", "2", "-n", str(0xFFFFFFFF), "nvmeu0ns1")
    assert rc == 0, err
    rc, out, err = cli("logpage", "-p", "1", "nvmeu0")
    assert rc == 0, err
    # Admin commands went over the session's own association: still one.
    assert len(io_associations(target)) == 1
    cli_ok("disconnect", "nvmeu0")


def test_unknown_session_names(target, session_guard):
    for argv in (["identify", "nvmeu7"], ["identify", "nvmeu7ns1"],
                 ["logpage", "-p", "2", "nvmeu7"],
                 ["disconnect", "nvmeu7"], ["reconnect", "nvmeu7"],
                 ["disconnect", "nqn.2014-08.org.example:nobody"]):
        rc, out, err = cli(*argv)
        assert rc == X.EX_NOINPUT, (argv, rc, err)
        assert out == "" and err.startswith("nvmecontrol: ") and err.count("\n") == 1


# --- disconnect ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["nvmeu0", "nvmeu0ns1", "/dev/nvmeu0", "subnqn"])
def test_disconnect(target, session_guard, how):
    c = connect(target)
    rc, out, err = cli("disconnect", SUBNQN if how == "subnqn" else how)
    assert rc == 0, err
    assert out == "nvmeu0: disconnected\n"
    assert_gone("nvmeu0", c["pid"], session_guard)
    # An orderly shutdown: the target saw the association end.
    wait_for(lambda: not io_associations(target), "the target to drop the association")
    rc, out, err = cli("disconnect", "nvmeu0")
    assert rc == X.EX_NOINPUT


def test_disconnect_by_subnqn_ends_every_session_of_it(nvmfd_factory, session_guard):
    target = start_target(nvmfd_factory, ["mem:1M"])
    a = connect(target)
    b = connect(target, host=OTHER_HOST, hostid=OTHER_HOSTID)
    rc, out, err = cli("disconnect", "-o", "json", SUBNQN)
    assert rc == 0, err
    assert json.loads(out) == {"disconnected": ["nvmeu0", "nvmeu1"]}
    assert_gone("nvmeu0", a["pid"], session_guard)
    assert_gone("nvmeu1", b["pid"], session_guard)


def test_disconnect_all(nvmfd_factory, session_guard):
    cfg = target_config(["mem:1M"], extra_subsystems=[
        SubsystemConfig(nqn=SECOND, allow_any_host=True,
                        namespaces=[NamespaceConfig(1, "mem:2M")])])
    target = nvmfd_factory(config=cfg)
    a = connect(target)
    b = connect(target, subnqn=SECOND)
    assert (a["name"], b["name"]) == ("nvmeu0", "nvmeu1")
    rc, out, err = cli("disconnect-all")
    assert rc == 0, err
    assert out == "nvmeu0: disconnected\nnvmeu1: disconnected\n"
    assert_gone("nvmeu0", a["pid"], session_guard)
    assert_gone("nvmeu1", b["pid"], session_guard)
    rc, out, err = cli("disconnect-all")
    assert (rc, out) == (0, "")


# --- connect-all ---------------------------------------------------------------------

def test_connect_all_through_nvmfd_discovery(nvmfd_factory, session_guard):
    cfg = target_config(["mem:1M"], extra_subsystems=[
        SubsystemConfig(nqn=SECOND, allow_any_host=True, namespaces=[NamespaceConfig(1, "mem:2M"),
                                                NamespaceConfig(2, "mem:1M")])])
    target = nvmfd_factory(config=cfg)
    addr = f"127.0.0.1:{target.port}"
    rc, out, err = cli("connect-all", "--backend", "nbd", "-q", HOST, "-I", HOSTID, "-r", "1",
                       addr)
    assert rc == 0, err
    assert f"connected to {SUBNQN} at {addr}\n" in out
    assert f"connected to {SECOND} at {addr}\n" in out
    found = sessions()
    assert sorted(found) == ["nvmeu0", "nvmeu1"]
    assert {i.subnqn for i in found.values()} == {SUBNQN, SECOND}
    by_nqn = {i.subnqn: i for i in found.values()}
    assert [n.nsid for n in by_nqn[SECOND].namespaces] == [1, 2]
    assert by_nqn[SECOND].params.reconnect_delay_s == 1
    # Again: both reported as existing, nothing new.
    rc, out, err = cli("connect-all", "--backend", "nbd", "-o", "json", "-q", HOST,
                       "-I", HOSTID, addr)
    assert rc == 0, err
    entries = json.loads(out)["entries"]
    assert sorted(e["result"] for e in entries) == ["existing", "existing"]
    assert len(sessions()) == 2 and len(io_associations(target)) == 2
    cli_ok("disconnect-all")


# --- what connect refuses ------------------------------------------------------------------

def test_connect_needs_a_port(target, session_guard):
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "127.0.0.1", SUBNQN)
    assert rc == X.EX_USAGE and out == ""
    assert "port" in err
    assert not sessions()


def test_bad_nbd_listen_address_is_refused_first(nvmfd_factory, session_guard, caplog):
    target = start_target(nvmfd_factory, ["mem:1M"], log_associations=True)
    caplog.set_level("INFO", logger="nvmfd")
    rc, out, err = cli("connect", "--backend", "nbd", "--nbd-listen", "127.0.0.1:65536", "-q",
                       HOST, "-I", HOSTID, f"127.0.0.1:{target.port}", SUBNQN)
    assert rc == X.EX_USAGE and out == "" and "port 65536 is not in 0-65535" in err
    # Refused before any association was made.
    assert "connected to" not in caplog.text and not sessions()
    connect(target)
    assert "connected to" in caplog.text  # (what the check above would have seen)
    cli_ok("disconnect", "nvmeu0")


def test_refused_host_leaves_nothing(nvmfd_factory, session_guard):
    target = start_target(nvmfd_factory, ["mem:1M"], allow_hosts=[OTHER_HOST])
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{target.port}", SUBNQN)
    assert rc == X.EX_NOPERM, err
    assert out == "" and "Connect Invalid Host" in err
    assert not [p for p in session_guard.iterdir() if p.name.startswith("nvmeu")]
    assert not sessions() and not io_associations(target)
    # The allowed host gets in.
    c = connect(target, host=OTHER_HOST, hostid=OTHER_HOSTID)
    assert c["name"] == "nvmeu0"
    cli_ok("disconnect", "nvmeu0")


def test_subsystem_not_served_leaves_nothing(target, session_guard):
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{target.port}", "nqn.2014-08.org.example:none")
    assert rc not in (0, X.EX_SOFTWARE) and out == ""
    assert "invalid parameter at byte 256 of the Connect data" in err
    assert not [p for p in session_guard.iterdir() if p.name.startswith("nvmeu")]
    assert not sessions()


def test_connect_refused_address(session_guard):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{port}", SUBNQN)
    assert rc == X.EX_NOHOST and out == ""
    assert not sessions()


def test_runtime_directory_too_deep_for_sockets(target, tmp_path_factory, monkeypatch):
    deep = tmp_path_factory.mktemp("run") / ("d" * 100)
    deep.mkdir()
    monkeypatch.setenv("NVMECONTROL_RUNTIME_DIR", str(deep))
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{target.port}", SUBNQN)
    assert rc == X.EX_OSERR and out == ""
    assert "longer than AF_UNIX allows" in err and "NVMECONTROL_RUNTIME_DIR" in err
    assert not [p for p in deep.iterdir() if p.name.startswith("nvmeu")]
    wait_for(lambda: not io_associations(target), "the checked association to be closed")


# --- the installed entry point ------------------------------------------------------------

def test_entry_point_connect_use_disconnect(target, session_guard):
    addr = f"127.0.0.1:{target.port}"
    p = cli_proc("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID, addr, SUBNQN)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"nvmeu0: connected to {SUBNQN} at {addr}\n")
    # The session outlived the command that started it, and serves.
    c = NbdClient(nbd_socket())
    try:
        assert c.size == 16 * MiB
        assert c.write(4096, b"\xa5" * 4096) == 0
        assert c.read(4096, 4096) == b"\xa5" * 4096
    finally:
        c.close()
    p = cli_proc("devlist")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"nvmeu0: nvmfd (connected via TCP {addr})\n")
    pid = sessions()["nvmeu0"].pid
    p = cli_proc("disconnect", "nvmeu0")
    assert (p.returncode, p.stdout) == (0, "nvmeu0: disconnected\n"), p.stderr
    assert_gone("nvmeu0", pid, session_guard)
    assert os.listdir(session_guard / "log") == ["nvmeu0.log"]


def test_concurrent_connects_make_one_association(nvmfd_factory):
    """Four ``connect``s of the same subsystem started together: one session,
    three "already connected" (find-or-create is atomic across processes)."""
    target = start_target(nvmfd_factory, ["mem:1M"])
    args = ["connect", "--backend", "nbd", "--no-attach", "-o", "json", "-q", HOST, "-I", HOSTID,
            f"127.0.0.1:{target.port}", SUBNQN]
    procs = [subprocess.Popen(entry_point() + args, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=str(REPO))
             for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        (ctrl,) = json.loads(out)["controllers"]
        results.append(ctrl)
    assert sorted(c["created"] for c in results) == [False, False, False, True]
    assert {c["name"] for c in results} == {"nvmeu0"}
    assert list(sessions()) == ["nvmeu0"] and len(io_associations(target)) == 1
    cli_ok("disconnect", "nvmeu0")


def test_a_host_name_and_its_address_are_one_association(nvmfd_factory):
    target = start_target(nvmfd_factory, ["mem:1M"])
    first = connect(target, address=f"localhost:{target.port}")
    assert first["created"] and first["traddr"] == "127.0.0.1"
    again = connect(target, address=f"127.0.0.1:{target.port}")
    assert not again["created"] and again["name"] == first["name"]
    assert list(sessions()) == ["nvmeu0"] and len(io_associations(target)) == 1
    cli_ok("disconnect", "nvmeu0")
