"""The fault proxy itself: it passes a clean exchange through unchanged,
knows the queues and PDU types it forwards, and each action does what it
says, seen from the host library talking to nvmfd through it."""

from __future__ import annotations

import time

import pytest

from nvmecontrol.errors import ConnectionLost, NvmeControlError, PeerTimeout
from nvmecontrol.wire import nvm

from ..target.helpers import connect as host_connect
from ..target.helpers import run as run_cmd
from .proxy import C2H, H2C, Fault

DATA = bytes(range(256)) * 64  # 16 KiB: R2T and H2CData


class Via:
    """A stand-in handle: nvmfd's subsystem, reached through the proxy."""

    def __init__(self, target, proxy):
        self.subnqn = target.subnqn
        self.address = type(target.address)("127.0.0.1", proxy.port, f"127.0.0.1:{proxy.port}")


def write_read(assoc, timeout: float = 2.0):
    q = assoc.io[0]
    w, _ = run_cmd(q, nvm.build_write(1, 0, 32), write_data=DATA, timeout=timeout)
    r, got = run_cmd(q, nvm.build_read(1, 0, 32), read_len=len(DATA), timeout=timeout)
    return w.status, r.status, got


def test_clean_exchange_passes_through(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port)
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1, hdgst=True, ddgst=True)
    try:
        assert write_read(assoc) == (0, 0, DATA)
    finally:
        assoc.shutdown()
    assert proxy.connections == 2
    for pdu in ("ICReq", "CapsuleCmd", "H2CData"):
        assert proxy.pdus[(H2C, pdu)] >= 1, proxy.report()
    for pdu in ("ICResp", "CapsuleResp", "R2T", "C2HData"):
        assert proxy.pdus[(C2H, pdu)] >= 1, proxy.report()


def test_reset_at_the_first_c2hdata_of_the_io_queue(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port,
                          [Fault("reset", C2H, pdu="C2HData", queue="io")])
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1)
    try:
        # Identify on the admin queue has C2HData too: the fault must not fire there.
        with pytest.raises(ConnectionLost):
            write_read(assoc)
    finally:
        assoc.close()
    assert proxy.fired() == 1 and proxy.endings["reset"] == 1
    assert proxy.events[0].startswith("conn 1 (io) c2h C2HData")


def test_corrupt_data_digest_is_retryable(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port,
                          [Fault("corrupt", C2H, pdu="C2HData", queue="io", spot="data")])
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1, hdgst=True, ddgst=True)
    try:
        w, r, _got = write_read(assoc)
        assert (w, r) == (0, 0x22)  # Transient Transport Error
        assert write_read(assoc) == (0, 0, DATA)
    finally:
        assoc.shutdown()


def test_corrupt_header_digest_ends_the_connection(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port,
                          [Fault("corrupt", H2C, pdu="CapsuleCmd", queue="io", nth=2,
                                 spot="hdgst")])
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1, hdgst=True)
    try:
        with pytest.raises(ConnectionLost, match="header digest"):
            write_read(assoc)
    finally:
        assoc.close()
    assert proxy.pdus[(C2H, "C2HTermReq")] == 1


def test_truncate_at_a_byte(nvmfd_server, proxy_factory):
    # 130 bytes into the controller's stream: inside the first CapsuleResp after ICResp.
    proxy = proxy_factory(nvmfd_server.port, [Fault("truncate", C2H, at_byte=130,
                                                    connections=range(1))])
    with pytest.raises(NvmeControlError):
        host_connect(Via(nvmfd_server, proxy), num_io_queues=1, timeout_s=2.0)
    assert proxy.fired() == 1 and proxy.endings["fin"] >= 1


def test_drop_makes_the_command_time_out(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port,
                          [Fault("drop", C2H, pdu="CapsuleResp", queue="io", nth=2)])
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1)
    try:
        with pytest.raises(PeerTimeout):
            write_read(assoc, timeout=0.5)
    finally:
        assoc.close()


def test_delay_and_stall_hold_without_losing_anything(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port,
                          [Fault("delay", C2H, pdu="R2T", seconds=0.3),
                           Fault("stall", H2C, pdu="H2CData", seconds=0.3)])
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1)
    try:
        t0 = time.monotonic()
        assert write_read(assoc) == (0, 0, DATA)
        held = time.monotonic() - t0
    finally:
        assoc.shutdown()
    assert proxy.fired() == 2
    assert held >= 0.6  # both holds happened, one after the other (a lower bound only)


def test_freeze_holds_new_connections_until_thaw(nvmfd_server, proxy_factory):
    proxy = proxy_factory(nvmfd_server.port)
    proxy.freeze()
    with pytest.raises(PeerTimeout):
        host_connect(Via(nvmfd_server, proxy), timeout_s=0.5)
    proxy.thaw()
    assoc = host_connect(Via(nvmfd_server, proxy), num_io_queues=1)
    try:
        assert write_read(assoc) == (0, 0, DATA)
    finally:
        assoc.shutdown()


def test_unparseable_stream_is_forwarded_raw(nvmfd_server, proxy_factory):
    """PLEN below 8 switches the direction to raw forwarding: nvmfd sees the
    bytes as sent and answers with its own protocol error."""
    import socket

    proxy = proxy_factory(nvmfd_server.port)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        s.sendall(bytes([0, 0, 128, 0, 3, 0, 0, 0]) + bytes(120))
        got = s.recv(4096)
    finally:
        s.close()
    assert got[:1] == b"\x03"  # C2HTermReq
    assert not [k for k in proxy.pdus if k[0] == H2C]  # the host side was not parsed
