"""A session on a write-protected namespace exports it read-only over NBD."""

from __future__ import annotations

from nvmecontrol.nbd import protocol as N

from .sessionkit import NbdClient, cli_ok, connect, nbd_socket, session_guard, start_target

assert session_guard  # autouse, imported for this module


def test_write_protected_namespace_is_a_read_only_export(nvmfd_factory):
    target = start_target(nvmfd_factory, ["mem:4M", "mem:4M"])
    with target.control() as c:
        c.request("ns-remove", nsid=2)
        c.request("ns-add", device="mem:4M", nsid=2, read_only=True)
    connect(target)
    ro, rw = NbdClient(nbd_socket(), "ns2"), NbdClient(nbd_socket(), "ns1")
    try:
        assert ro.flags & N.TransmissionFlag.READ_ONLY
        assert not rw.flags & N.TransmissionFlag.READ_ONLY
        assert ro.write(0, b"x" * 4096) == N.EPERM
        assert ro.read(0, 4096) == bytes(4096)
        assert rw.write(0, b"y" * 4096) == 0
    finally:
        ro.close()
        rw.close()
    cli_ok("disconnect", "nvmeu0")
