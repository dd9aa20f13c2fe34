"""Userspace sessions when things go wrong: associations ended by the target
(``nvmfd terminate``) or by nvmfd stopping and starting again, forced and
readdressed reconnects, ctrl-loss-tmo running out, session processes killed
or gone stale, concurrent disconnects, NBD clients speaking garbage.

The reconnect contract (session.py): requests are parked while the session
reconnects, replayed on the new association, never acknowledged before the
controller completed them, and fail with EIO once ctrl-loss-tmo has passed.
Writes go through :class:`PatternWriter` (a known pattern, several requests
in flight) and are checked byte for byte through the session and in the
namespace's backing file.  A :class:`Gate` holds writes (or reads) inside nvmfd so
that a request is really in flight on the controller when the link drops.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nvmecontrol.backends.userspace.backend import UserspaceBackend
from nvmecontrol.cli import exitcodes as X
from nvmecontrol.nbd import protocol as N

from .sessionkit import (HOST, HOSTID, OTHER_HOST, OTHER_HOSTID, SUBNQN, Gate, MiB, NbdClient,
                         NbdError, PatternWriter, backing_file, cli, cli_ok, connect,
                         entry_point, io_associations, nbd_socket, pattern, pid_running,
                         read_all, session, session_guard, session_log, session_pids, sessions,
                         start_target, wait_for)

assert session_guard  # autouse, imported for this module

SIZE = 4 * MiB
BLOCKS = SIZE // 4096


@pytest.fixture
def disk(tmp_path):
    return backing_file(tmp_path / "ns1.img", SIZE)


@pytest.fixture
def target(nvmfd_factory, disk):
    return start_target(nvmfd_factory, [disk])


def state_of(name: str = "nvmeu0") -> str:
    return session(name).state


def wait_lost(what: str = "connection lost") -> None:
    wait_for(lambda: what in session_log(), f"the session to log {what!r}")


def wait_live(name: str = "nvmeu0") -> None:
    wait_for(lambda: state_of(name) == "live", f"{name} to be live again")


def check_written(writer: PatternWriter, disk, name: str = "nvmeu0") -> None:
    """Every write acknowledged without error, and all of them readable and on the disk."""
    acked = writer.finish()
    assert len(acked) == writer.blocks
    assert [b for b, e in acked.items() if e] == []
    expected = writer.expected()
    assert read_all(nbd_socket(name), len(expected)) == expected
    assert disk.read_bytes()[:len(expected)] == expected


# --- the target ends the association -------------------------------------------------------

def test_write_stream_survives_nvmfd_terminate(target, disk):
    connect(target, "-r", "1", "-l", "30")
    before = io_associations(target)[0]["id"]
    gate = Gate(target)
    writer = PatternWriter(nbd_socket(), BLOCKS, seed=11, pause_after=64)
    writer.start()
    wait_for(writer.paused.is_set, "64 acknowledged writes")
    # Hold the controller's writes: what the writer sends next is in flight there.
    gate.close()
    writer.resume()
    wait_for(gate.entered.is_set, "a write to reach the controller")
    assert len(writer.acked) < BLOCKS
    # nvmfd terminate -a: the target ends every association.
    p = subprocess.run([sys.executable, "-m", "nvmecontrol.target.main", "terminate",
                        "-S", target.socket_path, "-a"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    wait_lost()
    gate.open.set()
    check_written(writer, disk)
    log = session_log()
    held = [int(n) for n in re.findall(r"; (\d+) commands held", log)]
    assert held and held[0] > 0, log
    assert re.search(r"replaying \d+ commands held during the outage", log), log
    (assoc,) = io_associations(target)
    assert assoc["id"] != before
    assert state_of() == "live"
    cli_ok("disconnect", "nvmeu0")


def test_write_stream_survives_nvmfd_restart(nvmfd_factory, disk):
    first = start_target(nvmfd_factory, [disk])
    port = first.port
    connect(first, "-r", "1", "-l", "60")
    writer = PatternWriter(nbd_socket(), BLOCKS, seed=12, pause_after=64)
    writer.start()
    wait_for(writer.paused.is_set, "64 acknowledged writes")
    first.stop()
    writer.resume()  # these are parked: nothing is there to take them
    wait_lost()
    wait_for(lambda: state_of() == "connecting", "devlist's state to say so")
    rc, out, err = cli("devlist")
    assert rc == 0, err
    assert re.match(r"nvmeu0: nvmfd \(disconnected for \d+ seconds\)\n", out), out
    # Admin commands and forced reconnects fail cleanly while nothing answers.
    rc, out, err = cli("identify", "nvmeu0")
    assert rc == X.EX_IOERR and out == "" and "not connected" in err, (rc, err)
    rc, out, err = cli("reconnect", "nvmeu0")
    assert rc == X.EX_NOHOST and out == "" and "reconnect failed" in err, (rc, err)
    assert not writer.acked.keys() - set(range(64 + writer.depth))
    # nvmfd comes back on the same port with the same file.
    start_target(nvmfd_factory, [disk], port=port)
    check_written(writer, disk)
    assert state_of() == "live"
    rc, out, err = cli("identify", "nvmeu0")
    assert rc == 0, err
    cli_ok("disconnect", "nvmeu0")


def test_request_split_over_commands_survives_a_loss(target, disk):
    """One NBD write of 4 MiB is four NVMe writes (MDTS 1 MiB): the link drops
    with part of them done, and the request is acknowledged once, after all are."""
    connect(target, "-r", "1")
    data = b"".join(pattern(16, i) for i in range(BLOCKS))
    gate = Gate(target)
    gate.close()
    c = NbdClient(nbd_socket())
    try:
        cookie = c.send(N.CMD_WRITE, 0, data=data)
        wait_for(gate.entered.is_set, "a part to reach the controller")
        with target.control() as ctl:
            ctl.request("terminate", all=True)
        wait_lost()
        gate.open.set()
        assert c.reply() == (cookie, 0, b"")
        assert c.read(0, SIZE) == data
    finally:
        c.close()
    assert disk.read_bytes() == data
    cli_ok("disconnect", "nvmeu0")


def test_hung_target_found_by_keep_alive(nvmfd_process):
    """nvmfd stops answering (SIGSTOP) without closing anything: the missing
    Keep Alive answer ends the association; held writes go through once it is back."""
    proc = nvmfd_process.proc
    connect(nvmfd_process, "-k", "2", "--timeout", "2", "-r", "1", "-l", "60")
    writer = PatternWriter(nbd_socket(), 256, seed=17, pause_after=32)
    writer.start()
    wait_for(writer.paused.is_set, "32 acknowledged writes")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        writer.resume()
        wait_lost()
        assert "Keep Alive" in session_log()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    acked = writer.finish()
    assert len(acked) == 256 and not [b for b, e in acked.items() if e]
    wait_live()
    assert read_all(nbd_socket(), 256 * 4096) == writer.expected()
    cli_ok("disconnect", "nvmeu0")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_frozen_target_lost_within_kato_not_the_command_timeout(nvmfd_process, session_guard):
    """A frozen controller (SIGSTOP, TCP still open) is declared lost once its
    Keep Alive goes unanswered for KATO, long before the 30 s command timeout."""
    proc = nvmfd_process.proc
    connect(nvmfd_process, "-k", "2", "-r", "1", "-l", "60")
    os.kill(proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_lost()
        elapsed = time.monotonic() - stopped
        print(f"frozen controller declared lost after {elapsed:.1f} s (KATO 2 s)")
        assert "Keep Alive not answered within KATO (2 s)" in session_log()
        # KATO/2 until the Keep Alive, KATO for its answer; the 30 s command
        # timeout would be far beyond this bound.
        assert elapsed < 10
        # While it reconnects, nothing spins (a busy keep-alive loop took 0.4 s).
        (pid,) = session_pids(session_guard)
        before = cpu_seconds(pid)
        time.sleep(1.5)
        used = cpu_seconds(pid) - before
        print(f"session CPU while reconnecting: {used:.2f} s in 1.5 s")
        assert used < 0.15
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    wait_live()
    cli_ok("disconnect", "nvmeu0")


def test_reads_in_flight_survive_a_loss(target, disk):
    """Reads held in nvmfd when the association ends, one of them with half of
    its commands done, are replayed and return the right data."""
    expected = b"".join(pattern(19, i) for i in range(BLOCKS))
    disk.write_bytes(expected)
    connect(target, "-r", "1")
    gate = Gate(target, "read_into")
    gate.close(let_through=2)
    c = NbdClient(nbd_socket())
    try:
        whole = c.send(N.CMD_READ, 0, SIZE)  # four commands: two done, two held
        wanted = {whole: (0, SIZE)}
        for i in range(8):
            wanted[c.send(N.CMD_READ, i * 64 * 1024, 64 * 1024)] = (i * 64 * 1024, 64 * 1024)
        wait_for(gate.entered.is_set, "a read to be held")
        with target.control() as ctl:
            ctl.request("terminate", all=True)
        wait_lost()
        gate.open.set()
        for _ in wanted:
            cookie, error, data = c.reply()
            offset, length = wanted[cookie]
            assert error == 0 and data == expected[offset:offset + length], cookie
    finally:
        c.close()
    assert re.search(r"; [1-9]\d* commands held", session_log())
    cli_ok("disconnect", "nvmeu0")


# --- forced reconnects --------------------------------------------------------------

def test_forced_reconnect_while_idle(target, disk):
    connect(target, "-r", "1")
    c = NbdClient(nbd_socket())
    try:
        assert c.write(0, pattern(3, 0)) == 0
        before = io_associations(target)[0]["id"]
        rc, out, err = cli("reconnect", "nvmeu0")
        assert rc == 0, err
        assert out == f"nvmeu0: reconnected to {SUBNQN} at 127.0.0.1:{target.port}\n"
        (assoc,) = io_associations(target)
        assert assoc["id"] != before
        # The NBD connection made before the reconnect keeps working.
        assert c.read(0, 4096) == pattern(3, 0)
        assert c.write(4096, pattern(3, 1)) == 0
    finally:
        c.close()
    assert disk.read_bytes()[:8192] == pattern(3, 0) + pattern(3, 1)
    rc, out, err = cli("reconnect", "-o", "json", "nvmeu0")
    assert rc == 0, err
    info = json.loads(out)["controller"]
    assert (info["name"], info["state"], info["connected"]) == ("nvmeu0", "live", True)
    cli_ok("disconnect", "nvmeu0")


def test_forced_reconnect_during_writes(target, disk):
    connect(target, "-r", "1", "-i", "2")
    gate = Gate(target)
    writer = PatternWriter(nbd_socket(), BLOCKS, seed=13, pause_after=100)
    writer.start()
    wait_for(writer.paused.is_set, "100 acknowledged writes")
    gate.close()
    writer.resume()
    wait_for(gate.entered.is_set, "a write to reach the controller")
    # The new association comes up while the old one's writes are still held
    # inside nvmfd: they are replayed on it (and held again until the gate opens).
    done = {}
    t = threading.Thread(target=lambda: done.update(r=cli("reconnect", "nvmeu0")))
    t.start()
    t.join(60)
    gate.open.set()
    assert not t.is_alive()
    rc, _out, err = done["r"]
    assert rc == 0, err
    check_written(writer, disk)
    assert re.search(r"replaying [1-9]\d* commands held during the outage", session_log())
    cli_ok("disconnect", "nvmeu0")


def test_reconnect_to_a_new_address(nvmfd_factory, disk):
    a = start_target(nvmfd_factory, [disk])
    b = start_target(nvmfd_factory, [disk])  # another port, the same file
    connect(a, "-r", "1")
    w1 = PatternWriter(nbd_socket(), BLOCKS // 2, seed=14)
    w1.start()
    assert not [e for e in w1.finish().values() if e]
    rc, out, err = cli("reconnect", "-r", "2", "-l", "20", "nvmeu0", f"127.0.0.1:{b.port}")
    assert rc == 0, err
    assert out == f"nvmeu0: reconnected to {SUBNQN} at 127.0.0.1:{b.port}\n"
    assert not io_associations(a) and len(io_associations(b)) == 1
    info = session()
    assert (info.trsvcid, info.params.trsvcid, info.params.reconnect_delay_s,
            info.params.ctrl_loss_tmo_s, info.params.hostnqn) == \
        (str(b.port), str(b.port), 2, 20, HOST)
    rc, out, err = cli("devlist")
    assert out.startswith(f"nvmeu0: nvmfd (connected via TCP 127.0.0.1:{b.port})\n")
    a.stop()  # the old address is gone: nothing notices
    # Connect to the new address is the same association; to the old one it is not.
    rc, out, err = cli("connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{b.port}", SUBNQN)
    assert rc == 0 and out.startswith("nvmeu0: already connected"), err
    w2 = PatternWriter(nbd_socket(), BLOCKS // 2, seed=15)
    w2.start()
    assert not [e for e in w2.finish().values() if e]
    expected = w2.expected()
    assert read_all(nbd_socket(), len(expected)) == expected
    assert disk.read_bytes()[:len(expected)] == expected
    assert state_of() == "live"
    cli_ok("disconnect", "nvmeu0")


def test_failed_reconnect_keeps_a_working_session(target, disk):
    """A reconnect to an address where nothing answers fails (EX_NOHOST) and leaves
    the live association, its address and its parameters as they were, as
    FreeBSD's reconnect hands a new association over only once it is connected."""
    info = connect(target, "-r", "1", "-l", "5")
    before = io_associations(target)[0]["id"]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    rc, out, err = cli("reconnect", "nvmeu0", f"127.0.0.1:{dead_port}")
    assert rc == X.EX_NOHOST and out == "", err
    assert "reconnect failed" in err and "Connection refused" in err
    now = session()
    assert (now.state, now.trsvcid, now.params.trsvcid, now.params.ctrl_loss_tmo_s) == \
        ("live", str(target.port), str(target.port), 5)
    assert [a["id"] for a in io_associations(target)] == [before]
    c = NbdClient(nbd_socket())
    try:
        assert c.write(0, pattern(18, 0)) == 0
    finally:
        c.close()
    assert disk.read_bytes()[:4096] == pattern(18, 0)
    assert "connection lost" not in session_log()
    assert now.pid == info["pid"]
    cli_ok("disconnect", "nvmeu0")


