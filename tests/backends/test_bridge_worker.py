"""One I/O queue of the bridge (QueueWorker) against a scripted controller on a socket pair."""

from __future__ import annotations

import socket
import threading

from nvmecontrol.backends.userspace import request as R
from nvmecontrol.backends.userspace.bridge import QueueWorker
from nvmecontrol.transport.tcp import TcpQueuePair
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import CQE, encode_cqe
from nvmecontrol.wire.qpair import Established, HostQueuePair

NS = R.Namespace(1, 512, 1 << 20, max_cmd_bytes=1 << 20, can_write_zeroes=True, can_trim=True)


class Conn:
    """Stands in for an NBD connection: records the requests answered."""

    slot = 0

    def __init__(self):
        self.answered = []
        self.event = threading.Event()

    def reply(self, reqs):
        self.answered += [(r.cookie, r.error, bytes(r.buf) if r.buf is not None else None)
                          for r in reqs]
        self.event.set()


def established_pair():
    a, b = socket.socketpair()
    qp = HostQueuePair(queue_size=16)
    qp._apply(Established(False, False, 0, 0, 0x20000, 0), pda_rx=0, pda_tx=0)
    qp.sq_flow_control = False
    return TcpQueuePair(a, qp, timeout=None), b


def read_capsules(peer: socket.socket, n: int) -> list[int]:
    """The CIDs of ``n`` CapsuleCmds the worker sent."""
    data = b""
    while len(data) < n * P.CMD_HLEN:
        data += peer.recv(65536)
    return [int.from_bytes(data[i * 72 + 10:i * 72 + 12], "little") for i in range(n)]


def c2h(cid: int, data: bytes, offset: int = 0) -> bytes:
    return P.join(P.encode_c2h_data(P.C2HData(cid, offset, data, True, True)))


def reads_on_a_worker(driver, cookies):
    """A started worker, a connection with one 512-byte read per cookie split
    into parts (not submitted), and what the worker hands back on a loss:
    (worker, conn, parts, [(cookies, reason)], an event set on each loss)."""
    lost = []
    lost_event = threading.Event()

    def on_lost(worker, parts, reason):
        lost.append(([p.req.cookie for p in parts], reason))
        lost_event.set()

    w = QueueWorker(driver, 0, on_lost=on_lost)
    w.start()
    conn = Conn()
    parts = []
    for cookie in cookies:
        R.split(R.NbdRequest(conn, cookie, R.READ, cookie * 512, 512), NS, out=parts)
    return w, conn, parts, lost, lost_event


def test_commands_completed_before_a_bad_pdu_in_the_same_batch_are_answered():
    driver, peer = established_pair()
    w, conn, parts, lost, lost_event = reads_on_a_worker(driver, (1, 2, 3))
    try:
        assert w.submit(parts)
        cids = read_capsules(peer, 3)
        # Two good reads, then one whose data run past the command: one segment.
        peer.sendall(c2h(cids[0], b"\x01" * 512) + c2h(cids[1], b"\x02" * 512)
                     + c2h(cids[2], b"\x03" * 1024))
        assert lost_event.wait(5)
        assert conn.event.wait(5)
        assert conn.answered == [(1, 0, b"\x01" * 512), (2, 0, b"\x02" * 512)]
        # The third is handed back (to be replayed on a new association), not lost.
        assert lost[0][0] == [3] and "C2HData offset" in lost[0][1]
    finally:
        w.close()
        peer.close()


def test_a_queue_pair_found_closed_refuses_new_work_before_fail_runs():
    """The receiver marks the queue pair closed (peer gone, TermReq) a moment
    before fail() runs: a submission then must be refused (and parked by the
    caller), not raise with its batch half submitted."""
    driver, peer = established_pair()
    w = QueueWorker(driver, 0, on_lost=lambda *a: None)
    try:
        driver.qp.closed = True
        parts = R.split(R.NbdRequest(Conn(), 1, R.READ, 0, 512), NS)
        assert w.submit(parts) is False
        assert driver.qp.outstanding == 0
    finally:
        w.close()
        peer.close()


def test_completions_after_fail_are_not_answered_a_second_time():
    """fail() handed the outstanding commands back (to be replayed): completions
    still in the receive buffer must not answer them too."""
    driver, peer = established_pair()
    handed_back = []
    w = QueueWorker(driver, 0, on_lost=lambda worker, parts, reason: handed_back.extend(parts))
    conn = Conn()
    try:
        parts = R.split(R.NbdRequest(conn, 1, R.READ, 0, 512), NS)
        assert w.submit(parts)
        (cid,) = read_capsules(peer, 1)
        w.fail("torn down for a reconnect")
        driver.qp.decoder.feed(c2h(cid, b"\x07" * 512))  # arrived before the teardown
        assert w._on_batch() is False
        assert conn.answered == [] and [p.req.cookie for p in handed_back] == [1]
    finally:
        w.close()
        peer.close()


def test_authentication_required_hands_the_command_back_for_a_new_association():
    driver, peer = established_pair()
    w, conn, parts, lost, lost_event = reads_on_a_worker(driver, (1, 2))
    try:
        assert w.submit(parts)
        cids = read_capsules(peer, 2)
        # The first read is answered; the second comes back "Authentication
        # Required" (SCT 1h, SC 91h), which no NBD client may see as an error.
        status = (1 << 8) | 0x91
        resp = P.join(P.encode_capsule_resp(encode_cqe(CQE(sqid=1, cid=cids[1], status=status))))
        peer.sendall(c2h(cids[0], b"\x01" * 512) + resp)
        assert lost_event.wait(5)
        assert conn.event.wait(5)
        assert conn.answered == [(1, 0, b"\x01" * 512)]
        assert lost[0][0] == [2] and "re-authentication" in lost[0][1]
    finally:
        w.close()
