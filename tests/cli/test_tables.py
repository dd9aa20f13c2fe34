"""devlist on a terminal never cuts an NQN, address or URI; devlist -v draws the topology.

The sessions here are state files in a private runtime directory, their
process a sleeper whose command line carries the session mark (so they
count as alive): what devlist reads, without a target or a real session.  What a terminal shows is checked
under pexpect, at a narrow and a wide size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nvmecontrol.backends.model import ConnectParams, ControllerInfo, NamespaceInfo
from nvmecontrol.cli.render.devices import render_topology_text, topology_json
from nvmecontrol.cli.table import stacked_lines

pexpect = pytest.importorskip("pexpect")

REPO = Path(__file__).resolve().parents[2]
LONG_NQN = "nqn.2014-08.org.example:" + "a-rather-long-subsystem-name-" * 5 + "end"
HOST = "nqn.2014-08.org.nvmexpress:uuid:3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
OTHER = "nqn.2014-08.org.example:second"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def controller(name: str, subnqn: str, trsvcid: str, rundir: Path, pid: int,
               **params) -> ControllerInfo:
    # ":1234:" in the address is an emoji code to rich unless it is told otherwise.
    ns = NamespaceInfo(f"{name}ns1", 1, 8 << 20, 512,
                       uri=f"nbd+unix:///ns1?socket={rundir}/{name}/nbd.sock")
    return ControllerInfo(
        name=name, backend="nbd", model="nvmfd", subnqn=subnqn, traddr="fd00:1234::77",
        trsvcid=trsvcid, hostnqn=HOST, cntlid=1, namespaces=[ns], pid=pid,
        params=ConnectParams("fd00:1234::77", trsvcid, subnqn, HOST,
                             "3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b", **params))


@pytest.fixture
def sessions(tmp_path):
    rundir = tmp_path / "run"
    # backends.userspace.backend.process_alive: alive, and the session mark in argv.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                "nvmecontrol.backends.userspace (test stand-in)"])
    infos = [controller("nvmeu0", LONG_NQN, "4420", rundir, sleeper.pid, num_io_queues=2,
                        hdgst=True),
             controller("nvmeu1", LONG_NQN, "4421", rundir, sleeper.pid),
             controller("nvmeu2", OTHER, "4420", rundir, sleeper.pid, queue_size=64)]
    for info in infos:
        d = rundir / info.name
        d.mkdir(parents=True)
        (d / "session.json").write_text(json.dumps(info.to_json()))
    yield rundir, infos
    sleeper.kill()
    sleeper.wait()


def on_terminal(rundir: Path, columns: int, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(NVMECONTROL_RUNTIME_DIR=str(rundir), NO_COLOR="1", TERM="xterm")
    child = pexpect.spawn(sys.executable, ["-m", "nvmecontrol", "devlist", *args], env=env,
                          cwd=str(REPO), dimensions=(50, columns), encoding="utf-8", timeout=60)
    out = child.read()
    child.close()
    assert child.exitstatus == 0, out
    return ANSI.sub("", out).replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [60, 100, 400])
def test_devlist_on_a_terminal_keeps_every_value_whole(sessions, columns):
    rundir, infos = sessions
    out = on_terminal(rundir, columns)
    for info in infos:
        assert info.subnqn in out
        assert "[fd00:1234::77]:" + info.trsvcid in out
        assert info.namespaces[0].uri in out
    assert "…" not in out


def test_devlist_narrow_terminal_puts_long_fields_on_their_own_lines(sessions):
    out = on_terminal(sessions[0], 60)
    assert f"    Subsystem NQN: {LONG_NQN}\n" in out
    assert re.search(r"^\s+Exported as: nbd\+unix:///ns1\?socket=\S+nvmeu0/nbd.sock$", out, re.M)


def test_stacked_lines_keep_short_columns_aligned():
    lines = stacked_lines(["Device", "Size", "URI"], [["nvmeu0", "", ""], ["  nvmeu0ns1", "8MB", "nbd://x"]],
                          ("URI",))
    assert lines == ["Device       Size", "nvmeu0", "  nvmeu0ns1  8MB", "      URI: nbd://x"]


def test_devlist_verbose_is_the_topology(sessions):
    rundir, infos = sessions
    text = render_topology_text(infos)
    blocks = text.split("\n\n")
    assert len(blocks) == 2  # two subsystems
    first = blocks[0].splitlines()
    assert first[:3] == [f"NQN={LONG_NQN}", f"    hostnqn={HOST}", "\\"]
    assert first[3].startswith(" +- nvmeu0 tcp traddr=fd00:1234::77,trsvcid=4420 live (nbd, "
                               "2 I/O queues x CAP.MQES+1 entries, digests header, kato 120 s")
    assert first[4] == f" |    +- nvmeu0ns1 8MB {infos[0].namespaces[0].uri}"
    assert first[5].startswith(" +- nvmeu1 tcp traddr=fd00:1234::77,trsvcid=4421 live")
    assert first[6].startswith("      +- nvmeu1ns1 8MB")
    assert "1 I/O queue x 64 entries, digests none" in blocks[1]
    js = topology_json(infos)
    assert [(s["subnqn"], [p["name"] for p in s["paths"]]) for s in js["subsystems"]] == [
        (LONG_NQN, ["nvmeu0", "nvmeu1"]), (OTHER, ["nvmeu2"])]


def test_devlist_verbose_from_the_command(sessions):
    rundir, infos = sessions
    out = on_terminal(rundir, 80, "-v")
    assert out.startswith(f"NQN={LONG_NQN}\n")
    assert " +- nvmeu2 tcp traddr=fd00:1234::77,trsvcid=4420 live" in out


def test_connect_and_devlist_text_show_the_nbd_listen_uri(tmp_path):
    """--nbd-listen's nbd://host:port/nsN beside the unix socket URI (piped text too)."""
    from nvmecontrol.cli.render.devices import connect_line, render_devlist_text

    info = controller("nvmeu0", OTHER, "4420", tmp_path, 1)
    ns = info.namespaces[0]
    ns.tcp_uris = ["nbd://192.0.2.7:10809/ns1"]
    assert connect_line(info, existing=False).splitlines()[1] == \
        f"  nvmeu0ns1: {ns.uri} nbd://192.0.2.7:10809/ns1"
    assert render_devlist_text([info]).splitlines()[1] == \
        f"   nvmeu0ns1 (8MB) {ns.uri} nbd://192.0.2.7:10809/ns1"
    assert "nbd://192.0.2.7:10809/ns1" in render_topology_text([info])