def test_reconnect_as_another_host(target):
    """Options given to reconnect (here the host NQN) are what the new association uses."""
    connect(target, "-r", "1")
    rc, out, err = cli("reconnect", "-q", OTHER_HOST, "-I", OTHER_HOSTID, "nvmeu0",
                       f"127.0.0.1:{target.port}")
    assert rc == 0, err
    (assoc,) = io_associations(target)
    assert assoc["hostnqn"] == OTHER_HOST
    assert (session().hostnqn, session().params.hostid) == (OTHER_HOST, OTHER_HOSTID)
    cli_ok("disconnect", "nvmeu0")


# --- ctrl-loss-tmo ---------------------------------------------------------------------

def test_ctrl_loss_tmo_fails_requests_and_ends_the_session(target, session_guard):
    info = connect(target, "-r", "1", "-l", "3")
    pid = info["pid"]
    c = NbdClient(nbd_socket())
    assert c.write(0, b"\x11" * 4096) == 0
    gate = Gate(target)
    gate.close()
    in_flight = c.send(N.CMD_WRITE, 4096, data=b"\x22" * 4096)
    wait_for(gate.entered.is_set, "the write to reach the controller")
    stopper = threading.Thread(target=target.stop)  # for good
    stopper.start()
    wait_lost()
    gate.open.set()
    stopper.join(30)
    assert not stopper.is_alive()
    parked_write = c.send(N.CMD_WRITE, 8192, data=b"\x33" * 4096)
    parked_read = c.send(N.CMD_READ, 0, 4096)
    # ctrl-loss-tmo is 3 s: every one of them fails with EIO, none succeeds.
    replies = {}
    for _ in range(3):
        cookie, error, data = c.reply()
        replies[cookie] = error
        assert data == b""
    assert replies == {in_flight: N.EIO, parked_write: N.EIO, parked_read: N.EIO}
    # Then the session ends: its process exits, its directory goes, its clients are dropped.
    wait_for(lambda: not pid_running(pid), "the session process to exit")
    wait_for(lambda: not (session_guard / "nvmeu0").exists(), "the session directory to go")
    with pytest.raises((NbdError, OSError)):
        c.write(0, b"\x44" * 4096)
    c.close()
    assert "giving up after ctrl-loss-tmo (3 s)" in session_log()
    assert "nvmeu0" not in sessions()
    rc, out, err = cli("identify", "nvmeu0")
    assert rc == X.EX_NOINPUT


