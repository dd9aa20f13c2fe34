"""``nvmecontrol resv`` on a userspace session: the commands travel on its first I/O queue.

A second host competes by address (a one-shot association); the session
keeps serving NBD meanwhile, and the reservation governs what its I/O may do.
"""

from __future__ import annotations

import json

from nvmecontrol.cli import exitcodes as X

from .sessionkit import (HOST, HOSTID, OTHER_HOST, OTHER_HOSTID, NbdClient, cli, cli_ok,
                         connect, nbd_socket, session_guard, start_target)

assert session_guard  # autouse, imported for this module


def other(target, *args):
    """resv as the other host, by address."""
    return cli("resv", *args, "-q", OTHER_HOST, "-I", OTHER_HOSTID, "-n", "1",
               f"127.0.0.1:{target.port}", target.subnqn)


def test_session_registers_acquires_and_loses_to_a_preempt(nvmfd_factory, session_guard):
    target = start_target(nvmfd_factory, ["mem:4M"])
    connect(target)
    assert cli("resv", "register", "-k", "0x5e55", "nvmeu0ns1") == (0, "", "")
    assert cli("resv", "acquire", "-c", "0x5e55", "-t", "1", "nvmeu0ns1") == (0, "", "")
    # The session controller with -n names the same namespace.
    st = json.loads(cli_ok("resv", "report", "-e", "-o", "json", "-n", "1", "nvmeu0"))
    assert (st["rtype"], st["regctl"]) == (1, 1)
    (holder,) = st["controllers"]
    assert (holder["hostid"], holder["rkey"], holder["holder"]) == \
        (HOSTID.replace("-", ""), 0x5E55, True)
    rc, out, err = cli("resv", "report", "-e", "nvmeu0ns1")
    assert rc == 0 and "  Reservation Key:                0x00005e55\n" in out, err

    # The other host sees the session's reservation and cannot write.
    assert other(target, "register", "-k", "0x0be")[0] == 0
    rc, _, err = other(target, "acquire", "-c", "0x0be", "-t", "1")
    assert rc == X.EX_IOERR and "Reservation Conflict" in err
    # The session's own NBD writes pass (it holds Write Exclusive).
    nbd = NbdClient(nbd_socket(), "ns1")
    try:
        assert nbd.write(0, b"\x5a" * 4096) == 0
        assert nbd.read(0, 4096) == b"\x5a" * 4096
    finally:
        nbd.close()

    # A wrong key from the session is a decoded status, not an I/O error.
    rc, out, err = cli("resv", "release", "-c", "0xbad", "-t", "1", "nvmeu0ns1")
    assert (rc, out) == (X.EX_IOERR, "")
    assert "Reservation Release failed: Reservation Conflict" in err

    # The other host preempts the session; the session's writes now conflict.
    assert other(target, "acquire", "-c", "0x0be", "-p", "0x5e55", "-t", "1", "-a", "1")[0] == 0
    st = json.loads(cli_ok("resv", "report", "-e", "-o", "json", "nvmeu0ns1"))
    assert [c["hostid"] for c in st["controllers"]] == [OTHER_HOSTID.replace("-", "")]
    nbd = NbdClient(nbd_socket(), "ns1")
    try:
        assert nbd.write(0, b"\xa5" * 4096) != 0  # Reservation Conflict, as an NBD error
        assert nbd.read(0, 4096) == b"\x5a" * 4096  # Write Exclusive: reads still pass
    finally:
        nbd.close()
    rc, _, err = cli("resv", "register", "-c", "0x5e55", "-r", "1", "nvmeu0ns1")
    assert rc == X.EX_IOERR  # preempted: no longer registered
    cli_ok("disconnect", "nvmeu0")


def test_session_target_errors(nvmfd_factory, session_guard):
    target = start_target(nvmfd_factory, ["mem:4M"])
    connect(target)
    rc, _, err = cli("resv", "report", "-e", "nvmeu0")
    assert rc == X.EX_USAGE and "name a namespace" in err
    rc, _, err = cli("resv", "report", "-e", "-n", "2", "nvmeu0ns1")
    assert rc == X.EX_USAGE and "names namespace 1, -n says 2" in err
    rc, _, err = cli("resv", "report", "-e", "nvmeu0ns7")
    assert rc == X.EX_IOERR and "Invalid Namespace" in err
    rc, _, err = cli("resv", "report", "-e", "nvmeu5ns1")
    assert rc == X.EX_NOINPUT
    cli_ok("disconnect", "nvmeu0")
    assert HOST  # the session's host (sessionkit's default identity)
