"""The guest kernel's NBD driver against our NBD bridge.

1. A session on the host (to nvmfd) serves its exports on TCP as well
   (``--nbd-listen``); in the guest, Debian's nbd-client 3.24 attaches one
   to /dev/nbd0 through the kernel's nbd module (qemu delivers the guest's
   10.0.2.2 to the host's loopback, so listening on 127.0.0.1 is enough).
2. A session inside the guest, attached by nvmecontrol itself (the default):
   ``connect --backend nbd`` runs nbd-client on the session's Unix socket.

Either way the bytes are checked at both ends: what the guest wrote through
/dev/nbd0 is read back in the guest, over NBD from the host with nbdcopy,
and in nvmfd's namespace memory.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess

import pytest

from nvmecontrol.cli.app import main

from .guest_cli import clear_guest_hosts
from .sessions import end_sessions, need

HOST_FROM_GUEST = "10.0.2.2"
HOSTID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
WHO = ("-q", HOSTNQN, "-I", HOSTID)
MIB = 1 << 20
SIZE = 2 * MIB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nvmfd_bytes(srv, size: int) -> bytes:
    stored = bytearray(size)
    srv.server.subsystems[srv.subnqn].namespaces[1].backend.read_into(memoryview(stored), 0)
    return bytes(stored)


@pytest.fixture
def clean(linux_guest, guest_cli):
    """Afterwards: no sessions, controllers or /dev/nbdX in the guest, no sessions on the host."""
    clear_guest_hosts(linux_guest)
    yield guest_cli
    clear_guest_hosts(linux_guest, guest_cli)
    end_sessions()


def guest_dd(guest, dev: str, pattern_path: str) -> str:
    """Write the pattern to ``dev`` with O_DIRECT, read it back, compare; the md5."""
    res = guest.run(
        f"set -e\n"
        f"dd if={pattern_path} of={dev} bs=1M oflag=direct status=none\n"
        f"dd if={dev} of=/tmp/nbd.back bs=1M count={SIZE // MIB} iflag=direct status=none\n"
        f"cmp {pattern_path} /tmp/nbd.back\n"
        f"md5sum < /tmp/nbd.back", timeout=120)
    assert res.ok, res.stdout + res.stderr
    return res.stdout.split()[0]


def test_guest_nbd_client_on_host_session(capsys, linux_guest, nvmfd_factory, clean, tmp_path):
    need("nbdcopy", "nbd-client")
    srv = nvmfd_factory(namespaces=["mem:8M"])
    port = free_port()
    rc = main(["connect", "--backend", "nbd", "--no-attach", "--nbd-listen", f"127.0.0.1:{port}",
               *WHO, f"127.0.0.1:{srv.port}", srv.subnqn])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith(f"nvmeu0: connected to {srv.subnqn} at 127.0.0.1:{srv.port}\n"), out

    # nbd-client 3.24: nbd-client HOST PORT DEVICE -N EXPORT (newstyle, export by name).
    res = linux_guest.run(f"nbd-client {HOST_FROM_GUEST} {port} /dev/nbd0 -N ns1", timeout=60)
    assert res.ok, res.stdout + res.stderr
    assert linux_guest.run("cat /sys/block/nbd0/size", check=True).stdout == f"{8 * MIB // 512}\n"
    assert linux_guest.run("test -e /sys/block/nbd0/pid").ok

    pattern = tmp_path / "pattern"
    data = os.urandom(SIZE)
    pattern.write_bytes(data)
    digest = guest_dd(linux_guest, "/dev/nbd0", linux_guest.guest_path(pattern))
    assert digest == hashlib.md5(data).hexdigest()
    # The same export read on the host over NBD/TCP, and nvmfd's memory behind it.
    res = subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{port}/ns1", "-"], capture_output=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout[:SIZE] == data and len(res.stdout) == 8 * MIB
    assert nvmfd_bytes(srv, SIZE) == data

    res = linux_guest.run("nbd-client -d /dev/nbd0", timeout=60)
    assert res.ok, res.stdout + res.stderr
    assert not linux_guest.run("test -e /sys/block/nbd0/pid").ok
    assert linux_guest.run("cat /sys/block/nbd0/size", check=True).stdout == "0\n"


def test_session_inside_guest_attaches_nbd(linux_guest, nvmfd_factory, clean, tmp_path):
    """connect --backend nbd in the guest: /dev/nbdX attached, listed, detached by disconnect."""
    need("nbd-client")
    cli = clean
    srv = nvmfd_factory(namespaces=["mem:8M"])
    addr = f"{HOST_FROM_GUEST}:{srv.port}"
    res = cli("connect", "--backend", "nbd", *WHO, addr, srv.subnqn)
    assert res.ok, res.stderr
    m = re.fullmatch(rf"nvmeu0: connected to {re.escape(srv.subnqn)} at {re.escape(addr)}\n"
                     r"  nvmeu0ns1: (/dev/nbd\d+) (nbd\+unix:///ns1\?socket=\S+)\n", res.stdout)
    assert m, res.stdout + res.stderr
    dev, uri = m.groups()
    nbd = dev.rsplit("/", 1)[1]
    assert linux_guest.run(f"cat /sys/block/{nbd}/size", check=True).stdout == f"{8 * MIB // 512}\n"

    res = cli("devlist")
    assert res.ok, res.stderr
    assert res.stdout == (f"nvmeu0: nvmfd (connected via TCP {addr})\n"
                          f"   nvmeu0ns1 (8MB) {dev} {uri}\n")

    pattern = tmp_path / "pattern"
    data = os.urandom(SIZE)
    pattern.write_bytes(data)
    digest = guest_dd(linux_guest, dev, linux_guest.guest_path(pattern))
    assert digest == hashlib.md5(data).hexdigest()
    assert nvmfd_bytes(srv, SIZE) == data

    res = cli("disconnect", "nvmeu0")
    assert res.ok and res.stdout == "nvmeu0: disconnected\n", res.stderr
    assert not linux_guest.run(f"test -e /sys/block/{nbd}/pid").ok
    assert linux_guest.run(f"cat /sys/block/{nbd}/size", check=True).stdout == "0\n"
    res = cli("devlist", "-o", "json")
    assert res.ok and '"controllers": []' in res.stdout, res.stdout
