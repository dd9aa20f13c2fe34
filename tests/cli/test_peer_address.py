"""Messages name the peer as the user wrote it, an IPv6 scope included (issue 13, "Messages").

A link-local address means nothing without its interface, and getpeername()
and getaddrinfo() hand the scope back as an index beside the address text.
"""

from __future__ import annotations

import socket
import threading

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.transport.address import format_sockaddr

from .clikit import cli


def _loopback() -> tuple[str, int]:
    try:
        return "lo", socket.if_nametoindex("lo")
    except OSError:
        pytest.skip("no interface named lo")


def _link_local() -> tuple[str, str]:
    """(address, interface) of a link-local IPv6 address of this machine, else skip."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        rows = []
    for row in rows:
        if row[0].startswith("fe80"):
            return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(row[0])), row[5]
    pytest.skip("no link-local IPv6 address here")


def test_format_sockaddr_puts_the_scope_back():
    name, index = _loopback()
    assert format_sockaddr(("fe80::1", 4420, 0, index)) == f"[fe80::1%{name}]:4420"
    assert format_sockaddr(("fe80::1%eth9", 4420, 0, 77)) == "[fe80::1%eth9]:4420"
    assert format_sockaddr(("::1", 4420, 0, 0)) == "[::1]:4420"
    assert format_sockaddr(("127.0.0.1", 8009)) == "127.0.0.1:8009"


def test_a_failed_dial_keeps_the_scope(capsys):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    _loopback()
    rc, out, err = cli(capsys, "discover", "[fe80::1%lo]:1")
    assert rc == X.EX_NOHOST and out == ""
    assert err.startswith("nvmecontrol: cannot connect to [fe80::1%lo]:1: ")


def test_a_pdu_error_names_a_scoped_peer(capsys):
    addr, ifname = _link_local()
    lst = socket.socket(socket.AF_INET6)
    try:
        lst.bind((addr, 0, 0, socket.if_nametoindex(ifname)))
    except OSError as e:
        lst.close()
        pytest.skip(f"cannot listen on {addr}%{ifname}: {e}")
    lst.listen(1)
    port = lst.getsockname()[1]

    def answer():
        with lst:
            conn, _ = lst.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + bytes(200))
                try:
                    conn.recv(4096)  # until the host hangs up
                except OSError:
                    pass

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    rc, out, err = cli(capsys, "discover", f"[{addr}%{ifname}]:{port}")
    t.join(10)
    assert rc == X.EX_PROTOCOL and out == ""
    assert err == (f"nvmecontrol: invalid PDU header: unknown PDU type 0x53 from "
                   f"[{addr}%{ifname}]:{port}: not an NVMe/TCP controller?\n")
