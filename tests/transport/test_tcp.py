"""Blocking TCP transport: partial sends, errors on the socket, TermReq on protocol errors.

Socket pairs stand in for the network where the peer's behaviour is scripted
byte by byte; a loopback listener is used where real TCP matters (TCP_NODELAY,
refused connections).  Timeouts are short and every wait is bounded.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from nvmecontrol.errors import ConnectError, ConnectionLost, PeerProtocolError, PeerTimeout
from nvmecontrol.transport import tcp as T
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import SQE
from nvmecontrol.wire.qpair import (Command, Completion, ControllerQueuePair, Established,
                                    HostQueuePair)


def ch(ptype, flags, hlen, pdo, plen) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


ICREQ = ch(0x00, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 0, 0, 0) + bytes(112)
ICRESP = ch(0x01, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 0, 0, 0x20000) + bytes(112)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def recv_until_eof(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(65536):
        out += chunk
    return bytes(out)


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def established_host(sock: socket.socket, peer: socket.socket, timeout=5.0) -> T.TcpQueuePair:
    tq = T.TcpQueuePair(sock, HostQueuePair(queue_size=8), timeout=timeout)
    tq.qp.start()
    tq.flush()
    assert recv_exact(peer, 128) == ICREQ
    peer.sendall(ICRESP)
    assert [type(e) for e in tq.poll(time.monotonic() + 5)] == [Established]
    return tq


def established_ctrl(sock: socket.socket, peer: socket.socket) -> T.TcpQueuePair:
    tq = T.TcpQueuePair(sock, ControllerQueuePair(), timeout=5)
    peer.sendall(ICREQ)
    assert [type(e) for e in tq.poll(time.monotonic() + 5)] == [Established]
    assert recv_exact(peer, 128) == ICRESP
    return tq


# --- sendmsg_all ---------------------------------------------------------------------

class RecordingSocket:
    """Passes sendmsg through and records (buffers, bytes asked, bytes sent)."""

    def __init__(self, sock):
        self.sock = sock
        self.calls = []

    def sendmsg(self, bufs):
        n = self.sock.sendmsg(bufs)
        self.calls.append((len(bufs), sum(len(b) for b in bufs), n))
        return n


def test_sendmsg_all_partial_sends():
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.settimeout(10)  # non-blocking underneath: the kernel takes what fits
        b.settimeout(10)
        payload = bytes(range(256)) * 4096  # 1 MiB
        view = memoryview(payload)
        buffers, pos, size = [], 0, 1
        while pos < len(payload):  # 1..700-byte pieces of every kind, >IOV_MAX of them
            piece = view[pos:pos + size]
            buffers.append([bytes(piece), bytearray(piece), piece][len(buffers) % 3])
            pos += len(piece)
            size = size * 7 % 701 + 1
        assert len(buffers) > T._IOV_MAX
        received = bytearray()

        def reader():
            while len(received) < len(payload):
                chunk = b.recv(1500)
                if not chunk:
                    break
                received.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        rec = RecordingSocket(a)
        T.sendmsg_all(rec, buffers)
        t.join(10)
        assert not t.is_alive()
        assert bytes(received) == payload
        assert any(sent < asked for _, asked, sent in rec.calls), "no partial send happened"
        assert all(nbufs <= T._IOV_MAX for nbufs, _, _ in rec.calls)
        assert sum(sent for _, _, sent in rec.calls) == len(payload)
    finally:
        a.close()
        b.close()


def test_sendmsg_all_partial_inside_a_buffer():
    """A fake socket that sends 3 bytes per call: resumption mid-buffer keeps order."""

    class Slow:
        def __init__(self):
            self.out = bytearray()

        def sendmsg(self, bufs):
            data = b"".join(bytes(x) for x in bufs)[:3]
            self.out += data
            return len(data)

    s = Slow()
    bufs = [b"abcde", bytearray(b"f"), memoryview(b"ghijklmnop")[2:], b"q"]
    T.sendmsg_all(s, bufs)
    assert bytes(s.out) == b"abcdefijklmnopq"


def test_sendmsg_all_skips_empty_buffers(sockpair):
    a, b = sockpair
    done = threading.Event()

    def send():
        T.sendmsg_all(a, [b"", b"abc", b"", memoryview(b"")])
        T.sendmsg_all(a, [b""])
        T.sendmsg_all(a, [])
        done.set()

    t = threading.Thread(target=send, daemon=True)
    t.start()
    assert done.wait(5), "sendmsg_all looped on empty buffers"
    assert recv_exact(b, 3) == b"abc"


def test_sendmsg_all_with_multibyte_memoryview(sockpair):
    a, b = sockpair
    words = memoryview(bytearray(struct.pack("<4I", 1, 2, 3, 4))).cast("I")
    T.sendmsg_all(a, [words])
    assert recv_exact(b, 16) == struct.pack("<4I", 1, 2, 3, 4)


# --- TcpQueuePair over a socket pair -----------------------------------------------------

def test_host_round_trip(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    cid = tq.qp.submit(SQE(opc=0x18))
    tq.flush()
    cmd = recv_exact(b, 72)
    assert cmd[0] == 0x04 and struct.unpack_from("<H", cmd, 10)[0] == cid
    b.sendall(ch(0x05, 0, 24, 0, 24) + struct.pack("<IIHHHH", 7, 0, 1, 0, cid, 0))
    (done,) = tq.poll(time.monotonic() + 5)
    assert isinstance(done, Completion) and done.cid == cid and done.cqe.dw0 == 7


def test_poll_assembles_pdu_split_across_reads(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    cid = tq.qp.submit(SQE(opc=0x18))
    tq.flush()
    resp = ch(0x05, 0, 24, 0, 24) + struct.pack("<IIHHHH", 0, 0, 1, 0, cid, 0)
    b.sendall(resp[:10])
    assert tq.poll(time.monotonic() + 5) == []
    b.sendall(resp[10:])
    assert [e.cid for e in tq.poll(time.monotonic() + 5)] == [cid]


@pytest.mark.parametrize("bad,fes,fei", [
    (ch(0x05, 0, 25, 0, 25) + bytes(17), 1, 2),  # CapsuleResp with a wrong HLEN
    (ch(0x04, 0, 72, 0, 72) + bytes(64), 1, 0),  # a command sent to the host
    (ch(0x01, 0, 128, 0, 128) + bytes(120), 2, 0),  # a second ICResp
    (ch(0x07, 0x04, 24, 24, 25) + struct.pack("<HHII4x", 0, 0, 0, 1) + b"x", 1, 8),  # unknown CID
])
def test_protocol_error_sends_termreq_and_raises(sockpair, bad, fes, fei):
    a, b = sockpair
    tq = established_host(a, b)
    b.sendall(bad)
    with pytest.raises(PeerProtocolError) as ei:
        tq.poll(time.monotonic() + 5)
    assert (ei.value.fes, ei.value.fei) == (fes, fei)
    term = recv_until_eof(b)  # the TermReq, then the connection closes
    assert term[0] == 0x02 and term[2] == 24 and term[3] == 0
    plen = struct.unpack_from("<I", term, 4)[0]
    assert plen == len(term) and 24 <= plen <= 152
    assert struct.unpack_from("<HI", term, 8) == (fes, fei)
    assert bad.startswith(term[24:])  # error data, if any, is the offending header
    assert tq.qp.closed and tq.sock.fileno() == -1


def test_controller_protocol_error_sends_c2h_termreq(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    b.sendall(ch(0x05, 0, 24, 0, 24) + bytes(16))  # a response sent to the controller
    with pytest.raises(PeerProtocolError):
        tq.poll(time.monotonic() + 5)
    term = recv_until_eof(b)
    assert term[0] == 0x03 and struct.unpack_from("<HI", term, 8) == (1, 0)


def test_controller_round_trip(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    b.sendall(P.join(P.encode_capsule_cmd(bytes([0x18, 0x40, 3, 0]) + bytes(60))))
    (cmd,) = tq.poll(time.monotonic() + 5)
    assert isinstance(cmd, Command) and cmd.cid == 3
    tq.qp.respond(3)
    tq.flush()
    assert recv_exact(b, 24)[:2] == b"\x05\x00"


def test_termreq_from_peer_is_connection_lost(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    b.sendall(ch(0x03, 0, 24, 0, 24) + struct.pack("<HI", 3, 0) + bytes(10))
    with pytest.raises(ConnectionLost, match="header digest error"):
        tq.poll(time.monotonic() + 5)


def test_peer_close_is_connection_lost(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    b.close()
    with pytest.raises(ConnectionLost, match="closed"):
        tq.poll(time.monotonic() + 5)
    assert tq.qp.closed


def test_peer_close_mid_pdu_is_connection_lost(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    b.sendall(ch(0x05, 0, 24, 0, 24)[:6])
    b.close()
    with pytest.raises(ConnectionLost):
        while True:
            tq.poll(time.monotonic() + 5)


def test_no_answer_is_peer_timeout_within_deadline(sockpair):
    a, b = sockpair
    tq = established_host(a, b, timeout=5.0)
    start = time.monotonic()
    with pytest.raises(PeerTimeout):
        tq.poll(start + 0.2)
    elapsed = time.monotonic() - start
    assert 0.15 <= elapsed < 2.0
    # What was left of the deadline does not stick to the socket.
    assert tq.sock.gettimeout() == 5.0


def test_expired_deadline_is_immediate_timeout(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    start = time.monotonic()
    with pytest.raises(PeerTimeout):
        tq.poll(start - 1)
    assert time.monotonic() - start < 0.5


def test_send_to_closed_peer_is_connection_lost(sockpair):
    a, b = sockpair
    tq = established_host(a, b)
    b.close()
    tq.qp.submit(SQE(opc=0x18), write_data=bytes(4096))
    with pytest.raises(ConnectionLost):
        for _ in range(100):  # the first sends may still be buffered
            tq.qp.outgoing.append(bytes(65536))
            tq.flush()


# --- real TCP on loopback ----------------------------------------------------------------

@pytest.fixture
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(5)
    yield srv
    srv.close()


def test_dial_sets_tcp_nodelay(listener):
    port = listener.getsockname()[1]
    s = T.dial([(socket.AF_INET, ("127.0.0.1", port))], timeout=5)
    try:
        conn, _ = listener.accept()
        conn.close()
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        s.close()


def closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_dial_closed_port_is_connect_error():
    port = closed_port()
    with pytest.raises(ConnectError) as ei:
        T.dial([(socket.AF_INET, ("127.0.0.1", port))], timeout=5)
    msg = str(ei.value)
    assert f"127.0.0.1:{port}" in msg
    assert "refused" in msg.lower()


def test_dial_tries_every_address(listener):
    port = listener.getsockname()[1]
    bad = closed_port()
    s = T.dial([(socket.AF_INET, ("127.0.0.1", bad)), (socket.AF_INET, ("127.0.0.1", port))],
               timeout=5)
    s.close()


def test_dial_without_addresses():
    with pytest.raises(ConnectError, match="no address"):
        T.dial([], timeout=1)


def test_connect_host_over_loopback(listener):
    """Host and controller TcpQueuePairs over real TCP: IC exchange and one command."""
    port = listener.getsockname()[1]
    result = {}

    def controller():
        conn, _ = listener.accept()
        tq = T.TcpQueuePair(conn, ControllerQueuePair(allow_hdgst=True, allow_ddgst=True),
                            timeout=5)
        try:
            deadline = time.monotonic() + 5
            events = []
            while not any(isinstance(e, Command) for e in events):
                events += tq.poll(deadline)
            cmd = [e for e in events if isinstance(e, Command)][0]
            result["data"] = bytes(cmd.data)
            result["nodelay"] = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            tq.qp.respond(cmd.cid, dw0=0xABCD)
            tq.flush()
        finally:
            tq.close()

    t = threading.Thread(target=controller, daemon=True)
    t.start()
    tq = T.TcpQueuePair.connect_host([(socket.AF_INET, ("127.0.0.1", port))], timeout=5,
                                     queue_size=4, hdgst=True, ddgst=True)
    try:
        assert tq.established.hdgst and tq.established.ddgst
        assert tq.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        cid = tq.qp.submit(SQE(opc=0x01), write_data=b"hello" * 100)
        tq.flush()
        events = tq.poll(time.monotonic() + 5)
        assert [(e.cid, e.cqe.dw0) for e in events] == [(cid, 0xABCD)]
    finally:
        tq.close()
    t.join(5)
    assert result["data"] == b"hello" * 100


def test_connect_host_peer_closes_during_ic(listener):
    port = listener.getsockname()[1]

    def rude():
        conn, _ = listener.accept()
        recv_exact(conn, 128)
        conn.close()

    t = threading.Thread(target=rude, daemon=True)
    t.start()
    with pytest.raises(ConnectionLost):
        T.TcpQueuePair.connect_host([(socket.AF_INET, ("127.0.0.1", port))], timeout=5,
                                    queue_size=4)
    t.join(5)


def test_connect_host_ic_timeout(listener):
    port = listener.getsockname()[1]
    held = []

    def silent():
        conn, _ = listener.accept()
        held.append(conn)  # keep it open, say nothing

    t = threading.Thread(target=silent, daemon=True)
    t.start()
    start = time.monotonic()
    with pytest.raises(PeerTimeout):
        T.TcpQueuePair.connect_host([(socket.AF_INET, ("127.0.0.1", port))], timeout=0.3,
                                    queue_size=4)
    assert time.monotonic() - start < 3
    t.join(5)
    for c in held:
        c.close()


# --- the data path's receive loop (serve) -----------------------------------------------

def test_serve_runs_the_batch_callback_until_it_says_stop(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    seen = []

    def on_batch():
        seen.extend(ev.cid for ev in tq.qp.receive())
        return len(seen) < 3

    cmds = b"".join(P.join(P.encode_capsule_cmd(bytes([0x18, 0x40, cid, 0]) + bytes(60)))
                    for cid in (1, 2, 3))
    b.sendall(cmds[:100])  # the first command whole, part of the second
    threading.Timer(0.05, b.sendall, (cmds[100:],)).start()
    tq.serve(on_batch)
    assert seen == [1, 2, 3]


def test_serve_answers_a_protocol_error_with_termreq(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    b.sendall(ch(0x05, 0, 24, 0, 24) + bytes(16))  # a response sent to the controller
    with pytest.raises(PeerProtocolError):
        tq.serve(lambda: tq.qp.receive() and None)
    tq.close()
    term = recv_until_eof(b)
    assert term[0] == 0x03 and struct.unpack_from("<HI", term, 8) == (1, 0)


def test_serve_end_of_stream_is_connection_lost(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    b.close()
    with pytest.raises(ConnectionLost, match="closed"):
        tq.serve(lambda: None)


def test_serve_deadline_is_peer_timeout(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    start = time.monotonic()
    with pytest.raises(PeerTimeout):
        tq.serve(lambda: None, deadline=lambda: start + 0.2)
    assert time.monotonic() - start < 5


def test_serve_deadline_can_be_lifted(sockpair):
    """A deadline that becomes None (nvmfd after Connect) no longer limits the wait."""
    a, b = sockpair
    tq = established_ctrl(a, b)
    state = {"limit": time.monotonic() + 0.2, "batches": 0}

    def on_batch():
        tq.qp.receive()
        state["batches"] += 1
        state["limit"] = None
        return state["batches"] < 2

    b.sendall(P.join(P.encode_capsule_cmd(bytes([0x18, 0x40, 1, 0]) + bytes(60))))
    threading.Timer(0.5, b.sendall,
                    (P.join(P.encode_capsule_cmd(bytes([0x18, 0x40, 2, 0]) + bytes(60))),)).start()
    tq.serve(on_batch, deadline=lambda: state["limit"])
    assert state["batches"] == 2 and tq.sock.gettimeout() == tq.timeout


def test_abort_wakes_a_blocked_serve(sockpair):
    a, b = sockpair
    tq = established_ctrl(a, b)
    threading.Timer(0.1, tq.abort).start()
    with pytest.raises(ConnectionLost):
        tq.serve(lambda: None)
    assert tq.qp.closed


def test_poll_on_a_socket_closed_by_another_thread_is_connection_lost(sockpair):
    """A keep-alive waiting on the admin queue while the association is torn
    down: EBADF from the socket is the connection being gone, not a crash."""
    a, b = sockpair
    tq = established_host(a, b)
    tq.sock.close()
    with pytest.raises(ConnectionLost):
        tq.poll(time.monotonic() + 1)
