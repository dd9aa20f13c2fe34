"""A protocol error names the peer it came from (issue 13, "Messages")."""

from __future__ import annotations

import socket
import threading

import pytest

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.transport.tcp import TcpQueuePair
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.qpair import ControllerQueuePair


def serve_once(answer) -> int:
    """A one-connection listener on 127.0.0.1 that runs ``answer(conn)``; its port."""
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]

    def run():
        with lst:
            conn, _ = lst.accept()
            with conn:
                answer(conn)
                try:
                    conn.recv(4096)  # until the host hangs up
                except OSError:
                    pass

    threading.Thread(target=run, daemon=True).start()
    return port


def test_garbage_before_icresp_names_the_peer_and_suspects_the_service():
    port = serve_once(lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + bytes(200)))
    with pytest.raises(PeerProtocolError) as info:
        TcpQueuePair.connect_host([(socket.AF_INET, ("127.0.0.1", port))], timeout=5,
                                  queue_size=32)
    assert str(info.value) == (f"invalid PDU header: unknown PDU type 0x53 from 127.0.0.1:{port}: "
                               "not an NVMe/TCP controller?")


def test_a_bad_pdu_after_icresp_names_the_peer_only():
    def answer(conn):
        ctrl = ControllerQueuePair()
        data = conn.recv(128)
        ctrl.decoder.feed(data)
        ctrl.receive()
        conn.sendall(P.join(ctrl.take_outgoing()))  # ICResp
        conn.sendall(bytes([0x53, 0, 8, 0, 8, 0, 0, 0]))

    port = serve_once(answer)
    with pytest.raises(PeerProtocolError) as info:
        # The bad PDU may come in the receive that brought the ICResp.
        tq = TcpQueuePair.connect_host([(socket.AF_INET, ("127.0.0.1", port))], timeout=5,
                                       queue_size=32)
        tq.poll()
    assert str(info.value) == f"invalid PDU header: unknown PDU type 0x53 from 127.0.0.1:{port}"


def test_a_bad_field_in_a_real_icresp_gets_no_hint():
    """PFV 1 in an ICResp is an NVMe/TCP controller speaking another version."""
    import struct
    icresp = struct.pack("<BBBBI", 1, 0, 128, 0, 128) + struct.pack("<HBBI", 1, 0, 0, 0x20000)
    port = serve_once(lambda c: c.sendall(icresp + bytes(112)))
    with pytest.raises(PeerProtocolError) as info:
        TcpQueuePair.connect_host([(socket.AF_INET, ("127.0.0.1", port))], timeout=5,
                                  queue_size=32)
    assert str(info.value) == f"unsupported PDU format version 1 from 127.0.0.1:{port}"
