"""Scenario 3: a frozen controller and a silent host.

A controller that freezes with its TCP connections open (the proxy holds
every byte, new connections included, like a stopped process) must be
declared lost by the session within KATO (+1 s) through its Keep Alive, not
after the 30 s command timeout; when it thaws, the session reconnects and
the writes held meanwhile complete.  The other way round, nvmfd must end the
association of a host that goes silent once its KATO has passed.

The bounds are the issue's contract (KATO + 1 s) plus NOISE_S for this
shared 2-core machine; the figures printed are the measured times.
"""

from __future__ import annotations

import socket
import time

import pytest

from ..backends.sessionkit import (MiB, backing_file, cli_ok, connect, io_associations,
                                   nbd_socket, read_all, session, session_guard, session_log,
                                   start_target, wait_for)
from ..target.helpers import connect as host_connect
from .conftest import figures
from .kit import VerifiedWriter
from .proxy import H2C, Fault

assert session_guard  # autouse, imported for this module

SIZE = 2 * MiB
BLOCKS = SIZE // 4096
KATO_S = 4
# KATO 4, not 2: with KATO 2 the Keep Alive rhythm alone (1.5 x KATO) happens
# to equal KATO + 1 s, and the test could not tell the two rules apart.
NOISE_S = 0.3  # scheduling noise allowed on top of the contract on a busy 2-core machine


def freeze_during_writes(nvmfd_factory, proxy_factory, tmp_path) -> dict:
    """Freeze the controller under a stream of writes, thaw it once the
    session has declared the loss; check the data; return the figures."""
    disk = backing_file(tmp_path / "ns1.img", SIZE)
    target = start_target(nvmfd_factory, [disk])
    proxy = proxy_factory(target.port)
    # --timeout 3: a reconnect attempt into the frozen controller gives up
    # after 3 s and the next one follows reconnect-delay later.
    connect(target, "-k", str(KATO_S), "-r", "1", "-l", "120", "--timeout", "3",
            address=f"127.0.0.1:{proxy.port}")
    writer = VerifiedWriter(nbd_socket(), BLOCKS, seed=1503)
    writer.start()
    wait_for(lambda: writer.requests >= 100, "writes to flow")
    proxy.freeze()
    frozen_at = time.monotonic()
    wait_for(lambda: "connection lost" in session_log(), "the session to declare the loss",
             timeout=40)
    lost_after = time.monotonic() - frozen_at
    acked_while_frozen = writer.requests
    time.sleep(1)
    assert writer.requests == acked_while_frozen, "writes acknowledged by a frozen controller"
    proxy.thaw()
    thawed_at = time.monotonic()
    wait_for(lambda: session().state == "live", "the session to reconnect after the thaw",
             timeout=40)
    back_after = time.monotonic() - thawed_at
    wait_for(lambda: writer.requests >= acked_while_frozen + 100, "writes to flow again")
    writer.finish()
    assert writer.errors == {}
    assert writer.mismatches(read_all(nbd_socket(), SIZE)) == []
    assert writer.mismatches(disk.read_bytes()) == []
    assert "Keep Alive not answered within KATO" in session_log(), session_log()[-2000:]
    cli_ok("disconnect", "nvmeu0")
    figures("3a frozen controller", kato_s=KATO_S, lost_after_s=f"{lost_after:.2f}",
            reconnected_after_thaw_s=f"{back_after:.2f}", writes_acked=writer.requests,
            mismatches=0)
    return {"lost_after": lost_after}


def test_frozen_controller_reconnected_when_it_thaws(nvmfd_factory, proxy_factory, tmp_path):
    freeze_during_writes(nvmfd_factory, proxy_factory, tmp_path)


def test_frozen_controller_lost_within_kato(nvmfd_factory, proxy_factory, tmp_path):
    lost_after = freeze_during_writes(nvmfd_factory, proxy_factory, tmp_path)["lost_after"]
    assert lost_after <= KATO_S + 1 + NOISE_S


def test_an_unanswered_io_command_is_a_loss_within_kato(nvmfd_factory, proxy_factory, tmp_path):
    """One write never reaches the controller (the proxy drops its capsule)
    while Keep Alive is answered as usual: the session must still declare the
    controller lost within KATO plus its one-second look, reconnect, and
    complete that write on the new association."""
    disk = backing_file(tmp_path / "ns1.img", SIZE)
    target = start_target(nvmfd_factory, [disk])
    proxy = proxy_factory(target.port)
    connect(target, "-k", str(KATO_S), "-r", "1", "-l", "120",
            address=f"127.0.0.1:{proxy.port}")
    writer = VerifiedWriter(nbd_socket(), BLOCKS, seed=1511)
    writer.start()
    wait_for(lambda: writer.requests >= 100, "writes to flow")
    drop = proxy.add(Fault("drop", direction=H2C, pdu="CapsuleCmd", queue="io", limit=1))
    wait_for(lambda: drop.fired, "the proxy to drop a command")
    dropped_at = time.monotonic()
    wait_for(lambda: "connection lost" in session_log(), "the session to declare the loss",
             timeout=40)
    lost_after = time.monotonic() - dropped_at
    wait_for(lambda: session().state == "live", "the session to reconnect", timeout=40)
    wait_for(lambda: writer.requests >= 300, "writes to flow again")
    writer.finish()
    log = session_log()
    assert "I/O command not answered within KATO" in log, log[-2000:]
    assert "Keep Alive not answered" not in log
    assert writer.errors == {}
    assert writer.mismatches(read_all(nbd_socket(), SIZE)) == []
    assert writer.mismatches(disk.read_bytes()) == []
    cli_ok("disconnect", "nvmeu0")
    figures("3c one I/O command unanswered", kato_s=KATO_S, lost_after_s=f"{lost_after:.2f}",
            writes_acked=writer.requests, mismatches=0)
    # Noticed between KATO and KATO + one look (1 s) after it was sent.
    assert KATO_S - NOISE_S <= lost_after <= KATO_S + 1 + NOISE_S


def test_nvmfd_drops_a_silent_host_after_kato(nvmfd_server):
    assoc = host_connect(nvmfd_server, num_io_queues=1, kato_s=KATO_S)
    try:
        (live,) = io_associations(nvmfd_server)
        assert live["cntlid"] == assoc.cntlid
        silent_from = time.monotonic()
        wait_for(lambda: not io_associations(nvmfd_server), "nvmfd to drop the silent host",
                 timeout=30)
        dropped_after = time.monotonic() - silent_from
        # The host's sockets see the end: EOF or a TermReq, then EOF.
        sock = assoc.admin.driver.sock
        sock.settimeout(5)
        seen = b""
        try:
            while chunk := sock.recv(65536):
                seen += chunk
        except (ConnectionResetError, socket.timeout) as e:
            assert not isinstance(e, socket.timeout), "nvmfd left the admin connection open"
    finally:
        assoc.close()
    figures("3b silent host", kato_s=KATO_S, dropped_after_s=f"{dropped_after:.2f}",
            bytes_before_close=len(seen))
    assert dropped_after <= KATO_S + 1 + NOISE_S
