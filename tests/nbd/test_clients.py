"""The NBD protocol module against real clients.

A test-only server (``memserver.py``: Handshake, RequestDecoder and the
reply encoders over a unix socket) is driven by libnbd's nbdinfo and
nbdcopy, qemu-img and fio's nbd engine.  Every data test runs with
structured replies offered and refused, so both read reply forms are
proven.

Prerequisite policy (as in tests/interop): a missing tool skips with the
Debian package to install, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from nvmecontrol.nbd import protocol as P

from .memserver import MemServer

MiB = 1 << 20
TOOLS = {"nbdinfo": "libnbd-bin", "nbdcopy": "libnbd-bin", "qemu-img": "qemu-utils",
         "fio": "fio"}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} is not installed (Debian package {TOOLS[tool]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"NBD client missing under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def run(*cmd: str, cwd=None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def exports(size: int = 8 * MiB) -> dict[str, P.Export]:
    return {
        "ns1": P.Export("ns1", size, description="namespace 1", min_block=512),
        "ro": P.Export("ro", 1 * MiB, read_only=True),
    }


@pytest.fixture
def nbd_server(tmp_path_factory):
    """Start a MemServer: ``nbd_server(exports=..., default=..., offer_structured=...)``."""
    servers: list[MemServer] = []

    def start(exports_=None, default="ns1", **kw) -> MemServer:
        path = str(tmp_path_factory.mktemp("nbd") / "s.sock")  # short: sun_path is 108 bytes
        server = MemServer(path, exports_ or exports(), default, **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        assert not server.errors, f"server errors: {server.errors!r}"


def uri(server: MemServer, name: str = "") -> str:
    return f"nbd+unix:///{name}?socket={server.path}"


STRUCTURED = pytest.mark.parametrize("structured", [True, False], ids=["structured", "simple"])


# --- nbdinfo -------------------------------------------------------------------------

@STRUCTURED
def test_nbdinfo_json(nbd_server, structured):
    need("nbdinfo")
    server = nbd_server(offer_structured=structured)
    info = json.loads(run("nbdinfo", "--json", uri(server, "ns1")))
    assert info["protocol"] == "newstyle-fixed"
    assert info["TLS"] is False
    assert info["structured"] is structured
    (export,) = info["exports"]
    assert export["export-name"] == "ns1"
    assert export["export-size"] == 8 * MiB
    assert export["description"] == "namespace 1"
    assert (export["block_size_minimum"], export["block_size_preferred"],
            export["block_size_maximum"]) == (512, 4096, 32 * MiB)
    assert export["is_read_only"] is False
    assert export["can_trim"] and export["can_zero"] and export["can_flush"]
    assert export["can_fua"] and export["can_multi_conn"]
    assert not export.get("contexts")  # no metadata context is offered
    server.wait_idle()
    (session,) = server.sessions
    assert session.export == "ns1" and session.structured is structured
    assert session.options[-1] == P.Opt.GO
    # nbdinfo reads the start of the export to guess its content.
    assert session.commands == [P.CMD_READ, P.CMD_DISC]


def test_nbdinfo_default_export_and_read_only(nbd_server):
    need("nbdinfo")
    server = nbd_server(default="ro")
    info = json.loads(run("nbdinfo", "--json", uri(server)))
    (export,) = info["exports"]
    assert export["export-size"] == 1 * MiB
    assert export["is_read_only"] is True
    assert not export["can_trim"] and not export["can_zero"]


def test_nbdinfo_unknown_export_fails(nbd_server):
    need("nbdinfo")
    server = nbd_server()
    proc = subprocess.run(["nbdinfo", uri(server, "nope")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    # libnbd reports ERR_UNKNOWN as ENOENT; our message is only in its debug output.
    assert "No such file or directory for export: nope" in proc.stderr
    server.wait_idle()
    (session,) = server.sessions
    # After the refused GO, libnbd ends politely with ABORT.
    assert session.options[-2:] == [P.Opt.GO, P.Opt.ABORT] and session.export is None


def test_nbdinfo_list(nbd_server):
    need("nbdinfo")
    server = nbd_server()
    info = json.loads(run("nbdinfo", "--list", "--json", uri(server)))
    listed = {e["export-name"]: e for e in info["exports"]}
    assert set(listed) == {"ns1", "ro"}
    assert listed["ns1"]["export-size"] == 8 * MiB
    assert listed["ns1"]["description"] == "namespace 1"
    assert listed["ro"]["is_read_only"] is True
    # --list ends with ABORT and hangs up without reading the ACK.
    server.wait_idle()
    assert any(s.options and s.options[-1] == P.Opt.ABORT for s in server.sessions)


# --- qemu-img ------------------------------------------------------------------------

def test_qemu_img_info(nbd_server):
    need("qemu-img")
    server = nbd_server()
    info = json.loads(run("qemu-img", "info", "--output=json", uri(server, "ns1")))
    assert info["virtual-size"] == 8 * MiB
    assert info["format"] == "raw"


@STRUCTURED
def test_qemu_img_convert_round_trip(nbd_server, tmp_path, structured):
    need("qemu-img")
    server = nbd_server(offer_structured=structured)
    src, back = tmp_path / "src.img", tmp_path / "back.img"
    data = os.urandom(8 * MiB)
    src.write_bytes(data)
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), uri(server, "ns1"))
    assert bytes(server.disks["ns1"]) == data
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri(server, "ns1"), str(back))
    assert back.read_bytes() == data
    server.wait_idle()
    assert all(s.structured is structured for s in server.sessions if s.export)


def test_qemu_img_cannot_write_read_only(nbd_server, tmp_path):
    need("qemu-img")
    server = nbd_server()
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(1 * MiB))
    proc = subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src),
                           uri(server, "ro")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert bytes(server.disks["ro"]) == bytes(1 * MiB)


# --- nbdcopy -------------------------------------------------------------------------

@STRUCTURED
def test_nbdcopy_round_trip(nbd_server, tmp_path, structured):
    need("nbdcopy")
    server = nbd_server(offer_structured=structured)
    src, back = tmp_path / "src.img", tmp_path / "back.img"
    data = os.urandom(8 * MiB)
    src.write_bytes(data)
    run("nbdcopy", str(src), uri(server, "ns1"))
    assert bytes(server.disks["ns1"]) == data
    run("nbdcopy", uri(server, "ns1"), str(back))
    assert back.read_bytes() == data
    server.wait_idle()
    assert all(s.structured is structured for s in server.sessions if s.export)
    if (os.cpu_count() or 1) > 1:
        # CAN_MULTI_CONN is advertised: nbdcopy spreads the copy over connections.
        assert sum(1 for s in server.sessions if s.export) > 2


# --- fio -----------------------------------------------------------------------------

@STRUCTURED
def test_fio_random_write_verify(nbd_server, tmp_path, structured):
    need("fio")
    server = nbd_server(offer_structured=structured)
    run("fio", "--name=nbd", "--ioengine=nbd", f"--uri={uri(server, 'ns1')}",
        "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=4M", "--verify=crc32c",
        "--do_verify=1", "--verify_fatal=1", "--randrepeat=0", "--verify_state_save=0",
        "--output-format=terse", cwd=tmp_path)
    server.wait_idle()
    sessions = [s for s in server.sessions if s.export]
    assert sessions and all(s.structured is structured for s in sessions)
    # fio keeps many requests in flight: several arrive in one recv.
    assert max(s.max_batch for s in sessions) > 1
