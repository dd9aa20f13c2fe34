"""One nvmfd namespace shared by two of our sessions (two host NQNs), governed by a
reservation taken with ``nvmecontrol resv``: what each NBD export may do."""

from __future__ import annotations

import json

from nvmecontrol.nbd import protocol as N

from .sessionkit import (HOSTID, OTHER_HOST, OTHER_HOSTID, NbdClient, cli, cli_ok, connect,
                         nbd_socket, session_guard, sessions, start_target)

assert session_guard  # autouse, imported for this module

BLOCK = 4096
# What the bridge hands an NBD client for Reservation Conflict: EPERM, NBD's
# "not allowed" (the kernel host's block layer says EBADE, which NBD cannot
# carry), never EIO, which would read as a failing disk.
REFUSED = (N.EPERM,)


def pattern(tag: int) -> bytes:
    return bytes([tag]) * BLOCK


def test_write_exclusive_between_two_sessions(nvmfd_factory, session_guard):
    target = start_target(nvmfd_factory, ["mem:4M"])
    a = connect(target)
    b = connect(target, host=OTHER_HOST, hostid=OTHER_HOSTID)
    assert (a["name"], b["name"]) == ("nvmeu0", "nvmeu1")
    nbd_a, nbd_b = NbdClient(nbd_socket("nvmeu0"), "ns1"), NbdClient(nbd_socket("nvmeu1"), "ns1")
    try:
        # Before any reservation both write, each sees the other's data.
        assert nbd_a.write(0, pattern(0xA0)) == 0
        assert nbd_b.write(BLOCK, pattern(0xB0)) == 0
        assert nbd_a.read(BLOCK, BLOCK) == pattern(0xB0)

        # A registers and takes Write Exclusive; B registers too (a registrant is
        # no holder: Write Exclusive still refuses its writes).
        assert cli("resv", "register", "-k", "0xa", "nvmeu0ns1") == (0, "", "")
        assert cli("resv", "register", "-k", "0xb", "nvmeu1ns1") == (0, "", "")
        assert cli("resv", "acquire", "-c", "0xa", "-t", "1", "nvmeu0ns1") == (0, "", "")
        st = json.loads(cli_ok("resv", "report", "-e", "-o", "json", "nvmeu1ns1"))
        assert (st["rtype"], st["regctl"]) == (1, 2)
        holder = {c["hostid"]: c["holder"] for c in st["controllers"]}
        assert holder == {HOSTID.replace("-", ""): True, OTHER_HOSTID.replace("-", ""): False}

        # B: writes refused (nothing written), reads served; A: writes served.
        assert nbd_b.write(0, pattern(0xB1)) in REFUSED
        assert nbd_b.write(2 * BLOCK, pattern(0xB1)) in REFUSED
        assert nbd_b.read(0, BLOCK) == pattern(0xA0)
        assert nbd_a.write(0, pattern(0xA1)) == 0
        assert nbd_b.read(0, BLOCK) == pattern(0xA1)
        assert nbd_a.read(2 * BLOCK, BLOCK) == bytes(BLOCK)  # B's refused write left nothing
        # A refused write is an I/O error for that request only: B's session serves on.
        assert {n: (i.state, i.connected) for n, i in sessions().items()} == \
            {"nvmeu0": ("live", True), "nvmeu1": ("live", True)}

        # A releases: B writes again, and A reads what B wrote.
        assert cli("resv", "release", "-c", "0xa", "-t", "1", "nvmeu0ns1") == (0, "", "")
        assert json.loads(cli_ok("resv", "report", "-e", "-o", "json", "nvmeu0ns1"))["rtype"] == 0
        assert nbd_b.write(2 * BLOCK, pattern(0xB2)) == 0
        assert nbd_a.read(2 * BLOCK, BLOCK) == pattern(0xB2)
        assert nbd_a.read(0, 2 * BLOCK) == pattern(0xA1) + pattern(0xB0)
    finally:
        nbd_a.close()
        nbd_b.close()
    cli_ok("disconnect", "nvmeu0")
    cli_ok("disconnect", "nvmeu1")