def test_disconnect_during_an_outage(target, session_guard):
    """Disconnect while reconnecting: held requests fail with EIO and the session ends."""
    info = connect(target, "-r", "1", "-l", "600")
    before = NbdClient(nbd_socket())
    target.stop()
    wait_lost()
    held = before.send(N.CMD_WRITE, 0, data=b"\x66" * 4096)
    # A client arriving during the outage still gets its export; its request is held too.
    during = NbdClient(nbd_socket())
    assert during.size == SIZE
    held_read = during.send(N.CMD_READ, 0, 4096)
    rc, out, err = cli("disconnect", "nvmeu0")
    assert (rc, out) == (0, "nvmeu0: disconnected\n"), err
    assert before.reply()[:2] == (held, N.EIO)
    assert during.reply()[:2] == (held_read, N.EIO)
    before.close()
    during.close()
    wait_for(lambda: not pid_running(info["pid"]), "the session process to exit")
    assert not (session_guard / "nvmeu0").exists()


# --- dead and stale sessions -----------------------------------------------------------------

def test_session_killed_with_sigkill(target, session_guard):
    info = connect(target)
    pid = info["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_running(pid), "the session process to die")
    rc, out, err = cli("devlist")
    assert rc == 0, err
    assert re.match(r"nvmeu0: nvmfd \(session process exited for \d+ seconds\)\n", out), out
    rc, out, err = cli("devlist", "-o", "json")
    (c,) = json.loads(out)["controllers"]
    assert (c["state"], c["connected"]) == ("dead", False) and c["disconnected_since"]
    for argv in (["identify", "nvmeu0"], ["identify", "nvmeu0ns1"],
                 ["logpage", "-p", "2", "nvmeu0"],
                 ["reconnect", "nvmeu0"]):
        rc, out, err = cli(*argv)
        assert rc == X.EX_NOINPUT and out == "", (argv, rc, err)
        assert "not running" in err
    # A dead session is no association: connect makes a new one, not "already connected".
    again = connect(target)
    assert again["name"] == "nvmeu1" and again["created"] is True
    rc, out, err = cli("disconnect", "nvmeu0")
    assert (rc, out) == (0, "nvmeu0: disconnected\n"), err
    assert not (session_guard / "nvmeu0").exists()
    assert list(sessions()) == ["nvmeu1"]
    cli_ok("disconnect", "nvmeu1")


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def stale_state(name: str, pid: int) -> dict:
    return {"name": name, "backend": "nbd", "model": "nvmfd", "subnqn": SUBNQN,
            "transport": "tcp", "traddr": "127.0.0.1", "trsvcid": "4420", "hostnqn": HOST,
            "cntlid": 1, "state": "live", "connected": True, "disconnected_since": None,
            "namespaces": [{"name": f"{name}ns1", "nsid": 1, "size_bytes": SIZE,
                            "lba_size": 512, "path": None, "uri": None}],
            "pid": pid, "params": None, "warnings": []}


@pytest.mark.parametrize("whose", ["dead", "recycled"])
def test_stale_runtime_directory(session_guard, whose):
    rundir = session_guard
    # "recycled": the PID now belongs to another program (this one), which must survive.
    pid = dead_pid() if whose == "dead" else os.getpid()
    d = rundir / "nvmeu0"
    d.mkdir()
    (d / "session.json").write_text(json.dumps(stale_state("nvmeu0", pid)))
    (d / "namespaces").write_text("1\n")
    # What a process killed in the middle of write_atomically leaves behind.
    (d / "session.json.tmp").write_text("{")
    (d / "nbd.sock").write_text("")
    rc, out, err = cli("devlist")
    assert rc == 0, err
    assert re.match(r"nvmeu0: nvmfd \(session process exited for \d+ seconds\)\n", out), out
    rc, out, err = cli("identify", "nvmeu0")
    assert rc == X.EX_NOINPUT and "not running" in err
    rc, out, err = cli("disconnect", "nvmeu0")
    assert (rc, out) == (0, "nvmeu0: disconnected\n"), err
    assert not d.exists()
    rc, out, err = cli("devlist", "-o", "json")
    assert not [c for c in json.loads(out)["controllers"] if c["backend"] == "nbd"]


def test_directory_without_state(session_guard):
    """A session that died while starting leaves only its directory."""
    (session_guard / "nvmeu2").mkdir()
    rc, out, err = cli("devlist", "-o", "json")
    (c,) = json.loads(out)["controllers"]
    assert (c["name"], c["state"], c["connected"]) == ("nvmeu2", "dead", False)
    rc, out, err = cli("disconnect-all")
    assert (rc, out) == (0, "nvmeu2: disconnected\n"), err
    assert not (session_guard / "nvmeu2").exists()


def test_two_disconnects_at_once(target, session_guard):
    info = connect(target)
    procs = [subprocess.Popen(entry_point() + ["disconnect", "nvmeu0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, out, err))
    codes = sorted(r[0] for r in results)
    assert codes in ([0, 0], [0, X.EX_NOINPUT]), results
    for rc, out, err in results:
        assert "Traceback" not in err and "internal error" not in err, err
        if rc == 0:
            assert out == "nvmeu0: disconnected\n"
    wait_for(lambda: not pid_running(info["pid"]), "the session process to exit")
    assert not (session_guard / "nvmeu0").exists()


def waiting_for_flock(pid: int) -> bool:
    """Whether ``pid`` is blocked in flock(2) (a ``->`` line of /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) > 5 and f[1] == "->" and f[2] == "FLOCK" and f[5] == str(pid):
            return True
    return False


def test_disconnect_waits_for_a_session_still_starting(target, session_guard, monkeypatch):
    """Between allocating nvmeuN and the session serving, its directory has no
    state and lists as dead; a disconnect-all then must wait for the connect,
    and end the session it made, not remove the directory under it."""
    from nvmecontrol.backends.userspace import daemon as B  # connect imports spawn from it

    real_spawn = B.spawn
    spawning, go = threading.Event(), threading.Event()

    def held_spawn(*args, **kw):
        spawning.set()
        go.wait(30)
        return real_spawn(*args, **kw)

    monkeypatch.setattr(B, "spawn", held_spawn)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=cli(
        "connect", "--backend", "nbd", "-q", HOST, "-I", HOSTID, f"127.0.0.1:{target.port}",
        SUBNQN)))
    t.start()
    try:
        wait_for(spawning.is_set, "connect to allocate nvmeu0")
        assert [c.state for c in sessions().values()] == ["dead"]
        p = subprocess.Popen(entry_point() + ["disconnect-all"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        wait_for(lambda: waiting_for_flock(p.pid) or p.poll() is not None,
                 "disconnect-all to wait for nvmeu0's lock")
        assert p.poll() is None, p.communicate()
    finally:
        go.set()
        t.join(60)
    rc, out, err = result["r"]
    assert rc == 0 and out.startswith("nvmeu0: connected"), err
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (0, "nvmeu0: disconnected\n"), err
    wait_for(lambda: not session_pids(session_guard), "the session to end")
    assert not (session_guard / "nvmeu0").exists()


# --- hostile NBD clients ---------------------------------------------------------------

def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    got = b""
    while len(got) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return got


def test_garbage_nbd_clients_are_dropped(target):
    connect(target)
    path = nbd_socket()
    good = NbdClient(path)
    try:
        assert good.write(0, b"\x5a" * 4096) == 0
        # 1: junk instead of the client flags and options.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        assert s.recv(18)[:8] == b"NBDMAGIC"
        s.sendall(struct.pack(">I", 3) + os.urandom(200))
        read_until_closed(s)  # the session hung up (no timeout)
        s.close()
        # 2: a good handshake, then a request with a bad magic.
        bad = NbdClient(path)
        bad.sock.sendall(b"\xde\xad\xbe\xef" + os.urandom(60))
        with pytest.raises(NbdError):
            bad.reply()
        bad.sock.close()
        # 3: a write announcing more than the export's maximum payload.
        big = NbdClient(path)
        big.sock.sendall(struct.pack(">IHHQQI", N.REQUEST_MAGIC, 0, N.CMD_WRITE, 1, 0, 1 << 30))
        with pytest.raises(NbdError):
            big.reply()
        big.sock.close()
        # 4: gone in the middle of the handshake.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.close()
        # The well-behaved client was never disturbed, and new ones are welcome.
        assert good.read(0, 4096) == b"\x5a" * 4096
        assert good.write(4096, b"\xa5" * 4096) == 0
        other = NbdClient(path)
        assert other.read(0, 8192) == b"\x5a" * 4096 + b"\xa5" * 4096
        other.close()
    finally:
        good.close()
    assert state_of() == "live"
    log = session_log()
    assert "NBD client" in log and "Traceback" not in log
    cli_ok("disconnect", "nvmeu0")


def test_client_gone_with_requests_in_flight(target, disk):
    """A client that hangs up with writes in flight: they complete, nobody is answered."""
    connect(target)
    gate = Gate(target)
    gate.close()
    c = NbdClient(nbd_socket())
    for i in range(4):
        c.send(N.CMD_WRITE, i * 4096, data=pattern(21, i))
    wait_for(gate.entered.is_set, "a write to reach the controller")
    c.sock.close()
    gate.open.set()
    wait_for(lambda: disk.read_bytes()[:4 * 4096] == b"".join(pattern(21, i) for i in range(4)),
             "the writes to land")
    assert state_of() == "live"
    other = NbdClient(nbd_socket())
    assert other.read(0, 4096) == pattern(21, 0)
    other.close()
    cli_ok("disconnect", "nvmeu0")


def test_guard_finds_session_processes(target, session_guard):
    """The orphan check itself: it sees a running session of this runtime directory."""
    info = connect(target)
    assert session_pids(session_guard) == [info["pid"]]
    assert UserspaceBackend().get("nvmeu0").pid == info["pid"]
    cli_ok("disconnect", "nvmeu0")
    wait_for(lambda: not session_pids(session_guard), "no session process")


def test_read_beyond_the_maximum_block_size_is_refused(nvmfd_factory):
    """A read longer than the advertised maximum (32 MiB) would make the session
    allocate it whole: refused with EINVAL, the connection goes on."""
    target = start_target(nvmfd_factory, ["mem:48M"])
    connect(target)
    c = NbdClient(nbd_socket())
    try:
        c.send(N.CMD_READ, 0, 48 * MiB)
        assert c.reply()[1] == N.EINVAL
        assert c.write(0, b"\x12" * 4096) == 0
        assert c.read(0, 32 * MiB)[:4097] == b"\x12" * 4096 + b"\0"
    finally:
        c.close()
    cli_ok("disconnect", "nvmeu0")


def test_a_connect_interrupted_before_the_session_is_ready_leaves_nothing(target, session_guard,
                                                                          monkeypatch):
    """The CLI stops reading (Ctrl-C) while its session starts: the session
    finds nobody to report to, ends its association and removes its files."""
    from nvmecontrol.backends.userspace import daemon

    def interrupted_read(f, timeout):
        f.close()  # what the CLI's exit does to the readiness pipe
        raise KeyboardInterrupt

    monkeypatch.setattr(daemon, "_read_line", interrupted_read)
    rc, out, err = cli("connect", "--backend", "nbd", "--no-attach", "-q", HOST, "-I", HOSTID,
                       f"127.0.0.1:{target.port}", target.subnqn)
    assert rc == X.EX_INTERRUPTED and out == "" and err.strip().endswith("interrupted")
    wait_for(lambda: "was interrupted; ending it" in session_log(), "the session to give up")
    wait_for(lambda: not session_pids(session_guard), "the session process to end")
    wait_for(lambda: not io_associations(target), "the association to end on the target")
    assert sessions() == {}
    assert not (session_guard / "nvmeu0").exists()
