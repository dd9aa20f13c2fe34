"""Asynchronous Events in a session: namespaces added and removed at the target
appear and disappear without a reconnect (issue 15, item 6)."""

from __future__ import annotations

import time

import pytest

from nvmecontrol.backends.userspace.backend import UserspaceBackend

from .sessionkit import (NbdClient, NbdError, backing_file, cli_ok, connect, MiB, nbd_socket, pattern,
                         session, session_guard, session_log, start_target, wait_for)

assert session_guard  # autouse, imported for this module


@pytest.fixture
def target(nvmfd_factory, tmp_path):
    return start_target(nvmfd_factory, [backing_file(tmp_path / "ns1.img", 4 * MiB)])


def nsids(name: str = "nvmeu0") -> list[int]:
    return [ns.nsid for ns in session(name).namespaces]


def completion_list(name: str = "nvmeu0") -> list[int]:
    """What shell completion reads: the session's namespaces file."""
    return [int(line) for line in UserspaceBackend().paths(name).namespaces.read_text().split()]


@pytest.mark.parametrize("kato", ["120", "1"], ids=["quiet", "keep-alive-busy"])
def test_a_namespace_added_at_the_target_is_exported_and_one_removed_goes(target, tmp_path,
                                                                          kato):
    """With -k 1 a Keep Alive every half second shares the admin queue with the
    outstanding event request: its wait may take the event's completion first."""
    connect(target, "-k", kato)
    assert nsids() == [1]
    extra = backing_file(tmp_path / "ns2.img", 2 * MiB)
    with target.control() as ctl:
        ctl.request("ns-add", device=str(extra), nsid=2)
    wait_for(lambda: nsids() == [1, 2], "namespace 2 in the session's state (devlist)")
    assert completion_list() == [1, 2]
    assert "nvmeu0ns2" in cli_ok("devlist")
    # The new export works: write through it, find it in the file.
    c = NbdClient(nbd_socket(), export="ns2")
    try:
        assert c.write(4096, pattern(5, 1)) == 0
        assert c.flush() == 0
        assert extra.read_bytes()[4096:8192] == pattern(5, 1)

        with target.control() as ctl:
            ctl.request("ns-remove", nsid=2)
        wait_for(lambda: nsids() == [1], "namespace 2 gone from the session's state")
        assert completion_list() == [1]
        assert "nvmeu0ns2" not in cli_ok("devlist")
        # A client of the removed export is let go, not served.
        with pytest.raises((NbdError, OSError)):
            c.read(0, 4096)
    finally:
        c.close()
    log = session_log()
    assert "namespace attributes changed (2)" in log, log
    assert "export ns2 removed" in log, log
    # The association was never replaced for this.
    assert "connection lost" not in log, log
    cli_ok("disconnect", "nvmeu0")


def test_namespaces_are_read_again_on_reconnect(target, tmp_path, monkeypatch):
    """With the notice held back at the target, only the reconnect's rescan
    can find the new namespace."""
    from nvmecontrol.target.controller import Controller

    connect(target, "-r", "1")
    monkeypatch.setattr(Controller, "post_event", lambda self, kind: None)
    extra = backing_file(tmp_path / "ns3.img", 2 * MiB)
    with target.control() as ctl:
        ctl.request("ns-add", device=str(extra), nsid=3)
    time.sleep(1.5)  # what an event would have needed (it never comes)
    assert nsids() == [1]
    rc = cli_ok("reconnect", "nvmeu0")
    assert "reconnected" in rc
    assert nsids() == [1, 3]
    cli_ok("disconnect", "nvmeu0")
